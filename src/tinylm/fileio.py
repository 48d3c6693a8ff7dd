"""Writing files so that a crash or a bad input never leaves half a file behind.

Everything tinylm writes for a user (tokenizers, checkpoints, prepared data,
plots) goes through :func:`atomic_write`: the bytes land in a temporary file in
the same folder, are flushed to disk, and only then renamed over the target,
which on POSIX replaces it in one step.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Any

from tinylm.errors import TinylmError


@contextlib.contextmanager
def atomic_open(path: str | os.PathLike, mode: str = "wb") -> Iterator[IO]:
    """Open a temporary sibling of ``path``; rename it over ``path`` on success."""
    path = Path(path)
    folder = path.parent if str(path.parent) else Path(".")
    try:
        folder.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=folder)
    except OSError as exc:
        raise TinylmError(
            f"cannot write {path}: {exc.strerror or exc}; choose a writable location"
        ) from None
    try:
        with os.fdopen(fd, mode, **({} if "b" in mode else {"encoding": "utf-8"})) as handle:
            yield handle
            handle.flush()
            os.fsync(handle.fileno())
        # mkstemp creates 0600 files; give the result the permissions a plain open() would.
        os.chmod(tmp, 0o666 & ~_umask())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


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


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def atomic_write(path: str | os.PathLike, data: bytes | str) -> None:
    """Write ``data`` to ``path`` atomically (text is encoded as UTF-8)."""
    with atomic_open(path, "wb") as handle:
        handle.write(data.encode("utf-8") if isinstance(data, str) else data)


# -- directories (datasets, checkpoints) ------------------------------------------


def fsync_tree(root: Path) -> None:
    """Flush every file and folder below ``root`` to disk before it is renamed into place."""
    for folder, _, files in os.walk(root):
        for name in files:
            with open(os.path.join(folder, name), "rb") as handle:
                os.fsync(handle.fileno())
        _fsync_dir(Path(folder))


def _fsync_dir(folder: Path) -> None:
    # A rename is only durable once the folder holding the entry is flushed.
    with contextlib.suppress(OSError):  # not every platform can open a folder
        fd = os.open(folder, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


@contextlib.contextmanager
def atomic_directory(path: str | os.PathLike, marker: str, what: str) -> Iterator[Path]:
    """Build a directory under a temporary name beside ``path``; swap it in on success.

    ``marker`` is a file that every directory of this kind holds: an existing
    ``path`` without it (and not empty) belongs to someone else and is never
    replaced. An existing one of ours is renamed aside, the new one renamed into
    place, and only then is the old one deleted, so a crash at any moment leaves
    either the old or the new directory complete (after a crash between the two
    renames the old one is at ``.NAME.old-*``).
    """
    path = Path(path)
    refuse_foreign(path, marker, what)
    parent = path.parent
    blocker = next((p for p in (parent, *parent.parents) if p.exists()), None)
    if blocker is not None and not blocker.is_dir():
        raise TinylmError(f"cannot write {path}: {blocker} is a file; choose another location")
    try:
        parent.mkdir(parents=True, exist_ok=True)
        # Not tempfile.mkdtemp: its 0700 mode would stick to the published directory.
        tmp = parent / f".{path.name}.tmp-{uuid.uuid4().hex[:12]}"
        tmp.mkdir()
    except OSError as exc:
        raise TinylmError(
            f"cannot write {path}: {exc.strerror or exc}; choose a writable location"
        ) from None
    try:
        yield tmp
        fsync_tree(tmp)
        _swap_into_place(tmp, path)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def refuse_foreign(path: Path, marker: str, what: str) -> None:
    """Raise if ``path`` exists with contents that are not a ``what`` (no ``marker``)."""
    if not path.exists():
        return
    if not path.is_dir():
        raise TinylmError(f"{path} exists and is not a directory; choose another output path")
    if not (path / marker).exists() and any(path.iterdir()):
        raise TinylmError(
            f"{path} exists and is not a {what} (no {marker}); choose a new output "
            "directory or remove it yourself"
        )


def _swap_into_place(tmp: Path, path: Path) -> None:
    aside = None
    if path.exists():
        aside = path.with_name(f".{path.name}.old-{uuid.uuid4().hex[:8]}")
        os.rename(path, aside)
    try:
        os.rename(tmp, path)
    except BaseException:
        if aside is not None:
            os.rename(aside, path)
        raise
    _fsync_dir(path.parent)
    if aside is not None:
        shutil.rmtree(aside, ignore_errors=True)
