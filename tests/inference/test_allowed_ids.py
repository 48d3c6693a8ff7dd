"""Sampling never produces an id the tokenizer does not define (issue 13, defect 9).

A vocabulary with a gap (a special token at 65536 over 300 learned tokens) gave
the model ids to choose that decode to nothing; a sample that drew one aborted
training. Here the model is made to prefer the gap ids outright (its logits are
replaced), so without the mask every draw would land in the gap.
"""

from __future__ import annotations

import pytest
import torch

from tinylm.inference.sampling import sample_text, sample_texts, sampleable_ids
from tinylm.model import GPT, ModelConfig
from tinylm.model.generate import sample_next_tokens
from tinylm.tokenizers.bpe import BPETokenizer

GAP_SPECIAL = 1000  # ids 256..999 are a gap


@pytest.fixture
def gappy():
    vocab = {i: bytes([i]) for i in range(256)}
    tokenizer = BPETokenizer(vocab, [], {"<|endoftext|>": GAP_SPECIAL})
    torch.manual_seed(0)
    config = ModelConfig(
        vocab_size=tokenizer.vocab_size, block_size=16, n_layer=1, n_embd=16, n_head=2
    )
    model = GPT(config)
    real = model.next_token_logits

    def prefer_the_gap(*args, **kwargs):
        logits = real(*args, **kwargs)
        return logits.index_fill(-1, torch.arange(256, GAP_SPECIAL), 50.0)

    model.next_token_logits = prefer_the_gap
    return model, tokenizer


def test_the_gap_is_not_sampleable(gappy):
    model, tokenizer = gappy
    allowed = sampleable_ids(model, tokenizer)
    assert allowed == [*range(256), GAP_SPECIAL]


@pytest.mark.parametrize("temperature", [0.0, 1.0, 5.0])
def test_generation_never_lands_in_the_gap(gappy, temperature):
    model, tokenizer = gappy
    text = sample_text(model, tokenizer, "hi", 12, temperature=temperature, seed=1)
    assert isinstance(text, str)  # decoding a gap id would have raised
    texts = sample_texts(model, tokenizer, "hi", 6, num=2, temperature=temperature, seed=1)
    assert len(texts) == 2


def test_the_mask_moves_all_probability_to_the_allowed_ids():
    logits = torch.tensor([0.0, 10.0, 0.0, 10.0])
    banned = torch.tensor([False, True, False, False])
    draws = sample_next_tokens(logits.expand(4000, 4), 1.0, banned=banned)
    assert not (draws == 1).any()
    share = (draws == 3).float().mean().item()  # e^10 / (e^10 + 2): almost always id 3
    expected = torch.softmax(torch.tensor([0.0, 10.0, 0.0]), 0)[1].item()
    assert share == pytest.approx(expected, abs=0.01)
