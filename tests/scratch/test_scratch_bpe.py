"""The readable BPE against the fast trainer and tokenizer (``tinylm.tokenizers``).

Same documents, vocabulary size and special tokens: identical merges, in the same
order, and identical ids for text with and without special tokens. Ties are
frequent in small corpora (every count-1 pair ties), so each corpus exercises the
tie rule many times; one corpus is built of ties only.
"""

from __future__ import annotations

import random
import re
import unicodedata

import pytest
import regex

from tinylm.data.corpus import builtin_documents
from tinylm.scratch.bpe import BPE, WHITESPACE, gpt2_pattern, unicode_class
from tinylm.tokenizers.bpe import BPETokenizer
from tinylm.tokenizers.pretokenize import GPT2_PATTERN

SPECIALS = ["<|endoftext|>", "<|pad|>"]


def _assigned_characters() -> str:
    """Every character Python's Unicode database assigns (no surrogates, no unassigned)."""
    return "".join(
        chr(c) for c in range(0x110000) if unicodedata.category(chr(c)) not in ("Cn", "Cs")
    )


def _random_unicode(seed: int, n_docs: int = 30) -> list[str]:
    rng = random.Random(seed)
    pool = _assigned_characters()
    # Mostly a small alphabet, so pairs repeat and merges happen; some of anything.
    common = rng.sample(pool, 12) + [" ", " ", "\n", "'", "1"]
    return [
        "".join(
            rng.choice(common) if rng.random() < 0.85 else rng.choice(pool)
            for _ in range(rng.randint(5, 80))
        )
        for _ in range(n_docs)
    ]


def _assert_same(documents: list[str], vocab_size: int, specials=SPECIALS, probe=None) -> None:
    ours = BPE.train(documents, vocab_size, specials)
    fast = BPETokenizer.train(
        documents, vocab_size, special_tokens=specials, progress=False, workers=1
    )
    assert len(ours.merges) > 0
    assert ours.merge_list() == list(fast.merges)
    assert ours.vocab_size == fast.vocab_size
    assert ours.special_tokens == {s: fast.encode(s, allowed_special="all")[0] for s in specials}
    for text in probe or documents[:20]:
        ids = ours.encode(text, allowed_special="all")
        assert ids == fast.encode(text, allowed_special="all")
        assert ours.decode(ids) == fast.decode(ids)


def test_pattern_classes_equal_the_regex_module_on_every_assigned_character():
    text = _assigned_characters()
    for ours, theirs in (
        (unicode_class("L"), r"\p{L}"),
        (unicode_class("N"), r"\p{N}"),
        (WHITESPACE, r"\s"),
    ):
        assert re.findall(f"[{ours}]", text) == regex.findall(theirs, text)


def test_pretokenizer_equals_gpt2_pattern():
    texts = _random_unicode(0) + [
        "Hello world!  It's 2026 -- don't   stop\n\n  x\t\n",
        "trailing spaces   ",
        "a  \n",
        "'ll 've 're 's 'd 'm 't ''",
    ]
    for text in texts:
        assert gpt2_pattern().findall(text) == regex.findall(GPT2_PATTERN, text)


def test_shared_data_sample(shared_data):
    text = shared_data("corpora/tinyshakespeare.txt").read_text(encoding="utf-8")[:10_000]
    documents = text.split("\n\n")
    probe = [text[:2000] + "<|endoftext|>" + text[2000:2500], "unseen wordz<|pad|>"]
    _assert_same(documents, 256 + 120 + len(SPECIALS), probe=probe)


def test_shared_data_german(shared_data):
    text = shared_data("corpora/samples/german.txt").read_text(encoding="utf-8")
    _assert_same([text], 256 + 60 + len(SPECIALS))


def test_builtin_corpus():
    documents = builtin_documents()[:2]
    _assert_same(documents, 256 + 100 + len(SPECIALS))


@pytest.mark.parametrize("seed", [1, 2])
def test_random_unicode(seed):
    documents = _random_unicode(seed)
    _assert_same(documents, 256 + 80 + len(SPECIALS))


def test_ties_only():
    # Every pair occurs exactly once: each merge is decided by the tie rule alone.
    documents = ["ab cd ef gh", "ba dc fe hg", "zy xw"]
    _assert_same(documents, 256 + 40, specials=[])


def test_special_tokens_are_cut_out_and_never_merged():
    documents = ["ab<|endoftext|>ab<|endoftext|>ab", "<|pad|><|pad|>ab"]
    ours = BPE.train(documents, 256 + 5 + len(SPECIALS), SPECIALS)
    assert all(b"<" not in left + right for left, right in ours.merge_list())
    with pytest.raises(ValueError, match="special token"):
        ours.encode("ab<|endoftext|>")
    assert (
        ours.encode("ab<|endoftext|>", allowed_special="all")[-1]
        == ours.special_tokens["<|endoftext|>"]
    )


def test_training_stops_when_nothing_is_left_to_merge():
    ours = BPE.train(["aaaa"], 256 + 50)
    assert ours.merge_list() == [(b"a", b"a"), (b"aa", b"aa")]
    with pytest.raises(ValueError):
        BPE.train(["a"], 256 + 1, ["<|a|>", "<|b|>"])
