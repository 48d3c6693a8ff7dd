"""Byte-level BPE training: merges against a slow reference, ties, boundaries, streaming, errors.

The reference below recounts every pair of every pre-token at every step: too slow
for real corpora, but obviously right, so the fast incremental trainer must agree
with it merge for merge.
"""

from __future__ import annotations

import io
import json
from collections import Counter
from pathlib import Path

import pytest
import regex
from hypothesis import example, given, settings
from hypothesis import strategies as st

from tinylm.errors import TinylmError
from tinylm.tokenizers import bpe_train, pretoken_counts
from tinylm.tokenizers.bpe_train import train_bpe
from tinylm.tokenizers.pretoken_counts import count_pretokens, find_cut
from tinylm.tokenizers.pretokenize import PATTERNS, pretokenize, split_on_specials

EOT = "<|endoftext|>"


# -- the slow reference ----------------------------------------------------------


def reference_counts(docs, specials=(), pattern="gpt2") -> Counter:
    """Pre-token counts, the plain way: whole documents, one ``regex.findall`` each."""
    counts: Counter = Counter()
    for doc in docs:
        for piece, is_special in split_on_specials(doc, specials):
            if not is_special:
                counts.update(regex.findall(PATTERNS.get(pattern, pattern), piece))
    return counts


def reference_merges(docs, num_merges, specials=(), pattern="gpt2", with_counts=False):
    """Recount all pairs each step; take max over (count, (left_bytes, right_bytes))."""
    words = Counter()
    for word, n in reference_counts(docs, specials, pattern).items():
        words[tuple(bytes([b]) for b in word.encode("utf-8"))] += n
    merges, tops = [], []
    for _ in range(num_merges):
        pairs: Counter = Counter()
        for word, n in words.items():
            for pair in zip(word[:-1], word[1:], strict=True):
                pairs[pair] += n
        if not pairs:
            break
        best = max(pairs, key=lambda p: (pairs[p], p))
        tied = sum(1 for n in pairs.values() if n == pairs[best])
        merges.append(best)
        tops.append((pairs[best], tied))
        merged = Counter()
        for word, n in words.items():
            out, i = [], 0
            while i < len(word):
                if i + 1 < len(word) and (word[i], word[i + 1]) == best:
                    out.append(word[i] + word[i + 1])
                    i += 2
                else:
                    out.append(word[i])
                    i += 1
            merged[tuple(out)] += n
        words = merged
    return (merges, tops) if with_counts else merges


def train(corpus, vocab_size, specials=(), pattern="gpt2", **kwargs):
    kwargs.setdefault("progress", False)
    return train_bpe(corpus, vocab_size, specials, pattern, **kwargs)


# -- agreement with the reference -------------------------------------------------

TRICKY = [
    # overlapping pairs: "aaaa" holds (a, a) three times and merges to [aa, aa]
    ["aaaa aaa aa a aaaaaaa baaab", "aaaaaaaaaaaaa"],
    # non-ASCII: multi-byte characters, emoji, combining marks, CJK
    ["héllo wörld, naïve café — 日本語の日本 🙂🙂🙂 e\u0301e\u0301", "ñandú ñandú 日本"],
    # special tokens inside the text are cut out
    [f"the cat{EOT}the hat{EOT}{EOT} the cat sat{EOT}", f"{EOT}sat on the mat"],
    # whitespace runs, newlines, digits, punctuation, contractions
    ["it's   here\n\n  she'll 12345 67 --- ... !!?\r\n\tend  ", "don't\n\nstop 2024!!"],
]


@pytest.mark.parametrize("docs", TRICKY, ids=["repeats", "unicode", "specials", "spaces"])
@pytest.mark.parametrize("pattern", ["gpt2", "cl100k", "o200k"])
def test_merges_equal_the_slow_reference(docs, pattern):
    specials = (EOT,)
    expected = reference_merges(docs, 60, specials, pattern)
    vocab, merges, special_ids = train(docs, 256 + 60 + 1, specials, pattern)
    assert merges == expected
    assert special_ids == {EOT: 256 + len(merges)}


@settings(max_examples=60, deadline=None)
@given(st.lists(st.text(alphabet="ab c\n'é1", max_size=40), min_size=1, max_size=6))
def test_random_texts_with_many_ties_match_the_reference(docs):
    # A five-letter alphabet makes ties the rule rather than the exception.
    if not "".join(docs):
        return
    _, merges, _ = train(docs, 256 + 25)
    assert merges == reference_merges(docs, 25)


def test_ties_go_to_the_lexicographically_greater_byte_pair():
    # Documents " ta", " tb", "bc" (one pre-token each). Counts: (" ", t) = 2, all
    # others 1, so " t" is merge 1 and becomes id 256. Now (" t", a), (" t", b) and
    # (b, c) all occur once. Comparing *bytes*, b"b" > b" t" (0x62 > 0x20), so
    # (b, c) wins; comparing ids it would lose (98 < 256). Then (" t", b) beats
    # (" t", a) on the right-hand bytes.
    _, merges, _ = train([" ta", " tb", "bc"], 256 + 10)
    assert merges == [(b" ", b"t"), (b"b", b"c"), (b" t", b"b"), (b" t", b"a")]


def test_tie_on_left_bytes_is_decided_by_right_bytes():
    # "ab", "ac", "ad": three pairs of count 1 with the same left byte "a";
    # the greatest right byte wins first: d, then c, then b.
    _, merges, _ = train(["ab", "ac", "ad"], 256 + 3)
    assert merges == [(b"a", b"d"), (b"a", b"c"), (b"a", b"b")]


# -- what is never merged ---------------------------------------------------------


def test_special_tokens_are_never_counted_or_merged():
    text = f"{EOT}{EOT}ab{EOT}{EOT}{EOT}ab{EOT}"
    vocab, merges, special_ids = train(text, 1000, [EOT, "<pad>"])
    assert merges == [(b"a", b"b")]  # the specials' bytes would give many pairs
    assert special_ids == {EOT: 257, "<pad>": 258}
    assert vocab[257] == EOT.encode() and vocab[258] == b"<pad>"
    assert len(vocab) == 259


def test_nothing_is_merged_across_documents_or_pre_tokens():
    # As one text, "abab" would make (b, a) frequent; as documents it never occurs.
    _, merges, _ = train(["ab", "ab", "ab", "cd"], 1000)
    assert merges == [(b"a", b"b"), (b"c", b"d")]
    # "x y" is two pre-tokens, "x" and " y": no token may hold "x ".
    _, merges, _ = train("x y x y x y", 1000)
    assert merges == [(b" ", b"y"), (b" ", b"x")]


def test_every_learned_token_lies_inside_one_pre_token():
    text = "The quick brown fox, it's 2024!\n\nJumps over 3 lazy dogs... again & again."
    vocab, merges, _ = train(text * 3, 400)
    pieces = set(pretokenize(text, PATTERNS["gpt2"]))
    for left, right in merges:
        token = (left + right).decode("utf-8", errors="ignore")
        assert any(token in piece for piece in pieces), token


def test_stops_early_when_no_pair_is_left():
    vocab, merges, special_ids = train(["abc", "abc"], 5000, [EOT])
    assert merges == [(b"b", b"c"), (b"a", b"bc")]  # tie at 2: (b, c) > (a, b)
    assert len(vocab) == 256 + 2 + 1 and special_ids == {EOT: 258}
    assert vocab[256] == b"bc" and vocab[257] == b"abc"
    assert all(vocab[i] == bytes([i]) for i in range(256))


# -- streaming and parallel counting gives the same result ------------------------


def _sample_text() -> str:
    para = (
        "It was the best of times, it was the worst of times.\n"
        "  Über café — 日本語 🙂 don't stop 12345.\r\n"
        "THE END/ -- a/b\n\n\n   indented\tline\n"
    )
    return f"{para}{EOT}".join(para * (k % 3 + 1) for k in range(40))


@pytest.mark.parametrize("pattern", ["gpt2", "cl100k", "o200k"])
def test_file_read_in_small_chunks_counts_like_whole_text(tmp_path, monkeypatch, pattern):
    text = _sample_text()
    path = tmp_path / "corpus.txt"
    path.write_bytes(text.encode("utf-8"))
    monkeypatch.setattr(pretoken_counts, "CHUNK_BYTES", 97)  # hundreds of cuts
    counts, nbytes = count_pretokens(path, PATTERNS[pattern], [EOT])
    assert nbytes == len(text.encode())
    assert counts == reference_counts([text], [EOT], pattern)
    assert train(path, 600, [EOT], pattern) == train(text, 600, [EOT], pattern)


PIECES = [" ", "  ", "\n", "\r\n", "\t", "a", "Zb", "7", "'s", "/", "!", "é", "\u00a0", EOT]


@settings(max_examples=150, deadline=None)
@given(
    text=st.lists(st.sampled_from(PIECES), max_size=150).map("".join),
    pattern=st.sampled_from(["gpt2", "cl100k", "o200k"]),
    specials=st.sampled_from([(), (EOT,)]),
    block=st.integers(4, 40),
)
def test_chunk_cuts_never_change_pre_tokens(text, pattern, specials, block):
    # The cut rules claim exactness for the built-in patterns; try them everywhere.
    stream = io.BytesIO(text.encode())
    pieces = list(pretoken_counts._cut_stream(stream, "t", [s.encode() for s in specials], block))
    texts = [piece.data.decode() for piece in pieces]
    assert "".join(texts) == text
    whole = reference_counts([text], specials, pattern)
    assert reference_counts(texts, specials, pattern) == whole


@settings(max_examples=200, deadline=None)
@given(
    text=st.lists(st.sampled_from([" ", "\n", "\t", "a", "!", "/", "é"]), max_size=25).map("".join),
    pattern=st.sampled_from(["gpt2", "cl100k", "o200k"]),
)
# Places that look cuttable but are not, which the rules must avoid:
@example("x\n\nab", "gpt2")  # after "\n\n": gpt2 ends a chunk with "\n\n", the whole has "\n", "\n"
@example("x\n   ab", "cl100k")  # before " a" after spaces: "\n  " vs "\n", "  "
@example("x!\n/a", "o200k")  # "!\n/" is one o200k pre-token
def test_every_cut_place_keeps_pre_tokens(text, pattern):
    # Stronger than the test above: cut at *each* place a rule allows, one at a time.
    data = text.encode()
    for rule, offset in pretoken_counts._CUT_RULES:
        for match in rule.finditer(data, overlapped=True):
            head = data[: match.start() + offset].decode()
            halves = reference_counts([head, text[len(head) :]], (), pattern)
            assert halves == reference_counts([text], (), pattern), (head, rule.pattern)


def test_find_cut_prefers_specials_then_newlines_then_spaces():
    specials = [b"<|s|>"]
    assert find_cut(b"aaaa aaaa\nbbbb<|s|>cc", specials) == 14
    assert find_cut(b"aaaa aaaa\nbbbb cc", specials) == 10
    assert find_cut(b"aaaaaaaaa bbbbb", specials) == 9
    assert find_cut(b"aaaaaaaa\n\n bbb", specials) == -1  # only whitespace before
    # never inside a special token that itself holds a space: this one starts
    # before the searched half (so it is no cut place itself) and its space is
    # the only candidate
    special = b"<|aaaaaaaaaa b|>"
    assert find_cut(b"z" * 45 + special + b"z" * 39, [special]) == -1
    assert find_cut(b"z" * 45 + special + b"z" * 39, []) == 57
    # nor before a special token that overlaps another occurrence ("aa" in "aaa")
    assert find_cut(b"zzzzzzzzz zz<|aaa", [b"aa"]) == 9
    # nor where a special token may be starting at the end of the block
    assert find_cut(b"z" * 20 + b"a <|aaaa", [special]) == -1


def test_large_single_document_is_cut_into_chunks(monkeypatch):
    text = _sample_text()
    monkeypatch.setattr(pretoken_counts, "CHUNK_BYTES", 300)
    chunks = list(pretoken_counts.iter_chunks(text, [EOT], 300))
    assert len(chunks) > 10
    counts, _ = count_pretokens(text, PATTERNS["gpt2"], [EOT])
    assert counts == reference_counts([text], [EOT])


def test_parallel_workers_give_the_same_merges_as_serial(tmp_path, monkeypatch):
    text = _sample_text()
    path = tmp_path / "corpus.txt"
    path.write_text(text, encoding="utf-8")
    serial = train([path, "extra document", path], 700, [EOT], workers=1)

    used = []
    original = pretoken_counts._count_in_workers

    def spy(*args, **kwargs):
        used.append(True)
        return original(*args, **kwargs)

    monkeypatch.setattr(pretoken_counts, "_count_in_workers", spy)
    monkeypatch.setattr(pretoken_counts, "CHUNK_BYTES", 500)
    monkeypatch.setattr(pretoken_counts, "PARALLEL_MIN_BYTES", 1000)
    parallel = train([path, "extra document", path], 700, [EOT], workers=2)
    assert used, "the worker processes were not used"
    assert parallel == serial


def test_small_corpus_never_starts_processes(monkeypatch):
    def forbidden(*args, **kwargs):
        raise AssertionError("a small corpus must be counted in-process")

    monkeypatch.setattr(pretoken_counts, "_count_in_workers", forbidden)
    text = _sample_text() * 8  # ~200 KB
    assert len(text.encode()) < pretoken_counts.PARALLEL_MIN_BYTES
    train(text, 500, [EOT], workers=4)


def test_worker_errors_reach_the_caller(tmp_path, monkeypatch):
    path = tmp_path / "bad.txt"
    path.write_bytes(b"good text here\n" * 200 + b"bad \xff byte\n" + b"more text\n" * 200)
    monkeypatch.setattr(pretoken_counts, "CHUNK_BYTES", 256)
    monkeypatch.setattr(pretoken_counts, "PARALLEL_MIN_BYTES", 512)
    with pytest.raises(TinylmError, match=r"bad\.txt is not valid UTF-8.*offset 3004"):
        train(path, 300, workers=2)


# -- agreement with Hugging Face tokenizers ---------------------------------------


def _hf_merges(docs, vocab_size):
    tokenizers = pytest.importorskip("tokenizers")
    from tokenizers import Regex, models, pre_tokenizers, trainers

    tok = tokenizers.Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.Sequence(
        [
            pre_tokenizers.Split(Regex(PATTERNS["gpt2"]), behavior="isolated"),
            pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False),
        ]
    )
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator(docs, trainer)
    merges = json.loads(tok.to_str())["model"]["merges"]
    # ByteLevel shows each byte as a printable character (GPT-2's table); invert it.
    printable = [*range(33, 127), *range(161, 173), *range(174, 256)]
    others = [b for b in range(256) if b not in printable]
    shown = printable + [256 + i for i in range(len(others))]
    byte_of = {chr(c): b for c, b in zip(shown, printable + others, strict=True)}

    def to_bytes(s):
        return bytes(byte_of[c] for c in s)

    pairs = [m.split(" ") if isinstance(m, str) else m for m in merges]
    return [(to_bytes(a), to_bytes(b)) for a, b in pairs]


def test_merges_equal_hugging_face_until_the_first_tie():
    # HF breaks ties by ids, we by bytes; until the first tie at the top the two
    # must agree exactly, and the reference tells where that first tie is.
    from pydoc_data.topics import topics

    docs = [topics[name] for name in sorted(topics)[:30]]  # ~155 KB of Python docs
    expected, tops = reference_merges(docs, 45, with_counts=True)
    untied = next((i for i, (_, tied) in enumerate(tops) if tied > 1), len(tops))
    assert untied >= 30, "corpus too small to compare meaningfully"
    _, ours, _ = train(docs, 256 + 45)
    assert ours == expected
    assert _hf_merges(docs, 256 + 45)[:untied] == ours[:untied]


# -- errors -----------------------------------------------------------------------


def test_vocab_size_below_minimum_names_the_minimum():
    with pytest.raises(TinylmError, match="minimum is 258"):
        train("hello", 257, ["<a>", "<b>"])


def test_empty_corpus_is_an_error(tmp_path):
    empty = tmp_path / "empty.txt"
    empty.write_bytes(b"")
    for corpus in ["", [], [""], [empty]]:
        with pytest.raises(TinylmError, match="empty"):
            train(corpus, 300)


def test_missing_file_is_named(tmp_path):
    missing = tmp_path / "nope.txt"
    with pytest.raises(TinylmError, match=r"nope\.txt"):
        train(missing, 300)


def test_invalid_utf8_names_the_file_and_offset(tmp_path):
    path = tmp_path / "latin1.txt"
    path.write_bytes(b"ok text\ncaf\xe9\n")
    with pytest.raises(TinylmError, match=r"latin1\.txt is not valid UTF-8.*offset 11"):
        train(path, 300)


def test_duplicate_special_tokens_are_an_error():
    with pytest.raises(TinylmError, match="duplicate special token"):
        train("hello", 300, [EOT, EOT])


@pytest.mark.parametrize(
    ("corpus", "kwargs", "message"),
    [
        (b"bytes", {}, "got bytes"),
        ([1, 2], {}, "got int"),
        ("text", {"workers": 0}, "workers"),
        ("text", {"vocab_size": 300.0}, "integer"),
    ],
)
def test_bad_arguments_are_reported(corpus, kwargs, message):
    vocab_size = kwargs.pop("vocab_size", 300)
    with pytest.raises(TinylmError, match=message):
        train(corpus, vocab_size, **kwargs)


def test_any_iterable_of_texts_and_paths_is_a_corpus(tmp_path):
    path = tmp_path / "doc.txt"
    path.write_text("low lower lowest", encoding="utf-8")
    docs = ["newer wider", "low lower lowest", "new"]
    expected = train(docs, 300)
    assert train(iter(docs), 300) == expected  # a generator is read once, streamed
    assert train((d if i != 1 else path for i, d in enumerate(docs)), 300) == expected


def test_a_plain_str_is_text_never_a_path(tmp_path):
    path = tmp_path / "file.txt"
    path.write_text("zzzz zzzz zzzz")
    _, merges, _ = train(str(path), 300)
    assert (b"z", b"z") not in merges


# -- silence and progress ---------------------------------------------------------


class _Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_progress_false_is_silent_and_true_shows_bars(capfd, monkeypatch):
    terminal = _Terminal()
    monkeypatch.setattr("sys.stderr", terminal)
    train("some text to train on " * 50, 300, progress=False)
    assert terminal.getvalue() == ""
    train("some text to train on " * 50, 300, progress=True)
    assert "pre-tokenizing" in terminal.getvalue() and "merging" in terminal.getvalue()
    out, err = capfd.readouterr()
    assert out == "" and err == ""  # nothing anywhere else


def test_learn_merges_on_counts_directly():
    merges = bpe_train.learn_merges({"hug": 10, "pug": 5, "pun": 12, "bun": 4, "hugs": 5}, 3)
    assert merges == [(b"u", b"g"), (b"u", b"n"), (b"h", b"ug")]


def test_shared_corpus_matches_the_reference(shared_data):
    path: Path = shared_data("corpora/tinyshakespeare.txt")
    text = path.read_text(encoding="utf-8")[:20_000]
    _, merges, _ = train(text, 256 + 40)
    assert merges == reference_merges([text], 40)
