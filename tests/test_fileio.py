"""Atomic writes: all or nothing, with ordinary permissions."""

from __future__ import annotations

import os

import pytest

from tinylm.errors import TinylmError
from tinylm.fileio import atomic_open, atomic_write


def test_write_replaces_whole_file_with_umask_permissions(tmp_path):
    path = tmp_path / "out.txt"
    path.write_text("old", encoding="utf-8")
    atomic_write(path, "new")
    assert path.read_text(encoding="utf-8") == "new"
    mask = os.umask(0)
    os.umask(mask)
    assert path.stat().st_mode & 0o777 == 0o666 & ~mask


def test_failure_midway_keeps_old_file_and_leaves_no_temp(tmp_path):
    path = tmp_path / "out.txt"
    path.write_text("old", encoding="utf-8")
    with pytest.raises(RuntimeError), atomic_open(path) as handle:
        handle.write(b"half")
        raise RuntimeError("crash")
    assert path.read_text(encoding="utf-8") == "old"
    assert os.listdir(tmp_path) == ["out.txt"]


def test_unwritable_location_is_user_error(tmp_path):
    # A regular file where a folder should be: unwritable even for root (CI runs as root).
    blocker = tmp_path / "afile"
    blocker.write_text("x", encoding="utf-8")
    with pytest.raises(TinylmError, match="cannot write"):
        atomic_write(blocker / "sub" / "x", "data")


def _char_device(path) -> bool:
    """A character device node like /dev/null at ``path`` (root only), or False."""
    import stat

    try:
        os.mknod(path, stat.S_IFCHR | 0o600, os.makedev(1, 3))
    except (PermissionError, AttributeError):
        return False
    return True


@pytest.mark.parametrize("kind", ["fifo", "folder", "device"])
def test_only_a_regular_file_is_ever_replaced(tmp_path, kind):
    # `tinylm tokenizer train --out DEVNODE` replaced the device node with a regular file.
    import stat

    target = tmp_path / "target"
    if kind == "fifo":
        os.mkfifo(target)
    elif kind == "folder":
        target.mkdir()
    elif not _char_device(target):
        os.mkfifo(target)  # an unprivileged run checks the same rule on a pipe
    before = os.lstat(target).st_mode
    with pytest.raises(TinylmError, match="choose a file path") as exc:
        atomic_write(target, "data")
    assert "\n" not in str(exc.value)
    assert os.lstat(target).st_mode == before and not stat.S_ISREG(before)
    assert [p.name for p in tmp_path.iterdir()] == ["target"]  # no temporary left


def test_a_symlink_to_a_file_is_replaced_like_a_rename(tmp_path):
    real = tmp_path / "real"
    real.write_text("old")
    link = tmp_path / "link"
    link.symlink_to(real)
    atomic_write(link, "new")
    assert link.read_text() == "new" and not link.is_symlink() and real.read_text() == "old"
