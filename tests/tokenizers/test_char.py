"""The char-level tokenizer: vocabulary, round trips, BOS wrapping, unseen characters."""

from __future__ import annotations

import json

import pytest
from hypothesis import given
from hypothesis import strategies as st

from tinylm.errors import TinylmError
from tinylm.tokenizers.char import CharTokenizer
from tinylm.tokenizers.formats import load_tokenizer

NAMES = ["emma", "olivia", "ava", "isabella"]


def test_vocabulary_is_sorted_unique_chars_plus_bos():
    tok = CharTokenizer.train(NAMES)
    expected = sorted(set("".join(NAMES)))
    assert tok.chars == expected
    assert tok.BOS == len(expected)
    assert tok.vocab_size == len(expected) + 1
    assert tok.encode("ava") == [expected.index(c) for c in "ava"]


def test_document_is_wrapped_in_bos_on_both_sides():
    tok = CharTokenizer.train(NAMES)
    ids = tok.encode_document("emma")
    assert ids[0] == ids[-1] == tok.BOS
    assert tok.decode(ids) == "emma"


@given(st.text(alphabet="abeilmosv", max_size=50))
def test_round_trip(text):
    tok = CharTokenizer.train(NAMES)
    assert tok.decode(tok.encode(text)) == text


def test_unseen_character_names_it_and_its_position():
    tok = CharTokenizer.train(NAMES)
    with pytest.raises(TinylmError, match=r"'z' \(U\+007A LATIN SMALL LETTER Z\) at position 2"):
        tok.encode("avz")


def test_reserved_unknown_maps_and_decodes_to_replacement():
    tok = CharTokenizer.train(NAMES, unknown="reserve")
    ids = tok.encode("avz")
    assert ids[-1] == tok.UNK == tok.vocab_size - 1
    assert tok.decode(ids) == "av\ufffd"


def test_empty_corpus_is_an_error():
    with pytest.raises(TinylmError, match="empty"):
        CharTokenizer.train([""])


def test_save_load_round_trip(tmp_path):
    tok = CharTokenizer.train("héllo wörld\n")
    path = tmp_path / "char.json"
    tok.save(path)
    data = json.loads(path.read_text(encoding="utf-8"))
    assert data["type"] == "char" and data["version"] == 1
    again = load_tokenizer(path)
    assert isinstance(again, CharTokenizer)
    assert again.chars == tok.chars and again.fingerprint() == tok.fingerprint()


def test_files_split_into_documents(tmp_path):
    path = tmp_path / "names.txt"
    path.write_text("ab\ncd\n", encoding="utf-8")
    tok = CharTokenizer.train(path, separator="line")
    assert tok.chars == ["a", "b", "c", "d"]
