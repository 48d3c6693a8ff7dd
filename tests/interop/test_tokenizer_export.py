"""Tokenizer export: HF ``tokenizers`` and tiktoken load it and encode texts to tinylm's ids.

HF's ``encode`` adds special tokens by default, and the export's post-processor
puts BOS first (as ``tinylm sample`` does), so the bare ids are compared with
``add_special_tokens=False`` and the BOS rule on its own.
"""

from __future__ import annotations

import json

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tinylm.errors import TinylmError
from tinylm.inference.sampling import prompt_ids
from tinylm.interop.hf_tokenizer import to_hf_tokenizer_config, to_hf_tokenizer_json
from tinylm.interop.tiktoken_export import tiktoken_files
from tinylm.tokenizers.bpe import BPETokenizer
from tinylm.tokenizers.char import CharTokenizer
from tinylm.tokenizers.formats import load_tokenizer
from tinylm.tokenizers.hf_tokenizer_json import from_hf_tokenizer_json

from .conftest import corpus_text

hf_tokenizers = pytest.importorskip("tokenizers")
tiktoken = pytest.importorskip("tiktoken")
tiktoken_load = pytest.importorskip("tiktoken.load")

# Any Unicode text but lone surrogates (which are not characters; HF cannot take them).
UNICODE = st.text(st.characters(blacklist_categories=("Cs",)), max_size=60)
SPECIAL_TEXT = "a<|endoftext|>b <|pad|><|endoftext|>\n<|endoftext|"


def hf_of(tokenizer):
    return hf_tokenizers.Tokenizer.from_str(json.dumps(to_hf_tokenizer_json(tokenizer)))


def bare_ids(hf, text: str) -> list[int]:
    """HF's ids for ``text`` without the post-processor's BOS: tinylm's ``encode``."""
    return hf.encode(text, add_special_tokens=False).ids


def tiktoken_of(tokenizer, tmp_path):
    ranks, spec = tiktoken_files(tokenizer)
    (tmp_path / "t.tiktoken").write_text(ranks)
    mergeable = tiktoken_load.load_tiktoken_bpe(str(tmp_path / "t.tiktoken"))
    return tiktoken.Encoding(
        spec["name"],
        pat_str=spec["pat_str"],
        mergeable_ranks=mergeable,
        special_tokens=spec["special_tokens"],
    )


def shared_texts(shared_data) -> list[str]:
    texts = []
    for name in ("tinyshakespeare.txt", "gutenberg_en_books.txt", "tinystories_valid_head.txt"):
        text = shared_data(f"corpora/{name}").read_text(encoding="utf-8")[:60_000]
        texts += [text[i : i + 2000] for i in range(0, len(text), 2000)]
    return texts


@pytest.fixture(scope="module", params=["gpt2", "cl100k", "o200k"])
def bpe_pattern(request, bpe):
    return BPETokenizer(bpe.vocab, bpe.merges, bpe.special_tokens, request.param)


def test_hf_and_tiktoken_encode_shared_corpora_to_tinylm_ids(bpe_pattern, shared_data, tmp_path):
    hf, tk = hf_of(bpe_pattern), tiktoken_of(bpe_pattern, tmp_path)
    for text in [*shared_texts(shared_data), SPECIAL_TEXT, corpus_text(20_000)]:
        ids = bpe_pattern.encode(text, allowed_special="all")
        assert bare_ids(hf, text) == ids
        assert tk.encode(text, allowed_special="all") == ids
        assert hf.decode(ids, skip_special_tokens=False) == text


@settings(max_examples=150, deadline=None)
@given(text=UNICODE)
def test_random_unicode_encodes_alike(bpe, text):
    ids = bpe.encode(text + SPECIAL_TEXT, allowed_special="all")
    assert bare_ids(_HF_CACHE.setdefault("hf", hf_of(bpe)), text + SPECIAL_TEXT) == ids


_HF_CACHE: dict = {}


@pytest.mark.slow
def test_real_gpt2_vocabulary_exports_exactly(shared_data):
    gpt2 = load_tokenizer(shared_data("vocab/gpt2.tiktoken"))
    hf = hf_of(gpt2)
    text = shared_data("corpora/tinyshakespeare.txt").read_text(encoding="utf-8")[:20_000]
    text += " naïve café 🤖 ½ \u200b日本語 <|endoftext|>"
    assert bare_ids(hf, text) == gpt2.encode(text, allowed_special="all")


def test_tokenizer_json_round_trips_into_tinylm(bpe):
    back = from_hf_tokenizer_json(to_hf_tokenizer_json(bpe), "tokenizer.json")
    text = corpus_text(10_000) + SPECIAL_TEXT
    assert back.encode(text, allowed_special="all") == bpe.encode(text, allowed_special="all")
    assert back.special_tokens == bpe.special_tokens


def test_char_tokenizer_exports_to_hf_and_is_refused_by_tiktoken():
    text = "hello, world!\nsecond line é"
    char = CharTokenizer.train(text)
    hf = hf_of(char)
    assert bare_ids(hf, text) == char.encode(text)
    assert hf.decode(char.encode(text)) == text
    assert hf.token_to_id("<BOS>") == char.BOS
    with pytest.raises(Exception, match="UNK|unk|Unk"):
        hf.encode("z")  # unseen, like tinylm's char tokenizer (no UNK reserved)
    with pytest.raises(TinylmError, match="char tokenizer cannot be written as a tiktoken"):
        tiktoken_files(char)


def test_char_tokenizer_with_unk_maps_unseen_alike():
    char = CharTokenizer.train("abc", unknown="reserve")
    assert bare_ids(hf_of(char), "abzc") == char.encode("abzc")


# -- BOS: HF's encoding is the prompt tinylm samples from -----------------------------


def _with_bos(kind: str, bpe: BPETokenizer):
    """The tokenizer of ``kind``: char, GPT-2-like BPE (BOS = EOS), or BPE with its own BOS."""
    if kind == "char":
        return CharTokenizer.train("hello, world!\nsecond line é")
    if kind == "bpe-bos-eos":
        return BPETokenizer(bpe.vocab, bpe.merges, ["<|eos|>", "<|pad|>", "<|bos|>"])
    return bpe


BOS_KINDS = ["char", "bpe", "bpe-bos-eos"]


@pytest.mark.parametrize("kind", BOS_KINDS)
def test_hf_encoding_starts_with_bos_as_tinylm_prompts_do(kind, bpe):
    tokenizer = _with_bos(kind, bpe)
    hf = hf_of(tokenizer)
    for prompt in ("hello", "second line é", "", "\n"):
        assert hf.encode(prompt).ids == prompt_ids(tokenizer, prompt), prompt
    bos = tokenizer.bos_id
    if kind == "bpe-bos-eos":  # <|bos|> opens documents, not <|eos|>
        assert hf.encode("").ids == [tokenizer.special_tokens["<|bos|>"]]
    pair = hf.encode("hello", "world").ids  # a pair: each text opens like a document
    assert pair == [bos, *tokenizer.encode("hello"), bos, *tokenizer.encode("world")]
    assert to_hf_tokenizer_config(tokenizer, 64)["add_bos_token"] is True
    assert to_hf_tokenizer_config(tokenizer, 64)["add_eos_token"] is False


def test_a_tokenizer_without_bos_adds_nothing(bpe):
    bare = BPETokenizer(bpe.vocab, bpe.merges)  # no special tokens: prompts are the text alone
    assert bare.bos_id is None
    assert to_hf_tokenizer_json(bare)["post_processor"] is None
    assert hf_of(bare).encode("x = 1").ids == bare.encode("x = 1")
    assert to_hf_tokenizer_config(bare, 64)["add_bos_token"] is False


@pytest.mark.parametrize("kind", BOS_KINDS)
def test_tokenizer_json_with_bos_round_trips_through_tokenizers(kind, bpe, tmp_path):
    tokenizer = _with_bos(kind, bpe)
    data = to_hf_tokenizer_json(tokenizer)
    hf_of(tokenizer).save(str(tmp_path / "tokenizer.json"))
    saved = json.loads((tmp_path / "tokenizer.json").read_text(encoding="utf-8"))
    assert saved["post_processor"] == data["post_processor"]  # the library writes ours back
    again = hf_tokenizers.Tokenizer.from_file(str(tmp_path / "tokenizer.json"))
    text = "hello, world!\nsecond line é"
    assert again.encode(text).ids == prompt_ids(tokenizer, text)
    assert again.decode(again.encode(text).ids) == text  # BOS is special: decoding skips it


def test_tinylm_import_of_the_export_adds_bos_once(bpe):
    # tinylm's own importer takes the vocabulary and specials, not the template:
    # its encode stays bare, and prompts get BOS from prompt_ids, once.
    back = from_hf_tokenizer_json(to_hf_tokenizer_json(bpe), "tokenizer.json")
    assert back.bos_id == bpe.bos_id
    assert back.encode("x = 1") == bpe.encode("x = 1")
    assert prompt_ids(back, "x = 1") == [bpe.bos_id, *bpe.encode("x = 1")]
    assert (
        to_hf_tokenizer_json(back)["post_processor"] == to_hf_tokenizer_json(bpe)["post_processor"]
    )


def test_foreign_tokenizer_json_is_refused():
    data = {"model": {"type": "WordPiece", "vocab": {}}, "normalizer": None}
    with pytest.raises(TinylmError, match="WordPiece.*byte-level BPE only"):
        from_hf_tokenizer_json(data, "tokenizer.json")
    with pytest.raises(TinylmError, match="not a Hugging Face tokenizer.json"):
        from_hf_tokenizer_json([], "tokenizer.json")


# -- tokenizer.json read back by the one loader ----------------------------------------


def test_load_tokenizer_reads_the_tokenizer_json_tinylm_exports(bpe_pattern, tmp_path):
    path = tmp_path / "tokenizer.json"
    path.write_text(json.dumps(to_hf_tokenizer_json(bpe_pattern)), encoding="utf-8")
    back = load_tokenizer(path, pattern="o200k")  # the file's own pattern wins
    text = corpus_text(10_000) + SPECIAL_TEXT
    assert back.pattern == bpe_pattern.pattern
    assert back.special_tokens == bpe_pattern.special_tokens
    assert back.encode(text, allowed_special="all") == bpe_pattern.encode(
        text, allowed_special="all"
    )


@pytest.mark.parametrize("unknown", ["error", "reserve"])
def test_load_tokenizer_reads_an_exported_char_tokenizer(unknown, tmp_path):
    char = CharTokenizer.train("hello, world!\nsecond line é", unknown=unknown)
    path = tmp_path / "tokenizer.json"
    path.write_text(json.dumps(to_hf_tokenizer_json(char)), encoding="utf-8")
    back = load_tokenizer(path)
    assert isinstance(back, CharTokenizer)
    assert (back.chars, back.BOS, back.UNK) == (char.chars, char.BOS, char.UNK)


@pytest.mark.parametrize("unknown", ["error", "reserve"])
def test_a_char_tokenizer_with_special_tokens_exports_and_reads_back(unknown, tmp_path):
    """A chat model's char tokenizer: HF reads the names in text as its tokens; so does tinylm."""
    char = CharTokenizer.train("hi there ✓", unknown=unknown).with_special_tokens(
        ["<|user|>", "<|end|>"]
    )
    hf = hf_of(char)
    user, end = char.special_tokens["<|user|>"], char.special_tokens["<|end|>"]
    assert bare_ids(hf, "<|user|>hi ✓<|end|>") == [user, *char.encode("hi ✓"), end]
    assert hf.decode([user, *char.encode("hi")], skip_special_tokens=True) == "hi"
    path = tmp_path / "tokenizer.json"
    path.write_text(json.dumps(to_hf_tokenizer_json(char)), encoding="utf-8")
    back = load_tokenizer(path)
    assert isinstance(back, CharTokenizer)
    assert (back.chars, back.BOS, back.UNK) == (char.chars, char.BOS, char.UNK)
    assert back.special_tokens == char.special_tokens


def test_a_char_file_whose_special_ids_are_not_in_order_is_refused(tmp_path):
    data = to_hf_tokenizer_json(CharTokenizer.train("abc").with_special_tokens(["<|a|>", "<|b|>"]))
    for token in data["added_tokens"]:  # swap the two specials' ids in added_tokens only
        token["id"] = {4: 5, 5: 4}.get(token["id"], token["id"])
    path = tmp_path / "tokenizer.json"
    path.write_text(json.dumps(data), encoding="utf-8")
    with pytest.raises(TinylmError, match="not tinylm's char tokenizer's"):
        load_tokenizer(path)


def test_a_wordlevel_file_tinylm_did_not_write_is_refused(tmp_path):
    data = to_hf_tokenizer_json(CharTokenizer.train("abc"))
    data["model"]["vocab"] = {"b": 0, "a": 1, "c": 2, "<BOS>": 3}  # not sorted: other ids
    path = tmp_path / "tokenizer.json"
    path.write_text(json.dumps(data), encoding="utf-8")
    with pytest.raises(TinylmError, match="not tinylm's char tokenizer's") as caught:
        load_tokenizer(path)
    assert "\n" not in str(caught.value)


def test_load_tokenizer_reads_a_tokenizer_json_trained_by_hf_tokenizers(shared_data, tmp_path):
    """The independent reference: HF's own trainer writes the file and encodes the texts."""
    from tokenizers import decoders, models, pre_tokenizers, trainers

    hf = hf_tokenizers.Tokenizer(models.BPE())
    hf.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    hf.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=700,
        special_tokens=["<|endoftext|>"],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    hf.train_from_iterator([corpus_text(40_000)], trainer)
    path = tmp_path / "tokenizer.json"
    hf.save(str(path))
    ours = load_tokenizer(path)
    assert ours.vocab_size == hf.get_vocab_size() == 700
    for text in [*shared_texts(shared_data)[:20], SPECIAL_TEXT + " naïve 日本語 😀"]:
        assert ours.encode(text, allowed_special="all") == hf.encode(text).ids


def test_every_command_and_the_library_use_the_one_loader(bpe, tmp_path):
    import tinylm
    from tinylm.tokenizers.spec import tokenizer_from_spec

    assert tinylm.load_tokenizer is load_tokenizer
    path = tmp_path / "tokenizer.json"
    path.write_text(json.dumps(to_hf_tokenizer_json(bpe)), encoding="utf-8")
    text = corpus_text(2_000)
    assert tokenizer_from_spec(str(path)).encode(text) == bpe.encode(text)
