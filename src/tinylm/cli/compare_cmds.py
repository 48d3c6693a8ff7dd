"""``tinylm compare``: an ablation, run by ``tinylm.compare`` in this process.

This module parses ``--vary``, ``--budget`` and the run options, calls
:func:`tinylm.compare.execute.run_comparison`, prints a line per run and an
overall one, then the table. Torch is imported inside ``run_compare`` only.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path
from typing import Any

from tinylm.cli.options import add_doc_sep, add_overrides, parse_overrides, parse_value
from tinylm.cli.output import say
from tinylm.compare.execute import run_comparison
from tinylm.compare.plan import configurations, parse_budget, plan_comparison
from tinylm.compare.results import write_report
from tinylm.compare.tuning import LrTuning
from tinylm.errors import SettingError
from tinylm.run_layout import RUNS_ROOT
from tinylm.terminal import printable

DEFAULT_OUT = RUNS_ROOT / "compare"


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "compare",
        help="ablation: train several configurations on the same data and budget, compare them",
        description="Train every combination of the --vary values (or one axis at a time) on "
        "the same data, tokenizer and budget; write a table (Markdown, CSV) and loss curves. "
        "Finished runs are kept: run the same command again to continue a stopped comparison.",
    )
    p.add_argument(
        "--vary",
        action="append",
        default=[],
        metavar="KEY=V1,V2",
        required=True,
        help="a setting and the values to try, e.g. --vary position=learned,rope (repeatable)",
    )
    p.add_argument(
        "--one-at-a-time",
        action="store_true",
        help="change one setting at a time from the baseline (each setting's first value) "
        "instead of every combination",
    )
    p.add_argument("--seeds", type=int, default=1, help="runs per configuration (default: 1)")
    p.add_argument(
        "--budget",
        metavar="KIND=N",
        help="what every run gets: steps=N, tokens=N or seconds=N (default: the steps setting)",
    )
    p.add_argument(
        "--data",
        nargs="+",
        metavar="PATH",
        help="corpus or prepared folder (default: the built-in corpus)",
    )
    p.add_argument(
        "--init-from",
        metavar="RUN",
        help="fine-tune every run from this run folder or checkpoint, on --data (text or "
        "chat:...), e.g. --vary lora_rank=0,8",
    )
    p.add_argument("--preset", help="model preset (default: small)")
    p.add_argument("--tokenizer", metavar="SPEC", help="char, bpe:N or a tokenizer file")
    add_overrides(p, "a setting shared by every run, e.g. --set n_layer=2 (repeatable)")
    p.add_argument("--config", type=Path, metavar="FILE.toml", help="config file for every run")
    p.add_argument(
        "--out",
        type=Path,
        default=DEFAULT_OUT,
        metavar="DIR",
        help=f"comparison folder (default: {DEFAULT_OUT})",
    )
    defaults = LrTuning()
    p.add_argument(
        "--tune-lr",
        action="store_true",
        help="give each configuration its own learning rate: first a sweep of --tune-points "
        "rates around the base lr, one run each at --tune-seed with the same budget, widened "
        "past the edge when the best is there; then the seeds at the best rate. Runs = "
        "points x configurations (+ at most widen x configurations) + seeds x configurations; "
        "the defaults (3 points, factor 2, widen 2) make 3-5 sweep runs per configuration "
        "(docs/compare.md)",
    )
    p.add_argument(
        "--tune-points",
        type=int,
        metavar="N",
        help=f"rates in the sweep, centred on the base lr (default: {defaults.points})",
    )
    p.add_argument(
        "--tune-factor",
        type=float,
        metavar="F",
        help=f"ratio between neighbouring rates (default: {defaults.factor:g})",
    )
    p.add_argument(
        "--tune-widen",
        type=int,
        metavar="N",
        help="most rates added beyond the grid's edge per configuration "
        f"(default: {defaults.widen})",
    )
    p.add_argument(
        "--tune-seed",
        type=int,
        metavar="S",
        help=f"the seed of every sweep run (default: {defaults.seed})",
    )
    add_doc_sep(p)
    p.add_argument("--quiet", action="store_true", help="no progress output")
    p.set_defaults(run=run_compare)


def parse_vary(items: list[str]) -> dict[str, list[Any]]:
    """``["position=learned,rope"]`` → ``{"position": ["learned", "rope"]}``."""
    axes: dict[str, list[Any]] = {}
    for item in items:
        key, sep, values = item.partition("=")
        key = key.strip()
        if not sep or not key or not values.strip():
            raise SettingError(
                f"--vary wants KEY=V1,V2,..., got {item!r}; e.g. --vary position=learned,rope",
                setting="vary",
                reason="usage",
            )
        if key in axes:
            raise SettingError(f"--vary {key} is given twice", setting="vary", reason="usage")
        axes[key] = [parse_value(v.strip()) for v in values.split(",")]
    return axes


def parse_tuning(args: argparse.Namespace) -> LrTuning | None:
    """The sweep ``--tune-lr`` asks for, or None; its other options need it."""
    given = {
        key: getattr(args, f"tune_{key}")
        for key in ("points", "factor", "widen", "seed")
        if getattr(args, f"tune_{key}") is not None
    }
    if not args.tune_lr:
        if given:
            flag = "--tune-" + next(iter(given))
            raise SettingError(f"{flag} needs --tune-lr", setting="tune", reason="usage")
        return None
    return LrTuning(**given)


def run_compare(args: argparse.Namespace) -> int:
    axes = parse_vary(args.vary)
    overrides = parse_overrides(args.overrides)
    varied_and_set = sorted(set(axes) & set(overrides))
    if varied_and_set:
        raise SettingError(
            f"{', '.join(varied_and_set)} is both varied and set; drop one of --vary/--set",
            setting="vary",
            reason="usage",
        )
    budget = parse_budget(args.budget) if args.budget else None
    tuning = parse_tuning(args)
    variants = plan_comparison(axes, one_at_a_time=args.one_at_a_time, seeds=args.seeds)
    started = time.monotonic()
    swept = [started]  # when the last sweep run ended
    if not args.quiet:
        what = "one setting at a time" if args.one_at_a_time else "every combination"
        seeds = len({v.seed for v in variants})
        sweep = ""
        if tuning is not None:
            configs = len(configurations(variants))
            sweep = (
                f" after a learning-rate sweep of {tuning.points}-{tuning.points + tuning.widen} "
                f"runs for each of {configs} configuration(s)"
            )
        say(
            f"compare: {len(variants)} runs ({what}, {seeds} seed(s) each"
            f"{', budget ' + str(budget) if budget else ''}){sweep} into {args.out}"
        )

    def report(event: Any) -> None:
        if args.quiet:
            return
        r = event.result
        how = "done earlier" if event.skipped else f"{r.seconds:.0f} s"
        lr = "" if r.lr is None else f" lr {r.lr:g}"
        head = f"[{'tune ' if event.tuning else ''}{event.index}/{event.total}] {r.label}{lr}"
        if r.diverged:
            say(f"{head} seed {r.seed}: diverged ({how}); not chosen")
            return
        bpb = "" if r.final_val_bpb is None else f", {r.final_val_bpb:.4f} bits/byte"
        say(
            f"{head} seed {r.seed}: val loss "
            f"{r.final_val_loss:.4f} (best {r.best_val_loss:.4f}){bpb}, {r.tokens_per_s:,.0f} "
            f"tokens/s, {how}"
        )
        if event.tuning:
            swept[0] = time.monotonic()  # the seeds' time estimate starts after the sweeps
            return
        now = time.monotonic()
        per_run = (now - swept[0]) / event.index
        left = event.total - event.index
        eta = f", about {per_run * left:.0f} s left" if left else ""
        say(f"compare: {event.index}/{event.total} runs, {now - started:.0f} s{eta}")

    results = run_comparison(
        variants,
        args.out,
        data=args.data,
        preset=args.preset,
        tokenizer=args.tokenizer,
        config_file=args.config,
        overrides=overrides,
        budget=budget,
        separator=args.doc_sep,
        progress=not args.quiet,
        on_run=report,
        tuning=tuning,
        init_from=args.init_from,
    )
    title = "tinylm compare: " + ", ".join(
        f"{k} ∈ {{{', '.join(map(str, v))}}}" for k, v in axes.items()
    )
    paths = write_report(results, args.out, title)
    print(printable(Path(paths["table"]).read_text(encoding="utf-8")))  # values may hold ESC
    say("wrote " + ", ".join(str(p) for p in paths.values()))
    return 0
