"""Tokenizer files: tinylm JSON round trips, .tiktoken and GPT-2 loaders, corrupt files."""

from __future__ import annotations

import json
import shutil
from base64 import b64encode

import pytest

from conftest import data_path
from tinylm.errors import TinylmError
from tinylm.tokenizers.base import Tokenizer
from tinylm.tokenizers.bpe import BPETokenizer, token_from_json, token_to_json
from tinylm.tokenizers.byte_alphabet import gpt2_byte_alphabet
from tinylm.tokenizers.formats import TIKTOKEN_SPECIALS, load_tokenizer
from tinylm.tokenizers.pretokenize import CL100K_PATTERN, GPT2_PATTERN, O200K_PATTERN

TEXT = "Hello world! It's 2024 — naïve café, 日本語 😀\n\n  indented\tand <tags> done."


@pytest.fixture(scope="module")
def gpt2() -> BPETokenizer:
    return load_tokenizer(data_path("vocab/gpt2.tiktoken"))


def odd_tokenizer() -> BPETokenizer:
    """Tokens that are not valid UTF-8, look like JSON, or hold quotes and newlines."""
    vocab = {i: bytes([i]) for i in range(256)}
    merges = [(b"\xe6", b"\x97"), (b'"', b"\n"), (b"{", b'"'), (b"\xe6\x97", b"\xa5")]
    for left, right in merges:
        vocab[len(vocab)] = left + right
    return BPETokenizer(vocab, merges, {"<|endoftext|>": 300, "<|pad|>": 302}, "cl100k")


def assert_same(a: BPETokenizer, b: BPETokenizer) -> None:
    assert a.vocab == b.vocab
    assert a.merges == b.merges
    assert a.special_tokens == b.special_tokens
    assert a.pattern == b.pattern
    assert a.vocab_size == b.vocab_size
    assert a.fingerprint() == b.fingerprint()


# -- tinylm JSON --------------------------------------------------------------------


def test_round_trip_is_exact(tmp_path):
    tok = odd_tokenizer()
    path = tmp_path / "odd.json"
    tok.save(path)
    again = load_tokenizer(path)
    assert isinstance(again, BPETokenizer)
    assert_same(tok, again)
    text = '日本 {"x"\n} <|endoftext|>'
    assert again.encode(text, allowed_special="all") == tok.encode(text, allowed_special="all")


def test_file_is_human_readable(tmp_path):
    tok = odd_tokenizer()
    path = tmp_path / "odd.json"
    tok.save(path)
    text = path.read_text(encoding="utf-8")
    data = json.loads(text)
    assert (data["format"], data["version"], data["type"]) == ("tinylm-tokenizer", 1, "bpe")
    assert data["pattern"] == CL100K_PATTERN
    assert data["special_tokens"] == {"<|endoftext|>": 300, "<|pad|>": 302}
    assert data["vocab"]["65"] == "A"
    assert data["vocab"]["230"] == {"hex": "e6"}  # half a character
    assert data["vocab"]["259"] == "日"
    assert data["merges"][0] == [{"hex": "e6"}, {"hex": "97"}]
    assert data["merges"][1] == ['"', "\n"]
    # one vocabulary entry or merge per line
    assert text.count("\n") == len(tok.vocab) + len(tok.merges) + 11


def test_file_content_equals_the_generic_envelope(tmp_path, gpt2):
    # BPETokenizer lays the JSON out itself; the data must be what base.to_json writes
    assert json.loads(gpt2.to_json()) == json.loads(Tokenizer.to_json(gpt2))


def test_gpt2_round_trip(tmp_path, gpt2):
    path = tmp_path / "gpt2.json"
    gpt2.save(path)
    again = load_tokenizer(path)
    assert_same(gpt2, again)
    assert again.encode(TEXT) == gpt2.encode(TEXT)
    assert load_tokenizer(path, pattern="o200k").pattern == GPT2_PATTERN  # stored one wins


def test_round_trip_keeps_id_gaps(tmp_path):
    cl100k = load_tokenizer(data_path("vocab/cl100k_base.tiktoken"))
    path = tmp_path / "cl100k.json"
    cl100k.save(path)
    again = load_tokenizer(path)
    assert_same(cl100k, again)
    assert again.vocab_size == 100277
    assert again.encode(TEXT + "<|endofprompt|>", allowed_special="all")[-1] == 100276


@pytest.mark.parametrize(
    "token", [b"", b"a", b" the", b"\xff", b"\xe6\x97", b'{"hex": "00"}', "😀".encode()]
)
def test_token_forms_round_trip(token):
    assert token_from_json(json.loads(json.dumps(token_to_json(token)))) == token


# -- .tiktoken files ----------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "pattern", "family"),
    [
        ("gpt2", GPT2_PATTERN, "gpt2"),
        ("cl100k_base", CL100K_PATTERN, "cl100k"),
        ("o200k_base", O200K_PATTERN, "o200k"),
    ],
    ids=["gpt2", "cl100k", "o200k"],
)
def test_tiktoken_files_get_tiktokens_pattern_and_specials(name, pattern, family):
    tok = load_tokenizer(data_path(f"vocab/{name}.tiktoken"))
    assert tok.pattern == pattern
    assert tok.special_tokens == TIKTOKEN_SPECIALS[family]
    # the README of shared/data records tiktoken's ids for this text
    expected = {"gpt2": [15496, 995], "cl100k": [9906, 1917], "o200k": [13225, 2375]}[family]
    eot = TIKTOKEN_SPECIALS[family]["<|endoftext|>"]
    assert tok.encode("Hello world<|endoftext|>", allowed_special="all") == [*expected, eot]


@pytest.mark.parametrize(
    ("registry_name", "file_name"),
    [("r50k_base", "gpt2"), ("cl100k_base", "cl100k_base"), ("o200k_base", "o200k_base")],
)
def test_tiktoken_files_equal_tiktokens_registry(monkeypatch, registry_name, file_name):
    # tiktoken's registry functions would download the ranks; give them none
    openai_public = pytest.importorskip("tiktoken_ext.openai_public")
    monkeypatch.setattr(openai_public, "load_tiktoken_bpe", lambda *args, **kwargs: {})
    spec = getattr(openai_public, registry_name)()
    tok = load_tokenizer(data_path(f"vocab/{file_name}.tiktoken"))
    assert tok.special_tokens == spec["special_tokens"]
    assert tok.pattern == spec["pat_str"]


def test_unknown_tiktoken_file_needs_a_pattern(tmp_path):
    path = data_path("vocab/whisper_multilingual.tiktoken")
    with pytest.raises(TinylmError, match="pass the pattern"):
        load_tokenizer(path)
    tok = load_tokenizer(path, pattern="gpt2")
    assert tok.special_tokens == {} and tok.vocab_size == 50257
    # a renamed copy of a known file is read the same way
    copy = tmp_path / "ranks.txt"
    shutil.copy(data_path("vocab/gpt2.tiktoken"), copy)
    assert load_tokenizer(copy, pattern="gpt2").encode("Hello world") == [15496, 995]


def test_truncated_tiktoken_download(tmp_path):
    lines = data_path("vocab/gpt2.tiktoken").read_text(encoding="utf-8").splitlines()
    path = tmp_path / "gpt2.tiktoken"
    path.write_text("\n".join(lines[:30000]) + "\n", encoding="utf-8")
    with pytest.raises(TinylmError, match="holds 30000 tokens but tiktoken's gpt2 has 50256"):
        load_tokenizer(path)


def test_p50k_style_rank_gap_equals_tiktoken(tmp_path):
    # p50k_base keeps 50256 free for <|endoftext|> and goes on at 50257
    tiktoken_load = pytest.importorskip("tiktoken.load")
    tiktoken = pytest.importorskip("tiktoken")
    source = data_path("vocab/gpt2.tiktoken").read_text(encoding="utf-8")
    extra = [" " * n for n in range(40, 64)]
    path = tmp_path / "p50k_base.tiktoken"
    path.write_text(
        source
        + "".join(f"{b64encode(t.encode()).decode()} {50257 + k}\n" for k, t in enumerate(extra)),
        encoding="utf-8",
    )
    tok = load_tokenizer(path)
    reference = tiktoken.Encoding(
        name="p50k_like",
        pat_str=GPT2_PATTERN,
        mergeable_ranks=tiktoken_load.load_tiktoken_bpe(str(path)),
        special_tokens={"<|endoftext|>": 50256},
    )
    text = "def f():\n" + " " * 45 + "return 1<|endoftext|>" + " " * 100 + "x"
    assert tok.vocab_size == reference.n_vocab == 50281
    assert tok.encode(text, allowed_special="all") == reference.encode(text, allowed_special="all")
    again = tmp_path / "again.json"
    tok.save(again)
    assert load_tokenizer(again).encode(text, allowed_special="all") == tok.encode(
        text, allowed_special="all"
    )


def test_pattern_overrides_the_name(tmp_path):
    tok = load_tokenizer(data_path("vocab/gpt2.tiktoken"), pattern="cl100k")
    assert tok.pattern == CL100K_PATTERN
    assert tok.special_tokens == {"<|endoftext|>": 50256}


# -- GPT-2 encoder.json + vocab.bpe ---------------------------------------------------


def test_byte_alphabet_matches_gpt2s_files():
    # independent check: encoder.json's id for each byte's spelling is its rank in gpt2.tiktoken
    encoder = json.loads(data_path("vocab/gpt2_vocab.json").read_text(encoding="utf-8"))
    ranks = load_tokenizer(data_path("vocab/gpt2.tiktoken"))._encoder
    alphabet = gpt2_byte_alphabet()
    assert len(set(alphabet)) == 256 and alphabet[32] == "Ġ"
    assert all(encoder[alphabet[b]] == ranks[bytes([b])] for b in range(256))


@pytest.mark.parametrize("which", ["gpt2_vocab.json", "gpt2_merges.txt"])
def test_gpt2_pair_equals_tiktoken_file(gpt2, which):
    tok = load_tokenizer(data_path(f"vocab/{which}"))
    assert_same(tok, gpt2)
    assert tok.encode(TEXT) == gpt2.encode(TEXT)


@pytest.mark.parametrize("header", ["", "#version: 0.2\n"])
def test_gpt2_pair_with_openai_names(tmp_path, gpt2, header):
    shutil.copy(data_path("vocab/gpt2_vocab.json"), tmp_path / "encoder.json")
    merges = data_path("vocab/gpt2_merges.txt").read_text(encoding="utf-8")
    (tmp_path / "vocab.bpe").write_text(header + merges, encoding="utf-8")
    for name in ("encoder.json", "vocab.bpe"):
        tok = load_tokenizer(tmp_path / name)
        assert tok.vocab == gpt2.vocab and tok.merges == gpt2.merges
        assert tok.special_tokens == {"<|endoftext|>": 50256}


def test_gpt2_pair_missing_half(tmp_path):
    shutil.copy(data_path("vocab/gpt2_vocab.json"), tmp_path / "encoder.json")
    with pytest.raises(TinylmError, match="vocab.bpe"):
        load_tokenizer(tmp_path / "encoder.json")


# -- corrupt and foreign files -------------------------------------------------------


def _saved(tmp_path) -> str:
    path = tmp_path / "tok.json"
    odd_tokenizer().save(path)
    return path.read_text(encoding="utf-8")


PNG = b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR\x00\x00\x00\x01\x00\x00\x00\x01\x08\x06\x00\x00\x00"


@pytest.mark.parametrize(
    ("name", "content", "message"),
    [
        ("truncated.json", lambda t: t[: len(t) // 2], "damaged or truncated"),
        ("empty.json", lambda t: "", "empty"),
        ("other.json", lambda t: '{"format": "something-else", "type": "bpe"}', "not a tinylm"),
        ("future.json", lambda t: t.replace('"version": 1', '"version": 9'), "version 9"),
        ("list.json", lambda t: "[1, 2, 3]", "not a tokenizer file"),
        ("hf.json", lambda t: '{"model": {"type": "BPE"}}', "pre-tokenizer tinylm does not"),
        ("wordpiece.json", lambda t: '{"model": {"type": "WordPiece"}}', "byte-level BPE only"),
        ("deep.json", lambda t: "[" * 200_000, "more than 100 deep"),
        ("deep-object.json", lambda t: '{"a": ' * 200_000, "more than 100 deep"),
        ("badmerge.json", lambda t: t.replace('["\\"", "\\n"]', '["\\"", "zz"]'), "merge 1"),
        ("badhex.json", lambda t: t.replace('{"hex": "e6"}', '{"hex": "xyz"}', 1), "hex"),
        ("nobyte.json", lambda t: t.replace('  "65": "A",\n', ""), "lacks the single byte"),
        ("badkey.json", lambda t: t.replace('"65": "A"', '"x": "A"'), "decimal id"),
        ("nomerges.json", lambda t: t.replace('"merges"', '"merged"'), "'merges' list"),
        ("picture.json", PNG, "binary data"),
        ("picture.tiktoken", PNG, "binary data"),
        ("bad.tiktoken", lambda t: "IQ== 0\nnot*base64 1\n", "line 2"),
        ("badrank.tiktoken", lambda t: "IQ== 0\nIg== one\n", "line 2"),
        ("notes.txt", lambda t: "just some notes\n", "not a tokenizer file"),
    ],
)
def test_corrupt_files_give_one_line_errors(tmp_path, name, content, message):
    path = tmp_path / name
    if isinstance(content, bytes):
        path.write_bytes(content)
    else:
        path.write_text(content(_saved(tmp_path)), encoding="utf-8")
    with pytest.raises(TinylmError, match=message) as caught:
        load_tokenizer(path)
    text = str(caught.value)
    assert "\n" not in text
    assert name in text


def test_bad_merges_file(tmp_path):
    shutil.copy(data_path("vocab/gpt2_vocab.json"), tmp_path / "encoder.json")
    (tmp_path / "vocab.bpe").write_text("Ġ t\nh e x\n", encoding="utf-8")
    with pytest.raises(TinylmError, match="line 2"):
        load_tokenizer(tmp_path / "vocab.bpe")


def test_missing_file_and_folder(tmp_path):
    with pytest.raises(TinylmError, match="does not exist"):
        load_tokenizer(tmp_path / "nope.json")
    with pytest.raises(TinylmError, match="folder"):
        load_tokenizer(tmp_path)


@pytest.mark.parametrize("keep", [20_000, 49_000])
def test_a_merges_file_cut_short_is_refused_not_turned_into_specials(tmp_path, keep):
    # A vocab.bpe cut to `keep` merges leaves 50,000 - keep encoder entries that no merge
    # builds; read as special tokens they would split "Hello world" into 6 tokens.
    shutil.copy(data_path("vocab/gpt2_vocab.json"), tmp_path / "encoder.json")
    lines = data_path("vocab/gpt2_merges.txt").read_text(encoding="utf-8").splitlines()
    header = 1 if lines[0].startswith("#version") else 0
    (tmp_path / "vocab.bpe").write_text("\n".join(lines[: header + keep]) + "\n", "utf-8")
    with pytest.raises(TinylmError) as exc:
        load_tokenizer(tmp_path / "encoder.json")
    message = str(exc.value)
    assert "\n" not in message
    assert f"{50_001 - keep:,} tokens of encoder.json" in message  # and <|endoftext|>
    assert "cut short or from another vocabulary" in message


def test_merges_that_build_tokens_the_encoder_lacks_are_refused(tmp_path):
    encoder = json.loads(data_path("vocab/gpt2_vocab.json").read_text(encoding="utf-8"))
    del encoder["Ġthe"]  # a token the merges file builds early on
    (tmp_path / "encoder.json").write_text(json.dumps(encoder), encoding="utf-8")
    shutil.copy(data_path("vocab/gpt2_merges.txt"), tmp_path / "vocab.bpe")
    with pytest.raises(TinylmError, match=r"needs token b' the', which encoder.json lacks"):
        load_tokenizer(tmp_path / "encoder.json")
