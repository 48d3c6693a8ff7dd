"""A run's checkpoints: one folder per save, the last few kept, and the best published.

``run_dir/ckpt-000123`` every save, the last ``keep_last`` kept, plus
``run_dir/best``. ``best`` is its own complete checkpoint folder (hard links to
the files of the step that earned it, or copies where links are not possible),
so pruning old steps never touches it.

Which step is best is also written into every checkpoint's state.json
(``best``), so the identity survives a ``best/`` lost to a crash between its two
renames: it is then found again (the step's own folder, or the copy left aside)
or refused with a message, never replaced silently by the latest checkpoint.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path
from typing import Any

import torch
from torch import nn

from tinylm.checkpoint.meta import read_state
from tinylm.checkpoint.save_load import save_checkpoint
from tinylm.errors import TinylmError
from tinylm.fileio import atomic_directory, recover_interrupted
from tinylm.run_layout import BEST_DIR, STATE_FILE, checkpoint_name, step_checkpoints


class CheckpointManager:
    """Saves, lists, prunes and finds the best of the checkpoints in ``run_dir``.

    A manager made on an existing run directory continues where it left off.
    """

    def __init__(self, run_dir: str | os.PathLike, keep_last: int = 3) -> None:
        if keep_last < 1:
            raise TinylmError(f"keep_last must be at least 1, got {keep_last}")
        self.run_dir = Path(run_dir)
        self.keep_last = keep_last

    def save(
        self,
        step: int,
        model: nn.Module,
        optimizer: torch.optim.Optimizer | None,
        *,
        val_loss: float | None = None,
        metrics: dict[str, float] | None = None,
        **kwargs: Any,
    ) -> Path:
        """Save step ``step``; publish it as ``best`` if ``val_loss`` is the lowest yet.

        ``kwargs`` are :func:`save_checkpoint`'s (config, tokenizer, extra,
        generators, train_config).
        """
        metrics = dict(metrics or {})
        best = self.recorded_best()
        improved = val_loss is not None and _improves(float(val_loss), best)
        if improved:
            metrics["val_loss"] = float(val_loss)
            best = {"step": int(step), "val_loss": float(val_loss)}
        elif val_loss is not None:
            metrics["val_loss"] = float(val_loss)
        path = save_checkpoint(
            self.run_dir / checkpoint_name(step),
            model,
            optimizer,
            step,
            metrics=metrics,
            best=best,
            **kwargs,
        )
        if improved:
            self._publish_best(path)
        self._prune()
        return path

    def checkpoints(self) -> list[Path]:
        """Step checkpoints, oldest first."""
        return step_checkpoints(self.run_dir)

    def latest(self) -> Path | None:
        found = self.checkpoints()
        return found[-1] if found else None

    def recorded_best(self) -> dict[str, Any] | None:
        """``{"step", "val_loss"}`` of the run's best checkpoint, as the run state records it.

        The latest checkpoint's state.json says which step is best; runs saved
        before it did fall back to what ``best/`` itself holds.
        """
        latest = self.latest()
        if latest is not None:
            state = read_state(latest)
            if "best" in state:
                return state["best"]
        folder = self.run_dir / BEST_DIR
        if not (folder / STATE_FILE).is_file():
            return None
        state = read_state(folder)
        val_loss = state["metrics"].get("val_loss")
        if val_loss is None or val_loss != val_loss:
            return None
        return {"step": state["step"], "val_loss": val_loss}

    def best(self) -> Path | None:
        """The best checkpoint's folder; None if no evaluation has been saved yet.

        Usually ``best/``. If ``best/`` is missing or holds another step (a crash
        between saving a step and publishing it), the recorded step's own folder
        is used when it still exists; otherwise this is an error, never the latest.
        """
        record = self.recorded_best()
        folder = self.run_dir / BEST_DIR
        if record is None:
            return folder if (folder / STATE_FILE).is_file() else None
        if (folder / STATE_FILE).is_file() and read_state(folder)["step"] == record["step"]:
            return folder
        own = self.run_dir / checkpoint_name(record["step"])
        if (own / STATE_FILE).is_file():
            return own
        raise TinylmError(
            f"the best checkpoint of {self.run_dir} (step {record['step']}, val loss "
            f"{record['val_loss']:.4f}) is missing: {folder} was lost or replaced; resume the "
            "run once to restore it, or use the latest checkpoint instead"
        )

    def best_val_loss(self) -> float | None:
        record = self.recorded_best()
        return None if record is None else record["val_loss"]

    def recover(self) -> list[str]:
        """Tidy up after a killed run; return what was done, one line each.

        Removes the hidden temporary folders and files an interrupted save leaves
        (``.ckpt-N.tmp-*``, ``.best.tmp-*``, ``.metrics.jsonl.*.tmp``), puts a
        folder renamed aside (``.best.old-*``) back when its place is empty, and
        republishes ``best/`` from the recorded best step when it went missing.
        Call it when a run starts writing, never while another process writes.
        """
        done = recover_interrupted(self.run_dir, STATE_FILE)
        record = self.recorded_best() if self.run_dir.is_dir() else None
        folder = self.run_dir / BEST_DIR
        if record is not None:
            has_best = (folder / STATE_FILE).is_file()
            if not has_best or read_state(folder)["step"] != record["step"]:
                own = self.run_dir / checkpoint_name(record["step"])
                if (own / STATE_FILE).is_file():
                    self._publish_best(own)
                    done.append(f"restored {folder} from {own.name}")
        return done

    def _publish_best(self, source: Path) -> None:
        with atomic_directory(self.run_dir / BEST_DIR, STATE_FILE, "tinylm checkpoint") as tmp:
            for file in source.iterdir():
                try:
                    os.link(file, tmp / file.name)
                except OSError:
                    shutil.copy2(file, tmp / file.name)

    def _prune(self) -> None:
        """Delete all but the last ``keep_last`` steps, and never the only copy of the best."""
        record = self.recorded_best()
        folder = self.run_dir / BEST_DIR
        published = record is None or (
            (folder / STATE_FILE).is_file() and read_state(folder)["step"] == record["step"]
        )
        keep = set() if published else {self.run_dir / checkpoint_name(record["step"])}
        for old in self.checkpoints()[: -self.keep_last]:
            if old not in keep:
                shutil.rmtree(old, ignore_errors=True)


def _improves(val_loss: float, best: dict[str, Any] | None) -> bool:
    if val_loss != val_loss:  # NaN is never an improvement
        return False
    return best is None or val_loss < best["val_loss"]
