"""Every name a run folder holds, in one place: what ``tinylm train`` writes where.

A run folder (``runs/<name>`` by default) holds::

    run.json                 RUN_FILE: what was trained (model and train config, data, tokenizer)
    metrics.jsonl            METRICS_FILE: one line per step / evaluation / sample
    loss.png                 PLOT_FILE: the loss curves
    tensorboard/             TENSORBOARD_DIR: the same numbers, when TensorBoard is installed
    .lock                    LOCK_FILE: held by the one process training into the folder
    data/<key>/              DATA_CACHE: prepared data made from raw text (see tinylm.data.prepared)
    compare.json             COMPARE_RESULT_FILE: a finished ``tinylm compare`` run's numbers
    inspect/                 INSPECT_DIR: where ``tinylm inspect`` writes its figures
    ckpt-000500/             checkpoint_name(500): the last few step checkpoints
    best/                    BEST_DIR: the checkpoint with the lowest validation loss

and each checkpoint folder holds::

    model.safetensors        MODEL_FILE: the weights; tied tensors stored once
    optimizer.safetensors    OPTIMIZER_FILE: every tensor of the optimizer's state
    optimizer.json           OPTIMIZER_JSON: the rest of the optimizer's state
    config.json              CONFIG_FILE: {"model": ..., "train": ...}
    tokenizer.json           TOKENIZER_FILE: the tokenizer, so sampling needs only the folder
    chat_template.json       CHAT_TEMPLATE_FILE: the chat template, in a fine-tuned chat model
    rng.safetensors          RNG_FILE: every RNG state, for an exact resume
    state.json               STATE_FILE: format, version, step, metrics, the trainer's extra

A LoRA adapter's folder (``tinylm.checkpoint.adapter``, saved beside or inside a
run) holds ``adapter.safetensors`` (ADAPTER_FILE: the adapters' A and B) and
``adapter.json`` (ADAPTER_JSON: the LoRA settings and which base it was trained on).

A comparison's folder (its out folder) holds ``plan.json``
(COMPARE_PLAN_FILE: what every run shares), ``data/`` and ``runs/<slug>/``, and
when it tunes learning rates ``tune/<slug>/`` (COMPARE_TUNE_DIR: the sweep's runs).

Why one module: these names are a file format. Every layer reads or writes some
of them (training writes, the run layer resumes, the server, inspector, comparer
and exporter read), and a name spelt twice is a name that can drift. This module
imports only the standard library, so any layer may use it, torch or not.
"""

from __future__ import annotations

import re
from pathlib import Path

#: Where runs go when no folder is named (``runs/<preset>``), and where a
#: comparison keeps its runs inside its own folder (``<out>/runs/<variant>``).
RUNS_DIR = "runs"
RUNS_ROOT = Path(RUNS_DIR)

# -- the run folder -------------------------------------------------------------------------

RUN_FILE = "run.json"
METRICS_FILE = "metrics.jsonl"
PLOT_FILE = "loss.png"
TENSORBOARD_DIR = "tensorboard"
LOCK_FILE = ".lock"
DATA_CACHE = "data"
COMPARE_RESULT_FILE = "compare.json"
COMPARE_PLAN_FILE = "plan.json"  # in a comparison's folder: what all its runs share
COMPARE_TUNE_DIR = "tune"  # in a comparison's folder: the learning-rate sweep's runs
INSPECT_DIR = "inspect"
BEST_DIR = "best"

# -- one checkpoint folder ------------------------------------------------------------------

MODEL_FILE = "model.safetensors"
OPTIMIZER_FILE = "optimizer.safetensors"
OPTIMIZER_JSON = "optimizer.json"
CONFIG_FILE = "config.json"
TOKENIZER_FILE = "tokenizer.json"
CHAT_TEMPLATE_FILE = "chat_template.json"
RNG_FILE = "rng.safetensors"
STATE_FILE = "state.json"

# -- a LoRA adapter folder ---------------------------------------------------------------------

ADAPTER_FILE = "adapter.safetensors"
ADAPTER_JSON = "adapter.json"

# -- step checkpoints -------------------------------------------------------------------------

CHECKPOINT_PREFIX = "ckpt-"
_CHECKPOINT_NAME = re.compile(rf"^{CHECKPOINT_PREFIX}(\d+)$")


def checkpoint_name(step: int) -> str:
    """``ckpt-000123``: zero-padded so that a plain listing sorts by step."""
    return f"{CHECKPOINT_PREFIX}{step:06d}"


def checkpoint_step(name: str) -> int | None:
    """The step a folder name ``ckpt-N`` stands for; ``None`` for any other name."""
    match = _CHECKPOINT_NAME.match(name)
    return int(match.group(1)) if match else None


def step_checkpoints(run_dir: Path) -> list[Path]:
    """The run's step checkpoint folders, oldest first (by step, not by name)."""
    if not run_dir.is_dir():
        return []
    found = [
        (step, entry)
        for entry in run_dir.iterdir()
        if entry.is_dir() and (step := checkpoint_step(entry.name)) is not None
    ]
    return [entry for _, entry in sorted(found)]
