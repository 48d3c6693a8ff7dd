"""Where training numbers go: a JSON-lines file, TensorBoard if installed, a PNG.

``metrics.jsonl`` is the record of a run: one JSON object per line, each with a
``step`` and whatever was measured at it (``loss``, ``lr``, ``tokens_per_s`` for
training steps; ``val_loss``, ``val_ppl`` for evaluations). It is plain text so
that ``pandas.read_json(path, lines=True)`` or a five-line script can read it,
and append-only so a crash loses at most the line being written.

On resume, lines from beyond the resumed step (written by the interrupted run
after its last checkpoint) are dropped first, so the file describes one
consistent history rather than two overlapping ones.
"""

from __future__ import annotations

import json
import math
import os
import warnings
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from tinylm.check_values import is_number
from tinylm.errors import TinylmError
from tinylm.fileio import atomic_open, atomic_write
from tinylm.run_layout import METRICS_FILE, TENSORBOARD_DIR


def _clean(value: Any) -> Any:
    """JSON has no NaN or infinity; write them as strings rather than invalid JSON."""
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)
    return value


class MetricsLogger:
    """Appends metric records to ``metrics.jsonl`` (and TensorBoard when available)."""

    def __init__(self, run_dir: str | os.PathLike, tensorboard: bool = True) -> None:
        self.path = Path(run_dir) / METRICS_FILE
        self._writer = _tensorboard_writer(Path(run_dir) / TENSORBOARD_DIR) if tensorboard else None
        self._handle: Any = None  # opened at the first record, line-buffered

    def log(self, record: dict[str, Any]) -> None:
        """Append one record; ``step`` is required so every line can be placed on a curve."""
        if "step" not in record:
            raise ValueError("a metrics record needs a 'step'")
        line = json.dumps({k: _clean(v) for k, v in record.items()}, allow_nan=False)
        try:
            # One handle for the run; line buffering hands each record to the OS as it
            # is written (a crash loses at most a torn last line, which readers skip).
            if self._handle is None:
                self._handle = open(self.path, "a", encoding="utf-8", buffering=1)  # noqa: SIM115
            self._handle.write(line + "\n")
        except OSError as exc:
            raise TinylmError(f"cannot write {self.path}: {exc.strerror or exc}") from None
        if self._writer is not None:
            for key, value in record.items():
                if key != "step" and isinstance(value, (int, float)) and math.isfinite(value):
                    self._writer.add_scalar(key, value, record["step"])

    def truncate_after(self, step: int) -> None:
        """Drop records with ``step > step`` (the part of an interrupted run being redone)
        and any torn line a crash left mid-write, so the next record starts a line of
        its own instead of being glued onto half of one."""
        self._close_file()  # the file is replaced below
        records = read_metrics(self.path)
        kept = [r for r in records if r["step"] <= step]
        if len(kept) != len(records) or not _is_clean(self.path):
            atomic_write(self.path, "".join(json.dumps(r) + "\n" for r in kept))

    def close(self) -> None:
        self._close_file()
        if self._writer is not None:
            self._writer.close()
            self._writer = None

    def _close_file(self) -> None:
        if self._handle is not None:
            self._handle.close()
            self._handle = None


def _tensorboard_writer(log_dir: Path) -> Any:
    """A SummaryWriter if the ``tensorboard`` package is installed, else None (silently)."""
    try:
        from torch.utils.tensorboard import SummaryWriter
    except ImportError:
        return None
    return SummaryWriter(log_dir=str(log_dir))


def read_metrics(path: str | os.PathLike) -> list[dict[str, Any]]:
    """All records of a metrics file; a torn last line (crash mid-write) is skipped."""
    path = Path(path)
    if not path.exists():
        return []
    try:
        text = path.read_bytes().decode("utf-8", errors="replace")
    except OSError as exc:
        raise TinylmError(f"cannot read {path}: {exc.strerror or exc}") from None
    records = []
    for line in text.splitlines():
        try:
            record = json.loads(line)
        except ValueError:
            continue
        if isinstance(record, dict) and is_number(record.get("step")):
            records.append(record)  # a line without a numeric step cannot be placed
    return records


def _is_clean(path: Path) -> bool:
    """Every line of ``path`` is a JSON object and the file ends with a newline."""
    if not path.exists():
        return True
    try:
        raw = path.read_bytes()
    except OSError:
        return True  # read_metrics has already said why it cannot be read
    if raw and not raw.endswith(b"\n"):
        return False
    for line in raw.decode("utf-8", errors="replace").splitlines():
        try:
            if not isinstance(json.loads(line), dict):
                return False
        except ValueError:
            return False
    return True


def plot_losses(records: Iterable[dict[str, Any]], out_path: str | os.PathLike) -> Path | None:
    """Draw train and validation loss against step into a PNG; None if nothing to draw.

    Uses matplotlib's Agg backend (no display needed) through its object API, so
    it never touches a notebook's global pyplot state, and writes atomically.
    """
    records = list(records)
    train = [(r["step"], r["loss"]) for r in records if is_number(r.get("loss"))]
    val = [(r["step"], r["val_loss"]) for r in records if is_number(r.get("val_loss"))]
    if not train and not val:
        return None
    try:
        from matplotlib.backends.backend_agg import FigureCanvasAgg
        from matplotlib.figure import Figure
    except ImportError:
        warnings.warn("matplotlib is not installed; no loss plot", stacklevel=2)
        return None
    fig = Figure(figsize=(7, 4.2), dpi=110)
    FigureCanvasAgg(fig)
    ax = fig.add_subplot(1, 1, 1)
    if train:
        ax.plot(
            *zip(*train, strict=True), label="train loss", color="tab:blue", alpha=0.8, linewidth=1
        )
    if val:
        ax.plot(*zip(*val, strict=True), "o-", label="val loss", color="tab:orange", markersize=3)
    ax.set_xlabel("step")
    ax.set_ylabel("cross-entropy (nats/token)")
    ax.grid(True, alpha=0.3)
    ax.legend()
    fig.tight_layout()
    out_path = Path(out_path)
    with atomic_open(out_path, "wb") as handle:
        fig.savefig(handle, format="png")
    return out_path
