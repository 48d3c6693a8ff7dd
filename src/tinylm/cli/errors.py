"""Library errors in the command line's words.

The library names settings (``out_dir``, ``block_size``); a user of ``tinylm``
types flags (``--out DIR``, ``--set block_size=N``). A
:class:`~tinylm.errors.SettingError` carries the setting's name, and this module
adds the flag: either by rewording the rule that was broken (the run-folder rules,
whose fix is a different command line) or by appending the flag to the message.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from tinylm.errors import SettingError, TinylmError

#: The flag that sets each setting an error can name; any other setting is a model or
#: train config field, set with ``--set NAME=VALUE``.
FLAGS = {
    "out_dir": "--out",
    "steps": "--steps",
    "data": "--data",
    "tokenizer": "--tokenizer",
    "preset": "--preset",
    "init_from": "--init-from",
    "resume": "--resume",
    "overrides": "--set",
    "prompt": "--prompt",
    "text_field": "--text-field",
    "pattern": "--pattern",
    "unknown": "--unknown",
    "format": "--format",
    "engine": "--engine",
    "budget": "--budget",
    "seeds": "--seeds",
    "vary": "--vary",
    "separator": "--doc-sep",
    "max_batches": "--max-batches",
    "num": "--num",
    "weights": "--weights",
    "tune_points": "--tune-points",
    "tune_factor": "--tune-factor",
    "tune_widen": "--tune-widen",
    "tune_seed": "--tune-seed",
}
#: What to show as the value when an error gives none.
PLACEHOLDERS = {
    "out_dir": "DIR",
    "steps": "N",
    "text_field": "FIELD",
    "budget": "steps=N|tokens=N|seconds=N",
    "seeds": "N",
    "vary": "KEY=V1,V2",
    "separator": "SEP",
    "max_batches": "N",
    "tune_points": "N",
    "tune_factor": "F",
    "tune_widen": "N",
    "tune_seed": "S",
}


def spelled(setting: str, value: Any = None) -> str:
    """How the command line sets ``setting`` (to ``value``): ``--out DIR``, ``--set lr=N``."""
    shown = PLACEHOLDERS.get(setting, "") if value is None else str(value)
    flag = FLAGS.get(setting)
    if flag is None:
        return f"--set {setting}={shown or 'N'}"
    return f"{flag} {shown}".rstrip()


# Rules whose fix on the command line is worded differently from the library's.
_REWORDED: dict[str, Callable[[dict[str, Any], str], str]] = {
    "run_exists": lambda d, _: (
        f"{d['path']} already holds a run; pass --resume to continue it, or --out DIR for a new run"
    ),
    "run_locked": lambda d, _: (
        f"another training{d['holder']} is writing to {d['path']}; wait for it to finish, "
        "or pass --out DIR for a new run"
    ),
    "resume_changes_optimizer": lambda d, _: (
        f"the run in {d['path']} was trained with optimizer {d['stored']!r}, whose saved state "
        f"cannot continue under {d['given']!r}; drop --set optimizer=..., or start a new run "
        "with --out DIR"
    ),
    "resume_changes_engine": lambda d, _: (
        f"the run in {d['path']} was trained by the {d['stored']} engine, not the {d['given']} "
        f"engine; drop --engine {d['given']}, or start a new {d['given']} run from its weights "
        "with --init-from and --out DIR"
    ),
    "nothing_to_resume": lambda d, _: (
        f"nothing to resume in {d['path']}: it has no checkpoint; drop --resume"
    ),
    "run_finished": lambda d, _: (
        f"the run in {d['path']} already finished its {d['steps']} steps; pass --steps N "
        f"with N > {d['step']} to train further"
    ),
    "differs_from_run": lambda d, setting: (
        f"{FLAGS.get(setting, setting)} {d['given']} differs from the run's ({d['stored']}); "
        "resume without it, or start a new run with --out DIR"
    ),
    "unknown_key": lambda d, setting: (
        f"unknown {FLAGS.get(setting, setting)} key {d['key']!r}; valid keys are {d['valid']}"
    ),
    "tokenizer_with_init_from": lambda d, _: (
        "--init-from uses the checkpoint's tokenizer; drop --tokenizer"
    ),
    "chat_without_init_from": lambda d, _: (
        f"--data {d['spec']} fine-tunes a trained model; pass --init-from RUN (a run folder "
        "or checkpoint to start from)"
    ),
    "chat_with_other_data": lambda d, _: (
        f"chat data is one source, alone; give --data {d['spec']} and nothing else"
    ),
    "init_from_changes_shape": lambda d, _: (
        f"--init-from keeps the model's shape; only dropout can be set, not {d['key']} "
        f"(the model has {d['key']}={d['model_value']!r})"
    ),
}


def cli_message(exc: TinylmError) -> str:
    """The one line ``tinylm: error:`` prints for ``exc``."""
    message = str(exc)
    if not isinstance(exc, SettingError):
        return message
    if exc.reason in _REWORDED:
        return _REWORDED[exc.reason](exc.details, exc.setting)
    if exc.reason is None:  # a plain "change this setting": say how, on the command line
        return f"{message} ({spelled(exc.setting, exc.details.get('value'))})"
    return message
