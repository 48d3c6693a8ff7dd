"""Does the built-in multiple-choice task tell a trained model from an untrained one?

Run ``python bench/mc_builtin_task.py RUN [RUN ...]`` (trained runs on the built-in
corpus, e.g. ``tinylm train --steps 200 --out /tmp/mt200``). It scores
``pydocs-continue`` with each run and with two random initialisations of the first
run's model shape (seeds 0 and 1, the first run's tokenizer), and prints acc and
acc_norm with their standard errors beside chance.
"""

from __future__ import annotations

import argparse
import math

import torch

from _common import data_path  # noqa: F401, I001 (puts the checkout's src on the path first)
from tinylm.data.mc_tasks import pydocs_continue  # noqa: E402
from tinylm.inference.benchmarks import score_task  # noqa: E402
from tinylm.inference.loading import load_model  # noqa: E402
from tinylm.model import GPT  # noqa: E402


def standard_error(p: float, n: int) -> float:
    return math.sqrt(p * (1 - p) / n)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("runs", nargs="+", help="trained run folders")
    args = parser.parse_args()
    task = pydocs_continue()
    n = len(task.items)
    print(f"{task.name}: {n} items, chance {task.chance:.3f}")
    for number, run in enumerate(args.runs):
        model, tokenizer, _ = load_model(run, "cpu", require_tokenizer=True)
        models = [(run, model)]
        if number == 0:
            for seed in (0, 1):
                torch.manual_seed(seed)
                models.insert(seed, (f"untrained (seed {seed})", GPT(model.config).eval()))
        for label, scored in models:
            result = score_task(scored, tokenizer, task, batch_size=64, progress=False)
            print(
                f"{label:24s} acc {result.acc:.3f} ± {standard_error(result.acc, n):.3f}  "
                f"acc_norm {result.acc_norm:.3f} ± {standard_error(result.acc_norm, n):.3f}",
                flush=True,
            )


if __name__ == "__main__":
    main()
