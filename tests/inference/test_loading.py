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
