"""Scoring multiple-choice items: tokens, windows, batching, metrics, and ``tinylm eval --task``.

The references are computed here apart from the code under test: each request
alone, unpadded, through the model and ``log_softmax``; metrics from numbers
chosen by hand. Parity with lm-evaluation-harness itself is
``test_benchmarks_lm_eval.py``.
"""

from __future__ import annotations

import json

import pytest
import torch
from torch.nn import functional as F

from tinylm.checkpoint import save_checkpoint
from tinylm.cli.main import main
from tinylm.data.corpus import builtin_documents
from tinylm.data.mc_tasks import MCItem, MCTask
from tinylm.errors import TinylmError
from tinylm.inference.benchmarks import (
    ItemResult,
    TaskResult,
    encode_pair,
    item_requests,
    loglikelihoods,
    model_input,
    score_task,
)
from tinylm.model import GPT, ModelConfig
from tinylm.tokenizers.bpe import BPETokenizer
from tinylm.tokenizers.char import CharTokenizer

TEXT = "the cat sat on the mat. a dog ran to the cat; the mat was red. café 日本\n" * 8


@pytest.fixture(scope="module")
def char():
    return CharTokenizer.train(TEXT)


@pytest.fixture(scope="module")
def bpe():
    return BPETokenizer.train(TEXT, 290, ["<|endoftext|>"], progress=False)


def small_model(vocab_size: int, block_size: int = 24) -> GPT:
    torch.manual_seed(3)
    config = ModelConfig(
        vocab_size=vocab_size, block_size=block_size, n_layer=1, n_head=2, n_embd=16, init_std=0.4
    )
    return GPT(config).eval()


def reference_loglikelihood(model: GPT, context: list[int], continuation: list[int]) -> float:
    """The request alone: the window by hand, one unpadded forward pass, log-softmax."""
    ids = context + continuation
    window = ids[-(model.config.block_size + 1) :]
    with torch.no_grad():
        logits, _ = model(torch.tensor([window[:-1]]))
    logprobs = F.log_softmax(logits[0].double(), -1)
    positions = range(len(window) - 1 - len(continuation), len(window) - 1)
    return sum(float(logprobs[p, t]) for p, t in zip(positions, continuation, strict=True))


# -- tokens ---------------------------------------------------------------------------------


def test_the_context_is_a_prompt_and_the_continuation_the_rest(char, bpe):
    for tokenizer in (char, bpe):
        context, continuation = encode_pair(tokenizer, "the cat", " sat on")
        assert context == [tokenizer.bos_id, *tokenizer.encode("the cat")]
        assert context + continuation == [tokenizer.bos_id, *tokenizer.encode("the cat sat on")]


def test_trailing_whitespace_moves_from_the_context_to_the_continuation(char):
    context, continuation = encode_pair(char, "the cat  ", " sat")
    assert context == [char.bos_id, *char.encode("the cat")]
    assert continuation == char.encode("   sat")


def test_bpe_continuations_keep_the_tokens_of_the_whole_text(bpe):
    """The whole text's tokens past the context's length, not the continuation encoded apart."""
    context, continuation = encode_pair(bpe, "the ca", "t sat on")
    whole = [bpe.bos_id, *bpe.encode("the cat sat on")]
    assert context == [bpe.bos_id, *bpe.encode("the ca")]
    assert continuation == whole[len(context) :]
    assert continuation != bpe.encode("t sat on")  # "cat" is one token across the cut


def test_an_empty_context_scores_after_bos_alone(char):
    assert encode_pair(char, "", " the") == ([char.bos_id], char.encode(" the"))


def test_the_input_is_cut_on_the_left_to_the_window():
    assert model_input(([1, 2, 3], [4, 5]), 10) == [1, 2, 3, 4]
    assert model_input(([1, 2, 3, 4, 5, 6], [7, 8]), 4) == [4, 5, 6, 7]


# -- scoring --------------------------------------------------------------------------------


def test_batched_scores_equal_each_request_scored_alone(char):
    model = small_model(char.vocab_size)
    texts = [("the cat", " sat"), ("a dog ran to the cat; the mat was", " red."), ("x", " café")]
    texts += [("the mat was red. " * 4, " the cat sat")]  # longer than the window: cut
    texts[2] = ("the", " café 日本")
    requests = [encode_pair(char, c, t) for c, t in texts]
    assert len(model_input(requests[-1], 24)) == 24 < sum(map(len, requests[-1]))
    expected = [reference_loglikelihood(model, *request) for request in requests]
    for batch_size in (1, 3, 8):
        got = loglikelihoods(model, requests, batch_size=batch_size, progress=False)
        assert got == pytest.approx(expected, abs=1e-4)


def test_a_continuation_longer_than_the_window_is_refused_by_item(char):
    model = small_model(char.vocab_size, block_size=8)
    item = MCItem("the", ("cat", "the cat sat on the mat"), 0, "items.jsonl:7")
    with pytest.raises(
        TinylmError,
        match=r"^items.jsonl:7: choice 2 is 23 tokens after the context; the model scores 1 to 8",
    ):
        score_task(model, char, MCTask("t", (item,)), progress=False)


def test_score_task_keeps_items_and_choices_in_order(bpe):
    model = small_model(bpe.vocab_size)
    items = (
        MCItem("the cat", ("sat", "ran", "was red"), 2, "a"),
        MCItem("a dog ran to the", ("cat", "mat"), 0, "b"),
    )
    result = score_task(model, bpe, MCTask("t", items), batch_size=2, progress=False)
    for item, scored in zip(items, result.items, strict=True):
        expected = [reference_loglikelihood(model, *r) for r in item_requests(bpe, item)]
        assert scored.item == item
        assert scored.loglikelihoods == pytest.approx(expected, abs=1e-4)


# -- metrics --------------------------------------------------------------------------------


def test_acc_norm_divides_by_characters_and_acc_bytes_by_bytes():
    item = MCItem("x", ("é", "ab", "abcd"), 1)
    # per character: -1.5, -1.0, -1.0 (tie: the first); per byte: -0.75, -1.0, -1.0
    result = ItemResult(item, (-1.5, -2.0, -4.0))
    assert (result.pred, result.pred_norm, result.pred_bytes) == (0, 1, 0)
    tie = ItemResult(item, (-2.0, -2.0, -3.0))
    assert tie.pred == 0


def test_the_means_and_the_per_item_lines():
    items = (MCItem("a", ("x", "yy"), 1, "f:1"), MCItem("b", ("x", "y", "z"), 0, "f:2"))
    task = MCTask("t", items)
    result = TaskResult(
        task, (ItemResult(items[0], (-1.0, -1.5)), ItemResult(items[1], (-1, -2, -3)))
    )
    assert (result.acc, result.acc_norm, result.acc_bytes) == (0.5, 1.0, 1.0)
    assert result.summary() == {
        "task": "t",
        "items": 2,
        "acc": 0.5,
        "acc_norm": 1.0,
        "acc_bytes": 1.0,
        "chance": pytest.approx((1 / 2 + 1 / 3) / 2),
    }
    lines = [json.loads(line) for line in result.jsonl().splitlines()]
    assert lines[0] == {
        "index": 0,
        "source": "f:1",
        "label": 1,
        "pred": 0,
        "pred_norm": 1,
        "pred_bytes": 1,
        "acc": 0.0,
        "acc_norm": 1.0,
        "acc_bytes": 1.0,
        "loglikelihoods": [-1.0, -1.5],
        "context": "a",
        "choices": ["x", "yy"],
    }
    assert lines[1]["acc"] == 1.0 and len(lines) == 2


# -- the command ----------------------------------------------------------------------------


@pytest.fixture
def char_run(tmp_path, char):
    model = small_model(char.vocab_size, block_size=32)
    save_checkpoint(tmp_path / "run" / "ckpt-000005", model, None, 5, tokenizer=char)
    return tmp_path / "run"


def test_cli_scores_a_file_and_writes_per_item_results(char_run, tmp_path, capsys):
    items = [
        {"context": "the cat", "choices": ["sat", "ran", "was"], "label": 0},
        {"context": "a dog ran to the", "choices": ["cat", "mat"], "label": 1},
    ]
    path = tmp_path / "items.jsonl"
    path.write_text("".join(json.dumps(row) + "\n" for row in items))
    out = tmp_path / "per_item.jsonl"
    argv = ["eval", str(char_run), "--task", str(path), "--output", str(out), "--batch-size", "2"]
    assert main(argv) == 0
    printed, err = capsys.readouterr()
    assert printed.startswith("items: acc ") and "over 2 items (chance 0.4167)" in printed
    assert "step 5" in printed and err == ""  # no terminal: no bar
    lines = [json.loads(line) for line in out.read_text().splitlines()]
    assert [line["source"] for line in lines] == [f"{path}:1", f"{path}:2"]
    acc = sum(line["acc"] for line in lines) / 2
    assert f"acc {acc:.4f}," in printed


@pytest.mark.slow
def test_cli_scores_the_built_in_task(tmp_path, capsys):
    tokenizer = CharTokenizer.train(builtin_documents())
    model = small_model(tokenizer.vocab_size, block_size=128)
    save_checkpoint(tmp_path / "run" / "ckpt-000001", model, None, 1, tokenizer=tokenizer)
    assert main(["eval", str(tmp_path / "run"), "--task", "pydocs-continue", "--quiet"]) == 0
    printed = capsys.readouterr().out
    assert printed.startswith("pydocs-continue: acc ") and "(chance 0.2500)" in printed


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--data", "pydocs", "--task", "pydocs-continue"], "give either --data (loss on text) or"),
        ([], "give either --data (loss on text) or"),
        (["--task", "nope"], "no task 'nope': give a built-in task (pydocs-continue)"),
        (["--task", "pydocs-continue", "--max-batches", "2"], "--max-batches applies to --data"),
        (["--data", "pydocs", "--output", "x.jsonl"], "--output writes per-item results"),
        (["--task", "hf:"], "write hf:NAME, hf:NAME:SPLIT or hf:NAME:CONFIG:SPLIT"),
        (["--task", "hf:a:b:c:d"], "write hf:NAME, hf:NAME:SPLIT or hf:NAME:CONFIG:SPLIT"),
    ],
)
def test_cli_refusals_are_one_line(char_run, capsys, extra, message):
    assert main(["eval", str(char_run), *extra]) == 2
    err = capsys.readouterr().err
    assert err.startswith("tinylm: error: ") and err.count("\n") == 1, err
    assert message in err, err


def test_cli_a_malformed_file_fails_before_the_model_loads(tmp_path, capsys):
    path = tmp_path / "items.jsonl"
    path.write_text('{"context": "a", "choices": ["x", "y"], "label": 0}\n{"context": "b"}\n')
    assert main(["eval", str(tmp_path / "no-run"), "--task", str(path)]) == 2
    err = capsys.readouterr().err
    assert f"{path}:2: field 'choices' is missing" in err and err.count("\n") == 1, err
