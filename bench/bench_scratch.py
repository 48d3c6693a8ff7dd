"""Benchmark the scratch engine: training steps per second on microgpt, against two peers.

Run ``python bench/bench_scratch.py`` (a few minutes on 2 cores; ``--quick``: about
one). Everything is measured in the same run, on the names list
(``../shared/data/corpora/names.txt``), character level, one document per step,
the ``microgpt`` preset, the seed's Adam (lr 0.01, betas 0.85/0.99, linear decay):

1. **baseline**: the textbook scalar engine of ``bench/scalar_baseline.py`` (same
   design; recursive topological sort, a ``Value`` for every constant, binary adds).
2. **scratch**: ``tinylm.scratch``. Target: at least 2x the baseline's steps/s,
   with identical losses (both start from the same weights and see the same
   documents; the largest loss difference is printed).
3. **pytorch**: tinylm's ``GPT`` (float32) and ``AdamW`` from the same weights,
   one document per step too, on one thread.

Times are CPU seconds of this process (``time.process_time``), which a busy shared
machine disturbs less than wall time, and the two scalar engines take their steps
in turn. Python's cycle collector costs both engines a lot (their graphs are
millions of live objects it walks again and again), so the comparison keeps it in
the same state for both: the headline is both at Python's default (on), then both
off. Last, for reference only, the ratio as each engine would run by itself:
``tinylm.scratch.train`` switches the collector off (its graphs hold no cycles, see
``tinylm.scratch.value``) while the textbook engine leaves it on; that ratio mixes
the engine's design with the collector setting and is not the headline.
The loss curves of the scratch and PyTorch
engines over the same run go to ``docs/scratch_loss.png`` (with ``--quick`` or
``--steps``, to the temporary folder, leaving the docs' figure alone).
"""

from __future__ import annotations

import argparse
import gc
import random
import tempfile
import time
from pathlib import Path

import torch

from _common import REPO, data_path
from scalar_baseline import BaselineAdam, BaselineGPT
from tinylm.engines.scratch_convert import scratch_config
from tinylm.model import GPT, ModelConfig
from tinylm.scratch.model import MicroGPT
from tinylm.scratch.train import Adam, document_tokens, linear_decay
from tinylm.tokenizers.char import CharTokenizer
from tinylm.train.optim import AdamW

BETAS, EPS, LR = (0.85, 0.99), 1e-8, 0.01


def documents() -> tuple[list[list[int]], int]:
    names = data_path("corpora/names.txt").read_text(encoding="utf-8").split()
    tokenizer = CharTokenizer.train(names)
    random.Random(42).shuffle(names)
    return [tokenizer.encode(name) for name in names], tokenizer.bos_id


def scalar_step(model, optimizer, tokens, lr, collector: bool) -> tuple[float, float]:
    """One training step of a scalar engine: (CPU seconds, loss)."""
    (gc.enable if collector else gc.disable)()
    start = time.process_time()
    loss = model.loss(tokens)
    loss.backward()
    optimizer.step(lr)
    seconds = time.process_time() - start
    gc.enable()
    return seconds, loss.data


def race(weights, config, docs, bos, steps, total, collector) -> dict[str, list]:
    """Both scalar engines from the same weights on the same documents, step by step in
    turn (so a busy machine slows both alike). ``collector[name]``: the cycle collector
    on or off during that engine's steps."""
    baseline = BaselineGPT(weights, config.n_layer, config.n_head)
    ours = MicroGPT(scratch_config(config), weights=weights)
    engines = {
        "baseline": (baseline, BaselineAdam(baseline.params, BETAS, EPS)),
        "scratch": (ours, Adam(ours.parameters(), BETAS, EPS)),
    }
    out: dict[str, list] = {name: [0.0, []] for name in engines}
    for step in range(steps):
        tokens = document_tokens(docs[step % len(docs)], bos, config.block_size)
        for name, (model, optimizer) in engines.items():
            seconds, loss = scalar_step(
                model, optimizer, tokens, linear_decay(step, LR, total), collector[name]
            )
            out[name][0] += seconds
            out[name][1].append(loss)
    return out


def run_torch(gpt, docs, bos, steps, total) -> tuple[float, list[float]]:
    optimizer = AdamW(gpt.parameters(), lr=LR, betas=BETAS, eps=EPS, weight_decay=0.0)
    losses = []
    start = time.process_time()
    for step in range(steps):
        tokens = torch.tensor(document_tokens(docs[step % len(docs)], bos, gpt.config.block_size))
        _, loss = gpt(tokens[None, :-1], tokens[None, 1:])
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        for group in optimizer.param_groups:
            group["lr"] = linear_decay(step, LR, total)
        optimizer.step()
        losses.append(loss.item())
    return time.process_time() - start, losses


def plot(curves: dict[str, list[float]], out: Path, window: int = 50) -> None:
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(7, 4), dpi=110)
    FigureCanvasAgg(fig)
    ax = fig.add_subplot(1, 1, 1)
    for (label, losses), style in zip(curves.items(), ("-", "--"), strict=False):
        smooth = [
            sum(losses[max(0, i - window + 1) : i + 1]) / min(i + 1, window)
            for i in range(len(losses))
        ]
        ax.plot(range(1, len(losses) + 1), smooth, style, label=label, linewidth=1.4)
    ax.set_xlabel("step (one name per step)")
    ax.set_ylabel(f"training loss, mean of last {window} steps")
    ax.set_title("microgpt on names.txt: the scratch engine and the PyTorch engine")
    ax.grid(True, alpha=0.3)
    ax.legend()
    fig.tight_layout()
    fig.savefig(out)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer steps")
    parser.add_argument("--steps", type=int, default=None, help="steps of the loss curves")
    parser.add_argument("--speed-steps", type=int, default=None, help="steps timed per engine")
    args = parser.parse_args()
    curve_steps = args.steps or (200 if args.quick else 1000)
    speed_steps = args.speed_steps or (30 if args.quick else 100)
    torch.set_num_threads(1)
    docs, bos = documents()
    config = ModelConfig.from_preset("microgpt", vocab_size=bos + 1)
    torch.manual_seed(0)
    gpt = GPT(config).double()
    weights = {name: t.tolist() for name, t in gpt.state_dict().items()}
    print(
        f"microgpt ({sum(p.numel() for p in gpt.parameters()):,} parameters) on "
        f"{len(docs):,} names, one per step"
    )

    settings = {  # the headline first: the collector in the same state for both
        "collector on for both (Python's default; the headline)": {
            "baseline": True,
            "scratch": True,
        },
        "collector off for both": {"baseline": False, "scratch": False},
        "for reference only, as each engine trains by itself (baseline on, scratch off)": {
            "baseline": True,
            "scratch": False,
        },
    }
    for label, collector in settings.items():
        out = race(weights, config, docs, bos, speed_steps, curve_steps, collector)
        (base_time, base_losses), (ours_time, ours_losses) = out["baseline"], out["scratch"]
        diff = max(abs(a - b) for a, b in zip(base_losses, ours_losses, strict=True))
        same = sum(a == b for a, b in zip(base_losses, ours_losses, strict=True))
        print(f"\n{label}, {speed_steps} steps:")
        print(f"  baseline {speed_steps / base_time:6.2f} steps/s")
        print(
            f"  scratch  {speed_steps / ours_time:6.2f} steps/s  -> "
            f"{base_time / ours_time:.2f}x the baseline"
        )
        print(f"  losses: {same}/{speed_steps} bit-identical, largest difference {diff:.1e}")

    model = MicroGPT(scratch_config(config), weights=weights)
    optimizer = Adam(model.parameters(), BETAS, EPS)
    scratch_time, scratch_losses = 0.0, []
    for step in range(curve_steps):
        tokens = document_tokens(docs[step % len(docs)], bos, config.block_size)
        lr = linear_decay(step, LR, curve_steps)
        seconds, loss = scalar_step(model, optimizer, tokens, lr, collector=False)
        scratch_time += seconds
        scratch_losses.append(loss)
    torch.manual_seed(0)
    gpt32 = GPT(config)
    gpt32.load_state_dict({k: torch.tensor(v) for k, v in weights.items()})
    torch_time, torch_losses = run_torch(gpt32, docs, bos, curve_steps, curve_steps)
    print(
        f"\n{curve_steps} steps: scratch (collector off, as it trains) "
        f"{curve_steps / scratch_time:.1f} steps/s, "
        f"pytorch (float32, 1 thread) {curve_steps / torch_time:.1f} steps/s "
        f"(pytorch {scratch_time / torch_time:.0f}x faster)"
    )
    tail = min(100, curve_steps)
    largest = max(abs(a - b) for a, b in zip(scratch_losses, torch_losses, strict=True))
    print(
        f"mean loss of the last {tail} steps: scratch {sum(scratch_losses[-tail:]) / tail:.4f}, "
        f"pytorch {sum(torch_losses[-tail:]) / tail:.4f}; largest step-wise difference "
        f"{largest:.1e}"
    )
    # The figure in the docs is the full run's; a --quick run draws its own elsewhere.
    out = REPO / "docs" / "scratch_loss.png"
    if args.quick or args.steps:
        out = Path(tempfile.gettempdir()) / "tinylm_scratch_loss.png"
    plot(
        {
            "scratch engine (float64 scalars)": scratch_losses,
            "PyTorch engine (float32 tensors)": torch_losses,
        },
        out,
    )
    print(f"loss curves: {out}")


if __name__ == "__main__":
    main()
