"""Loading a run for sampling and evaluation: a tokenizer that does not fit is refused."""

from __future__ import annotations

import pytest
import torch

from tinylm.checkpoint import save_checkpoint
from tinylm.cli.main import main
from tinylm.errors import TinylmError
from tinylm.inference.loading import load_model
from tinylm.model import GPT, ModelConfig
from tinylm.tokenizers.char import CharTokenizer


@pytest.fixture
def swapped(tmp_path):
    """A checkpoint whose tokenizer.json was replaced by one with more ids than the model."""
    small = CharTokenizer.train("abcdef")
    torch.manual_seed(0)
    config = ModelConfig(vocab_size=small.vocab_size, block_size=8, n_layer=1, n_embd=8, n_head=2)
    run = tmp_path / "run"
    save_checkpoint(run / "ckpt-000001", GPT(config), None, 1, tokenizer=small)
    CharTokenizer.train("abcdefghijklmnopqrstuvwxyz").save(run / "ckpt-000001" / "tokenizer.json")
    (tmp_path / "text.txt").write_text("the quick brown fox jumps over the lazy dog\n" * 20)
    return run


def test_a_tokenizer_with_more_ids_than_the_model_is_refused(swapped):
    with pytest.raises(TinylmError, match="do not belong together") as exc:
        load_model(swapped)
    assert "\n" not in str(exc.value) and "27 ids" in str(exc.value)


@pytest.mark.parametrize("command", ["eval", "sample"])
def test_the_commands_say_it_in_one_line(swapped, capsys, command):
    # `tinylm eval` gave "IndexError: index out of range in self".
    extra = ["--data", str(swapped.parent / "text.txt")] if command == "eval" else []
    assert main([command, str(swapped), *extra]) == 2
    err = capsys.readouterr().err
    assert err.startswith("tinylm: error: ") and err.count("\n") == 1
    assert "do not belong together" in err


# -- how many samples fit ---------------------------------------------------------------------


@pytest.fixture
def small_run(tmp_path):
    tokenizer = CharTokenizer.train("abcdef ghij\n")
    torch.manual_seed(0)
    config = ModelConfig(
        vocab_size=tokenizer.vocab_size, block_size=8, n_layer=2, n_embd=8, n_head=2, n_kv_head=1
    )
    run = tmp_path / "run"
    save_checkpoint(run / "ckpt-000001", GPT(config), None, 1, tokenizer=tokenizer)
    return run


@pytest.mark.parametrize("num", ["99999999999999999999", "100000000000"])
def test_more_samples_than_memory_holds_is_one_line(small_run, capsys, num):
    # `--num 99999999999999999999` was an OverflowError; `--num 100000000` a MemoryError
    # and then a hang.
    assert main(["sample", str(small_run), "--num", num, "--max-tokens", "3"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("tinylm: error: ") and err.count("\n") == 1
    assert "samples at once need at least" in err and "ask for fewer samples" in err


def test_the_sample_count_is_held_against_free_memory(small_run, monkeypatch):
    from tinylm.inference import sampling

    model, tokenizer, _ = load_model(small_run)
    # per row: keys and values of 2 layers x 8 positions x one 4-wide KV head, and logits
    per_row = (2 * 2 * 8 * 4 + 2 * model.config.vocab_size) * 4
    assert sampling.generation_bytes(model.config, 5) == 5 * per_row
    monkeypatch.setattr("tinylm.device.available_bytes", lambda device: 5 * per_row - 1)
    with pytest.raises(TinylmError, match="5 samples at once"):
        sampling.sample_texts(model, tokenizer, "ab", 2, num=5, seed=0)
    assert len(sampling.sample_texts(model, tokenizer, "ab", 2, num=4, seed=0)) == 4
