"""What a checkpoint says about itself: state.json and config.json, as a typed record.

state.json is the checkpoint's own record: its format and version (so a foreign
or future folder is refused in one line), the step, the metrics at that step,
which step is the run's best so far, and the trainer's ``extra`` resume state.
config.json holds the model and train configs it was made with. Both are read
without touching a tensor, and both are checked field by field: they are files
on disk, so a hand edit or damage must be one line, not a ``KeyError`` later.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tinylm import __version__
from tinylm.check_values import is_number
from tinylm.checkpoint.hints import POINT_AT_CHECKPOINT, corrupt_hint
from tinylm.checkpoint.json_files import read_checkpoint_json
from tinylm.run_layout import CHAT_TEMPLATE_FILE, CONFIG_FILE, STATE_FILE, TOKENIZER_FILE
from tinylm.untrusted_files import Record, check_format

FORMAT_NAME = "tinylm-checkpoint"
FORMAT_VERSION = 1

#: The number formats a checkpoint's weight matrices may be stored in. ``float32``
#: is every checkpoint training writes (state.json then has no ``weights`` field);
#: ``tinylm quantize`` writes the others (``tinylm.inference.quantized_run``).
STORED_WEIGHTS = ("float32", "bfloat16", "int8")


@dataclass(frozen=True)
class CheckpointMeta:
    """A checkpoint's metadata, read without loading a tensor (:func:`read_checkpoint_meta`)."""

    path: Path  # the checkpoint folder itself (a run folder resolved to its latest)
    step: int  # optimizer steps taken when it was saved
    model_config: dict[str, Any] | None  # for ModelConfig.from_dict; None if saved without
    train_config: dict[str, Any] | None  # the TrainConfig as a dict, if the trainer gave one
    metrics: dict[str, float]  # e.g. val_loss at this step; NaN kept (a diverged evaluation)
    extra: dict[str, Any]  # the trainer's own resume state (untrusted: check before use)
    state: dict[str, Any]  # all of state.json, checked (format, version, created_by, best)
    tokenizer_file: Path | None  # its tokenizer.json, or None when saved without one
    chat_template_file: Path | None = None  # its chat_template.json (a chat model), or None
    weights: str = "float32"  # how its weight matrices are stored: one of STORED_WEIGHTS


def read_meta(folder: Path) -> CheckpointMeta:
    """The metadata of the checkpoint folder ``folder`` (already resolved)."""
    state = read_state(folder)
    model_config, train_config = read_config(folder)
    tokenizer = folder / TOKENIZER_FILE
    return CheckpointMeta(
        path=folder,
        step=state["step"],
        model_config=model_config,
        train_config=train_config,
        metrics=state["metrics"],
        extra=state["extra"],
        state=state,
        tokenizer_file=tokenizer if tokenizer.is_file() else None,
        chat_template_file=chat if (chat := folder / CHAT_TEMPLATE_FILE).is_file() else None,
        weights=state.get("weights", "float32"),
    )


# -- state.json -------------------------------------------------------------------------------


def state_record(
    step: int,
    metrics: dict | None,
    extra: dict | None,
    best: dict | None,
    weights: str = "float32",
) -> dict[str, Any]:
    """What state.json holds for a checkpoint saved at ``step`` (``weights``: STORED_WEIGHTS)."""
    record = {
        "format": FORMAT_NAME,
        "version": FORMAT_VERSION,
        "created_by": f"tinylm {__version__}",
        "step": int(step),
        "metrics": {name: float(value) for name, value in (metrics or {}).items()},
        "extra": extra or {},
    }
    if best is not None:
        record["best"] = {"step": int(best["step"]), "val_loss": float(best["val_loss"])}
    if weights != "float32":  # a trained checkpoint's state.json stays as it always was
        record["weights"] = weights
    return record


def read_state(folder: Path) -> dict[str, Any]:
    """state.json, every field checked: a hand-edited or damaged file is one line."""
    state = read_checkpoint_json(folder / STATE_FILE)
    what = f"tinylm checkpoint ({STATE_FILE} is foreign or from another version)"
    check_format(state, FORMAT_NAME, FORMAT_VERSION, folder, what, POINT_AT_CHECKPOINT)
    record = Record(state, str(folder / STATE_FILE), corrupt_hint(folder))
    checked = {
        **state,
        "step": record.int("step", minimum=0),
        "metrics": _metrics(record),
        "extra": record.dict("extra", {}),
    }
    if record.has("weights"):  # absent in every checkpoint training writes: float32
        checked["weights"] = _weights(record)
    if record.has("best"):
        best = record.record("best")
        checked["best"] = {
            "step": best.int("step", minimum=0),
            "val_loss": best.float("val_loss"),
        }
    return checked


def _weights(record: Record) -> str:
    """The stored number format (absent means float32); anything unknown is refused."""
    weights = record.str("weights")
    if weights not in STORED_WEIGHTS:
        raise record.error("weights", f"one of {', '.join(STORED_WEIGHTS)}", weights)
    return weights


def _metrics(record: Record) -> dict[str, float]:
    """Metrics are numbers; NaN is allowed (a diverged evaluation is recorded as such)."""
    metrics = record.dict("metrics", {})
    for name, value in metrics.items():
        if not is_number(value, finite=False):
            raise record.error(f"metrics.{name}", "a number", value)
    return {name: float(value) for name, value in metrics.items()}


# -- config.json ------------------------------------------------------------------------------


def read_config(folder: Path) -> tuple[dict[str, Any] | None, dict[str, Any] | None]:
    """``(model config, train config)`` from config.json; either may be null."""
    path = folder / CONFIG_FILE
    record = Record(read_checkpoint_json(path), str(path), POINT_AT_CHECKPOINT)
    return record.dict("model", None, nullable=True), record.dict("train", None, nullable=True)
