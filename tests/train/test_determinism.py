"""Bit-identical runs on CPU, whatever the number of threads (docs/training.md, Determinism).

Each run is a fresh process, as two ``tinylm train`` runs would be: some kernels'
results depend on memory layout and thread timing only across processes (the
backward of plain indexing did, which is why the token embedding uses
``F.embedding``), so comparing inside one process could miss the difference.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[2] / "src"

RUN = """
import hashlib, sys, torch
from tinylm.model import GPT, ModelConfig
from tinylm.train.optim import build_optimizer
torch.set_num_threads(int(sys.argv[1]))
recipes = [
    ("fused", "adamw", {}),
    ("fused", "muon", {"position": "rope", "activation": "swiglu", "norm": "rmsnorm"}),
    ("explicit", "adamw", {}),
]
for kernels, name, recipe in recipes:
    torch.manual_seed(0)
    config = ModelConfig(vocab_size=65, block_size=64, n_layer=2, bias=False, kernels=kernels,
                         **recipe)
    model = GPT(config)
    optimizer = build_optimizer(model, name, lr=1e-3)
    g = torch.Generator().manual_seed(1)
    for _ in range(3):
        x = torch.randint(0, 65, (12, 64), generator=g)
        y = torch.randint(0, 65, (12, 64), generator=g)
        _, loss = model(x, y)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        optimizer.zero_grad()
    weights = b"".join(p.detach().numpy().tobytes() for p in model.parameters())
    print(kernels, name, hashlib.sha256(weights).hexdigest())
"""


def weights_digests(threads: int) -> str:
    env = {**os.environ, "PYTHONPATH": str(SRC)}
    out = subprocess.run(
        [sys.executable, "-c", RUN, str(threads)],
        env=env,
        check=True,
        capture_output=True,
        text=True,
    )
    return out.stdout.strip()


@pytest.mark.slow
def test_training_steps_are_bit_identical_for_one_and_two_threads():
    """Three steps of three recipes, in fresh processes: 1 thread, 2 threads, 2 again."""
    digests = [weights_digests(threads) for threads in (1, 2, 2)]
    assert len(digests[0].splitlines()) == 3
    assert digests[0] == digests[1] == digests[2], digests
