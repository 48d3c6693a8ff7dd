"""Writing files so that a crash or a bad input never leaves half a file behind.

Everything tinylm writes for a user (tokenizers, checkpoints, prepared data,
plots) goes through :func:`atomic_write`: the bytes land in a temporary file in
the same folder, are flushed to disk, and only then renamed over the target,
which on POSIX replaces it in one step.
"""

from __future__ import annotations

import contextlib
import errno
import os
import re
import shutil
import stat
import tempfile
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import IO

from tinylm.errors import TinylmError

#: Errors that mean "this location cannot take the file": full disk, quota, size limit,
#: read-only file system. Other OSErrors inside a write are bugs and stay loud.
WRITE_ERRNOS = frozenset({errno.ENOSPC, errno.EDQUOT, errno.EFBIG, errno.EROFS})


def _owner_tag() -> str:
    """``p<pid>-``: temporary names carry their writer's pid, so a cleaner can tell
    the leftovers of a killed process from the work of a live one."""
    return f"p{os.getpid()}-"


_OWNER = _owner_tag()
# A forked child (a DataLoader worker, a process pool) must not write as its parent.
os.register_at_fork(after_in_child=lambda: globals().update(_OWNER=_owner_tag()))


@contextlib.contextmanager
def atomic_open(path: str | os.PathLike, mode: str = "wb", size: int | None = None) -> Iterator[IO]:
    """Open a temporary sibling of ``path``; rename it over ``path`` on success.

    ``size``, when known, is how many bytes will be written: a full disk's error
    then says exactly how much space is needed.
    """
    path = Path(path)
    _refuse_special(path)
    folder = path.parent if str(path.parent) else Path(".")
    try:
        folder.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.{_OWNER}", suffix=".tmp", dir=folder)
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
    except OSError as exc:
        if exc.errno not in WRITE_ERRNOS:
            with contextlib.suppress(OSError):
                os.unlink(tmp)
            raise
        written = _size_of(Path(tmp))
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise write_error(path, exc, written, size) from None
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


def _refuse_special(path: Path) -> None:
    """Only a regular file (or nothing) may be replaced: never a device, pipe, socket or folder.

    The rename at the end would swap a character device's node (``/dev/...``) or a
    FIFO for a regular file; a folder would fail half-way, after the writing.
    """
    try:
        mode = os.lstat(path).st_mode
    except OSError:
        return  # absent (or unreachable: the write itself will say so)
    if stat.S_ISREG(mode) or stat.S_ISLNK(mode):
        return  # a symlink is replaced by the file, as a plain rename would
    kind = "a folder" if stat.S_ISDIR(mode) else "not a regular file (a device, pipe or socket)"
    raise TinylmError(f"cannot write {path}: it is {kind}; choose a file path to write to")


def write_error(path: Path, exc: OSError, written: int = 0, size: int | None = None) -> TinylmError:
    """The one-line error for a failed write; a full disk says how much space is needed.

    ``size`` is the whole write's size when known; otherwise ``written`` (what
    went to disk before it filled up, since removed) is a lower bound.
    """
    if exc.errno in (errno.ENOSPC, errno.EDQUOT):
        where = path.parent if str(path.parent) else Path(".")
        try:
            free = f"{_human(shutil.disk_usage(where).free)} free"
        except OSError:
            free = "free space unknown"
        if size is not None:
            wanted = f"{_human(size)} needed"
        else:
            wanted = f"more than {_human(written)} needed" if written else "more needed"
        return TinylmError(
            f"cannot write {path}: no space left on the device ({wanted}, {free}); "
            "free some space or choose another location"
        )
    return TinylmError(f"cannot write {path}: {exc.strerror or exc}; choose a writable location")


def _human(size: int) -> str:
    """Bytes as a person reads them: exact below 10 MB (so "needed" and "free" never
    round to the same figure), then MB, GB, TB."""
    if size < 10_000_000:
        return f"{size:,} bytes"
    for unit, scale in (("MB", 1e6), ("GB", 1e9), ("TB", 1e12)):
        if size < 1000 * scale or unit == "TB":
            return f"{size / scale:.1f} {unit}"
    raise AssertionError("unreachable")


def _size_of(path: Path) -> int:
    """Bytes under ``path`` (a file or a folder); 0 where it cannot be read."""
    try:
        if path.is_file():
            return path.stat().st_size
        return sum(f.stat().st_size for f in path.rglob("*") if f.is_file())
    except OSError:
        return 0


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def atomic_write(path: str | os.PathLike, data: bytes | str) -> None:
    """Write ``data`` to ``path`` atomically (text is encoded as UTF-8)."""
    raw = data.encode("utf-8") if isinstance(data, str) else data
    with atomic_open(path, "wb", size=len(raw)) as handle:
        handle.write(raw)


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
def atomic_directory(
    path: str | os.PathLike, marker: str, what: str, size: int | None = None
) -> Iterator[Path]:
    """Build a directory under a temporary name beside ``path``; swap it in on success.

    ``marker`` is a file that every directory of this kind holds: an existing
    ``path`` without it (and not empty) belongs to someone else and is never
    replaced. An existing one of ours is renamed aside, the new one renamed into
    place, and only then is the old one deleted, so a crash at any moment leaves
    either the old or the new directory complete (after a crash between the two
    renames the old one is at ``.NAME.old-*``; :func:`recover_interrupted` puts
    it back). ``size`` estimates the bytes to be written, for a full disk's error.
    """
    path = Path(path)
    refuse_foreign(path, marker, what)
    recover_interrupted(path.parent, marker, only=path.name)
    parent = path.parent
    blocker = next((p for p in (parent, *parent.parents) if p.exists()), None)
    if blocker is not None and not blocker.is_dir():
        raise TinylmError(f"cannot write {path}: {blocker} is a file; choose another location")
    try:
        parent.mkdir(parents=True, exist_ok=True)
        # Not tempfile.mkdtemp: its 0700 mode would stick to the published directory.
        tmp = parent / f".{path.name}.tmp-{_OWNER}{uuid.uuid4().hex[:12]}"
        tmp.mkdir()
    except OSError as exc:
        raise TinylmError(
            f"cannot write {path}: {exc.strerror or exc}; choose a writable location"
        ) from None
    try:
        yield tmp
        fsync_tree(tmp)
        _swap_into_place(tmp, path)
    except OSError as exc:
        written = _size_of(tmp)
        shutil.rmtree(tmp, ignore_errors=True)
        if exc.errno not in WRITE_ERRNOS:
            raise
        raise write_error(path, exc, written, size) from None
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
        aside = path.with_name(f".{path.name}.old-{_OWNER}{uuid.uuid4().hex[:8]}")
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


# -- after a crash ------------------------------------------------------------------------

_LEFTOVER_DIR = re.compile(r"^\.(?P<name>.+)\.(?P<kind>tmp|old)-(?P<tag>[A-Za-z0-9-]+)$")
_LEFTOVER_FILE = re.compile(r"^\.(?P<name>.+)\.(?P<tag>(?:p\d+-)?[a-z0-9_]{8})\.tmp$")
_PID = re.compile(r"^p(\d+)-")


def recover_interrupted(folder: Path, marker: str, only: str | None = None) -> list[str]:
    """Clean what a killed writer left in ``folder``; return what was done, one line each.

    Writers here leave three kinds of hidden leftovers when killed: a temporary
    file (``.NAME.p<pid>-*.tmp``), a half-built folder (``.NAME.tmp-p<pid>-*``) and,
    between the two renames of a swap, the previous folder set aside
    (``.NAME.old-p<pid>-*``). Leftovers of a process that is still running are
    left alone. A set-aside folder that is complete (holds ``marker``) goes back
    to ``NAME`` when ``NAME`` is missing, and is deleted otherwise; everything
    else is deleted. ``only`` limits the cleaning to leftovers of that one name.
    """
    if not folder.is_dir():
        return []
    done = []
    for entry in sorted(folder.iterdir()):
        match = _LEFTOVER_DIR.match(entry.name) or _LEFTOVER_FILE.match(entry.name)
        if match is None or (only is not None and match["name"] != only):
            continue
        if _writer_alive(match["tag"]):
            continue
        target = folder / match["name"]
        kind = match.groupdict().get("kind")
        if kind == "old" and (entry / marker).is_file() and not target.exists():
            with contextlib.suppress(OSError):
                os.rename(entry, target)
                done.append(f"restored {target} from {entry.name}")
                continue
        if entry.is_dir() and not entry.is_symlink():
            shutil.rmtree(entry, ignore_errors=True)
        else:
            with contextlib.suppress(OSError):
                entry.unlink()
        done.append(f"removed {entry}")
    return done


def _writer_alive(tag: str | None) -> bool:
    """Whether the pid in a temporary name is a running process (other than a dead one)."""
    match = _PID.match(tag or "")
    if match is None:
        return False  # written before names carried a pid: a leftover
    pid = int(match.group(1))
    if pid == os.getpid():
        return False  # our own leftovers are from an earlier, failed attempt
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except (PermissionError, OverflowError, OSError):
        return True  # someone else's live process, or cannot tell: leave it
    return True
