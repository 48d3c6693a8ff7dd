"""Prepared data: split, dtype, streaming, workers, atomic writes, loading, and batches of it."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import tinylm.data.prepare as data_mod
from tinylm.data.batches import IGNORE_INDEX, get_batch, get_document_batch
from tinylm.data.prepare import MIN_SPLIT_DOCUMENTS, is_val_document, prepare
from tinylm.data.prepared import check_tokenizer, document_spans, load_prepared
from tinylm.errors import TinylmError
from tinylm.tokenizers.base import Tokenizer
from tinylm.tokenizers.char import CharTokenizer

# 112 made-up names of 2 to 9 letters: enough documents for a document-level split
NAMES = [
    head + tail
    for head in ("em", "ol", "av", "is", "so", "ch", "mi", "ha")
    for tail in ("ma", "ia", "a", "bella", "phie", "rlotte", "la", "per", "n", "ry", "lyn")
    + ("den", "ra", "ssa")
]


def char_tokenizer(docs: list[str] = NAMES) -> CharTokenizer:
    return CharTokenizer.train(docs)


def stream(tok: Tokenizer, docs: list[str]) -> list[int]:
    return [i for doc in docs for i in tok.encode_document(doc)]


def tokens_of(prepared) -> tuple[list[int], list[int]]:
    return prepared.train.tolist(), prepared.val.tolist()


# -- prepare: the split ---------------------------------------------------------------


def test_many_documents_split_by_whole_documents_spread_over_the_corpus(tmp_path):
    tok = char_tokenizer()
    meta = prepare(NAMES, tok, tmp_path / "d", val_fraction=0.2, progress=False)
    assert meta["split"]["method"] == "documents"
    in_val = is_val_document(np.arange(len(NAMES)), 0.2)
    val_docs = [d for d, v in zip(NAMES, in_val, strict=True) if v]
    train_docs = [d for d, v in zip(NAMES, in_val, strict=True) if not v]
    train, val = tokens_of(load_prepared(tmp_path / "d"))
    assert train == stream(tok, train_docs)
    assert val == stream(tok, val_docs)
    assert meta["val"]["documents"] == len(val_docs) >= MIN_SPLIT_DOCUMENTS // 2
    assert meta["train"]["documents"] + meta["val"]["documents"] == meta["documents"] == len(NAMES)
    # val is spread out, not the tail of the corpus
    assert NAMES.index(val_docs[0]) < len(NAMES) // 2 < NAMES.index(val_docs[-1])


def test_golden_ratio_rule_keeps_the_val_share_close_at_every_prefix():
    flags = is_val_document(np.arange(10_000), 0.1)
    for n in (100, 1000, 10_000):
        assert abs(flags[:n].sum() - 0.1 * n) <= 2


def test_single_document_is_split_at_the_last_fraction_of_tokens(tmp_path):
    text = "to be, or not to be: that is the question. " * 20
    tok = char_tokenizer([text])
    meta = prepare(text, tok, tmp_path / "d", val_fraction=0.1, progress=False)
    train, val = tokens_of(load_prepared(tmp_path / "d"))
    assert meta["split"]["method"] == "tokens"
    assert train + val == tok.encode_document(text)
    assert len(val) == round(0.1 * len(train + val))


def test_val_is_never_empty_even_for_a_tiny_corpus(tmp_path):
    tok = char_tokenizer(["ab"])
    meta = prepare("ab", tok, tmp_path / "d", val_fraction=0.01, progress=False)
    assert meta["val"]["tokens"] == 1 and meta["train"]["tokens"] == 3


@settings(
    max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    docs=st.lists(st.text(alphabet="abc ", min_size=1, max_size=12), min_size=1, max_size=60),
    val_fraction=st.floats(0.05, 0.95),
)
def test_every_token_lands_in_exactly_one_split_in_corpus_order(tmp_path, docs, val_fraction):
    docs = [d for d in docs if d]
    tok = CharTokenizer(list("abc "))
    out = tmp_path / "h"
    meta = prepare(docs, tok, out, val_fraction=val_fraction, progress=False)
    train, val = tokens_of(load_prepared(out))
    assert train and val
    if meta["split"]["method"] == "tokens":
        assert train + val == stream(tok, docs)
    else:
        flags = is_val_document(np.arange(len(docs)), val_fraction)
        assert val == stream(tok, [d for d, v in zip(docs, flags, strict=True) if v])
        assert train == stream(tok, [d for d, v in zip(docs, flags, strict=True) if not v])


def test_bad_val_fraction_and_empty_corpus_are_user_errors(tmp_path):
    tok = char_tokenizer()
    for fraction in (0.0, 1.0, -0.5):
        with pytest.raises(TinylmError, match="val_fraction"):
            prepare(NAMES, tok, tmp_path / "d", val_fraction=fraction, progress=False)
    (tmp_path / "empty.txt").write_text("\n\n")
    with pytest.raises(TinylmError, match="no documents"):
        prepare(tmp_path / "empty.txt", tok, tmp_path / "d", separator="line", progress=False)
    assert not (tmp_path / "d").exists()


# -- prepare: files -----------------------------------------------------------------


def test_directory_holds_meta_tokenizer_and_token_files(tmp_path):
    tok = char_tokenizer()
    prepare(NAMES, tok, tmp_path / "d", progress=False, description="names")
    files = sorted(p.name for p in (tmp_path / "d").iterdir())
    assert files == ["meta.json", "tokenizer.json", "train.bin", "val.bin"]
    meta = json.loads((tmp_path / "d" / "meta.json").read_text())
    assert meta["format"] == "tinylm-data" and meta["version"] == 1
    assert meta["tokenizer"]["fingerprint"] == tok.fingerprint()
    assert meta["vocab_size"] == tok.vocab_size and meta["dtype"] == "uint16"
    assert meta["corpus"] == "names"
    assert meta["characters"] == sum(map(len, NAMES))
    assert meta["chars_per_token"] == 1.0  # char tokenizer, boundaries excluded
    saved = json.loads((tmp_path / "d" / "tokenizer.json").read_text())
    assert saved["chars"] == "".join(tok.chars)


class BigVocab(Tokenizer):
    """Ids above 65535, to force uint32 token files."""

    kind = "char"

    @property
    def vocab_size(self) -> int:
        return 70_000

    @property
    def bos_id(self) -> int:
        return 69_999

    @property
    def eos_id(self) -> int:
        return 69_999

    def encode(self, text: str) -> list[int]:
        return [66_000 + ord(ch) for ch in text]

    def decode(self, ids: list[int]) -> str:
        return "".join(chr(i - 66_000) for i in ids if i != 69_999)

    def to_dict(self) -> dict[str, Any]:
        return {"chars": "", "unknown": "error"}


def test_large_vocabularies_use_uint32(tmp_path):
    meta = prepare(NAMES, BigVocab(), tmp_path / "d", progress=False)
    prepared = load_prepared(tmp_path / "d")
    assert meta["dtype"] == "uint32" and prepared.train.dtype == np.uint32
    assert max(prepared.train) == 69_999 and min(prepared.train) > 65_535


def test_a_failure_keeps_the_existing_dataset_and_leaves_no_temp_files(tmp_path):
    tok = char_tokenizer()
    out = tmp_path / "d"
    prepare(NAMES, tok, out, progress=False)
    before = {p.name: p.read_bytes() for p in out.iterdir()}
    with pytest.raises(TinylmError, match="not in the training text"):
        prepare([*NAMES, "zoë"], tok, out, progress=False)  # unseen character
    assert {p.name: p.read_bytes() for p in out.iterdir()} == before
    assert [p.name for p in tmp_path.iterdir()] == ["d"]


def test_an_existing_dataset_is_replaced_but_foreign_folders_are_refused(tmp_path):
    tok = char_tokenizer()
    out = tmp_path / "d"
    prepare(NAMES, tok, out, progress=False)
    meta = prepare(NAMES[:12], tok, out, progress=False)
    assert load_prepared(out).meta["documents"] == meta["documents"] == 12
    assert [p.name for p in tmp_path.iterdir()] == ["d"]

    foreign = tmp_path / "mine"
    foreign.mkdir()
    (foreign / "notes.txt").write_text("keep me")
    with pytest.raises(TinylmError, match="not a tinylm dataset"):
        prepare(NAMES, tok, foreign, progress=False)
    assert (foreign / "notes.txt").read_text() == "keep me"
    (tmp_path / "empty").mkdir()
    prepare(NAMES, tok, tmp_path / "empty", progress=False)  # an empty folder is fine


def test_an_unwritable_location_is_a_user_error(tmp_path):
    (tmp_path / "file").write_text("x")
    with pytest.raises(TinylmError, match="cannot write"):
        prepare(NAMES, char_tokenizer(), tmp_path / "file" / "d", progress=False)


# -- prepare: streaming, workers, progress ---------------------------------------------


def test_tokens_are_written_while_the_corpus_is_still_being_read(tmp_path, monkeypatch):
    monkeypatch.setattr(data_mod, "BATCH_CHARS", 20)
    written: list[int] = []  # documents handed to the split files so far
    add = data_mod._SplitWriter.add

    def recording_add(self, tokens, lengths):
        written.append(len(lengths))
        add(self, tokens, lengths)

    monkeypatch.setattr(data_mod._SplitWriter, "add", recording_add)
    written_before_last: list[int] = []

    def documents():
        for i, name in enumerate(NAMES):
            if i == len(NAMES) - 1:
                written_before_last.append(sum(written))
            yield name

    prepare(documents(), char_tokenizer(), tmp_path / "d", workers=1, progress=False)
    assert 0 < written_before_last[0] < len(NAMES)
    assert sum(written) == len(NAMES)
    assert load_prepared(tmp_path / "d").meta["corpus"] == "generator"


def test_small_corpora_are_encoded_without_a_process_pool(tmp_path, monkeypatch):
    def no_pool(*args, **kwargs):
        raise AssertionError("a pool was started for a one-batch corpus")

    monkeypatch.setattr(data_mod, "_encode_parallel", no_pool)
    prepare(NAMES, char_tokenizer(), tmp_path / "d", workers=4, progress=False)


def test_a_process_pool_writes_exactly_what_one_process_writes(tmp_path, monkeypatch):
    monkeypatch.setattr(data_mod, "BATCH_CHARS", 16)
    tok = char_tokenizer()
    docs = NAMES * 4
    prepare(docs, tok, tmp_path / "one", workers=1, progress=False)
    prepare(docs, tok, tmp_path / "two", workers=2, progress=False)
    for name in ("train.bin", "val.bin", "meta.json", "tokenizer.json"):
        assert (tmp_path / "one" / name).read_bytes() == (tmp_path / "two" / name).read_bytes()


def test_worker_errors_reach_the_caller_as_tinylm_errors(tmp_path, monkeypatch):
    monkeypatch.setattr(data_mod, "BATCH_CHARS", 16)
    with pytest.raises(TinylmError, match="not in the training text"):
        prepare([*NAMES, "zoë"], char_tokenizer(), tmp_path / "d", workers=2, progress=False)
    assert list(tmp_path.iterdir()) == []


def test_progress_goes_to_stderr_and_can_be_silenced(tmp_path, capsys, monkeypatch):
    monkeypatch.setattr(sys.stderr, "isatty", lambda: True)  # bars are drawn on terminals only
    tok = char_tokenizer()
    prepare(NAMES, tok, tmp_path / "a", progress=False)
    assert capsys.readouterr().err == ""
    prepare(NAMES, tok, tmp_path / "b", progress=True)
    captured = capsys.readouterr()
    assert "prepare" in captured.err and captured.out == ""


# -- shared corpora -------------------------------------------------------------------


def test_tinystories_paragraphs_are_blank_line_separated_documents(tmp_path, shared_data):
    path = shared_data("corpora/tinystories_valid_head.txt")
    tok = CharTokenizer.train(path, separator="blank")
    meta = prepare(path, tok, tmp_path / "d", separator="blank", progress=False)
    paragraphs = [p for p in path.read_text(encoding="utf-8").split("\n\n") if p.strip()]
    assert meta["documents"] == len(paragraphs)
    assert meta["split"]["method"] == "documents"
    prepared = load_prepared(tmp_path / "d")
    first_val = prepared.val[: prepared.document_spans("val")[0][1]].tolist()
    assert tok.decode(first_val) == paragraphs[0]  # document 0 is a val document


def test_names_val_split_is_not_the_alphabetical_tail(tmp_path, shared_data):
    path = shared_data("corpora/names.txt")
    tok = CharTokenizer.train(path, separator="line")
    meta = prepare(path, tok, tmp_path / "d", separator="line", progress=False)
    prepared = load_prepared(tmp_path / "d")
    val_names = tok.decode(prepared.val.tolist()[:2000]).split()  # BOS decodes to nothing
    assert meta["val"]["documents"] == pytest.approx(0.1 * meta["documents"], abs=3)
    assert not all(name.startswith("z") for name in val_names)


def test_bpe_tokenizer_if_available(tmp_path):
    bpe = pytest.importorskip("tinylm.tokenizers.bpe", reason="BPE tokenizer not written yet")
    docs = [f"the cat sat on mat number {i}. " * 3 for i in range(30)]
    tok = bpe.BPETokenizer.train(docs, 300, special_tokens=("<|endoftext|>",), progress=False)
    prepare(docs, tok, tmp_path / "d", progress=False)
    prepared = load_prepared(tmp_path / "d")
    check_tokenizer(prepared, tok)
    text = tok.decode(prepared.train.tolist()) + tok.decode(prepared.val.tolist())
    assert sorted(text.replace("<|endoftext|>", "")) == sorted("".join(docs))


# -- loading --------------------------------------------------------------------------


def test_loading_checks_presence_format_and_size(tmp_path):
    with pytest.raises(TinylmError, match="no prepared data"):
        load_prepared(tmp_path / "missing")
    (tmp_path / "plain").mkdir()
    with pytest.raises(TinylmError, match="not a tinylm dataset"):
        load_prepared(tmp_path / "plain")

    out = tmp_path / "d"
    prepare(NAMES, char_tokenizer(), out, progress=False)
    train = out / "train.bin"
    train.write_bytes(train.read_bytes()[:-2])
    with pytest.raises(TinylmError, match="truncated or corrupt"):
        load_prepared(out)
    meta = json.loads((out / "meta.json").read_text())
    (out / "meta.json").write_text(json.dumps({**meta, "format": "other"}))
    with pytest.raises(TinylmError, match="not a tinylm dataset"):
        load_prepared(out)


def test_loaded_splits_are_read_only_memmaps(tmp_path):
    prepare(NAMES, char_tokenizer(), tmp_path / "d", progress=False)
    prepared = load_prepared(tmp_path / "d")
    assert isinstance(prepared.train, np.memmap) and isinstance(prepared.val, np.memmap)
    assert prepared.tokenizer_path == tmp_path / "d" / "tokenizer.json"
    with pytest.raises(ValueError):
        prepared.train[0] = 1


def test_a_different_tokenizer_is_refused_with_both_fingerprints(tmp_path):
    tok = char_tokenizer()
    prepare(NAMES, tok, tmp_path / "d", progress=False)
    prepared = load_prepared(tmp_path / "d")
    check_tokenizer(prepared.meta, tok)
    other = CharTokenizer(list("abcdefghijklmnopqrstuvwxyz"))
    with pytest.raises(TinylmError) as info:
        check_tokenizer(prepared.meta, other)
    message = str(info.value)
    assert tok.fingerprint() in message and other.fingerprint() in message
    assert str(tmp_path / "d") in message and "tinylm prepare" in message
    assert str(tmp_path / "d" / "tokenizer.json") in message


# -- batches from prepared data ---------------------------------------------------------


def test_batches_from_a_memmap(tmp_path):
    prepare(NAMES, char_tokenizer(), tmp_path / "d", progress=False)
    prepared = load_prepared(tmp_path / "d")
    x, y = get_batch(prepared.train, 3, 5, generator=torch.Generator().manual_seed(1))
    assert torch.equal(x[:, 1:], y[:, :-1])


# -- document batches --------------------------------------------------------------------


def test_document_spans_for_each_boundary_convention():
    B, E = 9, 8
    same = np.array([B, 1, 2, B, B, 3, B, B, 4, 5, 6, B])
    assert document_spans(same, B, B).tolist() == [[0, 4], [4, 7], [7, 12]]
    pair = np.array([B, 1, E, B, 2, 3, E])
    assert document_spans(pair, B, E).tolist() == [[0, 3], [3, 7]]
    eos_only = np.array([1, 2, E, 3, E])
    assert document_spans(eos_only, None, E).tolist() == [[0, 3], [3, 5]]
    bos_only = np.array([B, 1, 2, B, 3])
    assert document_spans(bos_only, B, None).tolist() == [[0, 3], [3, 5]]
    cut = np.array([2, B, B, 3, B, B])  # a split that starts mid-document
    assert document_spans(cut, B, B).tolist() == [[0, 2], [2, 5]]


def test_document_batches_pad_inputs_and_mask_padded_targets(tmp_path):
    tok = char_tokenizer()
    prepare(NAMES, tok, tmp_path / "d", progress=False)
    prepared = load_prepared(tmp_path / "d")
    spans = prepared.document_spans("train")
    assert len(spans) == prepared.meta["train"]["documents"]
    x, y = get_document_batch(
        prepared.train, spans, 8, 32, pad_id=prepared.pad_id, generator=torch.Generator()
    )
    assert prepared.pad_id == tok.BOS  # the char tokenizer has no PAD: BOS pads
    docs = {tuple(tok.encode_document(name)) for name in NAMES}
    for row_x, row_y in zip(x.tolist(), y.tolist(), strict=True):
        length = sum(t != IGNORE_INDEX for t in row_y)
        assert all(t == IGNORE_INDEX for t in row_y[length:])  # padding never enters the loss
        assert all(t == prepared.pad_id for t in row_x[length:])
        assert tuple(row_x[:1] + row_y[:length]) in docs
    assert (y == IGNORE_INDEX).any()  # names differ in length, so some row is padded


def test_prepared_directory_paths_are_strings_in_meta(tmp_path):
    prepare(NAMES, char_tokenizer(), tmp_path / "d", progress=False)
    assert load_prepared(tmp_path / "d").meta["path"] == str(Path(tmp_path / "d"))
