"""Bits per byte: the loss in a unit every tokenizer shares.

The references are computed here, apart from the code under test: per-token
cross-entropy with ``torch.nn.functional.cross_entropy`` on the model's logits,
and bytes counted with ``str.encode("utf-8")`` on the text itself.
"""

from __future__ import annotations

import math

import pytest
import torch
from torch.nn import functional as F

from tinylm.inference.evaluation import (
    bits_per_byte,
    evaluate,
    token_bits_per_byte,
    token_byte_table,
)
from tinylm.model import GPT, ModelConfig
from tinylm.tokenizers.bpe import BPETokenizer
from tinylm.tokenizers.char import CharTokenizer

ASCII = "the cat sat on the mat"
MIXED = "café 日本 😀 naïve"  # 2-, 3- and 4-byte characters among ASCII ones


def small_model(vocab_size: int, block_size: int) -> GPT:
    torch.manual_seed(7)
    config = ModelConfig(
        vocab_size=vocab_size, block_size=block_size, n_layer=1, n_head=2, n_embd=16, init_std=0.4
    )
    return GPT(config).eval()


def hand_bpb(model: GPT, ids: list[int], special: set[int], text: str) -> float:
    """Summed cross-entropy of the non-special targets, in bits, over the text's bytes."""
    x, y = torch.tensor([ids[:-1]]), torch.tensor([ids[1:]])
    with torch.no_grad():
        logits, _ = model(x)
    losses = F.cross_entropy(logits[0], y[0], reduction="none")
    text_targets = torch.tensor([t not in special for t in ids[1:]])
    return float(losses[text_targets].sum()) / (math.log(2) * len(text.encode("utf-8")))


def tokenizers() -> dict[str, object]:
    corpus = (ASCII + " " + MIXED + " ") * 20
    return {
        "char": CharTokenizer.train(corpus),
        "bpe": BPETokenizer.train(corpus, 300, ["<|endoftext|>"], progress=False),
    }


@pytest.mark.parametrize("kind", ["char", "bpe"])
@pytest.mark.parametrize("text", [ASCII, MIXED])
def test_bpb_equals_a_hand_computation(tmp_path, kind, text):
    tokenizer = tokenizers()[kind]
    ids = tokenizer.encode_document(text)
    model = small_model(tokenizer.vocab_size, len(ids) - 1)  # one window: every target once
    path = tmp_path / "text.txt"
    path.write_text(text, encoding="utf-8")
    result = evaluate(model, tokenizer, path)
    special = {tokenizer.bos_id, tokenizer.eos_id}
    assert result["bytes"] == len(text.encode("utf-8"))
    assert result["tokens"] == len(ids) - 1
    assert result["bpb"] == pytest.approx(hand_bpb(model, ids, special, text), rel=1e-5)


def test_char_tokens_of_non_ascii_text_stand_for_more_bytes(tmp_path):
    tokenizer = tokenizers()["char"]
    counts = tokenizer.token_byte_counts()
    assert [counts[tokenizer.encode(ch)[0]] for ch in "aé日😀"] == [1, 2, 3, 4]
    assert counts[tokenizer.bos_id] == 0
    per_token = {}
    for text in (ASCII, "日本日本日本"):
        ids = tokenizer.encode_document(text)
        model = small_model(tokenizer.vocab_size, len(ids) - 1)
        path = tmp_path / "t.txt"
        path.write_text(text, encoding="utf-8")
        result = evaluate(model, tokenizer, path)
        per_token[text] = result["bytes"] / len(text)
        expected = hand_bpb(model, ids, {tokenizer.bos_id}, text)
        assert result["bpb"] == pytest.approx(expected, rel=1e-5)
    assert per_token == {ASCII: 1.0, "日本日本日本": 3.0}


def test_a_byte_level_tokenizer_without_merges_gives_loss_over_ln2(tmp_path):
    bytes_only = BPETokenizer({i: bytes([i]) for i in range(256)}, merges=[])
    text = MIXED * 3
    model = small_model(256, 16)
    path = tmp_path / "text.txt"
    path.write_text(text, encoding="utf-8")
    result = evaluate(model, bytes_only, path, batch_size=2)
    assert result["bytes"] == result["tokens"] > 16  # several windows, every token one byte
    assert result["bpb"] == pytest.approx(result["loss"] / math.log(2), rel=1e-12)


@pytest.mark.parametrize("kind", ["char", "bpe"])
def test_the_byte_table_adds_up_to_the_texts_bytes(kind):
    tokenizer = tokenizers()[kind]
    counts = tokenizer.token_byte_counts()
    assert len(counts) == tokenizer.vocab_size
    for text in (ASCII, MIXED, "😀😀 日本"):
        assert sum(counts[i] for i in tokenizer.encode(text)) == len(text.encode("utf-8"))
    assert counts[tokenizer.bos_id] == 0


def test_special_targets_and_ignored_targets_count_neither_loss_nor_bytes():
    table = torch.tensor([1, 2, 3, 0])  # id 3 is a special token
    losses = torch.tensor([[0.5, 1.0, 2.0, 4.0, 8.0]])
    targets = torch.tensor([[0, 1, 2, 3, -100]])
    # (0.5 + 1.0 + 2.0) nats over 1 + 2 + 3 bytes.
    assert token_bits_per_byte(losses, targets, table) == pytest.approx(3.5 / (6 * math.log(2)))
    assert math.isnan(bits_per_byte(1.0, 0))


def test_the_table_lives_on_the_asked_device():
    table = token_byte_table(CharTokenizer.train("ab"), "cpu")
    assert table.tolist() == [1, 1, 0] and table.dtype == torch.int64


def test_chat_turn_tokens_stand_for_no_text():
    """A tokenizer grown with a chat template's turn tokens counts them 0 bytes, as BOS."""
    from tinylm.chat.template import CHAT_TOKENS

    grown = CharTokenizer.train("héllo wörld").with_special_tokens(CHAT_TOKENS)
    counts = grown.token_byte_counts()
    for name in CHAT_TOKENS:
        assert counts[grown.special_tokens[name]] == 0
    assert sum(counts[i] for i in grown.encode("héllo")) == len("héllo".encode())
