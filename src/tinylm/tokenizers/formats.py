"""Tokenizer files: tinylm's own JSON, tiktoken ranks, GPT-2 vocab files, HF tokenizer.json.

:func:`load_tokenizer` is the one reader of tokenizer files: every command, the
library (``tinylm.load_tokenizer``) and the run layer use it. It tells the kinds
apart by content (and, for GPT-2's pair of files, by name), and every failure is
a one-line :class:`~tinylm.errors.TinylmError`, whatever the file holds. tinylm's
own files are written and read by each tokenizer class (``to_json`` /
``from_dict``, beside the class), Hugging Face's ``tokenizer.json`` by
:mod:`tinylm.tokenizers.hf_tokenizer_json`; this module reads the other foreign
formats and dispatches. JSON is parsed by :func:`tinylm.untrusted_files.parse_json`,
which bounds the nesting depth of untrusted files.

**tinylm JSON** (written by ``Tokenizer.save``). A BPE tokenizer looks like::

    {
     "format": "tinylm-tokenizer",
     "version": 1,
     "type": "bpe",
     "pattern": "'(?:[sdmt]|ll|ve|re)| ?\\\\p{L}++| ...",
     "special_tokens": {"<|endoftext|>": 50256},
     "vocab": {
      "0": "!",
      ...
      "94": {"hex": "a1"},
      ...
      "15496": "Hello",
      ...
     },
     "merges": [
      [" ", "t"],
      ...
     ]
    }

- ``pattern`` is the pre-tokenizer regex itself, not a name, so the file alone
  decides the ids.
- ``vocab`` maps every ordinary id (as a decimal string) to its token;
  ``merges`` lists ``[left, right]`` in priority order (merge ``i`` makes the
  token ``left + right``); ``special_tokens`` maps names to ids. Ids may leave
  gaps where the source vocabulary does (cl100k, o200k, p50k).
- A token is written as a JSON string when its bytes are valid UTF-8, so a
  person can read and grep the file, and as ``{"hex": "e280"}`` otherwise
  (bytes that are only part of a character). The two forms cannot be confused,
  so reading gives back exactly the bytes written.
- One vocabulary entry or merge per line, so diffs and ``grep`` work.

A BPE file is read by :meth:`tinylm.tokenizers.bpe.BPETokenizer.from_dict`, a char
tokenizer's (``"type": "char"``) by :meth:`tinylm.tokenizers.char.CharTokenizer.from_dict`.

**tiktoken ranks** (``gpt2.tiktoken``, ``cl100k_base.tiktoken``, ...): one
``<base64 token> <rank>`` per line, rank = id. Such files store neither the
pre-tokenizer pattern nor the special tokens; both follow from the file name
(gpt2 / r50k_base / p50k_base, cl100k_base, o200k_base, with tiktoken's own
special tokens and ids, and the token count checked), or the pattern is passed
as ``pattern=``. The merge list is recovered from the ranks when needed.

**GPT-2 files**: ``encoder.json`` (token -> id, tokens spelled with GPT-2's
bytes-to-unicode alphabet, where ``Ġ`` is a space) plus ``vocab.bpe`` (merges,
one ``left right`` per line, with or without the ``#version`` header). Either
file may be given; the other is found beside it (``encoder.json``/``vocab.bpe``
or ``<prefix>vocab.json``/``<prefix>merges.txt``). Entries of ``encoder.json``
that are neither a byte nor a merge result (``<|endoftext|>``) become special
tokens. The two files must belong together: each merge joins tokens made before
it into a token of ``encoder.json``, and the ids of the merge results follow the
merge order (as GPT-2's and every Hugging Face-trained pair's do); a merges file
from another vocabulary would otherwise load and quietly tokenize differently.

**Hugging Face ``tokenizer.json``**: byte-level BPE (GPT-2 style, or what ``tinylm
export`` writes) and the char tokenizers ``tinylm export`` writes; see
:mod:`tinylm.tokenizers.hf_tokenizer_json`.
"""

from __future__ import annotations

import base64
import binascii
import os
import re
from collections.abc import Iterator
from pathlib import Path

from tinylm.errors import SettingError, TinylmError
from tinylm.tokenizers.base import Tokenizer, check_envelope
from tinylm.tokenizers.bpe import BPETokenizer
from tinylm.tokenizers.byte_alphabet import gpt2_byte_alphabet
from tinylm.tokenizers.char import CharTokenizer
from tinylm.tokenizers.hf_tokenizer_json import from_hf_tokenizer_json
from tinylm.untrusted_files import check_readable_file, describe, parse_json

#: tiktoken's special tokens for its public vocabularies, by pattern name.
TIKTOKEN_SPECIALS: dict[str, dict[str, int]] = {
    "gpt2": {"<|endoftext|>": 50256},
    "cl100k": {
        "<|endoftext|>": 100257,
        "<|fim_prefix|>": 100258,
        "<|fim_middle|>": 100259,
        "<|fim_suffix|>": 100260,
        "<|endofprompt|>": 100276,
    },
    "o200k": {"<|endoftext|>": 199999, "<|endofprompt|>": 200018},
}

#: tiktoken's public rank files, by file stem: (pattern name, number of ranks).
#: The count catches a truncated download, which would otherwise load silently.
TIKTOKEN_FILES: dict[str, tuple[str, int]] = {
    "gpt2": ("gpt2", 50256),
    "r50k_base": ("gpt2", 50256),
    "p50k_base": ("gpt2", 50280),
    "cl100k_base": ("cl100k", 100256),
    "o200k_base": ("o200k", 199998),
}

_BASE64_CHARS = re.compile(r"[A-Za-z0-9+/]*=*")

#: File names of GPT-2-style vocab pairs: (encoder suffix, merges suffix).
_GPT2_PAIRS = (("encoder.json", "vocab.bpe"), ("vocab.json", "merges.txt"))

_WHAT_TO_GIVE = (
    "give a tinylm tokenizer .json, a .tiktoken file, a GPT-2 encoder.json / vocab.bpe "
    "or a Hugging Face tokenizer.json"
)


# -- loading any tokenizer file ----------------------------------------------------


def load_tokenizer(path: str | os.PathLike, pattern: str | None = None) -> Tokenizer:
    """Read a tokenizer from any supported file (see the module docstring).

    ``pattern`` (a name such as ``"cl100k"`` or a regex) sets the pre-tokenizer
    for files that do not store one: ``.tiktoken`` files whose name does not tell
    it, and GPT-2 vocab files (default ``"gpt2"``). tinylm and Hugging Face files
    store their own pattern, and ``pattern`` is ignored for them.

    Every failure is a one-line :class:`TinylmError` (a :class:`SettingError` when
    ``pattern`` is needed): the file may come from anywhere, so an exception the
    readers did not foresee is reported as a corrupt file, never as a traceback.
    """
    try:
        return _load(Path(path), pattern)
    except TinylmError:
        raise
    except (OSError, ValueError, KeyError, TypeError, IndexError, RecursionError) as exc:
        reason = " ".join(str(exc).split()) or type(exc).__name__
        raise TinylmError(
            f"tokenizer file {path} is unreadable or corrupt ({reason}); write or download it again"
        ) from None


def _load(path: Path, pattern: str | None) -> Tokenizer:
    """Tell the kind of file apart and read it (:func:`load_tokenizer` converts errors)."""
    text = _read_text(path)
    if _gpt2_pair(path) is not None and not path.name.endswith(".json"):
        return read_gpt2_files(path, pattern=pattern)
    if text.lstrip().startswith(("{", "[")) or path.suffix == ".json":
        return _load_json(path, text, pattern)
    if _looks_like_tiktoken(text):
        return read_tiktoken(path, pattern=pattern, text=text)
    raise TinylmError(f"{path} is not a tokenizer file tinylm recognises; {_WHAT_TO_GIVE}")


def _read_text(path: Path) -> str:
    """The file's text, or a one-line error for missing, binary or empty files."""
    if describe(path) not in (None, "missing"):  # a FIFO would block the read forever
        check_readable_file(path, "tokenizer file")
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        raise TinylmError(f"tokenizer file {path} does not exist; check the path") from None
    except IsADirectoryError:
        raise TinylmError(f"{path} is a folder; give the tokenizer file inside it") from None
    except OSError as exc:
        raise TinylmError(f"cannot read {path}: {exc.strerror or exc}") from None
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError:
        raise TinylmError(
            f"{path} holds binary data, not a tokenizer file; {_WHAT_TO_GIVE}"
        ) from None
    if not text.strip():
        raise TinylmError(f"{path} is empty; the tokenizer file was not written completely")
    return text


def _load_json(path: Path, text: str, pattern: str | None) -> Tokenizer:
    """Dispatch a JSON file: tinylm's format, a GPT-2 encoder.json or an HF tokenizer.json."""
    data = parse_json(text, path, "write or download it again")
    # GPT-2's encoder.json first: it has tokens named "format" and "type" too.
    if isinstance(data, dict) and data and all(isinstance(v, int) for v in data.values()):
        return read_gpt2_files(path, pattern=pattern, encoder=data)
    if isinstance(data, dict) and ("format" in data or "type" in data):
        kind = check_envelope(data, str(path))
        try:
            if kind == "char":
                return CharTokenizer.from_dict(data)
            return BPETokenizer.from_dict(data)
        except TinylmError as exc:
            raise TinylmError(f"{path}: {exc}") from None
    if isinstance(data, dict) and "model" in data:
        return from_hf_tokenizer_json(data, str(path))
    raise TinylmError(f"{path} is JSON but not a tokenizer file tinylm knows; {_WHAT_TO_GIVE}")


# -- tiktoken rank files -----------------------------------------------------------


def read_tiktoken_ranks(path: str | os.PathLike, text: str | None = None) -> dict[bytes, int]:
    """Parse a ``.tiktoken`` file: ``<base64 token> <rank>`` per line."""
    path = Path(path)
    text = _read_text(path) if text is None else text
    ranks: dict[bytes, int] = {}
    for number, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        fields = line.split()
        try:
            if len(fields) != 2:
                raise ValueError
            token = _b64decode(fields[0])
            rank = int(fields[1])
        except (ValueError, binascii.Error):
            raise TinylmError(
                f"{path} line {number} is not '<base64 token> <rank>': {line[:60]!r}; "
                "the .tiktoken file is damaged, download it again"
            ) from None
        if token in ranks:
            raise TinylmError(f"{path} line {number} repeats a token; the file is damaged")
        ranks[token] = rank
    return ranks


def read_tiktoken(
    path: str | os.PathLike, pattern: str | None = None, *, text: str | None = None
) -> BPETokenizer:
    """A tokenizer from a ``.tiktoken`` file, with tiktoken's specials for known names."""
    path = Path(path)
    ranks = read_tiktoken_ranks(path, text)
    stem = path.name.split(".")[0].lower()
    family, expected = TIKTOKEN_FILES.get(stem, (None, None))
    if expected is not None and len(ranks) != expected:
        raise TinylmError(
            f"{path} holds {len(ranks)} tokens but tiktoken's {stem} has {expected}; the file "
            "is incomplete or renamed, download it again"
        )
    if pattern is None and family is None:
        raise SettingError(
            f"cannot tell the pre-tokenizer of {path.name} from its name; pass the pattern "
            "(gpt2, cl100k, o200k or a regex), e.g. pattern='gpt2'",
            setting="pattern",
            value="gpt2",
        )
    specials = TIKTOKEN_SPECIALS[family] if family else {}
    try:
        return BPETokenizer.from_ranks(ranks, specials, pattern or family or "")
    except TinylmError as exc:
        raise TinylmError(f"{path}: {exc}") from None


def _looks_like_tiktoken(text: str) -> bool:
    first = text.lstrip().split("\n", 1)[0].split()
    if len(first) != 2 or not first[1].isdigit():
        return False
    try:
        _b64decode(first[0])
    except (ValueError, binascii.Error):
        return False
    return True


def _b64decode(field: str) -> bytes:
    """Strict about the alphabet, lenient about padding, as tiktoken's own reader.

    Whisper's file spells an empty token as a lone ``=``, which strict decoding
    rejects but tiktoken reads as ``b""``.
    """
    if not _BASE64_CHARS.fullmatch(field):
        raise ValueError(f"not base64: {field!r}")
    return base64.b64decode(field)


# -- GPT-2 encoder.json + vocab.bpe ------------------------------------------------


def read_gpt2_files(
    path: str | os.PathLike,
    pattern: str | None = None,
    *,
    encoder: dict[str, int] | None = None,
) -> BPETokenizer:
    """A tokenizer from a GPT-2 ``encoder.json`` + ``vocab.bpe`` pair; give either file."""
    path = Path(path)
    pair = _gpt2_pair(path)
    if pair is None:
        raise TinylmError(
            f"cannot find the other half of {path.name}: GPT-2 vocabularies come as "
            "encoder.json + vocab.bpe or <name>vocab.json + <name>merges.txt side by side"
        )
    encoder_path, merges_path = pair
    if encoder is None:
        encoder = _read_encoder(encoder_path)
    if not merges_path.exists():
        raise TinylmError(
            f"{encoder_path} needs its merges file {merges_path.name} beside it; copy it there"
        )
    decode_token = _gpt2_token_decoder()
    merges = [
        (decode_token(left, merges_path), decode_token(right, merges_path))
        for left, right in _read_merge_lines(merges_path)
    ]
    results = {left + right for left, right in merges}
    vocab: dict[int, bytes] = {}
    specials: dict[str, int] = {}
    for name, i in encoder.items():
        token = decode_token(name, None)
        if token is not None and (len(token) == 1 or token in results):
            vocab[i] = token
        else:
            specials[name] = i
    ids = {token: i for i, token in vocab.items()}
    _check_gpt2_pair(encoder_path, merges_path, merges, ids, specials)
    try:
        return BPETokenizer(vocab, merges, specials, pattern or "gpt2")
    except TinylmError as exc:
        raise TinylmError(f"{encoder_path} + {merges_path.name}: {exc}") from None


#: At most this many encoder.json entries may be special tokens (not built by merges).
#: GPT-2 has one; a merges file cut short would leave thousands, each then a "special".
MAX_GPT2_SPECIALS = 256


def _check_gpt2_pair(
    encoder_path: Path,
    merges_path: Path,
    merges: list[tuple[bytes, bytes]],
    ids: dict[bytes, int],
    specials: dict[str, int],
) -> None:
    """Refuse an encoder.json and a merges file that are not one vocabulary's pair.

    Every merge must combine tokens of the encoder into a token of the encoder;
    its two parts must be single bytes or made by earlier merges (BPE learns each
    merge from tokens it already has); the ids of the tokens the merges make must
    rise in merge order, as BPE training numbers them; and only a few encoder
    entries may be left unexplained by the merges (the special tokens). Otherwise
    the merges file is cut short, reordered, or from another vocabulary: it would
    load, and ordinary words would become special tokens or split differently.
    """
    hint = "give the encoder and merges files of the same vocabulary, complete"
    made = {token for token in ids if len(token) == 1}
    last_id, last_number = -1, 0
    for number, (left, right) in enumerate(merges, 1):
        result = left + right
        missing = next((t for t in (left, right, result) if t not in ids), None)
        if missing is not None:
            raise TinylmError(
                f"{merges_path.name} merge {number} ({left!r} + {right!r}) needs token "
                f"{missing!r}, which {encoder_path.name} lacks; the files do not belong "
                f"together, {hint}"
            )
        early = next((t for t in (left, right) if t not in made), None)
        if early is not None:
            raise TinylmError(
                f"{merges_path.name} merge {number} ({left!r} + {right!r}) uses {early!r} "
                "before any merge makes it; the merges are out of order or from another "
                f"vocabulary, {hint}"
            )
        if ids[result] <= last_id:
            raise TinylmError(
                f"{merges_path.name} merge {number} makes {result!r}, id {ids[result]} in "
                f"{encoder_path.name}, but merge {last_number} already made id {last_id}; the "
                f"ids do not follow the merge order, so the files do not belong together, {hint}"
            )
        made.add(result)
        last_id, last_number = ids[result], number
    if len(specials) > MAX_GPT2_SPECIALS:
        examples = ", ".join(repr(name) for name in sorted(specials, key=specials.get)[:3])
        raise TinylmError(
            f"{len(specials):,} tokens of {encoder_path.name} (e.g. {examples}) are built by no "
            f"merge of {merges_path.name} ({len(merges):,} merges); the merges file is cut "
            f"short or from another vocabulary, {hint}"
        )


def _gpt2_pair(path: Path) -> tuple[Path, Path] | None:
    """(encoder file, merges file) for either member of a GPT-2 pair, by name."""
    for encoder_suffix, merges_suffix in _GPT2_PAIRS:
        if path.name.endswith(encoder_suffix):
            prefix = path.name[: -len(encoder_suffix)]
            return path, path.with_name(prefix + merges_suffix)
        if path.name.endswith(merges_suffix):
            prefix = path.name[: -len(merges_suffix)]
            return path.with_name(prefix + encoder_suffix), path
    return None


def _read_encoder(path: Path) -> dict[str, int]:
    data = parse_json(_read_text(path), path, "download it again")
    if not isinstance(data, dict) or not all(isinstance(v, int) for v in data.values()):
        raise TinylmError(f"{path} is not a GPT-2 encoder.json (token -> id); check the file")
    return data


def _read_merge_lines(path: Path) -> Iterator[tuple[str, str]]:
    """``(left, right)`` per line of a vocab.bpe, skipping the ``#version`` header."""
    for number, line in enumerate(_read_text(path).splitlines(), 1):
        if not line.strip() or (number == 1 and line.startswith("#version")):
            continue
        fields = line.split()
        if len(fields) != 2:
            raise TinylmError(
                f"{path} line {number} is not 'left right': {line[:60]!r}; "
                "the merges file is damaged, download it again"
            )
        yield fields[0], fields[1]


def _gpt2_token_decoder():
    """A function: GPT-2 token spelling -> bytes (``None``, or an error, if not one)."""
    byte_of = {char: byte for byte, char in enumerate(gpt2_byte_alphabet())}

    def decode(spelling: str, source: Path | None) -> bytes | None:
        try:
            return bytes(byte_of[char] for char in spelling)
        except KeyError:
            if source is None:
                return None
            raise TinylmError(
                f"{source} has token {spelling!r}, which is not in GPT-2's byte alphabet; "
                "the file is not a GPT-2 merges file"
            ) from None

    return decode
