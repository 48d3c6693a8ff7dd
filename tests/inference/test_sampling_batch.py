"""``sample_texts``: several samples as one batch, with ``stream_text``'s end-of-document rule;
``stream_text``'s pieces when byte-level tokens cut characters in two."""

from __future__ import annotations

import torch

from tinylm.inference.sampling import sample_text, sample_texts, stream_text
from tinylm.model import GPT, ModelConfig
from tinylm.tokenizers.bpe import BPETokenizer
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


class _Scripted:
    """A stand-in model whose "generation" is a fixed list of ids, whatever the prompt."""

    def __init__(self, ids: list[int]) -> None:
        self.ids = ids

    def generate(self, prompt, max_tokens, **sampling):
        yield from self.ids[:max_tokens]


def test_streamed_pieces_never_hold_half_a_character():
    # Byte tokens, plus two merges that cut inside UTF-8: the first two bytes of a
    # 4-byte emoji, and the last byte of 日 (e6 97 a5) with the first of 本 (e6 9c ac).
    vocab = {i: bytes([i]) for i in range(256)}
    vocab.update({256: b"\xf0\x9f", 257: b"\xa5\xe6"})
    tokenizer = BPETokenizer(vocab, [(b"\xf0", b"\x9f"), (b"\xa5", b"\xe6")], ["<|endoftext|>"])
    text = "日本語 café 🤖👍 中文, ok"
    ids = tokenizer.encode(text)
    assert 256 in ids and 257 in ids  # the merges apply: tokens end inside characters
    pieces = list(stream_text(_Scripted(ids), tokenizer, "hi", max_tokens=len(ids)))
    assert "".join(pieces) == tokenizer.decode(ids) == text
    assert not any("\ufffd" in piece for piece in pieces)
    assert len(pieces) > text.count(" ")  # streamed as it came, not once at the end
