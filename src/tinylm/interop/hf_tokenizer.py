"""Tokenizers in Hugging Face's format: ``tokenizer.json`` both ways, ``tokenizer_config.json``.

A ``tokenizer.json`` names the same pipeline stages tinylm's BPE has
(``docs/tokenizers.md``): pre-tokenizer -> model -> decoder. tinylm's byte-level
BPE becomes

* pre-tokenizer: ``Split`` by tinylm's own regex (``Isolated``: the text between
  matches stays, as in tinylm), then ``ByteLevel`` without its own regex, which
  spells every byte as one printable character (GPT-2's alphabet);
* model: ``BPE`` with the vocabulary in that spelling and a merge list;
* decoder: ``ByteLevel``; special tokens as ``added_tokens``, which HF cuts out
  of the text first, longest match first, as tinylm does with ``allowed_special="all"``;
* post-processor: ``TemplateProcessing`` that puts BOS before the text, because
  ``tinylm sample`` starts every prompt with BOS (``prompt_ids``) as every training
  document starts: without it ``AutoTokenizer(prompt)`` fed to ``generate`` would
  continue a different context from tinylm's. A tokenizer without BOS gets none.

The merge list needs care. tinylm (like tiktoken) merges the adjacent pair
whose *concatenation* has the lowest rank, whichever two parts make it; HF merges
only pairs its list names. So the list holds, for each token in rank order,
*every* split of it into two tokens, which makes HF's choice at each step the
same as tinylm's. A trained tokenizer's own merges are always among them.

The char tokenizer becomes a ``WordLevel`` model over a one-character split, with
BOS as the special token ``<BOS>`` (and ``<UNK>`` when it reserves one); a
character it never saw fails in HF as it does in tinylm (no ``<UNK>``) or maps
to ``<UNK>`` alike. Its post-processor puts ``<BOS>`` first, as for BPE.

This module writes JSON by hand and needs neither ``tokenizers`` nor
``transformers``: the tests load its output with both.
"""

from __future__ import annotations

from typing import Any

from tinylm.errors import TinylmError
from tinylm.tokenizers.base import Tokenizer
from tinylm.tokenizers.bpe import BPETokenizer
from tinylm.tokenizers.char import CharTokenizer
from tinylm.tokenizers.formats import gpt2_byte_alphabet
from tinylm.tokenizers.pretokenize import GPT2_PATTERN

#: How the char tokenizer's boundary and unknown ids are spelled in HF files.
CHAR_BOS = "<BOS>"
CHAR_UNK = "<UNK>"


def special_names(tokenizer: Tokenizer) -> dict[str, str | None]:
    """The BOS, EOS, PAD and UNK token text for HF's config files (None where absent)."""
    if isinstance(tokenizer, CharTokenizer):
        unk = CHAR_UNK if tokenizer.UNK is not None else None
        return {"bos": CHAR_BOS, "eos": CHAR_BOS, "pad": None, "unk": unk}
    by_id = {i: name for name, i in tokenizer.special_tokens.items()}
    return {
        "bos": by_id.get(tokenizer.bos_id),
        "eos": by_id.get(tokenizer.eos_id),
        "pad": by_id.get(tokenizer.pad_id),
        "unk": None,
    }


# -- tinylm -> tokenizer.json ---------------------------------------------------------


def to_hf_tokenizer_json(tokenizer: Tokenizer) -> dict[str, Any]:
    """The ``tokenizer.json`` (as a dict) that encodes every text to tinylm's ids."""
    if isinstance(tokenizer, BPETokenizer):
        return _bpe_json(tokenizer)
    if isinstance(tokenizer, CharTokenizer):
        return _char_json(tokenizer)
    raise TinylmError(f"cannot export a {type(tokenizer).__name__} to Hugging Face")


def _added_token(i: int, content: str) -> dict[str, Any]:
    return {
        "id": i,
        "content": content,
        "single_word": False,
        "lstrip": False,
        "rstrip": False,
        "normalized": False,
        "special": True,
    }


def _bos_template(bos: str | None, bos_id: int | None) -> dict[str, Any] | None:
    """``TemplateProcessing``: BOS, then the text (and for a pair, BOS before each text).

    This is what makes HF's ``tokenizer(prompt)`` the ids ``tinylm sample`` starts
    from; ``add_special_tokens=False`` gives the bare ids of ``encode``.
    """
    if bos is None or bos_id is None:
        return None

    def special(type_id: int) -> dict[str, Any]:
        return {"SpecialToken": {"id": bos, "type_id": type_id}}

    def text(name: str, type_id: int) -> dict[str, Any]:
        return {"Sequence": {"id": name, "type_id": type_id}}

    return {
        "type": "TemplateProcessing",
        "single": [special(0), text("A", 0)],
        "pair": [special(0), text("A", 0), special(1), text("B", 1)],
        "special_tokens": {bos: {"id": bos, "ids": [bos_id], "tokens": [bos]}},
    }


def _envelope(
    added: list[dict],
    pre_tokenizer: dict,
    model: dict,
    decoder: dict,
    post_processor: dict | None,
) -> dict:
    return {
        "version": "1.0",
        "truncation": None,
        "padding": None,
        "added_tokens": sorted(added, key=lambda t: t["id"]),
        "normalizer": None,
        "pre_tokenizer": pre_tokenizer,
        "post_processor": post_processor,
        "decoder": decoder,
        "model": model,
    }


def _bpe_json(tokenizer: BPETokenizer) -> dict[str, Any]:
    alphabet = gpt2_byte_alphabet()

    def spell(token: bytes) -> str:
        return "".join(alphabet[b] for b in token)

    encoder: dict[bytes, int] = {}
    for i, token in sorted(tokenizer.vocab.items()):
        encoder.setdefault(token, i)  # tinylm encodes to the lowest id of repeated bytes
    merges = [[spell(left), spell(right)] for left, right in all_splits(tokenizer, encoder)]
    byte_level = {"add_prefix_space": False, "trim_offsets": True, "use_regex": False}
    pre_tokenizer = {
        "type": "Sequence",
        "pretokenizers": [
            {
                "type": "Split",
                "pattern": {"Regex": tokenizer.pattern},
                "behavior": "Isolated",
                "invert": False,
            },
            {"type": "ByteLevel", **byte_level},
        ],
    }
    model = {
        "type": "BPE",
        "dropout": None,
        "unk_token": None,
        "continuing_subword_prefix": None,
        "end_of_word_suffix": None,
        "fuse_unk": False,
        "byte_fallback": False,
        "ignore_merges": False,
        "vocab": {spell(token): i for token, i in encoder.items()},
        "merges": merges,
    }
    added = [_added_token(i, name) for name, i in tokenizer.special_tokens.items()]
    decoder = {"type": "ByteLevel", **byte_level}
    post_processor = _bos_template(special_names(tokenizer)["bos"], tokenizer.bos_id)
    return _envelope(added, pre_tokenizer, model, decoder, post_processor)


def first_merges(tokenizer: BPETokenizer) -> dict[bytes, tuple[bytes, bytes]]:
    """Token bytes -> the merge that first makes it, in rank order (tinylm's merge priority)."""
    first: dict[bytes, tuple[bytes, bytes]] = {}
    for left, right in tokenizer.merges:
        first.setdefault(left + right, (left, right))
    return first


def all_splits(tokenizer: BPETokenizer, encoder: dict[bytes, int]) -> list[tuple[bytes, bytes]]:
    """Every ``(left, right)`` pair of tokens that makes a mergeable token, in rank order.

    Within one token, its own merge comes first, then the other splits left to right.
    """
    pairs = []
    for token, own in first_merges(tokenizer).items():
        pairs.append(own)
        for cut in range(1, len(token)):
            left, right = token[:cut], token[cut:]
            if (left, right) != own and left in encoder and right in encoder:
                pairs.append((left, right))
    return pairs


def _char_json(tokenizer: CharTokenizer) -> dict[str, Any]:
    vocab = {ch: i for i, ch in enumerate(tokenizer.chars)}
    added = [_added_token(tokenizer.BOS, CHAR_BOS)]
    if tokenizer.UNK is not None:
        added.append(_added_token(tokenizer.UNK, CHAR_UNK))
        vocab[CHAR_UNK] = tokenizer.UNK
    vocab[CHAR_BOS] = tokenizer.BOS
    # [\s\S] is one code point, newlines included; every piece is then one "word".
    pre_tokenizer = {
        "type": "Split",
        "pattern": {"Regex": r"[\s\S]"},
        "behavior": "Isolated",
        "invert": False,
    }
    model = {"type": "WordLevel", "vocab": vocab, "unk_token": CHAR_UNK}
    post_processor = _bos_template(CHAR_BOS, tokenizer.BOS)
    return _envelope(added, pre_tokenizer, model, {"type": "Fuse"}, post_processor)


def to_hf_tokenizer_config(tokenizer: Tokenizer, max_length: int) -> dict[str, Any]:
    """``tokenizer_config.json``: what ``AutoTokenizer`` needs beyond tokenizer.json.

    ``add_bos_token`` says what the post-processor does (BOS first, no EOS added), for
    the tokenizer classes that rebuild the post-processor from these flags.
    """
    names = special_names(tokenizer)
    config: dict[str, Any] = {
        "tokenizer_class": "PreTrainedTokenizerFast",
        "model_max_length": max_length,
        "clean_up_tokenization_spaces": False,
        "add_prefix_space": False,
        "add_bos_token": names["bos"] is not None,
        "add_eos_token": False,
    }
    for role, name in names.items():
        if name is not None:
            config[f"{role}_token"] = name
    return config


# -- tokenizer.json -> tinylm ---------------------------------------------------------


def from_hf_tokenizer_json(data: Any, source: str) -> BPETokenizer:
    """A tinylm BPE tokenizer from a byte-level BPE ``tokenizer.json`` (GPT-2 style).

    Refused with a clear reason: other models (WordPiece, Unigram/SentencePiece),
    normalizers, and pre-tokenizers other than byte-level with an optional regex split.
    """
    if not isinstance(data, dict) or not isinstance(data.get("model"), dict):
        raise TinylmError(f"{source} is not a Hugging Face tokenizer.json (no 'model')")
    model = data["model"]
    if model.get("type") != "BPE":
        raise TinylmError(
            f"{source} holds a {model.get('type')!r} tokenizer; tinylm imports byte-level BPE "
            "only (import the weights with a tinylm tokenizer file instead)"
        )
    if data.get("normalizer") is not None:
        raise TinylmError(f"{source} normalizes text first, which tinylm's BPE does not")
    pattern = _byte_level_pattern(data.get("pre_tokenizer"), source)
    vocab_in, merges_in = model.get("vocab"), model.get("merges")
    if not isinstance(vocab_in, dict) or not isinstance(merges_in, list):
        raise TinylmError(f"{source}: model.vocab or model.merges is missing or malformed")
    byte_of = {char: byte for byte, char in enumerate(gpt2_byte_alphabet())}

    def unspell(text: Any) -> bytes:
        if not isinstance(text, str) or any(c not in byte_of for c in text):
            raise TinylmError(
                f"{source} has token {text!r} outside the byte-level alphabet; "
                "it is not a byte-level BPE tokenizer"
            )
        return bytes(byte_of[c] for c in text)

    specials = _added_specials(data.get("added_tokens"), source)
    vocab = {}
    for text, i in vocab_in.items():
        if isinstance(i, bool) or not isinstance(i, int):
            raise TinylmError(f"{source}: vocabulary id of {text!r} is not an integer")
        if text in specials and specials[text] == i:
            continue
        vocab[i] = unspell(text)
    merges = [_merge_pair(entry, unspell, source) for entry in merges_in]
    try:
        return BPETokenizer(vocab, merges, specials, pattern)
    except TinylmError as exc:
        raise TinylmError(f"{source}: {exc}") from None


def _byte_level_pattern(pre: Any, source: str) -> str:
    """tinylm's regex for a ByteLevel pre-tokenizer, alone or after one regex Split."""
    steps = (
        pre.get("pretokenizers")
        if isinstance(pre, dict) and pre.get("type") == "Sequence"
        else [pre]
    )
    if not isinstance(steps, list):
        steps = [pre]
    if len(steps) == 1 and isinstance(steps[0], dict) and steps[0].get("type") == "ByteLevel":
        if steps[0].get("add_prefix_space"):
            raise TinylmError(f"{source} adds a prefix space, which tinylm's BPE does not")
        return GPT2_PATTERN  # ByteLevel's own regex is GPT-2's
    if (
        len(steps) == 2
        and isinstance(steps[0], dict)
        and steps[0].get("type") == "Split"
        and isinstance(steps[0].get("pattern"), dict)
        and isinstance(steps[0]["pattern"].get("Regex"), str)
        and steps[0].get("behavior") == "Isolated"
        and not steps[0].get("invert")
        and isinstance(steps[1], dict)
        and steps[1].get("type") == "ByteLevel"
        and not steps[1].get("use_regex", True)
        and not steps[1].get("add_prefix_space")
    ):
        return steps[0]["pattern"]["Regex"]
    raise TinylmError(
        f"{source} has a pre-tokenizer tinylm does not reproduce; tinylm imports byte-level "
        "BPE with GPT-2's regex or one Split regex"
    )


def _added_specials(added: Any, source: str) -> dict[str, int]:
    if added is None:
        return {}
    if not isinstance(added, list):
        raise TinylmError(f"{source}: added_tokens must be a list")
    specials = {}
    for entry in added:
        if not isinstance(entry, dict):
            raise TinylmError(f"{source}: an added token is not an object")
        name, i = entry.get("content"), entry.get("id")
        if not isinstance(name, str) or isinstance(i, bool) or not isinstance(i, int):
            raise TinylmError(f"{source}: added token {entry!r} lacks a name or an integer id")
        specials[name] = i
    return specials


def _merge_pair(entry: Any, unspell, source: str) -> tuple[bytes, bytes]:
    """A merge is ``"left right"`` (older files) or ``["left", "right"]``."""
    parts = entry.split(" ") if isinstance(entry, str) else entry
    if not isinstance(parts, list) or len(parts) != 2:
        raise TinylmError(f"{source}: merge {entry!r} is not a pair of tokens")
    return unspell(parts[0]), unspell(parts[1])
