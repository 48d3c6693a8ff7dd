"""``tinylm dpo``: preference tuning (DPO) of a run on prompt / chosen / rejected pairs."""

from __future__ import annotations

import argparse
from pathlib import Path

from tinylm.cli.output import say

DEFAULTS = {"steps": 100, "beta": 0.1, "lr": 1e-5, "batch_size": 8, "held_out": 0.1, "seed": 1337}


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "dpo",
        help="tune a run on preference pairs (DPO) against a frozen copy of itself",
        description="Direct Preference Optimization: train a copy of RUN to prefer the chosen "
        "reply of each pair over the rejected one, measured against the frozen RUN. A run "
        "without the chat tokens gains them first. Writes a new run with a chat template.",
    )
    p.add_argument("run_path", metavar="RUN", help="a run folder or a checkpoint folder")
    p.add_argument(
        "--data",
        default="prefs:builtin",
        metavar="SPEC",
        help="prefs:builtin (pairs made from Python's help topics, the default), "
        "prefs:hf:NAME (a Hugging Face dataset) or a JSON-lines file of "
        '{"prompt", "chosen", "rejected"}',
    )
    p.add_argument("--out", type=Path, metavar="DIR", help="the new run (default: RUN-dpo)")
    p.add_argument("--steps", type=int, default=DEFAULTS["steps"], help="optimiser steps")
    p.add_argument(
        "--beta",
        type=float,
        default=DEFAULTS["beta"],
        help="strength of the tie to the reference (default: 0.1)",
    )
    p.add_argument("--lr", type=float, default=DEFAULTS["lr"], help="AdamW learning rate")
    p.add_argument("--batch-size", type=int, default=DEFAULTS["batch_size"], help="pairs per step")
    p.add_argument(
        "--held-out",
        type=float,
        default=DEFAULTS["held_out"],
        metavar="FRACTION",
        help="fraction of pairs set aside to measure on (default: 0.1)",
    )
    p.add_argument("--seed", type=int, default=DEFAULTS["seed"])
    p.add_argument("--device", default="auto", help="auto, cpu, cuda or mps")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(run=run_dpo)


def run_dpo(args: argparse.Namespace) -> int:
    # torch-free start-up: every tinylm command imports this module
    from tinylm.run.preference import DPOSettings, train_dpo

    settings = DPOSettings(
        steps=args.steps,
        beta=args.beta,
        lr=args.lr,
        batch_size=args.batch_size,
        held_out=args.held_out,
        seed=args.seed,
    )
    out = args.out or Path(f"{str(args.run_path).rstrip('/')}-dpo")
    summary = train_dpo(
        args.run_path, args.data, out, settings, device=args.device, progress=not args.quiet
    )
    if summary.grew_vocab:
        say(f"{args.run_path} had no chat tokens; its tokenizer and model gained them")
    dropped = f", {summary.cut:,} with replies cut to the context" if summary.cut else ""
    if summary.dropped:
        dropped += f", {summary.dropped:,} dropped: nothing left to compare within the context"
    say(
        f"trained {summary.steps} steps on {summary.train_pairs:,} pairs "
        f"({summary.held_out_pairs:,} held out{dropped})"
    )
    last = summary.last
    say(
        f"last step: dpo loss {last['dpo_loss']:.4f}, reward margin {last['reward_margin']:.4f}, "
        f"reward accuracy {last['reward_accuracy']:.2f}"
    )
    if summary.after:
        for name in ("reward_accuracy", "preference_accuracy", "dpo_loss"):
            before, after = summary.before[name], summary.after[name]
            say(f"held out {name.replace('_', ' ')}: {before:.4f} before, {after:.4f} after")
    say(f"run folder: {summary.out_dir} (checkpoint, metrics.jsonl)")
    say(f"next: tinylm sample {summary.checkpoint}")
    return 0
