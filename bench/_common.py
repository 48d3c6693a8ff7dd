"""Shared by the benchmarks: where the public data lives, and importing tinylm from a checkout."""

from __future__ import annotations

import os
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
#: ``../shared/data`` beside the repository (as in CI); ``TINYLM_DATA`` overrides it.
DATA_DIR = Path(os.environ.get("TINYLM_DATA", REPO.parent / "shared" / "data"))

if str(REPO / "src") not in sys.path:
    sys.path.insert(0, str(REPO / "src"))  # run from a checkout without installing


def data_path(relative: str) -> Path:
    """Path of a file in the shared data folder; exit with a clear message if absent."""
    path = DATA_DIR / relative
    if not path.exists():
        sys.exit(f"{path} not found: the shared benchmark data is absent (set TINYLM_DATA)")
    return path
