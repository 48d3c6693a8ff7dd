"""Kill -9 at the worst moments, resume, and get the uninterrupted run bit for bit.

A training run is started again and again in a child process that SIGKILLs
itself at a chosen moment: while a checkpoint folder is half-written, between
the two renames that replace ``best/``, half-way through a line of
``metrics.jsonl``, and at random wall-clock times. Each restart resumes when a
checkpoint exists (or starts over when none does). When the run finally
finishes, its losses, final weights and best checkpoint must equal those of a
run that was never interrupted, and no temporary folder may be left behind.

The kills are injected from outside the library: the child wraps a few of
tinylm's own functions before calling the CLI, so nothing in tinylm knows it
is being tested.
"""

from __future__ import annotations

import json
import os
import random
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from tinylm.checkpoint import CheckpointManager, read_checkpoint_meta
from tinylm.run_layout import LOCK_FILE

CORPUS = "It was the best of times, it was the worst of times, it was the age of wisdom.\n" * 40

STEPS = 12
ARGS = [
    "--steps", str(STEPS), "--quiet",
    "--set", "n_layer=1", "--set", "n_embd=16", "--set", "n_head=2", "--set", "block_size=16",
    "--set", "batch_size=4", "--set", "eval_every=2", "--set", "eval_batches=1",
    "--set", "checkpoint_every=2", "--set", "sample_every=0", "--set", "keep_last=2",
]  # fmt: skip

# The child: wrap one of tinylm's functions so the process kills itself there, then run the CLI.
CHILD = r"""
import os, signal, sys, threading

kind, _, arg = os.environ["KILL_AT"].partition(":")
calls = [0]

def due():
    calls[0] += 1
    return calls[0] == int(arg)

def die():
    os.kill(os.getpid(), signal.SIGKILL)

import tinylm.fileio as fileio
from tinylm.train.metrics import MetricsLogger

if kind == "half-written":  # a checkpoint or data folder filled but not yet renamed
    fsync_tree = fileio.fsync_tree
    def wrapped(root):
        if due():
            die()
        fsync_tree(root)
    fileio.fsync_tree = wrapped
elif kind == "between-renames":  # the old folder set aside, the new one not yet in place
    rename = os.rename
    def wrapped(src, dst):
        rename(src, dst)
        if ".old-" in os.path.basename(str(dst)) and due():
            die()
    os.rename = wrapped
elif kind == "torn-line":  # half a metrics line on disk
    log = MetricsLogger.log
    def wrapped(self, record):
        if due():
            with open(self.path, "a", encoding="utf-8") as handle:
                handle.write('{"step": ' + str(record["step"]) + ', "lo')
            die()
        log(self, record)
    MetricsLogger.log = wrapped
elif kind == "after":  # a random moment
    threading.Timer(float(arg), die).start()

from tinylm.cli.main import main
sys.exit(main(sys.argv[1:]))
"""


def train(out: Path, corpus: Path, kill_at: str = "none:0") -> int:
    """One training process (resuming when ``out`` has a checkpoint); its exit status,
    which must be 0 or -9 (killed): a kill never leaves a run that cannot continue. A
    resume of a run killed after its final checkpoint says it has finished: that is 0."""
    resume = ["--resume"] if CheckpointManager(out).latest() is not None else []
    env = {
        **os.environ,
        "KILL_AT": kill_at,
        "OMP_NUM_THREADS": "1",  # same arithmetic in every process
        "PYTHONPATH": os.pathsep.join(filter(None, [str(Path(__file__).parents[2] / "src"),
                                                    os.environ.get("PYTHONPATH")])),
    }  # fmt: skip
    argv = ["train", "--data", str(corpus), "--out", str(out), *ARGS, *resume]
    done = subprocess.run(
        [sys.executable, "-c", CHILD, *argv], env=env, capture_output=True, text=True, timeout=300
    )
    finished = done.returncode == 2 and "already finished its" in done.stderr
    assert done.returncode in (0, -9) or finished, f"{kill_at}: {done.returncode}: {done.stderr}"
    return 0 if finished else done.returncode  # killed after its last checkpoint: done


def losses(run: Path) -> list[tuple[int, float]]:
    records = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    return [(r["step"], r["loss"]) for r in records if "loss" in r]


def val_losses(run: Path) -> list[tuple[int, float]]:
    records = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    return [(r["step"], r["val_loss"]) for r in records if "val_loss" in r]


@pytest.mark.slow
def test_sigkill_at_any_moment_then_resume_equals_the_uninterrupted_run(tmp_path):
    corpus = tmp_path / "corpus.txt"
    corpus.write_text(CORPUS, encoding="utf-8")
    whole = tmp_path / "whole"
    assert train(whole, corpus) == 0

    rng = random.Random(13)
    kills = [
        "half-written:1",  # the data cache, before any checkpoint: the next start starts over
        "half-written:3",  # the second checkpoint folder, half-written
        "between-renames:1",  # best/ set aside, its successor not yet in place
        "torn-line:4",  # a metrics line cut in half
        f"after:{rng.uniform(2.0, 6.0):.2f}",
        f"after:{rng.uniform(2.0, 6.0):.2f}",
        "half-written:2",
        "between-renames:1",
    ]
    run = tmp_path / "run"
    killed = 0
    for kill_at in kills:
        status = train(run, corpus, kill_at)
        killed += status == -9
        if status == 0:
            break
    assert killed >= 5  # the schedule really interrupted the run that often
    while train(run, corpus) != 0:  # pragma: no cover - a clean run must finish
        pytest.fail("a resume without kills did not finish")

    assert losses(run) == losses(whole)  # every step, bit for bit
    assert val_losses(run) == val_losses(whole)
    final = f"ckpt-{STEPS:06d}"
    for name in ("model.safetensors", "optimizer.safetensors", "rng.safetensors"):
        ours, theirs = load_file(run / final / name), load_file(whole / final / name)
        assert ours.keys() == theirs.keys()
        # numpy's and python's global RNGs are seeded by each process from the OS and
        # never drawn from by training, so two processes legitimately differ there.
        same = [torch.equal(ours[k], theirs[k]) for k in ours if k not in ("numpy", "python")]
        assert all(same), name
    best, best_whole = read_checkpoint_meta(run / "best"), read_checkpoint_meta(whole / "best")
    assert (best.step, best.metrics) == (best_whole.step, best_whole.metrics)
    leftovers = [p.name for p in run.rglob(".*") if p.name != LOCK_FILE]  # the lock stays
    assert leftovers == [], leftovers
