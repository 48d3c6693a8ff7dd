"""A comparison's results as a table and two pictures.

Runs of the same configuration (different seeds) are grouped: each number is the
mean over seeds, with the sample standard deviation beside it when there are
several. The *seed spread* says how much a configuration's loss moves from seed
to seed alone; a difference between two configurations smaller than their
spreads added together is marked ``≈`` (not distinguishable from noise here),
so a reader can tell a real effect from luck. The reference for the differences
is the configuration with the lowest mean final validation loss.

Which loss: nats per token, unless the runs' tokenizers differ. A loss per token
is then in different units (per character, per BPE token), so the table ranks by
bits per byte instead (:func:`ranking_metric`), which every tokenizer shares. Both
are shown either way; results written before bits per byte was measured have none.

A comparison with tuned learning rates shows each configuration's chosen rate in
its own column, and below the table each configuration's sweep (the tuning
seed's final validation loss at every rate tried), so a reader sees how flat
the optimum was and whether it sat at the edge of the rates tried.
"""

from __future__ import annotations

import csv
import io
import math
import os
import statistics
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tinylm.compare.execute import RunResult
from tinylm.compare.tuning import at_edge, pick_lr
from tinylm.fileio import atomic_write
from tinylm.inspect.figures import new_figure, save_png

TABLE_FILE = "results.md"
CSV_FILE = "results.csv"
STEPS_PLOT = "val_loss_steps.png"
TIME_PLOT = "val_loss_time.png"
NOISE_MARK = "≈"


@dataclass
class Summary:
    """One configuration over its seeds."""

    label: str
    seeds: int
    params_total: int
    params_embedding: int
    tokens_per_s: float
    seconds: float
    final: float
    final_std: float  # nan with one seed
    best: float
    best_std: float
    final_bpb: float = math.nan  # bits per byte; nan where a run did not measure it
    final_bpb_std: float = math.nan
    metric: str = "loss"  # what delta and within_noise compare: "loss" or "bpb"
    delta: float = math.nan  # final - the best configuration's final (in ``metric``)
    within_noise: bool | None = None  # None: one seed, the spread is unknown
    lr: float | None = None  # the learning rate its sweep chose (a tuned comparison)
    lr_sweep: list[list[float | None]] | None = None  # [lr, val loss or None], smallest first

    def ranked(self) -> tuple[float, float]:
        """Mean and spread of the final value ``metric`` names."""
        if self.metric == "bpb":
            return self.final_bpb, self.final_bpb_std
        return self.final, self.final_std


def mean_std(values: Sequence[float]) -> tuple[float, float]:
    """Mean and sample standard deviation (nan for a single value)."""
    mean = statistics.fmean(values)
    return mean, statistics.stdev(values) if len(values) > 1 else math.nan


def ranking_metric(results: Sequence[RunResult]) -> str:
    """``"bpb"`` when the runs' tokenizers differ and every run measured bits per byte,
    else ``"loss"`` (nats per token, comparable only within one tokenizer)."""
    differ = len({r.tokenizer for r in results}) > 1
    measured = all(r.final_val_bpb is not None for r in results)
    return "bpb" if differ and measured else "loss"


def summarise(results: Sequence[RunResult], metric: str | None = None) -> list[Summary]:
    """Group runs by configuration (in first-seen order) and compare with the best one,
    by ``metric`` (``"loss"`` or ``"bpb"``; :func:`ranking_metric` chooses by default)."""
    metric = metric or ranking_metric(results)
    groups: dict[str, list[RunResult]] = {}
    for result in results:
        groups.setdefault(result.label, []).append(result)
    summaries = []
    for label, runs in groups.items():
        final, final_std = mean_std([r.final_val_loss for r in runs])
        best, best_std = mean_std([r.best_val_loss for r in runs])
        bpbs = [r.final_val_bpb for r in runs]
        bpb, bpb_std = (math.nan, math.nan) if None in bpbs else mean_std(bpbs)
        summaries.append(
            Summary(
                label=label,
                seeds=len(runs),
                params_total=runs[0].params_total,
                params_embedding=runs[0].params_embedding,
                tokens_per_s=statistics.fmean(r.tokens_per_s for r in runs),
                seconds=statistics.fmean(r.seconds for r in runs),
                final=final,
                final_std=final_std,
                best=best,
                best_std=best_std,
                final_bpb=bpb,
                final_bpb_std=bpb_std,
                metric=metric,
                lr=runs[0].lr,
                lr_sweep=runs[0].lr_sweep,
            )
        )
    mark_noise(summaries)
    return summaries


def mark_noise(summaries: list[Summary]) -> None:
    """Set each configuration's difference from the best, and whether it is within noise."""
    reference = min(summaries, key=lambda s: s.ranked()[0])
    best, best_std = reference.ranked()
    for s in summaries:
        final, std = s.ranked()
        s.delta = final - best
        spread = std + best_std
        s.within_noise = None if math.isnan(spread) else abs(s.delta) <= spread


def _loss(mean: float, std: float) -> str:
    if math.isnan(mean):
        return "–"  # not measured (a result from before bits per byte)
    return f"{mean:.4f}" if math.isnan(std) else f"{mean:.4f} ± {std:.4f}"


def _delta(s: Summary) -> str:
    if s.delta == 0:
        return "best"
    mark = f" {NOISE_MARK}" if s.within_noise else ""
    return f"+{s.delta:.4f}{mark}"


def markdown_table(summaries: Sequence[Summary], title: str = "") -> str:
    """The results as a Markdown table, best configuration marked, noise marked ``≈``."""
    by_bpb = any(s.metric == "bpb" for s in summaries)
    tuned = any(s.lr is not None for s in summaries)
    head = (
        f"| configuration |{' lr (tuned) |' if tuned else ''} seeds | params (total / embedding) "
        "| tokens/s | time (s) | final val loss | final val bpb | best val loss "
        f"| vs best{' (bpb)' if by_bpb else ''} |\n"
        f"|---|{'---:|' if tuned else ''}---:|---:|---:|---:|---:|---:|---:|---|\n"
    )
    rows = "".join(
        f"| {s.label} |{f' {_lr(s.lr)} |' if tuned else ''} {s.seeds} "
        f"| {s.params_total:,} / {s.params_embedding:,} "
        f"| {s.tokens_per_s:,.0f} | {s.seconds:.1f} | {_loss(s.final, s.final_std)} "
        f"| {_loss(s.final_bpb, s.final_bpb_std)} "
        f"| {_loss(s.best, s.best_std)} | {_delta(s)} |\n"
        for s in summaries
    )
    several = any(s.seeds > 1 for s in summaries)
    note = (
        f"\n{NOISE_MARK}: the difference from the best is smaller than the two configurations' "
        "seed spreads (standard deviations) added: not distinguishable from noise here.\n"
        if several
        else "\nOne seed per configuration: run with more seeds to see which differences are "
        "larger than noise.\n"
    )
    unit = (
        "\nThe runs' tokenizers differ, so their losses per token are in different units: "
        "configurations are compared by bits per byte (bpb).\n"
        if by_bpb
        else ""
    )
    sweeps = sweep_table(summaries) if tuned else ""
    return (f"{title}\n\n" if title else "") + head + rows + note + unit + sweeps


def sweep_table(summaries: Sequence[Summary]) -> str:
    """Each configuration's learning-rate sweep: every rate tried, its loss, the chosen one."""
    rows = []
    for s in summaries:
        if not s.lr_sweep:
            continue
        scores = {lr: loss for lr, loss in s.lr_sweep}
        cells = " · ".join(
            f"{_lr(lr)}: {'diverged' if loss is None else f'{loss:.4f}'}"
            f"{' ◀' if lr == pick_lr(scores) else ''}"
            for lr, loss in s.lr_sweep
        )
        edge = " (at the edge: the best rate may lie beyond)" if at_edge(scores) else ""
        rows.append(f"| {s.label} | {cells}{edge} |\n")
    return (
        "\nLearning rates tuned per configuration: final val loss of one tuning seed at each "
        "rate tried (◀ chosen; the seeds above ran at it).\n\n"
        "| configuration | lr: val loss |\n|---|---|\n" + "".join(rows)
    )


def _lr(lr: float | None) -> str:
    return "–" if lr is None else f"{lr:g}"


def csv_table(results: Sequence[RunResult]) -> str:
    """One row per run (every seed), for a spreadsheet or pandas."""
    out = io.StringIO()
    keys = sorted({k for r in results for k in r.settings})
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(
        [
            "configuration",
            *keys,
            "seed",
            "steps",
            "params_total",
            "params_embedding",
            "tokens_per_s",
            "seconds",
            "final_val_loss",
            "best_val_loss",
            "run_dir",
            "final_val_bpb",
            "best_val_bpb",
            "tokenizer",
            "lr",
        ]
    )
    for r in results:
        writer.writerow(
            [
                r.label,
                *(r.settings.get(k, "") for k in keys),
                r.seed,
                r.steps,
                r.params_total,
                r.params_embedding,
                f"{r.tokens_per_s:.1f}",
                f"{r.seconds:.3f}",
                f"{r.final_val_loss:.6f}",
                f"{r.best_val_loss:.6f}",
                r.run_dir,
                "" if r.final_val_bpb is None else f"{r.final_val_bpb:.6f}",
                "" if r.best_val_bpb is None else f"{r.best_val_bpb:.6f}",
                r.tokenizer or "",
                "" if r.lr is None else f"{r.lr:g}",
            ]
        )
    return out.getvalue()


def plot_curves(results: Sequence[RunResult], x: str, title: str) -> Any:
    """Validation loss against ``"steps"`` or ``"seconds"``, one line per run."""
    column = {"steps": 0, "seconds": 1}[x]
    fig = new_figure(9, 5.5)
    ax = fig.add_subplot()
    colours = {}
    for r in results:
        colour = colours.setdefault(r.label, f"C{len(colours) % 10}")
        first = sum(1 for q in results if q.label == r.label and q.seed < r.seed) == 0
        ax.plot(
            [p[column] for p in r.curve],
            [p[2] for p in r.curve],
            color=colour,
            marker=".",
            alpha=0.9 if first else 0.5,
            label=r.label if first else None,
        )
    ax.set_xlabel("optimiser step" if x == "steps" else "training time (s)")
    ax.set_ylabel("validation loss (nats/token)")
    ax.set_title(title, fontsize="medium")
    ax.grid(alpha=0.3)
    ax.legend(fontsize="small", title="one line per run (seeds share a colour)")
    return fig


def write_report(results: Sequence[RunResult], out_dir: str | os.PathLike, title: str) -> dict:
    """``results.md``, ``results.csv`` and the two PNGs in ``out_dir``; returns their paths."""
    out = Path(out_dir)
    summaries = summarise(results)
    paths = {"table": out / TABLE_FILE, "csv": out / CSV_FILE}
    atomic_write(paths["table"], markdown_table(summaries, title))
    atomic_write(paths["csv"], csv_table(results))
    for key, x, name in (("steps_plot", "steps", STEPS_PLOT), ("time_plot", "seconds", TIME_PLOT)):
        against = "steps" if x == "steps" else "training time"
        fig = plot_curves(results, x, f"{title}\nvalidation loss against {against}")
        paths[key] = save_png(fig, out / name)
    return paths
