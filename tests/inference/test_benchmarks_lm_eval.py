"""Parity with lm-evaluation-harness: the same exported model, the same items, the same answers.

A small BPE model is trained for a few dozen steps (so it prefers some choices
to others for a reason), saved as a run, exported with ``tinylm export --format
hf``, and scored twice: by tinylm straight from the run, and by lm-evaluation-harness
(``lm_eval.simple_evaluate``, model ``hf`` on CPU) from the export, with local task
definitions over the same JSONL files. Three tasks cover the three layouts:
the generic one (its own YAML), ARC's (its prompt template) and HellaSwag's
(lm-eval's own ``hellaswag.yaml``, included, so its text cleaning is lm-eval's).
The items include what the conventions are about: a context longer than the
model's window (cut on the left), a context ending in spaces (moved to the
continuation), non-ASCII choices (characters and bytes differ, so ``acc_norm``
and ``acc_bytes`` can disagree), and two to five choices.

Per item, each choice's log-likelihood agrees to float32 rounding, and the
choices picked by ``acc``, ``acc_norm`` and ``acc_bytes`` are equal; so are the
three means.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest
import torch

from tinylm.checkpoint import save_checkpoint
from tinylm.cli.main import main
from tinylm.data.corpus import builtin_documents
from tinylm.data.mc_tasks import load_task_file
from tinylm.inference.benchmarks import score_task
from tinylm.inference.loading import load_model
from tinylm.model import GPT, ModelConfig
from tinylm.tokenizers.bpe import BPETokenizer

lm_eval = pytest.importorskip(
    "lm_eval", reason="lm-evaluation-harness is not installed (pip install 'tinylm[test]')"
)

pytestmark = pytest.mark.slow

BLOCK_SIZE = 64
OFFLINE = {"HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"}


def trained_run(folder: Path, text: str) -> None:
    """A tiny GPT-2-style model with a BPE tokenizer, trained briefly on ``text``, as a run."""
    tokenizer = BPETokenizer.train(text, 320, special_tokens=["<|endoftext|>"], progress=False)
    torch.manual_seed(0)
    config = ModelConfig(
        vocab_size=tokenizer.vocab_size,
        block_size=BLOCK_SIZE,
        n_layer=2,
        n_embd=32,
        n_head=4,
        d_ff=64,
        position="learned",
        norm="layernorm",
        activation="gelu",
        bias=True,
    )
    model = GPT(config)
    ids = torch.tensor(tokenizer.encode_document(text))
    optimizer = torch.optim.AdamW(model.parameters(), lr=3e-3)
    generator = torch.Generator().manual_seed(0)
    for _ in range(60):
        starts = torch.randint(0, len(ids) - BLOCK_SIZE - 1, (16,), generator=generator)
        x = torch.stack([ids[s : s + BLOCK_SIZE] for s in starts])
        y = torch.stack([ids[s + 1 : s + BLOCK_SIZE + 1] for s in starts])
        _, loss = model(x, y)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    save_checkpoint(folder / "ckpt-000060", model.eval(), None, 60, tokenizer=tokenizer)


def passages(text: str, count: int, words: int) -> list[str]:
    """``count`` runs of ``words`` words of ``text``, without its long table rules."""
    tokens = [word for word in text.split() if len(word) <= 12]
    return [" ".join(tokens[i * words : (i + 1) * words]) for i in range(count)]


def generic_items(text: str) -> list[dict]:
    """Items in the generic layout, with the edge cases the conventions are about."""
    pieces = passages(text, 40, 9)
    items = []
    for i in range(0, 36, 3):
        context, truth, other = pieces[i], pieces[i + 1], pieces[i + 2]
        choices = [other[:30], truth[:30], pieces[(i + 7) % 40][:30]]
        items.append({"context": context, "choices": choices, "label": 1})
    long_context = " ".join(pieces[:12])  # far beyond BLOCK_SIZE tokens: cut on the left
    items.append({"context": long_context, "choices": ["of the", "the of"], "label": 0})
    items.append({"context": "The value is  ", "choices": ["None", "True", "1"], "label": 0})
    items.append(
        {
            "context": "A string such as",
            "choices": ["café", "naïve résumé", "日本語", "plain", "s"],
            "label": 4,
        }
    )
    items.append({"context": "def f(x):\n   ", "choices": ["return x", "pass"], "label": 1})
    # 2 characters but 6 bytes: per character "x" wins, per byte "日本" (by a wide margin)
    items.append({"context": "The name is", "choices": ["日本", "x"], "label": 0})
    return items


def arc_items(text: str) -> list[dict]:
    pieces = passages(text, 12, 6)
    return [
        {
            "id": f"q{i}",
            "question": pieces[i],
            "choices": {"text": [pieces[i + 1], pieces[i + 2], "yes"], "label": ["A", "B", "C"]},
            "answerKey": "ABC"[i % 3],
        }
        for i in range(0, 9)
    ]


def hellaswag_items(text: str) -> list[dict]:
    pieces = passages(text, 20, 5)
    return [
        {
            "ind": i,
            "activity_label": "Python docs",
            "ctx_a": pieces[i] + " [header] Then",
            "ctx_b": pieces[i + 1].lower(),
            "endings": [pieces[i + 2], pieces[i + 3] + " [step]  more", pieces[i + 4], "ok."],
            "label": str(i % 4),
        }
        for i in range(0, 12)
    ]


def write_jsonl(path: Path, rows: list[dict]) -> None:
    path.write_text("".join(json.dumps(row, ensure_ascii=False) + "\n" for row in rows))


def task_yaml(name: str, data: Path, cache: Path, body: str) -> str:
    return (
        f"task: {name}\n"
        "dataset_path: json\n"
        f"dataset_kwargs:\n  data_files:\n    validation: {data}\n  cache_dir: {cache}\n"
        "output_type: multiple_choice\n"
        "validation_split: validation\n"
        "test_split: null\n"
        "training_split: null\n"
        "num_fewshot: 0\n"
        f"{body}"
        "metric_list:\n"
        "  - metric: acc\n  - metric: acc_norm\n  - metric: acc_bytes\n"
    )


def build(root: Path) -> list[str]:
    """The run, its export, the item files and the task YAMLs under ``root``; the task names."""
    docs = builtin_documents()
    train_text = "\n".join(docs[:12])[:20_000]
    held_out = "\n".join(docs[-6:])
    trained_run(root / "run", train_text)
    assert main(["export", str(root / "run"), "--format", "hf", "--out", str(root / "hf")]) == 0
    (root / "items").mkdir()  # datasets reads "test" in a folder name as a split: keep it out
    files = {
        "tinylm_generic": generic_items(held_out),
        "tinylm_arc": arc_items(held_out[5000:]),
        "tinylm_hellaswag": hellaswag_items(held_out[9000:]),
    }
    tasks = root / "tasks"
    tasks.mkdir()
    lm_eval_dir = Path(lm_eval.__file__).parent
    bodies = {
        "tinylm_generic": 'doc_to_text: "{{context}}"\ndoc_to_choice: "{{choices}}"\n'
        'doc_to_target: "{{label}}"\n',
        "tinylm_arc": 'doc_to_text: "Question: {{question}}\\nAnswer:"\n'
        'doc_to_target: "{{choices.label.index(answerKey)}}"\n'
        'doc_to_choice: "{{choices.text}}"\n',
        "tinylm_hellaswag": f"include: {lm_eval_dir / 'tasks' / 'hellaswag' / 'hellaswag.yaml'}\n"
        "dataset_name: null\n",
    }
    for name, rows in files.items():
        write_jsonl(root / "items" / f"{name}.jsonl", rows)
        yaml = task_yaml(name, root / "items" / f"{name}.jsonl", root / "cache", bodies[name])
        (tasks / f"{name}.yaml").write_text(yaml)
    return list(files)


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    root = tmp_path_factory.mktemp("parity")
    return root, build(root)


def run_lm_eval(root: Path, names: list[str]) -> dict:
    from lm_eval import simple_evaluate
    from lm_eval.tasks import TaskManager

    saved = {key: os.environ.get(key) for key in OFFLINE}
    os.environ.update(OFFLINE)
    try:
        return simple_evaluate(
            model="hf",
            model_args=f"pretrained={root / 'hf'},device=cpu,dtype=float32",
            tasks=names,
            task_manager=TaskManager(include_path=str(root / "tasks")),
            batch_size=8,
            log_samples=True,
            random_seed=0,
            numpy_random_seed=0,
            torch_random_seed=0,
            fewshot_random_seed=0,
        )
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


@pytest.fixture(scope="module")
def both(setup):
    root, names = setup
    reference = run_lm_eval(root, names)
    model, tokenizer, _ = load_model(root / "run")
    ours = {
        name: score_task(
            model, tokenizer, load_task_file(root / "items" / f"{name}.jsonl"), progress=False
        )
        for name in names
    }
    return ours, reference, names


@pytest.mark.parametrize("name", ["tinylm_generic", "tinylm_arc", "tinylm_hellaswag"])
def test_each_item_and_the_means_equal_lm_evals(both, name):
    ours, reference, _ = both
    result = ours[name]
    samples = sorted(reference["samples"][name], key=lambda s: s["doc_id"])
    assert len(samples) == len(result.items) >= 9
    for sample, item in zip(samples, result.items, strict=True):
        where = item.item.source
        # the same requests: the context and " " + choice, after each layout's own processing
        requests = [(item.item.context, " " + choice) for choice in item.item.choices]
        assert [tuple(args) for args in sample["arguments"]] == requests, where
        theirs = np.array([float(resp[0]) for resp in sample["filtered_resps"]])
        assert item.loglikelihoods == pytest.approx(theirs, rel=1e-4, abs=1e-3), where
        chars = np.array([len(choice) for choice in item.item.choices])
        assert item.pred == np.argmax(theirs), where
        assert item.pred_norm == np.argmax(theirs / chars), where
        assert sample["acc"] == float(item.pred == item.item.label), where
        assert sample["acc_norm"] == float(item.pred_norm == item.item.label), where
        assert sample["acc_bytes"] == float(item.pred_bytes == item.item.label), where
        assert sample["target"] == item.item.label
    metrics = reference["results"][name]
    assert metrics["acc,none"] == pytest.approx(result.acc, abs=1e-12)
    assert metrics["acc_norm,none"] == pytest.approx(result.acc_norm, abs=1e-12)
    assert metrics["acc_bytes,none"] == pytest.approx(result.acc_bytes, abs=1e-12)


def test_the_items_exercise_what_the_conventions_are_about(both):
    """Not a parity check: a guard that the items above still test something."""
    ours, _, _ = both
    generic = ours["tinylm_generic"]
    assert {len(r.item.choices) for r in generic.items} >= {2, 3, 5}
    assert any(r.pred != r.pred_norm for r in generic.items)  # the normalisation matters
    assert any(r.pred_norm != r.pred_bytes for r in generic.items)  # characters or bytes
    assert 0 < generic.acc < 1
