"""One training step, tinylm against plain PyTorch, on nanoGPT's "baby" Shakespeare config.

Run from the repository root::

    python bench/bench_step.py                 # 1 and 2 threads, ~5 minutes on 2 cores
    python bench/bench_step.py --quick         # a smoke run of the same pipeline
    python bench/bench_step.py --compile       # also the compiled step and its compile time
    python bench/bench_step.py --cli-before ../main-before/src   # default `tinylm train`

The **reference** is a training step written the way minimal GPT trainers write it
(nanoGPT, and most tutorials): ``nn.Embedding`` tables, ``nn.LayerNorm``,
``nn.GELU``, one fused QKV ``nn.Linear``, ``F.scaled_dot_product_attention``, a tied
head, ``torch.optim.AdamW`` with weight decay on the matrices, global-norm clipping,
batches drawn with ``torch.randint`` from the token array. Configuration: 4 layers,
4 heads, 128 wide, block 64, batch 12, no bias, dropout 0, AdamW lr 1e-3 betas
(0.9, 0.99), clip 1.

**tinylm** runs the same configuration through ``Trainer.train_step`` (batch
drawing, schedule, forward, backward, clipping, AdamW, the step record): the
default fused kernels, and the written-out ``explicit`` path, to show what the
readable formulas cost.

The machine is shared, so absolute times are noise: the sides alternate in short
rounds, each step is timed, and the result is the ratio of the medians. MFU is
model FLOP/s over the float32 matmul rate measured in the same run, at the same
thread count.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from _common import data_path
from tinylm.model import GPT, ModelConfig
from tinylm.tokenizers.char import CharTokenizer
from tinylm.train.config import TrainConfig
from tinylm.train.trainer import Trainer

LAYERS, HEADS, WIDTH, BLOCK, BATCH = 4, 4, 128, 64, 12
LR, BETAS, WEIGHT_DECAY, CLIP = 1e-3, (0.9, 0.99), 0.1, 1.0


# -- the plain-PyTorch reference -------------------------------------------------------------


class RefBlock(nn.Module):
    """Pre-norm block: LayerNorm, fused-QKV attention via SDPA, LayerNorm, GELU MLP."""

    def __init__(self) -> None:
        super().__init__()
        self.ln1 = nn.LayerNorm(WIDTH, bias=False)
        self.qkv = nn.Linear(WIDTH, 3 * WIDTH, bias=False)
        self.out = nn.Linear(WIDTH, WIDTH, bias=False)
        self.ln2 = nn.LayerNorm(WIDTH, bias=False)
        self.mlp = nn.Sequential(
            nn.Linear(WIDTH, 4 * WIDTH, bias=False),
            nn.GELU(),
            nn.Linear(4 * WIDTH, WIDTH, bias=False),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        B, T, C = x.shape
        q, k, v = self.qkv(self.ln1(x)).split(C, dim=2)
        q, k, v = (t.view(B, T, HEADS, C // HEADS).transpose(1, 2) for t in (q, k, v))
        y = F.scaled_dot_product_attention(q, k, v, is_causal=True)
        x = x + self.out(y.transpose(1, 2).contiguous().view(B, T, C))
        return x + self.mlp(self.ln2(x))


class RefGPT(nn.Module):
    def __init__(self, vocab_size: int) -> None:
        super().__init__()
        self.wte = nn.Embedding(vocab_size, WIDTH)
        self.wpe = nn.Embedding(BLOCK, WIDTH)
        self.blocks = nn.ModuleList(RefBlock() for _ in range(LAYERS))
        self.ln_f = nn.LayerNorm(WIDTH, bias=False)
        self.head = nn.Linear(WIDTH, vocab_size, bias=False)
        self.head.weight = self.wte.weight
        for p in self.parameters():
            nn.init.normal_(p, std=0.02) if p.dim() == 2 else None

    def forward(self, idx: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        x = self.wte(idx) + self.wpe(torch.arange(idx.shape[1]))
        for block in self.blocks:
            x = block(x)
        logits = self.head(self.ln_f(x))
        return F.cross_entropy(logits.view(-1, logits.size(-1)), targets.view(-1))


class RefTrainer:
    """The loop body of a minimal trainer: draw a batch, forward, backward, clip, step."""

    def __init__(self, vocab_size: int, data: np.ndarray) -> None:
        torch.manual_seed(0)
        self.model = RefGPT(vocab_size)
        self.data = data
        decay = [p for p in self.model.parameters() if p.dim() >= 2]
        no_decay = [p for p in self.model.parameters() if p.dim() < 2]
        self.optimizer = torch.optim.AdamW(
            [
                {"params": decay, "weight_decay": WEIGHT_DECAY},
                {"params": no_decay, "weight_decay": 0},
            ],
            lr=LR,
            betas=BETAS,
        )

    def train_step(self) -> None:
        ix = torch.randint(len(self.data) - BLOCK, (BATCH,))
        x = torch.stack([torch.from_numpy(self.data[i : i + BLOCK].astype(np.int64)) for i in ix])
        y = torch.stack(
            [torch.from_numpy(self.data[i + 1 : i + 1 + BLOCK].astype(np.int64)) for i in ix]
        )
        loss = self.model(x, y)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(self.model.parameters(), CLIP)
        self.optimizer.step()
        self.optimizer.zero_grad(set_to_none=True)
        loss.item()  # the logged loss, as every trainer reads it


# -- tinylm ------------------------------------------------------------------------------------


def tinylm_trainer(
    tokenizer: CharTokenizer, train: np.ndarray, val: np.ndarray, steps: int, **model: object
) -> Trainer:
    torch.manual_seed(0)
    config = ModelConfig(
        vocab_size=tokenizer.vocab_size,
        block_size=BLOCK,
        n_layer=LAYERS,
        n_head=HEADS,
        n_embd=WIDTH,
        bias=False,
        tie_embeddings=True,
        dropout=0.0,
        **model,
    )
    train_config = TrainConfig(
        steps=steps,
        batch_size=BATCH,
        optimizer="adamw",
        lr=LR,
        min_lr=LR / 10,
        betas=BETAS,
        weight_decay=WEIGHT_DECAY,
        decay_embeddings=True,
        grad_clip=CLIP,
        schedule="cosine",
        warmup_steps=min(100, steps // 10),
        device="cpu",
        compile=False,
        threads=torch.get_num_threads(),
        out_dir=None,
        progress=False,
    )
    return Trainer(GPT(config), train, val, tokenizer, train_config)


# -- measuring -------------------------------------------------------------------------------


def matmul_flops(seconds: float = 1.0, size: int = 1024) -> float:
    """Dense float32 matmul FLOP/s at the current thread count (the MFU denominator)."""
    a, b = torch.randn(size, size), torch.randn(size, size)
    for _ in range(2):
        a @ b
    count, start = 0, time.perf_counter()
    while time.perf_counter() - start < seconds:
        a @ b
        count += 1
    return 2 * size**3 * count / (time.perf_counter() - start)


def flops_per_token(vocab_size: int) -> float:
    """6 per matmul weight (tied table included, position table not) + attention scores."""
    weights = vocab_size * WIDTH + LAYERS * (12 * WIDTH * WIDTH)
    return 6 * weights + 12 * LAYERS * WIDTH * BLOCK


def timed_steps(step: Callable[[], object], n: int) -> list[float]:
    times = []
    for _ in range(n):
        start = time.perf_counter()
        step()
        times.append(time.perf_counter() - start)
    return times


def alternate(sides: dict[str, Callable[[], object]], rounds: int, per_round: int) -> dict:
    """Step each side ``per_round`` times in turn, ``rounds`` times; all step times per side."""
    times: dict[str, list[float]] = {name: [] for name in sides}
    for step in sides.values():
        timed_steps(step, 3)  # warm-up: allocator, first-call paths
    for _ in range(rounds):
        for name, step in sides.items():
            times[name].extend(timed_steps(step, per_round))
    return times


def measure_threads(threads: int, tokenizer, train, val, rounds: int, per_round: int) -> dict:
    torch.set_num_threads(threads)
    peak = matmul_flops()
    reference = RefTrainer(tokenizer.vocab_size, train)
    fused = tinylm_trainer(tokenizer, train, val, steps=10**6)
    explicit = tinylm_trainer(tokenizer, train, val, steps=10**6, kernels="explicit")
    times = alternate(
        {
            "reference": reference.train_step,
            "tinylm": fused.train_step,
            "tinylm explicit": explicit.train_step,
        },
        rounds,
        per_round,
    )
    peak = max(peak, matmul_flops())  # before and after: the better of the two
    medians = {name: statistics.median(t) for name, t in times.items()}
    fpt = flops_per_token(tokenizer.vocab_size)
    tokens = BATCH * BLOCK
    return {
        "threads": threads,
        "peak_gflops": peak / 1e9,
        "ms": {name: 1000 * m for name, m in medians.items()},
        "mfu": {name: fpt * tokens / m / peak for name, m in medians.items()},
        "tokens_per_s": {name: tokens / m for name, m in medians.items()},
        "steps_each": len(times["reference"]),
    }


def measure_compile(tokenizer, train, val, threads: int, steps: int = 2000) -> dict:
    """Compile time and compiled step time of tinylm, against eager and the reference."""
    torch.set_num_threads(threads)
    reference = RefTrainer(tokenizer.vocab_size, train)
    eager = tinylm_trainer(tokenizer, train, val, steps=10**6)
    compiled = tinylm_trainer(tokenizer, train, val, steps=10**6)
    from tinylm.train.runtime import maybe_compile

    compiled.forward = maybe_compile(compiled.model, True)
    start = time.perf_counter()
    compiled.train_step()  # compiles forward and backward
    compiled.train_step()
    compile_s = time.perf_counter() - start
    times = alternate(
        {
            "reference": reference.train_step,
            "eager": eager.train_step,
            "compiled": compiled.train_step,
        },
        rounds=5,
        per_round=20,
    )
    ms = {name: 1000 * statistics.median(t) for name, t in times.items()}
    run_s = {
        "reference": steps * ms["reference"] / 1000,
        "eager": steps * ms["eager"] / 1000,
        "compiled": compile_s + steps * ms["compiled"] / 1000,
    }
    return {"threads": threads, "compile_s": compile_s, "ms": ms, "run_s": run_s, "steps": steps}


def measure_cli(before_src: str, after_src: str, steps: int, rounds: int) -> dict:
    """The default ``tinylm train`` (fewer steps), old and new checkout, alternating."""
    results: dict[str, list[float]] = {"before": [], "after": []}
    for _ in range(rounds):
        for name, src in (("before", before_src), ("after", after_src)):
            with tempfile.TemporaryDirectory() as out:
                env = {**os.environ, "PYTHONPATH": src}
                cmd = [sys.executable, "-m", "tinylm.cli.main", "train", "--out", out]
                cmd += ["--steps", str(steps), "--quiet"]
                start = time.perf_counter()
                subprocess.run(cmd, env=env, check=True, capture_output=True)
                wall = time.perf_counter() - start
                records = [
                    json.loads(line) for line in Path(out, "metrics.jsonl").read_text().splitlines()
                ]
                rates = [r["tokens_per_s"] for r in records if "tokens_per_s" in r]
                results[name].append(statistics.median(rates))
                results[name + "_wall"] = [*results.get(name + "_wall", []), wall]
    return results


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="a short smoke run")
    parser.add_argument("--threads", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--compile", action="store_true", help="also measure torch.compile")
    parser.add_argument("--cli-before", metavar="SRC", help="src/ of a checkout to compare")
    parser.add_argument("--cli-steps", type=int, default=100)
    parser.add_argument("--rounds", type=int, help="alternation rounds (default 10; --quick 2)")
    parser.add_argument("--per-round", type=int, help="steps per side per round (default 15)")
    args = parser.parse_args(argv)

    text = data_path("corpora/tinyshakespeare.txt").read_text(encoding="utf-8")
    tokenizer = CharTokenizer.train(text)
    ids = np.asarray(tokenizer.encode(text), dtype=np.uint16)
    cut = int(0.9 * len(ids))
    train, val = ids[:cut], ids[cut:]
    rounds, per_round = (2, 5) if args.quick else (10, 15)
    rounds, per_round = args.rounds or rounds, args.per_round or per_round

    print(f"torch {torch.__version__}, {os.cpu_count()} CPUs, load {os.getloadavg()[0]:.1f}")
    print(
        "| threads | reference ms | tinylm ms | tinylm / ref | explicit ms | explicit / fused "
        "| MFU ref | MFU tinylm | matmul GFLOP/s |"
    )
    print("|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    for threads in args.threads:
        r = measure_threads(threads, tokenizer, train, val, rounds, per_round)
        ms, mfu = r["ms"], r["mfu"]
        print(
            f"| {threads} | {ms['reference']:.1f} | {ms['tinylm']:.1f} "
            f"| **{ms['tinylm'] / ms['reference']:.2f}x** | {ms['tinylm explicit']:.1f} "
            f"| {ms['tinylm explicit'] / ms['tinylm']:.2f}x | {100 * mfu['reference']:.0f}% "
            f"| {100 * mfu['tinylm']:.0f}% | {r['peak_gflops']:.0f} |",
            flush=True,
        )
    if args.compile:
        threads = args.threads[0]
        r = measure_compile(tokenizer, train, val, threads)
        ms, run_s = r["ms"], r["run_s"]
        print(
            f"\ncompile ({threads} thread(s)): compile {r['compile_s']:.1f} s; step ms: reference "
            f"{ms['reference']:.1f}, eager {ms['eager']:.1f}, compiled {ms['compiled']:.1f} "
            f"({ms['compiled'] / ms['reference']:.2f}x the reference)\n"
            f"a {r['steps']}-step run (compile time included): compiled / reference = "
            f"**{run_s['compiled'] / run_s['reference']:.2f}x**, eager / reference = "
            f"{run_s['eager'] / run_s['reference']:.2f}x",
            flush=True,
        )
    if args.cli_before:
        after = str(Path(__file__).resolve().parents[1] / "src")
        r = measure_cli(args.cli_before, after, args.cli_steps, rounds=1 if args.quick else 3)
        before, now = statistics.median(r["before"]), statistics.median(r["after"])
        print(
            f"\n`tinylm train --steps {args.cli_steps}` (default run, shortened), median "
            f"tokens/s: before {before:,.0f}, after {now:,.0f} (**{now / before:.2f}x**); "
            f"wall s before {statistics.median(r['before_wall']):.1f}, "
            f"after {statistics.median(r['after_wall']):.1f}"
        )


if __name__ == "__main__":
    main()
