"""``sample_texts``: several samples as one batch, with ``stream_text``'s end-of-document rule."""

from __future__ import annotations

import torch

from tinylm.inference.sampling import sample_text, sample_texts
from tinylm.model import GPT, ModelConfig
from tinylm.tokenizers.char import CharTokenizer


def test_greedy_batch_samples_equal_the_streamed_sample():
    tokenizer = CharTokenizer(list("abcdefgh \n"))
    torch.manual_seed(0)
    config = ModelConfig(vocab_size=tokenizer.vocab_size, block_size=16, n_layer=1, n_embd=16)
    model = GPT(config).eval()
    for prompt in ("", "abc", "h h h"):
        alone = sample_text(model, tokenizer, prompt, 30, temperature=0)
        assert sample_texts(model, tokenizer, prompt, 30, 3, temperature=0) == [alone] * 3


def test_end_token_rule_matches_stream_text():
    from tinylm.inference.sampling import _until_end

    assert _until_end([9, 9, 1, 2, 9, 3], 9) == [1, 2]
    assert _until_end([1, 2, 3], 9) == [1, 2, 3]
    assert _until_end([1, 2, 3], None) == [1, 2, 3]
