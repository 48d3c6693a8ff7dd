"""The pre-tokenizer: its fast ``re`` engine splits exactly as ``regex.findall`` does.

``regex.findall`` of the original pattern is the reference throughout: the
built-in patterns are written for the ``regex`` module (as tiktoken's are), and
every caller -- encoding and training alike -- goes through ``pretokenizer``.
"""

from __future__ import annotations

import pytest
import regex
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from conftest import data_path
from tinylm.errors import TinylmError
from tinylm.tokenizers.bpe import BPETokenizer
from tinylm.tokenizers.pretokenize import (
    CL100K_PATTERN,
    GPT2_PATTERN,
    O200K_PATTERN,
    pretokenize,
    pretokenizer,
    resolve_pattern,
)
from tinylm.tokenizers.pretokenize_fast import re_translation

BUILT_IN = [GPT2_PATTERN, CL100K_PATTERN, O200K_PATTERN]
BUILT_IN_IDS = ["gpt2", "cl100k", "o200k"]

# No deadline: the test machine is shared.
SLOW = settings(deadline=None, suppress_health_check=[HealthCheck.too_slow])


@pytest.mark.parametrize("pattern", BUILT_IN, ids=BUILT_IN_IDS)
def test_re_translation_equals_regex_on_every_bmp_character(pattern):
    chars = [chr(c) for c in range(0x10000) if not 0xD800 <= c < 0xE000]
    contexts = ["a{c}b {c}{c} ", "1{c}'s {c}\n", "'{c}L{c}l\r\n", "Ab{c}'RE  {c}/{c}123"]
    text = "".join(context.format(c=c) for c in chars for context in contexts)
    assert re_translation(pattern).findall(text) == regex.findall(pattern, text)


_ASTRAL_BITS = st.sampled_from(
    ["😀", "👍🏽", "\U0003255a", "𝐀𝐁", "𝟎𝟏", "𐍈", "\U000e0041", " ", "  ", "\t", "\n", "a",
     "'s", "1", "!", "é", " x", "\u3000", "\x1c", "\u2028"]
)  # fmt: skip


@SLOW
@given(st.lists(st.one_of(_ASTRAL_BITS, st.characters(codec="utf-8")), max_size=40))
def test_astral_text_is_pre_tokenized_as_regex_does(parts):
    text = "".join(parts)
    for pattern in BUILT_IN:
        assert pretokenizer(pattern)(text) == regex.findall(pattern, text)


def test_str_isspace_covers_the_patterns_whitespace():
    # _astral_windows cuts only after characters that are not str.isspace()
    spaces = regex.findall(r"\s", "".join(map(chr, range(0x110000))))
    assert all(c.isspace() for c in spaces)


@pytest.mark.parametrize("pattern", BUILT_IN, ids=BUILT_IN_IDS)
def test_corpora_are_pre_tokenized_as_regex_does(pattern):
    for relative in ("corpora/tinyshakespeare.txt", "corpora/samples/german.txt"):
        text = data_path(relative).read_text(encoding="utf-8")
        assert pretokenizer(pattern)(text) == regex.findall(pattern, text)


def test_custom_patterns_keep_the_regex_engine():
    custom = r"\p{L}+|\s+|."
    assert pretokenizer(custom)("abc déf") == ["abc", " ", "déf"]
    assert re_translation(r"\w+|\s") is None  # \w is not translated


# Custom patterns that leave gaps, have groups, or match in pieces. Hugging Face's
# Split(behavior="isolated") is the independent reference: matches and the text
# between them are pieces of their own.
GAPPY = [r"[a-z]+", r"(\w+)|\s+", r"\d{2}", r"[aeiou]", r"(a)(b)?", r"\s"]


@pytest.mark.parametrize("pattern", GAPPY)
@settings(deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(text=st.text(alphabet="abXY 12345,.é\n", max_size=40))
def test_custom_patterns_lose_no_text_and_split_as_hugging_face_does(pattern, text):
    hf = pytest.importorskip("tokenizers")
    splitter = hf.pre_tokenizers.Split(hf.Regex(pattern), behavior="isolated")
    expected = [piece for piece, _ in splitter.pre_tokenize_str(text)]
    pieces = pretokenizer(pattern)(text)
    assert "".join(pieces) == text
    assert pieces == expected


@pytest.mark.parametrize("pattern", [*GAPPY, r"\b", r"(?=o)"])
@settings(deadline=None)
@given(text=st.text(max_size=60))
def test_custom_patterns_round_trip_any_text(pattern, text):
    tokenizer = BPETokenizer.train(["hello world, hello you 12 34"], 270, pattern=pattern)
    assert tokenizer.decode(tokenizer.encode(text)) == text


@pytest.mark.parametrize("name", ["gpt5", "o200k-base", "llama3", "cl100k.base"])
def test_a_bare_word_is_an_unknown_pattern_name_not_a_regex(name):
    with pytest.raises(TinylmError, match=f"unknown pattern name '{regex.escape(name)}'"):
        resolve_pattern(name)
    assert resolve_pattern(f"(?:{name})") == f"(?:{name})"  # the way to mean the literal


def test_one_splitter_per_pattern_serves_every_caller():
    assert pretokenizer(GPT2_PATTERN) is pretokenizer(GPT2_PATTERN)
    assert pretokenize("it's 2024 😀!", GPT2_PATTERN) == ["it", "'s", " 2024", " 😀!"]
    tokenizer = BPETokenizer({i: bytes([i]) for i in range(256)}, [], pattern="cl100k")
    assert tokenizer.pretokenize is pretokenizer(CL100K_PATTERN)
