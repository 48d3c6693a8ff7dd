"""One writer per run folder: a lock that dies with the process holding it.

Two trainings started on one ``out_dir`` would both write ``run.json``, metrics
and checkpoints, interleaved into a run that is neither. Before writing anything,
a training takes an exclusive ``flock`` on ``<out_dir>/.lock``; a second one is
refused in one line. The operating system drops the lock when the holder exits,
however it ends (``kill -9`` included), so a crash never leaves a stale lock and
there is nothing to clean up by hand. The file itself holds the holder's process
id, only to name it in the message.
"""

from __future__ import annotations

import contextlib
import os
from pathlib import Path

from tinylm.errors import SettingError
from tinylm.run_layout import LOCK_FILE


class RunLock:
    """An exclusive hold on a run folder, released by :meth:`release` or at process exit."""

    def __init__(self, folder: Path, fd: int) -> None:
        self.folder = folder
        self._fd: int | None = fd

    @property
    def held(self) -> bool:
        return self._fd is not None

    def release(self) -> None:
        """Let another training write here (closing the file drops the ``flock``)."""
        if self._fd is not None:
            with contextlib.suppress(OSError):
                os.close(self._fd)
            self._fd = None

    def __del__(self) -> None:  # a trainer dropped in a notebook frees its folder
        self.release()


def lock_run_folder(folder: str | os.PathLike) -> RunLock:
    """Take the run folder's lock (creating the folder), or refuse: another writer holds it."""
    import fcntl  # POSIX only; imported here so the module can be read anywhere

    folder = Path(folder)
    try:
        folder.mkdir(parents=True, exist_ok=True)
        fd = os.open(folder / LOCK_FILE, os.O_RDWR | os.O_CREAT, 0o644)
    except OSError as exc:
        raise SettingError(
            f"cannot write to output folder {folder}: {exc.strerror or exc}; choose another "
            "out_dir",
            setting="out_dir",
        ) from None
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        holder = _holder(fd)
        os.close(fd)
        raise SettingError(
            f"another training{holder} is writing to {folder}; wait for it to finish, or "
            "choose another out_dir",
            setting="out_dir",
            reason="run_locked",
            path=folder,
            holder=holder,
        ) from None
    with contextlib.suppress(OSError):  # only for the message a second writer gets
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
    return RunLock(folder, fd)


def remove_lock_file(folder: Path) -> None:
    """Remove the lock file of a start that failed, so its empty folder can go too."""
    with contextlib.suppress(OSError):
        (folder / LOCK_FILE).unlink()


def _holder(fd: int) -> str:
    """`` (process N)`` from the lock file, or nothing when it cannot be read."""
    with contextlib.suppress(OSError, ValueError):
        pid = int(os.pread(fd, 32, 0).decode().strip())
        return f" (process {pid})"
    return ""
