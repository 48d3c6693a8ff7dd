"""The JSON files of a checkpoint, written plainly and read as untrusted.

A checkpoint's JSON (config, state, the optimizer's structure) is written inside
the temporary folder ``atomic_directory`` swaps into place, so a plain write is
enough here. A value JSON cannot hold is refused by naming the file; a file that
is missing or damaged on reading is one line pointing at an earlier checkpoint.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from tinylm.checkpoint.hints import POINT_AT_CHECKPOINT, corrupt_hint
from tinylm.errors import TinylmError
from tinylm.untrusted_files import read_json


def write_json(path: Path, data: Any) -> None:
    """``data`` as indented JSON; a value that is not JSON-able is a one-line error."""
    try:
        text = json.dumps(data, indent=1)
    except (TypeError, ValueError) as exc:
        raise TinylmError(
            f"cannot save {path.name}: {exc}; pass JSON-serialisable values"
        ) from None
    path.write_text(text + "\n", encoding="utf-8")


def read_checkpoint_json(path: Path) -> Any:
    """A checkpoint's JSON file; missing means the folder is no checkpoint, broken means damage."""
    missing = (
        f"{path.parent} is not a tinylm checkpoint (missing {path.name}); {POINT_AT_CHECKPOINT}"
    )
    return read_json(path, corrupt_hint(path.parent), missing=missing)
