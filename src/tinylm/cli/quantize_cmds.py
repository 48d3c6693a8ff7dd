"""``tinylm quantize``: a run's weights saved as int8 or bfloat16, for sampling and eval."""

from __future__ import annotations

import argparse
from pathlib import Path

from tinylm.cli.output import say

#: The formats ``--to`` takes (tinylm.inference.quantized_run.QUANTIZED_FORMATS; spelt
#: here so that building the parser imports no torch).
TO_FORMATS = ("int8", "bfloat16")


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "quantize",
        help="save a run's weights as int8 or bfloat16 (sample, eval and export read it)",
        description="Write a checkpoint folder holding RUN's weight matrices as int8 (one "
        "float32 scale per output channel, stored beside them) or bfloat16; norms, biases "
        "and position tables stay float32. tinylm sample decodes it in its own format; eval, "
        "inspect and export read it dequantised. Training from it is refused.",
    )
    p.add_argument("run_path", metavar="RUN", help="a run folder or a checkpoint folder")
    p.add_argument("--to", choices=TO_FORMATS, required=True, help="the stored number format")
    p.add_argument("--out", type=Path, required=True, metavar="RUN2", help="the new folder")
    p.add_argument("--best", action="store_true", help="use the best checkpoint, not the latest")
    p.set_defaults(run=run_quantize)


def run_quantize(args: argparse.Namespace) -> int:
    # torch-free start-up: every tinylm command imports this module
    from tinylm.inference.loading import load_model
    from tinylm.inference.quantized_run import save_quantized

    model, _, meta = load_model(args.run_path, "cpu", "best" if args.best else "latest")
    out = save_quantized(model, meta, args.out, args.to)
    size = sum(path.stat().st_size for path in out.iterdir())
    say(f"quantized {meta.path} (step {meta.step}) to {args.to}: {out} ({size:,} bytes)")
    say(f"next: tinylm sample {out}")
    return 0
