"""Training benchmark: nanoGPT's "baby" Shakespeare run, and how fast tinylm can beat it.

Run from the repository root::

    python bench/bench_train.py            # the full benchmark (~15 min on 2 CPU cores)
    python bench/bench_train.py --quick    # a one-minute smoke run of the same pipeline

Data: Tiny Shakespeare, character level, first 90% train and last 10% val (as
nanoGPT's ``shakespeare_char``), read from ``<repo>/../shared/data/corpora`` or
``$TINYLM_DATA/corpora``.

Two measurements, in the same process, one after the other:

1. **baby**: nanoGPT's CPU config from its README (4 layers, 4 heads, 128 wide,
   block 64, batch 12, AdamW lr 1e-3 cosine to 1e-4 over 2000 iterations with 100
   warm-up, beta2 0.99, weight decay 0.1 on every matrix, grad clip 1, dropout 0,
   learned positions, GELU, LayerNorm, no biases (nanoGPT's ``train.py`` default),
   tied embeddings). Reported: val loss at 2000 iterations, ms/iteration, tokens/s,
   MFU, and the training time at which val loss first reached the target (1.88).
2. **best**: the fastest configuration found with tinylm's options; reported:
   training time to reach the same target.

Val loss is measured every ``--eval-every`` iterations on a fixed set of val
batches (the same windows for every configuration with the same block size);
evaluation time is excluded from the training time. MFU is the model's FLOP/s
(6 x non-position parameters + attention, per token, as in nanoGPT/PaLM) divided
by the dense float32 matmul FLOP/s measured at the start of the same run.

The machine is shared and noisy: compare the ratios, not the absolute times.
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from tinylm.data.batches import fixed_batches
from tinylm.device import autocast
from tinylm.inference.evaluation import mean_loss
from tinylm.model import GPT, ModelConfig
from tinylm.tokenizers.char import CharTokenizer
from tinylm.train.config import TrainConfig
from tinylm.train.trainer import Trainer

REPO = Path(__file__).resolve().parents[1]
DATA_DIR = Path(os.environ.get("TINYLM_DATA", REPO.parent / "shared" / "data"))
CORPUS = DATA_DIR / "corpora" / "tinyshakespeare.txt"

BABY_MODEL = {
    "block_size": 64,
    "n_layer": 4,
    "n_head": 4,
    "n_embd": 128,
    "position": "learned",
    "activation": "gelu",
    "norm": "layernorm",
    "bias": False,
    "tie_embeddings": True,
    "dropout": 0.0,
}
BABY_TRAIN = {
    "optimizer": "adamw",
    "steps": 2000,
    "batch_size": 12,
    "lr": 1e-3,
    "min_lr": 1e-4,
    "warmup_steps": 100,
    "schedule": "cosine",
    "betas": (0.9, 0.99),
    "weight_decay": 0.1,
    "decay_embeddings": True,
    "grad_clip": 1.0,
}


@dataclass
class Candidate:
    """One configuration to time: model fields, train fields, and a label."""

    name: str
    description: str
    model: dict[str, Any]
    train: dict[str, Any]
    baseline: bool = False  # run the whole schedule, then on until the target (--extend)


@dataclass
class Result:
    name: str
    description: str
    steps: int = 0
    train_seconds: float = 0.0
    final_val: float = float("nan")
    target_seconds: float | None = None
    target_step: int | None = None
    tokens_per_step: int = 0
    flops_per_token: float = 0.0
    curve: list[tuple[int, float, float]] = field(default_factory=list)

    @property
    def ms_per_step(self) -> float:
        return 1000 * self.train_seconds / max(self.steps, 1)

    @property
    def tokens_per_s(self) -> float:
        return self.tokens_per_step * self.steps / max(self.train_seconds, 1e-9)


def candidates(quick: bool) -> list[Candidate]:
    """The baby baseline and the best configuration found (see docs/training.md)."""
    steps = 60 if quick else BABY_TRAIN["steps"]
    baby = Candidate(
        "baby",
        "nanoGPT baby: learned/gelu/layernorm, AdamW 1e-3, batch 12 x 64",
        BABY_MODEL,
        {**BABY_TRAIN, "steps": steps, "warmup_steps": min(100, steps // 10)},
        baseline=True,
    )
    best_steps = 40 if quick else 300
    best = Candidate(
        "best",
        f"rope/swiglu/rmsnorm, Muon 0.02 + AdamW 3e-3, linear decay to 0 over {best_steps}, "
        "batch 16 x 64",
        {**BABY_MODEL, "position": "rope", "activation": "swiglu", "norm": "rmsnorm"},
        {
            **BABY_TRAIN,
            "steps": best_steps,
            "batch_size": 16,
            "optimizer": "muon",
            "muon_lr": 0.02,
            "lr": 3e-3,
            "min_lr": 0.0,
            "schedule": "linear",
            "warmup_steps": best_steps // 10,
            "decay_embeddings": False,
        },
    )
    return [baby, best]


# -- measurements ---------------------------------------------------------------------------


def matmul_flops(seconds: float = 2.0, size: int = 1024) -> float:
    """Dense float32 matmul FLOP/s of this machine now (the MFU denominator)."""
    a, b = torch.randn(size, size), torch.randn(size, size)
    for _ in range(3):
        a @ b  # warm up
    count, start = 0, time.perf_counter()
    while time.perf_counter() - start < seconds:
        a @ b
        count += 1
    return 2 * size**3 * count / (time.perf_counter() - start)


def flops_per_token(model: GPT) -> float:
    """Training FLOPs per token: 6 per weight (forward + backward) plus attention scores.

    The learned position table is a lookup, not a matmul, so it is left out; the
    token embedding counts because, tied, it is also the output projection.
    """
    c = model.config
    counts = model.param_counts()
    weights = counts["total"] - counts["position_embedding"]
    return 6 * weights + 12 * c.n_layer * c.n_embd * c.block_size


def cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def load_shakespeare() -> tuple[CharTokenizer, np.ndarray, np.ndarray]:
    if not CORPUS.is_file():
        sys.exit(f"{CORPUS} not found; set TINYLM_DATA to the shared data folder")
    text = CORPUS.read_text(encoding="utf-8")
    tokenizer = CharTokenizer.train(text)
    ids = np.asarray(tokenizer.encode(text), dtype=np.uint16)
    cut = int(0.9 * len(ids))
    return tokenizer, ids[:cut], ids[cut:]


def run_candidate(
    cand: Candidate,
    tokenizer: CharTokenizer,
    train: np.ndarray,
    val: np.ndarray,
    args: argparse.Namespace,
) -> Result:
    """Train one configuration, evaluating every ``eval_every`` steps; time only training."""
    torch.manual_seed(1337)
    model = GPT(ModelConfig(vocab_size=tokenizer.vocab_size, **cand.model))
    config = TrainConfig(
        **cand.train, eval_every=0, out_dir=None, progress=False, seed=1337, device="cpu"
    )
    trainer = Trainer(model, train, val, tokenizer, config)
    val_batches = fixed_batches(
        val, model.config.block_size, args.eval_batch_size, args.eval_batches, 42, trainer.device
    )
    result = Result(cand.name, cand.description, flops_per_token=flops_per_token(model))
    result.tokens_per_step = trainer.batches.tokens_per_step
    # The baseline runs its full schedule (for the end loss) and, if it has not reached
    # the target by then, keeps going at its final learning rate for up to --extend x.
    limit = int(config.steps * args.extend) if cand.baseline else config.steps
    while trainer.step < limit:
        start = time.perf_counter()
        trainer.train_step()
        result.train_seconds += time.perf_counter() - start
        result.steps = trainer.step
        if trainer.step % args.eval_every and trainer.step != config.steps:
            continue
        loss, _ = mean_loss(model, val_batches, lambda: autocast(trainer.device, trainer.amp_dtype))
        result.curve.append((trainer.step, result.train_seconds, loss))
        if trainer.step == config.steps:
            result.final_val = loss
        print(
            f"  {cand.name:>5} step {trainer.step:5d}  val {loss:.4f}  "
            f"train {result.train_seconds:7.1f} s  {result.ms_per_step:6.1f} ms/step",
            flush=True,
        )
        if result.target_seconds is None and loss <= args.target:
            result.target_seconds, result.target_step = result.train_seconds, trainer.step
        if result.target_seconds is not None and (
            trainer.step >= config.steps or not cand.baseline
        ):
            break
    return result


# -- report ----------------------------------------------------------------------------------


def table(results: list[Result], peak: float, target: float) -> str:
    """The markdown table; the last column is each time to target over the baseline's.

    When the baseline never reaches the target, its whole training time is a lower
    bound on its time to target, so the ratios become upper bounds ("< x").
    """
    base = results[0]
    base_seconds = base.target_seconds or base.train_seconds
    bound = "<" if base.target_seconds is None else ""
    lines = [
        f"| config | what | iters run | val loss at schedule end | ms/iter | tokens/s | MFU | "
        f"time to val {target} | vs baby |",
        "|---|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in results:
        mfu = r.flops_per_token * r.tokens_per_s / peak
        if r.target_seconds is None:
            reach = f"not reached (> {r.train_seconds:.1f} s)"
            ratio = "1" if r is base else "-"
        else:
            reach = f"{r.target_seconds:.1f} s (iter {r.target_step})"
            ratio = "1" if r is base else f"{bound}{r.target_seconds / base_seconds:.2f}x"
        end = f"{r.final_val:.4f}" if r.final_val == r.final_val else "-"
        lines.append(
            f"| {r.name} | {r.description} | {r.steps} | {end} | {r.ms_per_step:.1f} | "
            f"{r.tokens_per_s:,.0f} | {100 * mfu:.1f}% | {reach} | {ratio} |"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="a short smoke run")
    parser.add_argument("--target", type=float, default=None, help="val loss to reach (1.88)")
    parser.add_argument("--eval-every", type=int, default=None, help="iterations (default 50)")
    parser.add_argument("--eval-batches", type=int, default=None, help="fixed val batches (20)")
    parser.add_argument("--eval-batch-size", type=int, default=32)
    parser.add_argument(
        "--extend", type=float, default=1.5, help="baseline may run this x its steps to the target"
    )
    parser.add_argument("--threads", type=int, default=None, help="torch threads (all cores)")
    parser.add_argument("--only", nargs="+", help="run only these configs (baby, best)")
    args = parser.parse_args(argv)
    args.target = args.target or (2.6 if args.quick else 1.88)
    args.eval_every = args.eval_every or (20 if args.quick else 50)
    args.eval_batches = args.eval_batches or (5 if args.quick else 20)
    if args.threads:
        torch.set_num_threads(args.threads)

    tokenizer, train, val = load_shakespeare()
    peak = matmul_flops(1.0 if args.quick else 3.0)
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    print(
        f"torch {torch.__version__}, {torch.get_num_threads()} threads, {cpu_name()}; "
        f"load average {load:.2f}; dense fp32 matmul {peak / 1e9:.1f} GFLOP/s; "
        f"{len(train):,} train / {len(val):,} val chars",
        flush=True,
    )
    results = []
    for cand in candidates(args.quick):
        if args.only and cand.name not in args.only:
            continue
        results.append(run_candidate(cand, tokenizer, train, val, args))
    print()
    print(table(results, peak, args.target))
    return 0


if __name__ == "__main__":
    sys.exit(main())
