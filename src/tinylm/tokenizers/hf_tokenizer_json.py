"""Reading a Hugging Face ``tokenizer.json`` into a tinylm tokenizer.

A ``tokenizer.json`` names the pipeline stages tinylm's tokenizers have
(pre-tokenizer -> model -> decoder), so two kinds translate exactly:

* **byte-level BPE** (GPT-2 style, and what ``tinylm export`` writes for a BPE
  tokenizer): a ``BPE`` model whose vocabulary is spelled in GPT-2's byte
  alphabet, after a ``ByteLevel`` pre-tokenizer alone (GPT-2's regex) or after
  one ``Split`` by a regex (``Isolated``). Special tokens are ``added_tokens``.
* **tinylm's char tokenizer** as ``tinylm export`` writes it: a ``WordLevel``
  model over a one-character split, with ``<BOS>`` (and ``<UNK>`` when it
  reserves one) after the characters in sorted order, then its named special
  tokens (a chat model's ``<|user|>`` ...) in id order.

Anything else (WordPiece, Unigram/SentencePiece, normalizers, other
pre-tokenizers) is refused with the reason: tinylm would tokenize it differently.
Writing ``tokenizer.json`` is :mod:`tinylm.interop.hf_tokenizer`'s job; the
spellings both sides share (:data:`CHAR_BOS`, :data:`CHAR_UNK`) live here.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from tinylm.errors import TinylmError
from tinylm.tokenizers.base import Tokenizer
from tinylm.tokenizers.bpe import BPETokenizer
from tinylm.tokenizers.byte_alphabet import gpt2_byte_alphabet
from tinylm.tokenizers.char import CharTokenizer
from tinylm.tokenizers.pretokenize import GPT2_PATTERN

#: How the char tokenizer's boundary and unknown ids are spelled in HF files.
CHAR_BOS = "<BOS>"
CHAR_UNK = "<UNK>"
#: The char tokenizer's pre-tokenizer regex: one code point, newlines included.
CHAR_SPLIT = r"[\s\S]"


def from_hf_tokenizer_json(data: Any, source: str) -> Tokenizer:
    """A tinylm tokenizer from a parsed ``tokenizer.json`` (see the module docstring).

    ``source`` names the file in errors, which are one line each.
    """
    if not isinstance(data, dict) or not isinstance(data.get("model"), dict):
        raise TinylmError(f"{source} is not a Hugging Face tokenizer.json (no 'model')")
    kind = data["model"].get("type")
    if kind == "WordLevel":
        return _char_tokenizer(data, source)
    if kind != "BPE":
        raise TinylmError(
            f"{source} holds a {kind!r} tokenizer; tinylm reads byte-level BPE only "
            "(and the char tokenizers it exports); give a tinylm tokenizer file instead"
        )
    return _bpe_tokenizer(data, source)


# -- byte-level BPE -------------------------------------------------------------------


def _bpe_tokenizer(data: dict[str, Any], source: str) -> BPETokenizer:
    model = data["model"]
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
        _check_id(i, text, source)
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
        and _split_regex(steps[0]) is not None
        and isinstance(steps[1], dict)
        and steps[1].get("type") == "ByteLevel"
        and not steps[1].get("use_regex", True)
        and not steps[1].get("add_prefix_space")
    ):
        return _split_regex(steps[0])
    raise TinylmError(
        f"{source} has a pre-tokenizer tinylm does not reproduce; tinylm reads byte-level "
        "BPE with GPT-2's regex or one Split regex"
    )


def _split_regex(step: Any) -> str | None:
    """The regex of an ``Isolated``, non-inverted ``Split`` step (else ``None``)."""
    if (
        isinstance(step, dict)
        and step.get("type") == "Split"
        and isinstance(step.get("pattern"), dict)
        and isinstance(step["pattern"].get("Regex"), str)
        and step.get("behavior") == "Isolated"
        and not step.get("invert")
    ):
        return step["pattern"]["Regex"]
    return None


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


def _merge_pair(entry: Any, unspell: Callable[[Any], bytes], source: str) -> tuple[bytes, bytes]:
    """A merge is ``"left right"`` (older files) or ``["left", "right"]``."""
    parts = entry.split(" ") if isinstance(entry, str) else entry
    if not isinstance(parts, list) or len(parts) != 2:
        raise TinylmError(f"{source}: merge {entry!r} is not a pair of tokens")
    return unspell(parts[0]), unspell(parts[1])


def _check_id(i: Any, text: Any, source: str) -> None:
    if isinstance(i, bool) or not isinstance(i, int):
        raise TinylmError(f"{source}: vocabulary id of {text!r} is not an integer")


# -- tinylm's char tokenizer, as exported -----------------------------------------------


def _char_tokenizer(data: dict[str, Any], source: str) -> CharTokenizer:
    """The char tokenizer ``tinylm export`` wrote, checked to give the very same ids.

    A ``WordLevel`` file written by anyone else (word-level vocabularies, other id
    orders) is refused: tinylm's char tokenizer could not reproduce it.
    """
    vocab = data["model"].get("vocab")
    pre = data.get("pre_tokenizer")
    if not isinstance(vocab, dict) or _split_regex(pre) != CHAR_SPLIT:
        raise TinylmError(
            f"{source} is a WordLevel tokenizer tinylm did not write; tinylm reads only the "
            "char tokenizers it exports (one character per token)"
        )
    for text, i in vocab.items():
        _check_id(i, text, source)
    chars = sorted(text for text in vocab if len(text) == 1)
    unknown = "reserve" if CHAR_UNK in vocab else "error"
    added = _added_specials(data.get("added_tokens"), source)
    named = sorted((i, name) for name, i in added.items() if name not in (CHAR_BOS, CHAR_UNK))
    try:
        tokenizer = CharTokenizer(chars, unknown=unknown, special_tokens=[n for _, n in named])
    except TinylmError as exc:
        raise TinylmError(f"{source}: {exc}") from None
    expected = {ch: i for i, ch in enumerate(tokenizer.chars)}
    expected[CHAR_BOS] = tokenizer.BOS
    if tokenizer.UNK is not None:
        expected[CHAR_UNK] = tokenizer.UNK
    expected.update(tokenizer.special_tokens)
    if vocab != expected or dict(named) != {i: n for n, i in tokenizer.special_tokens.items()}:
        raise TinylmError(
            f"{source} is a WordLevel tokenizer whose ids are not tinylm's char tokenizer's "
            "(sorted characters, then <BOS>, then <UNK>, then its special tokens); give the "
            "file tinylm exported"
        )
    return tokenizer
