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

#: How the command line spells each setting that an error can name.
FLAGS = {
    "out_dir": "--out DIR",
    "steps": "--steps N",
    "data": "--data",
    "tokenizer": "--tokenizer",
    "preset": "--preset",
    "init_from": "--init-from",
    "resume": "--resume",
    "overrides": "--set",
    "prompt": "--prompt",
    "block_size": "--set block_size=N",
    "text_field": "--text-field",
    "pattern": "--pattern",
    "unknown": "--unknown reserve",
    "budget": "--budget steps=N|tokens=N|seconds=N",
    "seeds": "--seeds N",
    "vary": "--vary KEY=V1,V2",
}


def _flag(setting: str) -> str:
    return FLAGS.get(setting, f"--set {setting}=...")


# Rules whose fix on the command line is worded differently from the library's.
_REWORDED: dict[str, Callable[[dict[str, Any], str], str]] = {
    "run_exists": lambda d, _: (
        f"{d['path']} already holds a run; pass --resume to continue it, or --out DIR for a new run"
    ),
    "nothing_to_resume": lambda d, _: (
        f"nothing to resume in {d['path']}: it has no checkpoint; drop --resume"
    ),
    "run_finished": lambda d, _: (
        f"the run in {d['path']} already finished its {d['steps']} steps; pass --steps N "
        f"with N > {d['step']} to train further"
    ),
    "differs_from_run": lambda d, setting: (
        f"{FLAGS[setting]} {d['given']} differs from the run's ({d['stored']}); resume "
        "without it, or start a new run with --out DIR"
    ),
    "unknown_key": lambda d, setting: (
        f"unknown {FLAGS.get(setting, setting)} key {d['key']!r}; valid keys are {d['valid']}"
    ),
    "tokenizer_with_init_from": lambda d, _: (
        "--init-from uses the checkpoint's tokenizer; drop --tokenizer"
    ),
    "init_from_changes_shape": lambda d, _: (
        f"--init-from keeps the model's shape; only dropout can be set, not {d['key']} "
        f"(the model has {d['key']}={d['value']!r})"
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
        return f"{message} ({_flag(exc.setting)})"
    return message
