"""A BPE tokenizer's special tokens: their ids, which mark documents, where text may hold them.

``special_tokens`` maps names such as ``"<|endoftext|>"`` to ids outside the
byte-level vocabulary. As in tiktoken, ``BPETokenizer.encode`` recognises them
only when ``allowed_special`` lets it, longest name first; by
default text that *contains* a special token's name raises :class:`TinylmError`,
because silently encoding a user-typed ``<|endoftext|>`` as a document boundary
is a prompt-injection hazard, and silently encoding it as plain text is a
surprise for whoever meant the boundary.

Document boundaries. ``bos_id`` is the first present of ``<|bos|>``,
``<|startoftext|>``, ``<s>``, then ``<|endoftext|>``; ``eos_id`` the first
of ``<|eos|>``, ``<|endoftext|>``, ``</s>``; ``pad_id`` is ``<|pad|>``. With
GPT-2's single ``<|endoftext|>`` that token therefore both opens and closes a
document, so a stream of documents reads ``<eot> doc <eot> <eot> doc <eot>``.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Literal

from tinylm.errors import TinylmError

#: Special-token names that mark document boundaries and padding, in preference order.
BOS_NAMES = ("<|bos|>", "<|startoftext|>", "<s>", "<|endoftext|>")
EOS_NAMES = ("<|eos|>", "<|endoftext|>", "</s>")
PAD_NAMES = ("<|pad|>",)

#: ``allowed_special`` / ``disallowed_special``: ``"all"`` or a collection of names.
SpecialSpec = Literal["all"] | Iterable[str]


def check_specials(
    specials: Mapping[str, int] | Sequence[str] | None, vocab: dict[int, bytes]
) -> dict[str, int]:
    """Name -> id, with list names numbered after the vocabulary; no collisions."""
    if specials is None:
        return {}
    if isinstance(specials, str):
        raise TinylmError(f"special_tokens must be a list or dict of names, not {specials!r}")
    if not isinstance(specials, Mapping):
        names = list(specials)
        if len(set(names)) != len(names):
            raise TinylmError(f"special token names repeat: {names}")
        first = max(vocab, default=-1) + 1
        specials = {name: first + k for k, name in enumerate(names)}
    checked: dict[str, int] = {}
    owner: dict[int, str] = {}
    for name, i in specials.items():
        if not isinstance(name, str) or not name:
            raise TinylmError(f"special token name {name!r} must be a non-empty string")
        if not isinstance(i, int) or isinstance(i, bool) or i < 0:
            raise TinylmError(f"special token {name!r} has id {i!r}, not a non-negative integer")
        if i in vocab:
            raise TinylmError(
                f"special token {name!r} has id {i}, which an ordinary token already uses; "
                f"give special tokens ids from {max(vocab) + 1} up"
            )
        if i in owner:
            raise TinylmError(f"special tokens {owner[i]!r} and {name!r} share id {i}")
        owner[i] = name
        checked[name] = i
    return checked


def first_special(special_tokens: Mapping[str, int], names: Sequence[str]) -> int | None:
    """The id of the first of ``names`` this tokenizer has (see :data:`BOS_NAMES`)."""
    for name in names:
        if name in special_tokens:
            return special_tokens[name]
    return None


def allowed_specials(
    text: str,
    known: frozenset[str],
    allowed_special: SpecialSpec,
    disallowed_special: SpecialSpec,
) -> frozenset[str]:
    """Raise if ``text`` holds a disallowed special token; return the allowed set."""
    allowed = _special_set(allowed_special, known, "allowed_special")
    if disallowed_special == "all":
        disallowed = known - allowed
    else:
        disallowed = _special_set(disallowed_special, known, "disallowed_special")
    # str.__contains__ is a fast C scan; a regex over all names would be slower.
    found = [(text.find(name), name) for name in disallowed if name in text]
    if found:
        name = min(found)[1]
        raise TinylmError(
            f"text contains the special token {name!r}; pass allowed_special={{{name!r}}} "
            "to encode it as that token, or disallowed_special=() to encode it as text"
        )
    return allowed


def _special_set(spec: SpecialSpec, known: frozenset[str], argument: str) -> frozenset[str]:
    """``"all"`` or a collection of names -> a checked frozenset of known names."""
    if isinstance(spec, str):
        if spec == "all":
            return known
        raise TinylmError(
            f"{argument} must be 'all' or a set of special-token names, not the string "
            f"{spec!r}; write {argument}={{{spec!r}}}"
        )
    names = frozenset(spec)
    unknown = names - known
    if unknown:
        listed = ", ".join(sorted(known)) or "none"
        raise TinylmError(
            f"{argument} names unknown special token(s) {sorted(unknown)}; "
            f"this tokenizer has: {listed}"
        )
    return names
