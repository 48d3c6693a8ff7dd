"""Benchmark the model on this machine: training throughput, MFU, and KV-cache generation.

Run ``python bench/bench_model.py`` (about 1-2 minutes on 2 cores) or add ``--quick``
(about 20 s). Everything is measured in the same run, including the reference
peak, so the figures are comparable with each other on any machine.

What is measured:

1. **Peak**: the best time of a large square float32 matmul (``n x n`` by ``n x n``,
   ``2 n^3`` FLOPs) gives this machine's dense matmul throughput in GFLOP/s.
2. **Training step** (forward + backward, no optimizer) on random tokens: tokens/s
   and model FLOPs utilisation, ``MFU = flops_per_token * tokens/s / peak``, with
   ``flops_per_token = 6 * N + 12 * n_layer * n_embd * T`` (the PaLM appendix B
   count). ``N`` is every parameter used in a matmul-shaped op: all non-embedding
   parameters plus the output projection (the token embedding itself is a lookup,
   not a matmul, but when tied it is also the output projection). ``6N`` is 2 FLOPs
   per multiply-add forward and 4 backward; ``12 L d T`` is ``Q K^T`` and the
   weighted sum of ``V`` over a context of ``T`` (2 matmuls x 2 FLOPs x 3 for
   forward + backward), counting the full ``T x T`` square even though the causal
   mask makes half of it zero.
3. **Generation** (greedy, batch 1): the prompt is ``C - n_new`` tokens and
   ``n_new`` tokens are generated so the context ends at ``C``. Tokens/s is
   ``n_new`` over the whole call, prefill included, with the KV cache and without.
"""

from __future__ import annotations

import argparse
import platform
import sys
import time
from collections.abc import Callable
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))  # run from a checkout

from tinylm.model import GPT, ModelConfig  # noqa: E402


def best_time(fn: Callable[[], object], repeats: int, warmup: int = 1) -> float:
    """The fastest of ``repeats`` timed calls: the least disturbed by other processes."""
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return min(times)


def matmul_gflops(n: int, repeats: int) -> float:
    a, b = torch.randn(n, n), torch.randn(n, n)
    seconds = best_time(lambda: a @ b, repeats)
    return 2 * n**3 / seconds / 1e9


def matmul_params(model: GPT) -> int:
    counts = model.param_counts()
    head = counts["token_embedding"] if model.config.tie_embeddings else 0
    return counts["non_embedding"] + head  # non_embedding includes an untied lm_head


def flops_per_token(model: GPT, context: int) -> float:
    c = model.config
    return 6 * matmul_params(model) + 12 * c.n_layer * c.n_embd * context


def bench_training(config: ModelConfig, batch: int, steps: int) -> dict:
    model = GPT(config).train()
    T = config.block_size
    idx = torch.randint(0, config.vocab_size, (batch, T))
    targets = torch.randint(0, config.vocab_size, (batch, T))

    def step() -> None:
        model.zero_grad(set_to_none=True)
        _, loss = model(idx, targets)
        loss.backward()

    seconds = best_time(step, repeats=steps, warmup=1)
    tokens_per_s = batch * T / seconds
    achieved = flops_per_token(model, T) * tokens_per_s / 1e9
    return {"params": model.num_params(), "tokens_per_s": tokens_per_s, "gflops": achieved}


def bench_generation(model: GPT, context: int, n_new: int, use_cache: bool) -> float:
    prompt = torch.randint(0, model.config.vocab_size, (context - n_new,)).tolist()

    def run() -> None:
        tokens = list(model.generate(prompt, n_new, temperature=0, use_cache=use_cache))
        assert len(tokens) == n_new

    return n_new / best_time(run, repeats=1, warmup=0)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="smaller, ~20 s run")
    parser.add_argument("--threads", type=int, default=None, help="torch intra-op threads")
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    quick = args.quick

    small = ModelConfig.from_preset("small")
    llama_like = ModelConfig.from_preset(
        "small", position="rope", activation="swiglu", norm="rmsnorm", n_kv_head=2, bias=False
    )
    rows = [
        ("small (fused kernels)", small),
        ("small (explicit kernels)", ModelConfig.from_preset("small", kernels="explicit")),
        ("small, llama recipe (rope, swiglu, rmsnorm, gqa 2)", llama_like),
    ]
    batch, steps = (4, 3) if quick else (8, 8)

    # The peak is measured before and after each model, and the best figure kept:
    # on a shared machine one measurement can land in someone else's busy moment.
    n, repeats = (1024, 3) if quick else (2048, 4)
    peak = matmul_gflops(n, repeats)
    training = []
    for name, config in rows:
        training.append((name, bench_training(config, batch, steps)))
        peak = max(peak, matmul_gflops(n, repeats))

    gen_config = ModelConfig.from_preset("small", block_size=1024)
    model = GPT(gen_config).eval()
    n_new = 16 if quick else 32
    generation = []
    for context in (256, 1024):
        cached = bench_generation(model, context, n_new, use_cache=True)
        uncached = bench_generation(model, context, n_new, use_cache=False)
        generation.append((context, cached, uncached))

    print(f"# tinylm model benchmark{' (--quick)' if quick else ''}\n")
    cpu = platform.processor() or platform.machine()
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, {cpu}\n")
    print(
        f"Dense float32 matmul ({n} x {n}): **{peak:.1f} GFLOP/s** "
        f"(best of {len(rows) + 1} measurements; the MFU reference)\n"
    )
    print(f"## Training step: forward + backward, batch {batch} x {small.block_size} tokens\n")
    print("| model | params | tokens/s | GFLOP/s | MFU |")
    print("|---|---:|---:|---:|---:|")
    for name, r in training:
        print(
            f"| {name} | {r['params'] / 1e6:.2f}M | {r['tokens_per_s']:,.0f} "
            f"| {r['gflops']:.1f} | {100 * r['gflops'] / peak:.1f}% |"
        )
    print(f"\n## Generation: greedy, batch 1, {n_new} new tokens, small preset, block 1024\n")
    print("| context | with KV cache (tok/s) | without (tok/s) | speed-up |")
    print("|---:|---:|---:|---:|")
    for context, cached, uncached in generation:
        print(f"| {context} | {cached:,.0f} | {uncached:,.0f} | {cached / uncached:.1f}x |")


if __name__ == "__main__":
    main()
