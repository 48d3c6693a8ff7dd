"""What kind of thing a path names, said before anything opens it.

Opening a named pipe (FIFO) for reading waits for a writer, forever if none
comes: a FIFO given as a config, tokenizer or corpus would hang ``tinylm``. A
symlink loop and a dangling link look like a missing file to ``Path.is_file``,
which made the errors say "does not exist" about something that plainly does.
:func:`check_readable_file` looks first (``stat`` never blocks) and names what the
path really is, so every reader of user files can refuse it in one line.
"""

from __future__ import annotations

import errno
import os
import stat
from pathlib import Path

from tinylm.errors import TinylmError


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
