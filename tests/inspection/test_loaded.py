"""LoadedModel: how views encode text, show tokens and find a run's parts."""

from __future__ import annotations

import pytest
import torch

from tinylm.errors import TinylmError
from tinylm.inspect.loaded import LoadedModel
from tinylm.inspect.next_token import next_token_distribution, plot_next_token
from tinylm.model import GPT, ModelConfig
from tinylm.terminal import printable
from tinylm.tokenizers.bpe import BPETokenizer


@pytest.fixture(scope="module")
def bpe_loaded():
    text = "the cat sat on the mat. the dog sat on the log. " * 30
    tok = BPETokenizer.train(text, 290, special_tokens=["<|endoftext|>"], progress=False)
    torch.manual_seed(0)
    model = GPT(
        ModelConfig(vocab_size=tok.vocab_size, block_size=16, n_layer=1, n_embd=8, n_head=2)
    )
    return LoadedModel(model, tok, name="bpe")


def test_text_is_read_after_bos_as_sampling_does(loaded):
    ids = loaded.encode("the")
    assert ids == [loaded.tokenizer.bos_id] + loaded.tokenizer.encode("the")
    assert loaded.pieces(ids) == ["<BOS>", "t", "h", "e"]
    assert loaded.label == "tiny, step 7" and loaded.run_dir.name == "tiny"


def test_text_longer_than_the_context_is_refused(loaded):
    assert len(loaded.encode("the cat sat on the mat!")) == 24  # 23 characters + BOS: fits
    with pytest.raises(TinylmError, match="25 tokens with BOS, more than the model's block_size"):
        loaded.encode("the cat sat on the mat!!")


def test_bpe_tokens_show_their_leading_space(bpe_loaded):
    the = bpe_loaded.token_id(" the")
    assert bpe_loaded.tokenizer.decode([the]) == " the"
    assert bpe_loaded.token_id("␣the") == the  # the visible space stands for a space
    with pytest.raises(TinylmError, match=r"splits into \[.*\]"):
        bpe_loaded.token_id(" the cat sat")
    dist = next_token_distribution(bpe_loaded, "the cat", k=5)
    assert dist.prompt_ids[0] == bpe_loaded.tokenizer.bos_id
    labels = [t.get_text() for t in plot_next_token(dist).axes[0].get_yticklabels()]
    # a control character among the top tokens (a vertical tab, say) is drawn as its escape
    assert labels == [printable(p).replace(" ", "␣") for p in dist.pieces]


def test_a_model_in_memory_is_wrapped_directly(bpe_loaded):
    assert bpe_loaded.label == "bpe" and bpe_loaded.run_dir is None
    assert bpe_loaded.token_frequencies() is None
    assert not bpe_loaded.model.training


def test_a_run_without_a_tokenizer_is_refused(tmp_path, tokenizer):
    from tinylm.checkpoint import CheckpointManager

    model = GPT(
        ModelConfig(vocab_size=tokenizer.vocab_size, block_size=8, n_layer=1, n_embd=8, n_head=2)
    )
    CheckpointManager(tmp_path / "bare").save(1, model, None)
    with pytest.raises(TinylmError, match="no tokenizer.json"):
        LoadedModel.from_run(tmp_path / "bare")


def test_bytes_that_are_not_utf8_draw_as_escapes(bpe_loaded):
    # `tinylm inspect next R $'\xff\xfe'` raised a matplotlib TypeError: the title held
    # the lone surrogates that Python decodes those argv bytes to.
    from tinylm.inspect.figures import png_bytes

    dist = next_token_distribution(bpe_loaded, "\udcff\udcfe")
    fig = plot_next_token(dist)
    assert "\\xff\\xfe" in fig.axes[0].get_title()
    assert png_bytes(fig).startswith(b"\x89PNG")
