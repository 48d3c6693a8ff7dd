"""Byte-level BPE: exact agreement with tiktoken, round trips, special tokens, streaming.

tiktoken is the reference: every expected id sequence comes from a
``tiktoken.Encoding`` built offline from the same rank files, never from tinylm.
The few hand-made cases spell out what BPE must do by reasoning, not by output.
"""

from __future__ import annotations

import io
import itertools
import pickle
import unicodedata
from pathlib import Path

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from conftest import data_path
from tinylm.errors import TinylmError
from tinylm.tokenizers import bpe, bpe_cache, bpe_pool, bpe_stream
from tinylm.tokenizers.bpe import BPETokenizer
from tinylm.tokenizers.formats import read_tiktoken_ranks
from tinylm.tokenizers.pretokenize import CL100K_PATTERN, GPT2_PATTERN, O200K_PATTERN

tiktoken = pytest.importorskip("tiktoken")
tiktoken_load = pytest.importorskip("tiktoken.load")

SPECIALS = {
    "gpt2": {"<|endoftext|>": 50256},
    "cl100k_base": {
        "<|endoftext|>": 100257,
        "<|fim_prefix|>": 100258,
        "<|fim_middle|>": 100259,
        "<|fim_suffix|>": 100260,
        "<|endofprompt|>": 100276,
    },
    "o200k_base": {"<|endoftext|>": 199999, "<|endofprompt|>": 200018},
}
PATTERNS = {"gpt2": GPT2_PATTERN, "cl100k_base": CL100K_PATTERN, "o200k_base": O200K_PATTERN}

CORPORA = [
    "corpora/tinyshakespeare.txt",
    "corpora/tinystories_valid_head.txt",
    "corpora/names.txt",
    "corpora/samples/tinystories_sample.txt",
    "corpora/samples/corpus.en",
    "corpora/samples/address.txt",
    "corpora/samples/german.txt",
]
GUTENBERG_SLICE = 400_000  # characters from the middle of the 34 MB books file

# No deadline: the test machine is shared. Fixtures that monkeypatch module
# constants hold for every example, so function-scoped fixtures are fine here.
SLOW = settings(
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)


def _pair(name: str) -> tuple[BPETokenizer, tiktoken.Encoding]:
    path = data_path(f"vocab/{name}.tiktoken")
    ours = BPETokenizer.from_ranks(read_tiktoken_ranks(path), SPECIALS[name], PATTERNS[name])
    reference = tiktoken.Encoding(
        name=f"ref_{name}",
        pat_str=PATTERNS[name],
        mergeable_ranks=tiktoken_load.load_tiktoken_bpe(str(path)),
        special_tokens=SPECIALS[name],
    )
    return ours, reference


@pytest.fixture(scope="module")
def gpt2():
    return _pair("gpt2")


@pytest.fixture(scope="module", params=["gpt2", "cl100k_base", "o200k_base"])
def vocabulary(request):
    return _pair(request.param)


@pytest.fixture(scope="module")
def bare(vocabulary):
    """The same vocabularies without special tokens (streaming keeps a smaller margin)."""
    ours, reference = vocabulary
    return BPETokenizer.from_ranks(ours._ranks, None, ours.pattern), reference


@pytest.fixture(scope="module")
def small():
    """GPT-2 cut to its first 1000 merges, beside tiktoken on the same cut ranks.

    Small vocabularies split text into many tokens, so they exercise the merge
    loop far more than GPT-2's whole-word tokens do.
    """
    ranks = read_tiktoken_ranks(data_path("vocab/gpt2.tiktoken"))
    cut = {token: rank for token, rank in ranks.items() if rank < 1256}
    specials = {"<|endoftext|>": 1256, "<|a|>": 1257, "<|a|>b": 1258}
    ours = BPETokenizer.from_ranks(cut, specials, "gpt2")
    reference = tiktoken.Encoding(
        name="ref_small",
        pat_str=GPT2_PATTERN,
        mergeable_ranks=cut,
        special_tokens={"<|endoftext|>": 1256},
    )
    return ours, reference


def corpus_text(relative: str) -> str:
    return data_path(relative).read_text(encoding="utf-8")


def gutenberg_slice() -> str:
    with data_path("corpora/gutenberg_en_books.txt").open(encoding="utf-8") as handle:
        handle.seek(10_000_000)
        handle.readline()  # the seek may land inside a character
        return handle.read(GUTENBERG_SLICE)


def toy() -> BPETokenizer:
    """256 bytes plus merges ab, abc, cd; specials after the vocabulary."""
    vocab = {i: bytes([i]) for i in range(256)}
    vocab.update({256: b"ab", 257: b"abc", 258: b"cd"})
    merges = [(b"a", b"b"), (b"ab", b"c"), (b"c", b"d")]
    return BPETokenizer(vocab, merges, ["<|endoftext|>", "<|pad|>"])


# -- exactness against tiktoken ---------------------------------------------------


def test_equals_tiktoken_on_corpora(vocabulary):
    ours, reference = vocabulary
    texts = [corpus_text(path) for path in CORPORA] + [gutenberg_slice()]
    for text in texts:
        expected = reference.encode(text, allowed_special="all")
        assert ours.encode(text, allowed_special="all") == expected
    # the cache is warm now; a second pass must agree too
    assert ours.encode(texts[0]) == reference.encode(texts[0])


def test_small_vocabulary_equals_tiktoken(small):
    ours, reference = small
    for path in ("corpora/tinyshakespeare.txt", "corpora/samples/german.txt"):
        text = corpus_text(path)[:300_000]
        assert ours.encode_ordinary(text) == reference.encode_ordinary(text)


# Only characters assigned since Unicode 3.2, plus emoji: newer letters are
# classified differently by tiktoken's Rust regex and Python's regex module
# (their Unicode tables differ in age), which is not a tokenizer difference.
_OLD_CHARS = st.characters(codec="utf-8", max_codepoint=0x2FFFF).filter(
    lambda c: unicodedata.ucd_3_2_0.category(c) != "Cn" or 0x1F300 <= ord(c) <= 0x1FAFF
)
_TEXT_BITS = st.sampled_from(
    [" ", "  ", "\n", "\n\n", "\t", "'s", "'ll", "'T", "don't", "123", "4567", "...", "!?",
     "Hello", " world", "ÄÖü", "日本語", "😀", "👍🏽", "\r\n", "  \n "]
)  # fmt: skip
_TEXTS = st.lists(st.one_of(_OLD_CHARS, _TEXT_BITS), max_size=40).map("".join)


@SLOW
@given(_TEXTS)
def test_equals_tiktoken_on_arbitrary_text(vocabulary, text):
    ours, reference = vocabulary
    assert ours.encode_ordinary(text) == reference.encode_ordinary(text)


@SLOW
@given(_TEXTS)
def test_small_vocabulary_equals_tiktoken_on_arbitrary_text(small, text):
    ours, reference = small
    assert ours.encode_ordinary(text) == reference.encode_ordinary(text)


@pytest.mark.parametrize(
    "text",
    [" " * 5000, "a" * 3000, "7" * 4000, "ab" * 2000, "\n" * 3000 + "x", "é" * 1500],
)
def test_long_pre_tokens_equal_tiktoken(vocabulary, text):
    # pre-tokens this long take the heap merge path
    ours, reference = vocabulary
    assert ours.encode_ordinary(text) == reference.encode_ordinary(text)


@SLOW
@given(st.binary(min_size=2, max_size=600))
def test_heap_merge_equals_simple_merge(small, data):
    ranks = small[0]._ranks
    assert bpe._merge_long(data, ranks) == bpe._merge(data, ranks, bpe._NO_RANK)


def test_lone_surrogates_are_replaced_as_tiktoken_does(gpt2):
    ours, reference = gpt2
    for text in ["\ud800", "a\udc00b", "x\ud83d\ude00y", "\ud83d", "ok \udfff!"]:
        assert ours.encode(text) == reference.encode(text)
        assert ours.encode_ordinary(text) == reference.encode_ordinary(text)


# -- round trips --------------------------------------------------------------------


@SLOW
@given(st.text())
@example("<|endoftext|>")  # a special token's text, encoded as ordinary text, comes back too
def test_round_trip_any_text(gpt2, small, text):
    for tok in (gpt2[0], small[0]):
        assert tok.decode(tok.encode(text, disallowed_special=())) == text


@SLOW
@given(st.lists(st.one_of(st.text(max_size=8), st.sampled_from(["<|endoftext|>", "<|a|>"]))))
def test_round_trip_with_specials_allowed(small, parts):
    tok = small[0]
    text = "".join(parts)
    ids = tok.encode(text, allowed_special="all")
    assert tok.decode(ids) == text
    assert ids.count(tok.special_tokens["<|endoftext|>"]) == text.count("<|endoftext|>")


@given(st.text(max_size=30))
@example("<|pad|>")  # Hypothesis finds the specials' names in the source and tries them
def test_toy_round_trip(text):
    tok = toy()
    assert tok.decode(tok.encode(text, disallowed_special=())) == text


def test_toy_merges_by_rank():
    tok = toy()
    # "abcd": ab (rank 0) first, then ab+c (rank 1); cd (rank 2) never gets its c.
    assert tok.encode("abcd") == [257, ord("d")]
    # "acd": no ab, so cd.
    assert tok.encode("acd") == [ord("a"), 258]
    assert tok.special_tokens == {"<|endoftext|>": 259, "<|pad|>": 260}
    assert tok.vocab_size == 261


# -- decoding -----------------------------------------------------------------------


@SLOW
@given(st.lists(st.integers(0, 50256), max_size=30))
def test_decode_equals_tiktoken_even_for_broken_utf8(gpt2, ids):
    ours, reference = gpt2
    assert ours.decode_bytes(ids) == reference.decode_bytes(ids)
    assert ours.decode(ids) == reference.decode(ids)


def test_decode_replaces_partial_characters(gpt2):
    ours, reference = gpt2
    ids = reference.encode("héllo 日本")
    for cut in range(len(ids)):
        assert ours.decode(ids[:cut]) == reference.decode(ids[:cut], errors="replace")
    # a single token that is half of a character
    half = reference.encode_single_token(b"\xe6")
    assert ours.decode([half, half]) == reference.decode([half, half]) == "\ufffd\ufffd"


@pytest.mark.parametrize("bad", [50257, -1, 10**9, "7", None, 2.5])
def test_decode_unknown_id_names_it(gpt2, bad):
    with pytest.raises(TinylmError, match=f"token id {bad!r} is not in this tokenizer"):
        gpt2[0].decode([15496, bad])


def test_decode_accepts_arrays_and_rejects_non_integers(gpt2):
    np = pytest.importorskip("numpy")
    tok = gpt2[0]
    assert tok.decode(np.array([15496, 995])) == "Hello world"
    with pytest.raises(TinylmError, match="iterable of integers"):
        tok.decode(15496)
    with pytest.raises(TinylmError, match="iterable of integers"):
        tok.decode([[15496]])


def test_ids_in_gaps_are_unknown():
    ours, reference = _pair("cl100k_base")
    assert ours.vocab_size == reference.n_vocab == 100277
    with pytest.raises(TinylmError, match="100256"):
        ours.decode([100256])
    assert ours.decode([100276]) == "<|endofprompt|>"


# -- special tokens -----------------------------------------------------------------


def test_specials_allowed_match_tiktoken(gpt2):
    ours, reference = gpt2
    eot = "<|endoftext|>"
    for text in [eot, eot + eot, "a" + eot, eot + "b", f" {eot} x{eot}\n{eot}{eot}y "]:
        expected = reference.encode(text, allowed_special="all")
        assert ours.encode(text, allowed_special="all") == expected
        assert ours.encode(text, allowed_special={eot}) == expected
        as_text = reference.encode(text, disallowed_special=())
        assert ours.encode(text, disallowed_special=()) == as_text
        assert ours.encode_ordinary(text) == reference.encode_ordinary(text)


def test_disallowed_special_raises(gpt2):
    ours, reference = gpt2
    with pytest.raises(ValueError):  # tiktoken raises ValueError too
        reference.encode("x<|endoftext|>")
    with pytest.raises(TinylmError, match="special token '<\\|endoftext\\|>'"):
        ours.encode("x<|endoftext|>")
    with pytest.raises(TinylmError, match="endoftext"):
        ours.encode("x<|endoftext|>", allowed_special=set(), disallowed_special={"<|endoftext|>"})


def test_longest_special_wins(small):
    tok = small[0]
    a, ab = tok.special_tokens["<|a|>"], tok.special_tokens["<|a|>b"]
    b = tok.encode_ordinary("b")
    assert tok.encode("<|a|>b", allowed_special="all") == [ab]
    assert tok.encode("<|a|><|a|>b<|a|>", allowed_special="all") == [a, ab, a]
    # "<|a|>b" not allowed but also not disallowed: only "<|a|>" is special
    assert tok.encode("<|a|>b", allowed_special={"<|a|>"}, disallowed_special=()) == [a, *b]
    # by default every special not allowed is disallowed, and "<|a|>b" is in the text
    with pytest.raises(TinylmError, match="<\\|a\\|>b"):
        tok.encode("<|a|>b", allowed_special={"<|a|>"})


def test_allowed_subset(small):
    tok, reference = small
    eot, a = tok.special_tokens["<|endoftext|>"], tok.special_tokens["<|a|>"]
    text = "<|a|> hi<|endoftext|>"
    ids = tok.encode(text, allowed_special={"<|endoftext|>"}, disallowed_special=())
    assert ids == reference.encode_ordinary("<|a|> hi") + [eot]
    ids = tok.encode(text, allowed_special={"<|a|>"}, disallowed_special=())
    assert ids == [a, *reference.encode_ordinary(" hi<|endoftext|>")]


def test_bad_special_arguments(gpt2):
    tok = gpt2[0]
    with pytest.raises(TinylmError, match="unknown special"):
        tok.encode("x", allowed_special={"<|nope|>"})
    with pytest.raises(TinylmError, match="not the string"):
        tok.encode("x", allowed_special="<|endoftext|>")


def test_document_boundaries():
    tok = toy()
    assert (tok.bos_id, tok.eos_id, tok.pad_id) == (259, 259, 260)
    assert tok.encode_document("ab") == [259, 256, 259]
    named = BPETokenizer(toy().vocab, toy().merges, ["<|bos|>", "<|eos|>", "<s>"])
    assert (named.bos_id, named.eos_id, named.pad_id) == (259, 260, None)
    bare = BPETokenizer(toy().vocab, toy().merges)
    assert (bare.bos_id, bare.eos_id, bare.pad_id) == (None, None, None)
    assert bare.encode_document("ab") == [256]


@pytest.mark.parametrize("names", [["<|endoftext|>", "<|eos|>"], ["<|eos|>", "<|endoftext|>"]])
def test_eos_prefers_the_eos_token_to_endoftext(names):
    # With both, <|eos|> closes documents and <|endoftext|> only opens them,
    # whichever order the names come in (the ids follow the order given).
    tok = BPETokenizer(toy().vocab, toy().merges, names)
    assert tok.eos_id == tok.special_tokens["<|eos|>"]
    assert tok.bos_id == tok.special_tokens["<|endoftext|>"]
    assert tok.encode_document("ab") == [tok.bos_id, 256, tok.eos_id]


def test_gpt2_boundaries(gpt2):
    tok = gpt2[0]
    assert tok.bos_id == tok.eos_id == 50256 and tok.pad_id is None


# -- batches and streams ------------------------------------------------------------


def test_encode_batch_equals_encode(gpt2, monkeypatch):
    pools = []

    class CountedPool(bpe_pool.ProcessPoolExecutor):
        def __init__(self, *args, **kwargs):
            pools.append(args)
            super().__init__(*args, **kwargs)

    monkeypatch.setattr(bpe_pool, "ProcessPoolExecutor", CountedPool)
    monkeypatch.setattr(bpe_pool, "_MIN_JOB_CHARS", 50_000)  # several worker jobs
    ours, reference = gpt2
    docs = gutenberg_slice().split("\n\n")
    docs[3] += "<|endoftext|>"
    expected = reference.encode_batch(docs, allowed_special="all")
    assert ours.encode_batch(docs, allowed_special="all", workers=2) == expected
    assert len(pools) == (1 if bpe_pool._can_fork() else 0)
    assert ours.encode_batch(docs, allowed_special="all", workers=1) == expected
    assert len(pools) <= 1
    assert ours.encode_batch([]) == []


def test_small_batch_starts_no_pool(gpt2, monkeypatch):
    def no_pool(*args, **kwargs):
        raise AssertionError("a tiny batch must not start a pool")

    monkeypatch.setattr(bpe_pool, "ProcessPoolExecutor", no_pool)
    texts = ["hello", "world<|endoftext|>"]
    ids = gpt2[0].encode_batch(texts, allowed_special="all", workers=4)
    assert ids == [gpt2[0].encode(t, allowed_special="all") for t in texts]
    with pytest.raises(TinylmError, match="special token"):
        gpt2[0].encode_batch(texts)


@pytest.fixture
def tiny_blocks(monkeypatch):
    """Stream in blocks of a few characters, so nearly every boundary is exercised."""
    monkeypatch.setattr(bpe_stream, "_STREAM_BLOCK_CHARS", 7)
    # o200k's contractions look 3 characters ahead; keep just above that
    monkeypatch.setattr(bpe_stream, "_STREAM_MARGIN_CHARS", 4)


def test_encode_iterable_over_a_file(gpt2, tmp_path):
    ours, reference = gpt2
    text = gutenberg_slice()
    path = tmp_path / "books.txt"
    path.write_text(text, encoding="utf-8")
    with path.open(encoding="utf-8", newline="") as handle:
        ids = list(ours.encode_iterable(handle))
    assert ids == reference.encode_ordinary(text)


def test_encode_iterable_tiny_blocks_on_a_corpus(vocabulary, tiny_blocks):
    ours, reference = vocabulary
    text = corpus_text("corpora/samples/tinystories_sample.txt")
    text += corpus_text("corpora/samples/german.txt") + " don't  I'LL 12345  \n\n x"
    handle = io.StringIO(text, newline="")
    expected = reference.encode(text, allowed_special="all")
    assert list(ours.encode_iterable(handle, allowed_special="all")) == expected


@SLOW
@given(
    st.lists(
        st.one_of(_TEXTS, st.sampled_from(["<|endoftext|>", "<|a|>", "<|a|>b", "<|", "|>"])),
        max_size=12,
    ),
    st.data(),
)
def test_encode_iterable_equals_encode(small, tiny_blocks, parts, data):
    tok = small[0]
    text = "".join(parts)
    cuts = sorted(data.draw(st.lists(st.integers(0, len(text)), max_size=10)))
    chunks = [text[i:j] for i, j in itertools.pairwise([0, *cuts, len(text)])]
    expected = tok.encode(text, allowed_special="all")
    assert list(tok.encode_iterable(chunks, allowed_special="all")) == expected


_STREAM_BITS = st.sampled_from(
    [" ", "  ", "\n", "\n\n", "'s", "'ll", "don't", "DON'T", "123", "4567", "...", "!?",
     "Hello", " world", "ÄÖü", "日本語", "\r\n", "  \n ", "a", "B", "😀"]
)  # fmt: skip


@SLOW
@given(st.lists(_STREAM_BITS, max_size=30).map("".join), st.data())
def test_encode_iterable_equals_tiktoken_with_tight_margin(bare, tiny_blocks, text, data):
    tok, reference = bare
    cuts = sorted(data.draw(st.lists(st.integers(0, len(text)), max_size=8)))
    chunks = [text[i:j] for i, j in itertools.pairwise([0, *cuts, len(text)])]
    assert list(tok.encode_iterable(chunks)) == reference.encode_ordinary(text)


def test_encode_iterable_at_every_cut_point(bare, tiny_blocks, monkeypatch):
    monkeypatch.setattr(bpe_stream, "_STREAM_BLOCK_CHARS", 1)  # encode after every chunk
    tok, reference = bare
    text = "He'll  DON'T we're \n\n  12345 don'ts...!? I'VE x'Ll 日本語😀\r\n\r\n  end  "
    expected = reference.encode_ordinary(text)
    assert list(tok.encode_iterable(text)) == expected  # one character per chunk
    for cut in range(len(text) + 1):
        assert list(tok.encode_iterable([text[:cut], text[cut:]])) == expected, cut


def test_encode_iterable_joins_surrogate_pairs_across_chunks(gpt2, tiny_blocks):
    ours, reference = gpt2
    chunks = ["abc def ghi \ud83d", "\ude00 jkl", "\ud800 end"]
    assert list(ours.encode_iterable(chunks)) == reference.encode("".join(chunks))


def test_encode_iterable_is_lazy(gpt2):
    endless = itertools.repeat("All work and no play makes Jack a dull boy.\n")
    first = list(itertools.islice(gpt2[0].encode_iterable(endless), 1000))
    assert len(first) == 1000


def test_encode_iterable_raises_on_disallowed_special(gpt2, tiny_blocks):
    with pytest.raises(TinylmError, match="special token"):
        list(gpt2[0].encode_iterable(["hello <|endo", "ftext|> world", " and more text"]))


# -- construction and validation ----------------------------------------------------


def _bytes_vocab() -> dict[int, bytes]:
    return {i: bytes([i]) for i in range(256)}


@pytest.mark.parametrize(
    ("vocab_extra", "merges", "specials", "message"),
    [
        ({256: b"ab"}, [(b"a", b"c")], None, "makes b'ac'"),
        ({256: b"ab"}, [(b"xy", b"z")], None, "uses b'xy'"),
        ({-1: b"ab"}, [(b"a", b"b")], None, "not a non-negative integer"),
        ({}, [], {"<|x|>": 5}, "ordinary token already uses"),
        ({}, [], {"<|x|>": 300, "<|y|>": 300}, "share id 300"),
        ({}, [], ["<|x|>", "<|x|>"], "repeat"),
        ({}, [], {"": 300}, "non-empty"),
        ({}, [], {"<|x|>": -1}, "non-negative"),
    ],
)
def test_constructor_validates(vocab_extra, merges, specials, message):
    vocab = {**_bytes_vocab(), **vocab_extra}
    with pytest.raises(TinylmError, match=message):
        BPETokenizer(vocab, merges, specials)


def test_from_ranks_validates():
    ranks = {bytes([i]): i for i in range(256)}
    with pytest.raises(TinylmError, match="share a rank"):
        BPETokenizer.from_ranks({**ranks, b"ab": 255})
    with pytest.raises(TinylmError, match="ordinary token already uses"):
        BPETokenizer.from_ranks({**ranks, b"ab": 300}, {"<|endoftext|>": 300})


def test_ids_may_leave_gaps():
    # like tiktoken's p50k_base, which skips 50256 (its <|endoftext|>)
    ranks = {bytes([i]): i for i in range(256)}
    tok = BPETokenizer.from_ranks({**ranks, b"ab": 300}, ["<|endoftext|>"])
    assert tok.vocab_size == 302 and tok.special_tokens == {"<|endoftext|>": 301}
    assert tok.encode("xab") == [ord("x"), 300]
    assert tok.merges == [(b"a", b"b")]
    with pytest.raises(TinylmError, match="token id 299"):
        tok.decode([299])


def test_every_byte_must_be_a_token():
    vocab = _bytes_vocab()
    del vocab[255]
    with pytest.raises(TinylmError, match="lacks the single byte"):
        BPETokenizer(vocab, [])


def test_bad_pattern_is_reported():
    with pytest.raises(TinylmError, match="pattern"):
        BPETokenizer(_bytes_vocab(), [], pattern="(unclosed")


def test_vocab_entries_that_repeat_a_special_are_accepted():
    # train_bpe returns the special tokens inside vocab too
    vocab = {**_bytes_vocab(), 256: b"<|endoftext|>"}
    tok = BPETokenizer(vocab, [], {"<|endoftext|>": 256})
    assert tok.vocab == _bytes_vocab() and tok.special_tokens == {"<|endoftext|>": 256}


def test_from_ranks_recovers_the_gpt2_merges(gpt2):
    lines = data_path("vocab/gpt2_merges.txt").read_text(encoding="utf-8").splitlines()
    # compare through GPT-2's own spelling: recovered merge i must be line i
    from tinylm.tokenizers.byte_alphabet import gpt2_byte_alphabet

    alphabet = gpt2_byte_alphabet()
    spelled = [
        " ".join("".join(alphabet[b] for b in part) for part in pair) for pair in gpt2[0].merges
    ]
    assert spelled == [line for line in lines if line and not line.startswith("#version")]


def test_pickle_keeps_behaviour(gpt2):
    tok = gpt2[0]
    again = pickle.loads(pickle.dumps(tok))
    text = "Pickled tokenizers, e.g. in DataLoader workers."
    assert again.encode(text) == tok.encode(text)
    assert again.fingerprint() == tok.fingerprint()


def test_cache_stays_bounded(gpt2, monkeypatch):
    monkeypatch.setattr(bpe_cache, "CACHE_SIZE", 50)
    ours = BPETokenizer.from_ranks(gpt2[0]._ranks, SPECIALS["gpt2"])
    text = corpus_text("corpora/samples/address.txt")
    assert ours.encode(text) == gpt2[1].encode(text)
    assert len(ours._cache) <= 50


def test_train_round_trips():
    pytest.importorskip("tinylm.tokenizers.bpe_train")
    text = "low lower lowest newer wider new " * 20 + "<|endoftext|>" + "the end"
    tok = BPETokenizer.train([text], 280, ["<|endoftext|>"], progress=False, workers=1)
    assert tok.special_tokens == {"<|endoftext|>": tok.vocab_size - 1}
    assert len(tok.merges) > 0
    ids = tok.encode(text, allowed_special="all")
    assert tok.decode(ids) == text
    assert len(ids) < len(text.encode()) // 2  # merges actually compress


def test_document_text_cannot_fake_a_boundary():
    from tinylm.tokenizers.bpe import BPETokenizer

    vocab = {i: bytes([i]) for i in range(256)}
    tok = BPETokenizer(vocab, [], special_tokens=["<|endoftext|>"])
    eot = tok.special_tokens["<|endoftext|>"]
    ids = tok.encode_document("a<|endoftext|>b")
    assert ids[0] == ids[-1] == eot
    assert eot not in ids[1:-1]
    assert tok.decode(ids[1:-1]) == "a<|endoftext|>b"


def test_the_encoders_beside_bpe_use_no_private_member_of_the_tokenizer():
    """bpe_pool and bpe_stream drive BPETokenizer through its public surface only."""
    import ast

    import tinylm.tokenizers.bpe_pool as pool
    import tinylm.tokenizers.bpe_stream as stream

    for module in (pool, stream):
        tree = ast.parse(Path(module.__file__).read_text(encoding="utf-8"))
        private = sorted(
            node.attr
            for node in ast.walk(tree)
            if isinstance(node, ast.Attribute)
            and node.attr.startswith("_")
            and not node.attr.startswith("__")
            and isinstance(node.value, ast.Name)
            and node.value.id in ("tokenizer", "_WORKER_TOKENIZER")
        )
        assert private == [], f"{module.__name__} uses {private}"
