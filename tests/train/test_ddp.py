"""Data parallelism: two CPU processes under torchrun train like one with twice the batch.

Both ranks draw the same offsets from the same seeded generator and keep disjoint
halves (see ``tinylm.data.batches``), so the two-process run sees exactly the
examples of the one-process run with ``batch_size`` doubled. DDP averages the two
half-batch gradients, which equals the full-batch gradient up to float rounding;
the tolerance below (relative 1e-5 on losses, 1e-5 absolute on weights) is that
rounding, accumulated over a few steps.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import torch.distributed
from safetensors.torch import load_file

from tinylm.cli.main import main

TEXT = (
    "Now is better than never. Although never is often better than right now. If the "
    "implementation is hard to explain, it's a bad idea. Namespaces are one honking "
    "great idea -- let's do more of those!\n"
) * 10

COMMON = [
    "--set", "n_layer=1", "--set", "n_embd=16", "--set", "n_head=2", "--set", "block_size=32",
    "--set", "grad_accum=2", "--set", "eval_every=4", "--set", "eval_batches=2",
    "--set", "sample_tokens=10", "--set", "dropout=0.0", "--steps", "4", "--quiet",
]  # fmt: skip


def records(run: Path) -> tuple[list[float], list[float]]:
    lines = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    return [r["loss"] for r in lines if "loss" in r], [
        r["val_loss"] for r in lines if "val_loss" in r
    ]


@pytest.mark.skipif(not torch.distributed.is_available(), reason="torch.distributed missing")
def test_two_processes_match_one_process_with_the_global_batch(tmp_path):
    corpus = tmp_path / "zen.txt"
    corpus.write_text(TEXT, encoding="utf-8")
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    ddp = tmp_path / "ddp"
    command = [
        sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
        "-m", "tinylm.cli.main", "train", "--data", str(corpus), "--out", str(ddp),
        "--set", "batch_size=2", *COMMON,
    ]  # fmt: skip
    result = subprocess.run(command, capture_output=True, text=True, env=env, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    assert result.stdout.count("trained 4 steps") == 1  # only rank 0 reports

    single = tmp_path / "single"
    argv = ["train", "--data", str(corpus), "--out", str(single), "--set", "batch_size=4"]
    assert main([*argv, *COMMON]) == 0

    ddp_train, ddp_val = records(ddp)
    one_train, one_val = records(single)
    assert len(ddp_train) == 4 and len(ddp_val) == 1
    torch.testing.assert_close(ddp_train, one_train, rtol=1e-5, atol=0)
    torch.testing.assert_close(ddp_val, one_val, rtol=1e-5, atol=0)
    ddp_weights = load_file(ddp / "ckpt-000004" / "model.safetensors")
    one_weights = load_file(single / "ckpt-000004" / "model.safetensors")
    assert ddp_weights.keys() == one_weights.keys()
    for name in ddp_weights:
        torch.testing.assert_close(ddp_weights[name], one_weights[name], rtol=0, atol=1e-5)
