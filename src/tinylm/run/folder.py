"""The run folder and its rules: where a run goes, when it may be reused, resumed, extended.

A run folder (``runs/small`` by default) holds its ``run.json``, metrics, loss
curves, the last few checkpoints and ``best/``, and the data prepared from raw
text; :mod:`tinylm.run_layout` names every file and folder in it.

The rules:

* **Refuse** to start a new run in a folder that holds one (a checkpoint): that
  would mix two runs' metrics and checkpoints. Resume it, or choose another folder.
* **Reuse** a folder without a checkpoint: one holding only the data cache, or the
  ``run.json`` and metrics of a start that failed before its first checkpoint.
* **Resume** continues exactly from the latest checkpoint; the data, tokenizer,
  preset, base model and model shape it was started with cannot change then.
* **Extend** a finished run by resuming it with more ``steps``.
* A start that fails leaves no empty folder behind (only one it created itself).
"""

from __future__ import annotations

import contextlib
import os
from pathlib import Path
from typing import Any

from tinylm.errors import SettingError
from tinylm.run_layout import RUN_FILE, RUNS_ROOT, step_checkpoints
from tinylm.untrusted_files import Record, read_json


def default_out_dir(preset: str, init_from: str | os.PathLike | None = None) -> Path:
    """``runs/<preset>``, or ``runs/<base>-finetune`` when fine-tuning the run ``base``."""
    if init_from is not None:
        return RUNS_ROOT / f"{Path(init_from).name or 'model'}-finetune"
    return RUNS_ROOT / preset


def resolve_out_dir(
    out_dir: str | os.PathLike | None,
    train_settings: dict[str, Any],
    preset: str,
    init_from: str | os.PathLike | None = None,
) -> Path:
    """``out_dir`` if given, else the ``out_dir`` setting, else :func:`default_out_dir`.

    Pops ``out_dir`` from ``train_settings``: the caller puts the resolved folder
    back, so the data cache, checkpoints and summary all use the same one.
    """
    from_settings = train_settings.pop("out_dir", None)
    if out_dir is not None:
        return Path(out_dir)
    if from_settings is not None:
        if not isinstance(from_settings, str) or not from_settings:
            raise SettingError(
                f"out_dir must be a folder name, got {from_settings!r}", setting="out_dir"
            )
        return Path(from_settings)
    return default_out_dir(preset, init_from)


def has_checkpoints(run_dir: Path) -> bool:
    return bool(step_checkpoints(run_dir))


def is_existing_run(run_dir: Path) -> bool:
    """Whether ``run_dir`` holds a run worth keeping: one with a checkpoint.

    A folder with only the data cache, or the ``run.json`` and metrics of a start
    that failed before its first checkpoint, can be trained into again (the stale
    metrics are dropped then).
    """
    return run_dir.is_dir() and has_checkpoints(run_dir)


def refuse_existing_run(out_dir: Path) -> None:
    """A new run must not overwrite one that has checkpoints."""
    if is_existing_run(out_dir):
        raise SettingError(
            f"{out_dir} already holds a run; resume it (resume_run), or choose another "
            "out_dir for a new run",
            setting="out_dir",
            reason="run_exists",
            path=out_dir,
        )


def checkpoint_to_resume(out_dir: Path) -> Path:
    """The latest checkpoint of the run in ``out_dir``; an error when there is none."""
    found = step_checkpoints(out_dir)
    if not found:
        raise SettingError(
            f"nothing to resume in {out_dir}: it has no checkpoint; start a new run there",
            setting="resume",
            reason="nothing_to_resume",
            path=out_dir,
        )
    return found[-1]


def check_unfinished(out_dir: Path, step: int, steps: int) -> None:
    """Resuming a run that has done all its ``steps`` needs a larger ``steps`` (extension)."""
    if step >= steps:
        raise SettingError(
            f"the run in {out_dir} already finished its {steps} steps; set steps above "
            f"{step} to train further",
            setting="steps",
            reason="run_finished",
            path=out_dir,
            steps=steps,
            step=step,
        )


def read_run_info(run_dir: Path) -> dict[str, Any]:
    """``run.json``, checked field by field: it is read from disk, so it is untrusted."""

    path = run_dir / RUN_FILE
    hint = "it was damaged or edited; restore it, or start a new run in another folder"
    missing = f"{run_dir} has no {RUN_FILE}; it is not a tinylm run"
    info = read_json(path, hint, missing=missing)
    record = Record(info, str(path), hint)
    record.dict("model")
    record.dict("train")
    if "chat" in info:  # a chat fine-tune renders its conversations, it prepares no tokens
        record.dict("chat")
        record.list("data")
    else:
        record.str("prepared")
    for key in ("tokenizer", "preset", "init_from"):
        if info.get(key) is not None:
            record.str(key)
    data = record.list("data", [])
    if not all(isinstance(spec, str) for spec in data):
        raise record.error("data", "a list of paths", data)
    return info


def check_same_run(
    run: dict[str, Any],
    out_dir: Path,
    model_settings: dict[str, Any],
    given: dict[str, Any],
) -> None:
    """When resuming, what chose the data, tokenizer or model must match the run's.

    ``given`` maps ``data``, ``tokenizer``, ``preset`` and ``init_from`` to what the
    caller passed (``None``: not given, nothing to check). Restating the run's own
    values is fine, so a command line can be repeated with resume added, in the
    spelling the run was started with or today's (``attention=explicit`` and
    ``kernels=explicit`` restate the same switch).
    """
    # torch-free: importing tinylm.model loads torch, and the folder rules serve every command
    from tinylm.model.config import current_spelling

    stored_model = run.get("model") or {}
    stored_now = current_spelling(stored_model)[0]
    for key, value in model_settings.items():
        given_now = current_spelling({key: value})[0]
        same_now = all(stored_now.get(k) == v for k, v in given_now.items())
        if stored_model.get(key) != value and not same_now:
            raise SettingError(
                f"cannot change model field {key!r} when resuming {out_dir}",
                setting=key,
                reason="resume_changes_model",
            )
    for setting, value in given.items():
        stored = run.get(setting)
        if value is None or value == stored:
            continue
        if setting == "init_from" and stored and _same_checkpoint(value, stored):
            continue
        raise SettingError(
            f"{setting} {value} differs from the run's ({stored}); resume without it, or "
            "start a new run in another out_dir",
            setting=setting,
            reason="differs_from_run",
            given=value,
            stored=stored,
        )


def check_same_separator(stored: Any, out_dir: Path, separator: str | None) -> None:
    """A resume trains on the documents the run was prepared with: another separator is refused.

    The run's data was cut into documents once, when it started; a separator given
    on resume could not change that, so accepting it would say one thing and do
    another. ``None`` (not given) and restating the run's own separator are fine.
    """
    if separator is None or separator == stored:
        return
    had = f"documents cut by {stored!r}" if isinstance(stored, str) else "an unrecorded separator"
    raise SettingError(
        f"the run in {out_dir} was prepared with {had}, not {separator!r}; resume without "
        "a separator, or start a new run in another out_dir to cut the text differently",
        setting="separator",
        reason="differs_from_run",
        given=separator,
        stored=stored,
    )


def check_same_optimizer(
    run: dict[str, Any], out_dir: Path, train_settings: dict[str, Any]
) -> None:
    """A resume keeps the run's optimiser: its saved state (moments, step counts) is that one's.

    Loading Muon's state into AdamW, or back, cannot continue the run exactly; it
    is refused before anything is written, so the run stays resumable as it was.
    """
    stored = run["train"].get("optimizer")
    wanted = train_settings.get("optimizer", stored)
    if stored is not None and wanted != stored:
        raise SettingError(
            f"the run in {out_dir} was trained with optimizer {stored!r}, whose saved state "
            f"cannot continue under {wanted!r}; resume without changing optimizer, or start a "
            "new run in another out_dir",
            setting="optimizer",
            reason="resume_changes_optimizer",
            path=out_dir,
            stored=stored,
            given=wanted,
        )


#: The LoRA settings and their values in a run saved before they existed (full training).
LORA_SETTINGS = {
    "lora_rank": 0,
    "lora_alpha": 16.0,
    "lora_dropout": 0.0,
    "lora_targets": ["attn", "ffn"],
}


def check_same_lora(run: dict[str, Any], out_dir: Path, train_settings: dict[str, Any]) -> None:
    """A resume keeps the run's LoRA settings: its checkpoints hold those adapters (or none)."""
    for key, default in LORA_SETTINGS.items():
        stored = run["train"].get(key, default)
        wanted = train_settings.get(key, stored)
        if isinstance(wanted, (str, tuple)) and key == "lora_targets":  # "attn" or a tuple
            wanted = [wanted] if isinstance(wanted, str) else list(wanted)
        if wanted != stored:
            raise SettingError(
                f"the run in {out_dir} was trained with {key}={stored!r}, and its checkpoints "
                f"hold what that trains; resume without changing {key}, or start a new run "
                "in another out_dir",
                setting=key,
                reason="resume_changes_lora",
                path=out_dir,
                stored=stored,
                given=wanted,
            )


def _same_checkpoint(given: str, stored: str) -> bool:
    """Whether ``given`` names the checkpoint the run recorded (or the run it came from)."""
    given_path, stored_path = Path(given).resolve(), Path(stored).resolve()
    return given_path == stored_path or given_path == stored_path.parent


def relative_to(path: Path, root: Path) -> Path:
    """``path`` relative to ``root`` when inside it (so a run folder can be moved)."""
    try:
        return path.resolve().relative_to(root.resolve())
    except ValueError:
        return path.resolve()


def remove_if_empty(folder: Path) -> None:
    """Remove ``folder`` if it is empty (a failed start's), and never anything else."""
    with contextlib.suppress(OSError):
        folder.rmdir()
