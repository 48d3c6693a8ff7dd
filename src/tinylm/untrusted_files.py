"""Reading untrusted files: every field checked, every failure one line.

A file on disk may be cut short by a crash, edited by hand, or sent by someone
else, so nothing read from one is trusted. Every reader in tinylm (checkpoint
JSON and safetensors headers, run state, prepared-data sidecars, tokenizer
files, configs) goes through the helpers here, and they fail in one way only: a
:class:`~tinylm.errors.TinylmError` whose one line names the file, the field and
what was expected. Without them a missing key is a ``KeyError``, a string where
a number belongs a ``TypeError`` three calls later, and a huge number an
allocation that takes the machine down.

* :func:`describe` and :func:`check_readable_file` say what a path is before
  anything opens it (a named pipe would block a read forever).
* :func:`read_json` parses a file (unreadable, non-UTF-8, invalid JSON: one line).
* :func:`check_format` checks the ``format``/``version`` header of tinylm's JSON files.
* :class:`Record` wraps one JSON object and hands out typed fields:
  ``Record(data, "state.json", hint).int("step", minimum=0)``.
* :func:`safetensors_header` reads a safetensors file's header (names, dtypes,
  shapes, metadata) and checks that it describes the file's bytes exactly,
  without loading a tensor — so a checkpoint can be checked before anything is
  allocated; :func:`metadata_json` reads a JSON value stored in that metadata.

Values are checked with :mod:`tinylm.check_values`. The standard library
suffices; this module never imports torch. Writing files is :mod:`tinylm.fileio`.
"""

from __future__ import annotations

import errno
import json
import math
import os
import stat
import struct
from collections.abc import Iterator
from dataclasses import dataclass
from itertools import accumulate
from pathlib import Path
from typing import Any

from tinylm.check_values import is_number
from tinylm.errors import TinylmError

_REQUIRED = object()

#: Largest safetensors header tinylm reads (the format's own reader allows 100 MB).
MAX_HEADER_BYTES = 100_000_000

#: safetensors dtype names and their sizes in bytes.
DTYPE_SIZES = {
    "BOOL": 1,
    "U8": 1,
    "I8": 1,
    "F8_E5M2": 1,
    "F8_E4M3": 1,
    "I16": 2,
    "U16": 2,
    "F16": 2,
    "BF16": 2,
    "I32": 4,
    "U32": 4,
    "F32": 4,
    "I64": 8,
    "U64": 8,
    "F64": 8,
}
#: The dtypes that can hold learned weights.
FLOAT_DTYPES = frozenset({"F8_E5M2", "F8_E4M3", "F16", "BF16", "F32", "F64"})


def _kind(value: Any) -> str:
    """How a JSON value reads to a person: ``a string ('abc')``, ``a list``..."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return f"a boolean ({str(value).lower()})"
    if isinstance(value, (int, float)):
        return f"the number {value!r}"
    if isinstance(value, str):
        return f"a string ({value[:40]!r})"
    if isinstance(value, list):
        return "a list"
    if isinstance(value, dict):
        return "an object"
    return type(value).__name__


# -- what a path is ----------------------------------------------------------------------
#
# Opening a named pipe (FIFO) for reading waits for a writer, forever if none
# comes: a FIFO given as a config, tokenizer or corpus would hang ``tinylm``. A
# symlink loop and a dangling link look like a missing file to ``Path.is_file``,
# which made the errors say "does not exist" about something that plainly does.
# :func:`check_readable_file` looks first (``stat`` never blocks) and names what the
# path really is, so every reader of user files can refuse it in one line.


def describe(path: str | os.PathLike) -> str | None:
    """What ``path`` is when it is not a regular file or folder (``None`` when it is one).

    The words fit after "``path`` is": "a named pipe (FIFO)", "a symlink loop", ...
    """
    try:
        mode = os.stat(path).st_mode
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            return "a symlink loop"
        if exc.errno == errno.ENOENT:
            return "a dangling symlink" if os.path.islink(path) else "missing"
        return f"unreadable ({exc.strerror or exc})"
    if stat.S_ISREG(mode) or stat.S_ISDIR(mode):
        return None
    if stat.S_ISFIFO(mode):
        return "a named pipe (FIFO)"
    if stat.S_ISSOCK(mode):
        return "a socket"
    if stat.S_ISCHR(mode) or stat.S_ISBLK(mode):
        return "a device"
    return "not a regular file"


def check_readable_file(path: str | os.PathLike, what: str) -> Path:
    """``path`` as a ``Path`` when it is a regular file; else a one-line error naming its kind.

    ``what`` names the file's role in the message ("config", "tokenizer file").
    """
    path = Path(path)
    kind = describe(path)
    if kind == "missing":
        raise TinylmError(f"{what} {path} does not exist; check the path")
    if kind is not None:
        raise TinylmError(f"{what} {path} is {kind}, not a regular file; give a file")
    if path.is_dir():
        raise TinylmError(f"{what} {path} is a folder; give a file")
    return path


# -- JSON files ------------------------------------------------------------------------


def read_json(path: str | os.PathLike, hint: str, *, missing: str | None = None) -> Any:
    """The parsed contents of a JSON file, or one line saying why it cannot be read.

    ``hint`` says what to do (re-create the file, point elsewhere); ``missing``
    replaces the default message for an absent file.
    """
    path = Path(path)
    kind = describe(path)  # before opening: a named pipe would block the read forever
    if kind is not None and kind != "missing":
        raise TinylmError(f"{path} is {kind}, not a JSON file; {hint}")
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        raise TinylmError(missing or f"{path} does not exist; {hint}") from None
    except IsADirectoryError:
        raise TinylmError(f"{path} is a folder, not a JSON file; {hint}") from None
    except OSError as exc:
        raise TinylmError(f"cannot read {path}: {exc.strerror or exc}; {hint}") from None
    return parse_json(raw, path, hint)


#: Deepest nesting of ``[`` and ``{`` parse_json accepts. tinylm's files nest a few
#: levels (a tokenizer.json five); Python's parser recurses once per level, so a
#: file of 200,000 ``[`` would otherwise end in a RecursionError, not a message.
MAX_JSON_DEPTH = 100

#: Every byte but the ones that open and close arrays, objects and strings.
_NOT_JSON_MARK = bytes(b for b in range(256) if b not in b'[]{}"')
#: Depth change of each byte: +1 for ``[`` ``{``, -1 for ``]`` ``}``.
_DEPTH_STEP = [{ord("["): 1, ord("{"): 1, ord("]"): -1, ord("}"): -1}.get(b, 0) for b in range(256)]


def _nests_too_deeply(text: str) -> bool:
    """Whether ``text``'s arrays and objects nest deeper than :data:`MAX_JSON_DEPTH`.

    Brackets inside strings do not count. No recursion, and only C-speed passes
    over the bytes (a fraction of what parsing costs): escaped backslashes and
    quotes go, then everything but brackets and quotes; dropping two adjacent
    quotes keeps every other quote's side, so most strings vanish at once, and
    what is left between the remaining quote pairs is string content.
    """
    if text.count("[") + text.count("{") <= MAX_JSON_DEPTH:
        return False  # too few brackets to nest that deep
    data = text.encode("utf-8", "surrogatepass").replace(b"\\\\", b"").replace(b'\\"', b"")
    marks = data.translate(None, _NOT_JSON_MARK).replace(b'""', b"")
    outside = b"".join(marks.split(b'"')[::2])
    return max(accumulate(map(_DEPTH_STEP.__getitem__, outside)), default=0) > MAX_JSON_DEPTH


def parse_json(raw: bytes | str, source: object, hint: str) -> Any:
    """``json.loads`` with one-line errors (NaN literals parse; :class:`Record` checks ranges).

    Nesting deeper than :data:`MAX_JSON_DEPTH` is refused before parsing.
    """
    try:
        text = raw.decode("utf-8") if isinstance(raw, bytes) else raw
    except UnicodeDecodeError:
        raise TinylmError(f"{source} is not UTF-8 text; it is damaged, {hint}") from None
    if _nests_too_deeply(text):
        raise TinylmError(
            f"{source} nests arrays or objects more than {MAX_JSON_DEPTH} deep, which no "
            f"tinylm file does; it is damaged, {hint}"
        )
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise TinylmError(
            f"{source} is not valid JSON ({exc.msg} at line {exc.lineno}); it is damaged or "
            f"truncated, {hint}"
        ) from None
    except RecursionError:
        raise TinylmError(f"{source} nests too deeply to be a tinylm file; {hint}") from None
    except ValueError as exc:  # e.g. an integer literal too long to convert
        raise TinylmError(f"{source} is not valid JSON ({exc}); {hint}") from None


def read_json_lines(path: str | os.PathLike, what: str, hint: str) -> Iterator[tuple[Any, str]]:
    """``(value, "path:line")`` for each non-blank line of a JSON-lines file.

    One reader for every JSONL format tinylm takes (conversations, preference
    pairs, multiple-choice items): lines stream one at a time, and a line that is
    not JSON fails when the read reaches it, naming ``path:line`` and ``hint``.
    The caller checks each value's fields.
    """
    path = check_readable_file(path, what)
    try:
        with open(path, "rb") as handle:
            for number, raw in enumerate(handle, 1):
                if raw.strip():
                    source = f"{path}:{number}"
                    yield parse_json(raw, source, hint), source
    except OSError as exc:
        raise TinylmError(f"cannot read {path}: {exc.strerror or exc}; check the file") from None


def check_format(
    data: Any, format_name: str, version: int, source: object, what: str, hint: str
) -> dict[str, Any]:
    """Check the header every tinylm JSON file carries: its format name and version.

    One check for tokenizers, datasets and checkpoints, so a foreign or outdated
    file gets the same kind of one-line error whichever it is.
    """
    if not isinstance(data, dict) or data.get("format") != format_name:
        raise TinylmError(f"{source} is not a {what}; {hint}")
    if data.get("version") != version:
        raise TinylmError(
            f"{source} is {what} format version {data.get('version')}, this tinylm reads "
            f"version {version}; {hint}"
        )
    return data


@dataclass(frozen=True)
class Record:
    """One JSON object read from ``source``, handing out fields checked for type and range.

    Each accessor raises a one-line :class:`TinylmError` naming ``source``, the
    field and what it holds, followed by ``hint``. A ``default`` makes a field
    optional (absent, not null, unless ``None`` is the default).
    """

    data: Any
    source: str
    hint: str

    def __post_init__(self) -> None:
        if not isinstance(self.data, dict):
            raise TinylmError(
                f"{self.source} holds {_kind(self.data)}, not a JSON object; {self.hint}"
            )

    def error(self, key: str, expected: str, value: Any = _REQUIRED) -> TinylmError:
        """The one-line error for field ``key`` (missing when ``value`` is not given)."""
        found = "is missing" if value is _REQUIRED else f"is {_kind(value)}"
        return TinylmError(
            f"{self.source}: field {key!r} {found}, expected {expected}; {self.hint}"
        )

    def _get(self, key: str, default: Any, expected: str) -> Any:
        if key in self.data:
            return self.data[key]
        if default is _REQUIRED:
            raise self.error(key, expected)
        return default

    def has(self, key: str) -> bool:
        return key in self.data

    def int(
        self,
        key: str,
        default: Any = _REQUIRED,
        *,
        minimum: int | None = None,
        maximum: int | None = None,
    ) -> Any:
        """An integer (never a bool or a float) within ``[minimum, maximum]``."""
        expected = _range_text("an integer", minimum, maximum)
        value = self._get(key, default, expected)
        if value is default and key not in self.data:
            return value
        if not isinstance(value, int) or isinstance(value, bool):
            raise self.error(key, expected, value)
        if (minimum is not None and value < minimum) or (maximum is not None and value > maximum):
            raise self.error(key, expected, value)
        return value

    def float(self, key: str, default: Any = _REQUIRED, *, finite: bool = True) -> Any:
        """A number (int or float, not bool), finite unless ``finite=False``."""
        expected = "a finite number" if finite else "a number"
        value = self._get(key, default, expected)
        if value is default and key not in self.data:
            return value
        if not is_number(value, finite=finite):
            raise self.error(key, expected, value)
        return float(value)

    def str(self, key: str, default: Any = _REQUIRED) -> Any:
        value = self._get(key, default, "a string")
        if value is default and key not in self.data:
            return value
        if not isinstance(value, str):
            raise self.error(key, "a string", value)
        return value

    def file_name(self, key: str, default: Any = _REQUIRED) -> Any:
        """The name of a file beside this one: no folders, no ``..``, no control characters
        (a sidecar naming ``../../etc/passwd`` must not be followed)."""
        expected = "a plain file name"
        value = self.str(key, default)
        if value is default and key not in self.data:
            return value
        if (
            not value
            or value in (".", "..")
            or any(sep in value for sep in ("/", "\\"))
            or not value.isprintable()
        ):
            raise self.error(key, expected, value)
        return value

    def bool(self, key: str, default: Any = _REQUIRED) -> Any:
        value = self._get(key, default, "true or false")
        if value is default and key not in self.data:
            return value
        if not isinstance(value, bool):
            raise self.error(key, "true or false", value)
        return value

    def list(self, key: str, default: Any = _REQUIRED) -> Any:
        value = self._get(key, default, "a list")
        if value is default and key not in self.data:
            return value
        if not isinstance(value, list):
            raise self.error(key, "a list", value)
        return value

    def dict(self, key: str, default: Any = _REQUIRED, *, nullable: bool = False) -> Any:
        """A JSON object (a plain ``dict``); ``nullable`` also accepts ``null`` as ``None``."""
        expected = "an object or null" if nullable else "an object"
        value = self._get(key, default, expected)
        if value is default and key not in self.data:
            return value
        if value is None and nullable:
            return None
        if not isinstance(value, dict):
            raise self.error(key, expected, value)
        return value

    def record(self, key: str, default: Any = _REQUIRED) -> Record:
        """A nested object as a :class:`Record` (its errors name ``source: key``)."""
        value = self.dict(key, default)
        return Record(value, f"{self.source}: {key}", self.hint)

    def number_map(self, key: str, default: Any = _REQUIRED) -> dict[str, float]:
        """An object of name -> finite number (metrics)."""
        value = self.dict(key, default)
        for name, number in value.items():
            if not is_number(number):
                raise self.error(f"{key}.{name}", "a finite number", number)
        return {name: float(number) for name, number in value.items()}


def _range_text(what: str, minimum: int | None, maximum: int | None) -> str:
    if minimum is not None and maximum is not None:
        return f"{what} from {minimum:,} to {maximum:,}"
    if minimum is not None:
        return f"{what} of at least {minimum:,}"
    if maximum is not None:
        return f"{what} of at most {maximum:,}"
    return what


# -- safetensors headers -----------------------------------------------------------------


@dataclass(frozen=True)
class TensorInfo:
    """One tensor as a safetensors header describes it."""

    dtype: str
    shape: tuple[int, ...]


def safetensors_header(
    path: str | os.PathLike, hint: str
) -> tuple[dict[str, TensorInfo], dict[str, str]]:
    """``({name: TensorInfo}, metadata)`` of a safetensors file, checked against its size.

    The header is JSON after an 8-byte length. Each tensor must have a known
    dtype, a shape of non-negative integers and ``data_offsets`` that match its
    size and tile the data section exactly, so a truncated, padded or edited
    file is refused here, before any tensor is read.
    """
    path = Path(path)
    try:
        with open(path, "rb") as handle:
            size = os.fstat(handle.fileno()).st_size
            prefix = handle.read(8)
            if len(prefix) < 8:
                raise TinylmError(f"{path} is truncated (no safetensors header); {hint}")
            (length,) = struct.unpack("<Q", prefix)
            if length > min(MAX_HEADER_BYTES, size - 8):
                raise TinylmError(
                    f"{path} is truncated or not a safetensors file (its header claims "
                    f"{length:,} bytes of {size:,}); {hint}"
                )
            header_bytes = handle.read(length)
    except FileNotFoundError:
        raise TinylmError(f"{path} does not exist; {hint}") from None
    except IsADirectoryError:
        raise TinylmError(f"{path} is a folder, not a safetensors file; {hint}") from None
    except OSError as exc:
        raise TinylmError(f"cannot read {path}: {exc.strerror or exc}; {hint}") from None
    header = Record(parse_json(header_bytes, f"{path} (header)", hint), f"{path}", hint)
    metadata = header.dict("__metadata__", {}, nullable=True) or {}
    for key, value in metadata.items():
        if not isinstance(value, str):
            raise header.error(f"__metadata__.{key}", "a string", value)
    tensors: dict[str, TensorInfo] = {}
    spans = []
    for name in header.data:
        if name == "__metadata__":
            continue
        entry = header.record(name)
        dtype = entry.str("dtype")
        if dtype not in DTYPE_SIZES:
            raise entry.error("dtype", "a safetensors dtype (F32, BF16, I64, ...)", dtype)
        shape = entry.list("shape")
        if not all(isinstance(d, int) and not isinstance(d, bool) and d >= 0 for d in shape):
            raise entry.error("shape", "a list of non-negative integers", shape)
        offsets = entry.list("data_offsets")
        if (
            len(offsets) != 2
            or not all(isinstance(o, int) and not isinstance(o, bool) for o in offsets)
            or not 0 <= offsets[0] <= offsets[1]
        ):
            raise entry.error("data_offsets", "[begin, end] with 0 <= begin <= end", offsets)
        if offsets[1] - offsets[0] != math.prod(shape) * DTYPE_SIZES[dtype]:
            raise TinylmError(
                f"{path}: tensor {name!r} ({dtype} {shape}) does not match its "
                f"{offsets[1] - offsets[0]:,} bytes; the file is corrupt, {hint}"
            )
        spans.append((offsets[0], offsets[1]))
        tensors[name] = TensorInfo(dtype, tuple(shape))
    position = 0
    for begin, end in sorted(spans):
        if begin != position:
            raise TinylmError(f"{path} has overlapping or missing tensor data; {hint}")
        position = end
    if position != size - 8 - length:
        raise TinylmError(
            f"{path} holds {size - 8 - length:,} bytes of tensor data, its header describes "
            f"{position:,}; the file is truncated or corrupt, {hint}"
        )
    return tensors, dict(metadata)


def metadata_json(
    metadata: dict[str, str], key: str, source: str, hint: str, default: Any = _REQUIRED
) -> Any:
    """A JSON value stored as a string in safetensors metadata (``aliases``, RNG scalars)."""
    if key not in metadata:
        if default is _REQUIRED:
            raise TinylmError(f"{source}: metadata {key!r} is missing; {hint}")
        return default
    return parse_json(metadata[key], f"{source}: metadata {key!r}", hint)
