"""Writing tokenizers in Hugging Face's format: ``tokenizer.json``, ``tokenizer_config.json``.

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
``transformers``: the tests load its output with both. Reading a ``tokenizer.json``
is the tokenizers' own job (:mod:`tinylm.tokenizers.hf_tokenizer_json`, used by
:func:`tinylm.tokenizers.formats.load_tokenizer`), so it needs no interop.
"""

from __future__ import annotations

from typing import Any

from tinylm.chat.template import END, jinja_chat_template
from tinylm.errors import TinylmError
from tinylm.tokenizers.base import Tokenizer
from tinylm.tokenizers.bpe import BPETokenizer
from tinylm.tokenizers.byte_alphabet import gpt2_byte_alphabet
from tinylm.tokenizers.char import CharTokenizer
from tinylm.tokenizers.hf_tokenizer_json import CHAR_BOS, CHAR_SPLIT, CHAR_UNK


def special_names(tokenizer: Tokenizer, chat: bool = False) -> dict[str, str | None]:
    """The BOS, EOS, PAD and UNK token text for HF's config files (None where absent).

    ``chat``: a chat model's, whose EOS is ``<|end|>``, the token that ends a
    reply, so HF generation (and a chat template's reader) stops where tinylm's
    chat stops.
    """
    if isinstance(tokenizer, CharTokenizer):
        unk = CHAR_UNK if tokenizer.UNK is not None else None
        names = {"bos": CHAR_BOS, "eos": CHAR_BOS, "pad": None, "unk": unk}
    else:
        by_id = {i: name for name, i in tokenizer.special_tokens.items()}
        names = {
            "bos": by_id.get(tokenizer.bos_id),
            "eos": by_id.get(tokenizer.eos_id),
            "pad": by_id.get(tokenizer.pad_id),
            "unk": None,
        }
    return {**names, "eos": END} if chat else names


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
    for name, i in tokenizer.special_tokens.items():  # the chat tokens, after BOS and UNK
        added.append(_added_token(i, name))
        vocab[name] = i
    # [\s\S] is one code point, newlines included; every piece is then one "word".
    pre_tokenizer = {
        "type": "Split",
        "pattern": {"Regex": CHAR_SPLIT},
        "behavior": "Isolated",
        "invert": False,
    }
    model = {"type": "WordLevel", "vocab": vocab, "unk_token": CHAR_UNK}
    post_processor = _bos_template(CHAR_BOS, tokenizer.BOS)
    return _envelope(added, pre_tokenizer, model, {"type": "Fuse"}, post_processor)


def to_hf_tokenizer_config(
    tokenizer: Tokenizer, max_length: int, chat: bool = False
) -> dict[str, Any]:
    """``tokenizer_config.json``: what ``AutoTokenizer`` needs beyond tokenizer.json.

    ``add_bos_token`` says what the post-processor does (BOS first, no EOS added), for
    the tokenizer classes that rebuild the post-processor from these flags.
    ``chat``: a chat model's, with tinylm's layout as its Jinja ``chat_template``
    (in this file, where every transformers version and tinylm's own
    :mod:`tinylm.chat.hf_template` read it) and ``<|end|>`` as its EOS.
    """
    names = special_names(tokenizer, chat)
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
    if chat:
        config["chat_template"] = jinja_chat_template(tokenizer.bos_id is not None)
    return config
