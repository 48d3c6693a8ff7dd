"""train_dpo and tinylm dpo: a chat run out, metrics logged, every mistake one line."""

from __future__ import annotations

import json
import math
import re

import pytest
import torch

from tinylm.chat.template import CHAT_TOKENS, load_chat_template
from tinylm.checkpoint import save_checkpoint
from tinylm.cli.main import main
from tinylm.errors import TinylmError
from tinylm.inference.loading import load_model
from tinylm.model import GPT, ModelConfig
from tinylm.run.preference import DPOSettings, train_dpo
from tinylm.tokenizers.char import CharTokenizer
from tinylm.train.metrics import read_metrics

COLOURS = ["red", "blue", "green", "black", "white", "pink", "grey", "gold"]
PAIRS = [
    {"prompt": f"colour {i}?", "chosen": f"{c}.", "rejected": f"not {c}."}
    for i, c in enumerate(COLOURS * 2)
]


@pytest.fixture
def base(tmp_path):
    """A tiny untrained char-level run without the chat tokens."""
    text = "".join(p["prompt"] + p["chosen"] + p["rejected"] for p in PAIRS)
    tokenizer = CharTokenizer.train(text)
    torch.manual_seed(0)
    config = ModelConfig(
        vocab_size=tokenizer.vocab_size, block_size=32, n_layer=1, n_embd=16, n_head=2
    )
    run = tmp_path / "base"
    save_checkpoint(run / "ckpt-000001", GPT(config), None, 1, tokenizer=tokenizer)
    return run


@pytest.fixture
def pairs_file(tmp_path):
    path = tmp_path / "prefs.jsonl"
    path.write_text("".join(json.dumps(p) + "\n" for p in PAIRS))
    return path


SETTINGS = DPOSettings(steps=25, lr=3e-3, batch_size=4, beta=0.5, held_out=0.25, seed=2)


def test_a_base_run_gains_the_chat_tokens_and_learns_to_prefer_the_chosen_replies(
    base, pairs_file, tmp_path
):
    out = tmp_path / "dpo"
    summary = train_dpo(base, str(pairs_file), out, SETTINGS, device="cpu", progress=False)
    assert summary.grew_vocab and summary.train_pairs == 12 and summary.held_out_pairs == 4
    # before the first step the policy is the reference: every reward is zero
    assert summary.before["dpo_loss"] == pytest.approx(math.log(2), abs=1e-6)
    assert summary.before["reward_accuracy"] == 0.0 and summary.before["reward_margin"] == 0.0
    assert summary.after["reward_margin"] > 0.1 and summary.last["reward_accuracy"] >= 0.75

    model, tokenizer, meta = load_model(out, require_tokenizer=True)
    assert all(name in tokenizer.special_tokens for name in CHAT_TOKENS)
    assert model.config.vocab_size == tokenizer.vocab_size
    assert load_chat_template(meta.chat_template_file, tokenizer) is not None
    assert meta.step == 25 and meta.train_config["dpo"]["beta"] == 0.5
    assert meta.train_config["data"] == str(pairs_file)

    records = read_metrics(out / "metrics.jsonl")
    steps = [r for r in records if "dpo_loss" in r]
    assert [r["step"] for r in steps] == list(range(1, 26))
    assert {"reward_margin", "reward_accuracy", "lr"} <= set(steps[0])
    held = [r for r in records if "heldout_reward_accuracy" in r]
    assert [r["step"] for r in held] == [0, 25]
    assert held[1]["heldout_reward_margin"] == pytest.approx(summary.after["reward_margin"])
    assert held[0]["heldout_preference_accuracy"] == summary.before["preference_accuracy"]


def test_a_chat_run_keeps_its_vocabulary_and_an_existing_run_is_refused(base, pairs_file, tmp_path):
    first = tmp_path / "first"
    settings = DPOSettings(steps=2, batch_size=4, held_out=0.0)
    train_dpo(base, str(pairs_file), first, settings, device="cpu", progress=False)
    again = train_dpo(first, str(pairs_file), tmp_path / "again", settings, progress=False)
    assert not again.grew_vocab and again.before == {} and again.held_out_pairs == 0
    size = load_model(first)[0].config.vocab_size
    assert load_model(tmp_path / "again")[0].config.vocab_size == size
    with pytest.raises(TinylmError, match="already holds a run"):
        train_dpo(base, str(pairs_file), first, settings, progress=False)


def test_a_folder_left_by_a_failed_start_is_trained_into_afresh(base, pairs_file, tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    (out / "metrics.jsonl").write_text('{"step": 7, "dpo_loss": 9.0}\n{"step": 8, "dpo_l')
    settings = DPOSettings(steps=2, batch_size=4, held_out=0.0)
    train_dpo(base, str(pairs_file), out, settings, progress=False)
    assert [r["step"] for r in read_metrics(out / "metrics.jsonl")] == [1, 2]


@pytest.mark.parametrize(
    ("field", "value", "message"),
    [
        ("steps", 0, "steps must be an integer of at least 1"),
        ("batch_size", 2.5, "batch_size must be an integer"),
        ("beta", 0.0, "beta must be a number above 0"),
        ("lr", float("nan"), "lr must be a number above 0"),
        ("held_out", 1.0, "held_out must be below 1"),
        ("grad_clip", -1.0, "grad_clip must be a number of at least 0"),
    ],
)
def test_bad_settings_are_one_line(field, value, message):
    with pytest.raises(TinylmError, match=message):
        DPOSettings(**{field: value})


def test_pairs_longer_than_the_context_are_cut_or_dropped_and_counted(base, tmp_path):
    long = {"prompt": "colour?", "chosen": "red. " * 10, "rejected": "blue."}
    same_start = {
        "prompt": "colour?",
        "chosen": "red " * 9 + "blue",
        "rejected": "red " * 9 + "pink",
    }
    path = tmp_path / "p.jsonl"
    path.write_text("".join(json.dumps(p) + "\n" for p in [*PAIRS[:4], long, same_start]))
    settings = DPOSettings(steps=1, batch_size=2, held_out=0.0)
    summary = train_dpo(base, str(path), tmp_path / "out", settings, progress=False)
    assert (summary.train_pairs, summary.cut, summary.dropped) == (5, 1, 1)
    path.write_text(json.dumps({**long, "prompt": "colour? " * 5}) + "\n")
    with pytest.raises(TinylmError, match="no pair fits the context .33 tokens"):
        train_dpo(base, str(path), tmp_path / "out2", settings, progress=False)


def test_the_command_trains_and_reports_held_out_accuracy(base, pairs_file, tmp_path, capsys):
    out = tmp_path / "cli"
    argv = ["dpo", str(base), "--data", f"prefs:{pairs_file}", "--out", str(out)]
    argv += ["--steps", "3", "--batch-size", "4", "--held-out", "0.25", "--quiet"]
    assert main(argv) == 0
    said = capsys.readouterr().out
    assert "had no chat tokens" in said and "trained 3 steps on 12 pairs (4 held out)" in said
    assert "held out reward accuracy: 0.0000 before" in said
    assert (out / "ckpt-000003" / "chat_template.json").is_file()


@pytest.mark.parametrize(
    ("content", "expected"),
    [
        (None, "preference file .*missing.jsonl does not exist"),
        (json.dumps(PAIRS[0]) + "\n{oops\n", r"prefs.jsonl:2 is not valid JSON"),
        ("\n\n", "holds no preference pairs"),
        (json.dumps({"prompt": "q", "chosen": "a"}) + "\n", "prefs.jsonl:1: field 'rejected'"),
    ],
)
def test_bad_data_is_exit_2_and_one_line(base, tmp_path, capsys, content, expected):
    path = tmp_path / ("missing.jsonl" if content is None else "prefs.jsonl")
    if content is not None:
        path.write_text(content)
    out = tmp_path / "out"
    assert main(["dpo", str(base), "--data", str(path), "--out", str(out), "--quiet"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("tinylm: error: ")
    assert re.search(expected, err), err
    assert not out.exists()  # nothing was started


def test_bad_settings_and_an_existing_out_are_exit_2(base, pairs_file, tmp_path, capsys):
    common = ["dpo", str(base), "--data", str(pairs_file), "--quiet"]
    assert main([*common, "--out", str(tmp_path / "a"), "--beta", "-1"]) == 2
    assert "beta must be a number above 0" in capsys.readouterr().err
    assert main([*common, "--out", str(tmp_path / "a"), "--steps", "1"]) == 0
    capsys.readouterr()
    assert main([*common, "--out", str(tmp_path / "a"), "--steps", "1"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "already holds a run" in err
