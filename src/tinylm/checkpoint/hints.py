"""What a message about a bad checkpoint tells the user to do next.

Every error about a checkpoint ends with one of these, so a missing folder, a
foreign one and a damaged file each point at the same ways out wherever the
damage is found (weights, optimizer, RNG states or JSON).
"""

from __future__ import annotations

from pathlib import Path

#: For a path that is not a checkpoint at all.
POINT_AT_CHECKPOINT = "point at a run's checkpoint directory"


def corrupt_hint(folder: Path) -> str:
    """For a checkpoint whose files are damaged: use an earlier one of the same run."""
    return (
        f"point at an earlier ckpt-* folder of the run, or move {folder.name} out of the run "
        "folder to resume from the one before"
    )
