"""Multiple-choice items read from files, the hub loader and the built-in task.

HellaSwag's text cleaning is held to lm-evaluation-harness's own
(``lm_eval.tasks.hellaswag.utils``) where that package is installed; every
other expectation is written out by hand.
"""

from __future__ import annotations

import json
import random

import pytest

from tinylm.data import mc_tasks
from tinylm.data.corpus import builtin_documents
from tinylm.data.mc_tasks import (
    MCItem,
    held_out_text,
    hellaswag_clean,
    load_hub_task,
    load_task,
    load_task_file,
    pydocs_continue,
)
from tinylm.errors import TinylmError

GENERIC = {"context": "Two and two make", "choices": ["four", "five", "six"], "label": 0}
HELLASWAG = {
    "ind": 4,
    "activity_label": "Removing ice from car",
    "ctx_a": "Then, the man writes over the snow covering the window of a car.",
    "ctx_b": "then",
    "endings": [
        ", the man adds wax to the windshield.",
        "Get a bucket [title] Clean the car. [step] Rinse it  well.",
        "the man continues removing the snow on his car.",
        "a woman is seen.",
    ],
    "label": "3",
}
ARC = {
    "id": "Mercury_7220990",
    "question": "Which factor will most likely cause a person to develop a fever?",
    "choices": {"text": ["a leg muscle relaxing", "a bacterial population"], "label": ["1", "2"]},
    "answerKey": "2",
}


def write(tmp_path, rows, name="items.jsonl"):
    folder = tmp_path / "items"  # datasets reads "test" in a folder name as a split
    folder.mkdir(exist_ok=True)
    path = folder / name
    lines = (row if isinstance(row, str) else json.dumps(row, ensure_ascii=False) for row in rows)
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def test_the_three_layouts_read_into_items(tmp_path):
    path = write(tmp_path, [GENERIC, HELLASWAG, "", ARC])
    task = load_task_file(path)
    assert task.name == "items"
    generic, hellaswag, arc = task.items
    assert generic == MCItem("Two and two make", ("four", "five", "six"), 0, f"{path}:1")
    assert hellaswag.context == (
        "Removing ice from car: Then, the man writes over the snow covering the window of a "
        "car. Then"
    )
    assert hellaswag.choices[1] == "Get a bucket. Clean the car. Rinse it well."  # tags gone
    assert hellaswag.label == 3 and hellaswag.source == f"{path}:2"
    assert arc.context == (
        "Question: Which factor will most likely cause a person to develop a fever?\nAnswer:"
    )
    assert arc.choices == ("a leg muscle relaxing", "a bacterial population")
    assert arc.label == 1 and arc.source == f"{path}:4"  # the blank line still counts
    assert task.chance == pytest.approx((1 / 3 + 1 / 4 + 1 / 2) / 3)


def test_hellaswag_cleaning_equals_lm_evals():
    utils = pytest.importorskip("lm_eval.tasks.hellaswag.utils", reason="lm-eval is not installed")
    datasets = pytest.importorskip("datasets", reason="datasets is not installed")
    rows = [HELLASWAG, {**HELLASWAG, "ctx_b": "", "ctx_a": "  [header] How to x [step]  y  "}]
    theirs = utils.process_docs(datasets.Dataset.from_list(rows))
    for row, doc in zip(rows, theirs, strict=True):
        ours = mc_tasks.hellaswag_item(row, "row")
        assert ours.context == doc["query"]
        assert list(ours.choices) == doc["choices"]
        assert ours.label == doc["gold"]
    for text in ["a [b] c", " x [title] y ", "[x]  [y]  z", "no tags"]:
        assert hellaswag_clean(text) == utils.preprocess(text)


@pytest.mark.parametrize(
    ("row", "message"),
    [
        ('{"context": "x", "choices": ["a", "b"]', "is not valid JSON"),
        ("[1, 2]", "holds a list, not a JSON object"),
        ({"question": "x"}, "no field 'context' (nor HellaSwag's 'endings'"),
        ({**GENERIC, "label": 3}, "field 'label' is the number 3, expected an integer from 0 to 2"),
        ({**GENERIC, "label": "0"}, "field 'label' is a string"),
        ({"context": "x", "label": 0}, "field 'choices' is missing"),
        ({**GENERIC, "choices": ["only"]}, "field 'choices' is a list, expected a list of two"),
        ({**GENERIC, "choices": ["a", ""]}, "expected a list of two or more non-empty strings"),
        ({**GENERIC, "context": None}, "field 'context' is null, expected a string"),
        ({**HELLASWAG, "label": ""}, "field 'label' is a string"),
        ({**HELLASWAG, "ctx_b": 3}, "field 'ctx_b' is the number 3"),
        ({**ARC, "answerKey": "C"}, "field 'answerKey' is a string ('C'), expected one of"),
        ({**ARC, "choices": {"text": ["a", "b"], "label": ["A"]}}, "choices: field 'label'"),
        ({**ARC, "choices": ["a", "b"]}, "field 'choices' is a list, expected an object"),
    ],
)
def test_a_malformed_line_fails_in_one_line_naming_file_line_and_field(tmp_path, row, message):
    path = write(tmp_path, [GENERIC, GENERIC, row])
    with pytest.raises(TinylmError) as info:
        load_task_file(path)
    text = str(info.value)
    assert text.startswith(f"{path}:3") and "\n" not in text, text
    assert message in text, text


def test_files_that_are_no_task_are_refused(tmp_path):
    with pytest.raises(TinylmError, match="holds no items"):
        load_task_file(write(tmp_path, ["", "  "]))
    with pytest.raises(TinylmError, match=r"task file .* does not exist"):
        load_task(str(tmp_path / "missing.jsonl"))
    with pytest.raises(TinylmError, match=r"no task 'hellaswag': give a built-in task"):
        load_task("hellaswag")
    with pytest.raises(TinylmError, match="is a folder"):
        load_task(str(tmp_path))


def test_the_hub_loader_reads_the_same_items_from_local_files(tmp_path):
    pytest.importorskip("datasets", reason="the optional datasets package is not installed")
    rows = [GENERIC, {**GENERIC, "label": 2, "context": "Three and three"}]
    path = write(tmp_path, rows)
    task = load_hub_task("json", "train", data_files=str(path), cache_dir=tmp_path / "cache")
    from_file = load_task_file(path)
    assert [(i.context, i.choices, i.label) for i in task.items] == [
        (i.context, i.choices, i.label) for i in from_file.items
    ]
    assert task.items[1].source == "json[train] row 2"


def test_a_hub_dataset_that_cannot_load_fails_at_the_call(tmp_path):
    pytest.importorskip("datasets", reason="the optional datasets package is not installed")
    from tinylm.data.hub import load_hub_rows

    missing = str(tmp_path / "items" / "none.jsonl")
    with pytest.raises(TinylmError, match=r"^cannot load dataset 'json' split 'train'"):
        load_hub_rows("json", "train", data_files=missing, cache_dir=tmp_path / "cache")


def test_the_hub_loader_checks_rows_as_files_are_checked(tmp_path):
    pytest.importorskip("datasets", reason="the optional datasets package is not installed")
    path = write(tmp_path, [GENERIC, {**GENERIC, "label": 7}])
    with pytest.raises(TinylmError, match=r"^json\[train\] row 2: field 'label' is the number 7"):
        load_hub_task("json", "train", data_files=str(path), cache_dir=tmp_path / "cache")


# -- the built-in task ----------------------------------------------------------------------


def test_the_built_in_task_is_the_documented_construction():
    task = load_task("pydocs-continue")
    assert task == pydocs_continue()  # a fixed seed: the same items every time
    assert task.name == "pydocs-continue" and task.chance == 0.25
    words = held_out_text().split()
    size = mc_tasks.CONTEXT_WORDS + mc_tasks.CONTINUATION_WORDS
    starts = range(0, len(words) - size + 1, mc_tasks.STRIDE_WORDS)
    # every passage is an item but those of the few groups left short
    assert len(starts) - 3 * 20 <= len(task.items) <= len(starts) and len(task.items) >= 1000
    seen = []
    for item in task.items:
        start = int(item.source.removeprefix("word ")) - 1
        assert start in starts
        seen.append(start)
        assert item.context == " ".join(words[start : start + mc_tasks.CONTEXT_WORDS])
        assert item.choices[item.label] == " ".join(words[start + mc_tasks.CONTEXT_WORDS :][:2])
        assert len(item.choices) == 4 == len(set(item.choices))
    assert seen == sorted(set(seen))  # in the order of the text, each passage once
    labels = [item.label for item in task.items]
    assert all(labels.count(k) > len(labels) / 5 for k in range(4))  # shuffled, not all first
    assert pydocs_continue(seed=5) != task


def test_each_built_in_continuation_is_the_answer_once_and_a_distractor_three_times():
    groups: dict[frozenset, list[MCItem]] = {}
    for item in pydocs_continue().items:
        groups.setdefault(frozenset(item.choices), []).append(item)
    for items in groups.values():
        assert len(items) == 4
        assert {item.choices[item.label] for item in items} == set(items[0].choices)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_a_scorer_blind_to_the_context_is_at_chance_exactly(seed):
    """Any score that depends on the choice alone, normalised or not, gets acc 0.25."""
    rng = random.Random(seed)
    task = pydocs_continue()
    score = {c: rng.random() for item in task.items for c in item.choices}
    by_length = {c: -len(c) for c in score}  # an untrained model prefers short choices

    def acc(scores):
        right = [max(i.choices, key=scores.__getitem__) == i.choices[i.label] for i in task.items]
        return sum(right) / len(right)

    assert acc(score) == 0.25
    assert acc({c: s / len(c) for c, s in score.items()}) == 0.25  # acc_norm's division
    # a preference for short choices, ties falling to each item's order, is about chance
    assert abs(acc(by_length) - 0.25) < 0.02


def test_the_built_in_passages_are_the_corpus_tail():
    corpus = "\n".join(builtin_documents())
    tail = held_out_text()
    assert corpus.endswith(tail) and tail[0].isspace()
    assert len(tail) <= mc_tasks.HELD_OUT_FRACTION * len(corpus)


@pytest.mark.slow
def test_the_default_split_holds_the_built_in_passages_out(tmp_path):
    """``tinylm train``'s default data (char tokenizer, a tenth for val) never trains on them."""
    from tinylm.data.prepare import prepare
    from tinylm.data.prepared import load_prepared
    from tinylm.tokenizers.char import CharTokenizer

    documents = builtin_documents()
    tokenizer = CharTokenizer.train("".join(documents))
    prepare(documents, tokenizer, tmp_path / "data", progress=False, workers=1)
    val = tokenizer.decode(load_prepared(tmp_path / "data").val.tolist())
    words = held_out_text().split()
    assert " ".join(val.split()).endswith(" ".join(words))
    rng = random.Random(0)
    train = tokenizer.decode(load_prepared(tmp_path / "data").train.tolist())
    for item in rng.sample(pydocs_continue().items, 10):
        assert item.context not in " ".join(train.split())
