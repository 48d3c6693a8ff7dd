"""``tinylm lora merge`` and ``tinylm lora export``: a saved LoRA adapter, made whole or shared."""

from __future__ import annotations

import argparse
from pathlib import Path

from tinylm.cli.output import say


def register(subparsers: argparse._SubParsersAction) -> None:
    lora = subparsers.add_parser(
        "lora",
        help="merge a LoRA adapter into a full run, or export it for PEFT",
        description="A LoRA adapter folder (adapter.json + adapter.safetensors) records the "
        "base checkpoint it was trained on; the base's weights must be those exact bytes.",
    )
    actions = lora.add_subparsers(dest="lora_command", metavar="ACTION")
    actions.required = True

    merge = actions.add_parser(
        "merge",
        help="fold an adapter into its base and write a new run",
        description="Load the adapter's base, fold W + (alpha/r) B A into its weights and "
        "write an ordinary run (sample, eval, export and serve take it).",
    )
    _adapter_arguments(merge)
    merge.add_argument("--out", type=Path, required=True, metavar="RUN", help="the new run folder")
    merge.set_defaults(run=run_merge)

    export = actions.add_parser(
        "export",
        help="write an adapter in PEFT's format (adapter_config.json + adapter_model.safetensors)",
        description="Write the adapter for peft.PeftModel.from_pretrained, on top of the base "
        "exported with `tinylm export BASE --format hf`.",
    )
    _adapter_arguments(export)
    export.add_argument("--out", type=Path, required=True, metavar="DIR", help="output folder")
    export.add_argument(
        "--base-hf",
        metavar="PATH",
        help="the base's Hugging Face export, recorded as base_model_name_or_path",
    )
    export.set_defaults(run=run_export)


def _adapter_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("adapter", metavar="ADAPTER", help="an adapter folder")
    parser.add_argument(
        "--base",
        metavar="CHECKPOINT",
        help="the base checkpoint or run, if it moved (default: the path the adapter recorded)",
    )


def run_merge(args: argparse.Namespace) -> int:
    # torch-free start-up: every tinylm command imports this module
    from tinylm.inference.adapters import merge_adapter_into_run

    checkpoint = merge_adapter_into_run(args.adapter, args.out, args.base)
    say(f"merged {args.adapter} into {checkpoint}")
    say(f"next: tinylm sample {args.out}")
    return 0


def run_export(args: argparse.Namespace) -> int:
    # torch-free start-up: every tinylm command imports this module
    from tinylm.inference.adapters import load_adapted
    from tinylm.interop.peft_export import export_peft

    model, _, base_meta, meta = load_adapted(args.adapter, args.base)
    files = export_peft(model, meta.lora, args.out, args.base_hf)
    say(f"exported adapter {meta.path} (base {base_meta.path}) for PEFT to {args.out}:")
    for path in files:
        say(f"  {path.name}  ({path.stat().st_size:,} bytes)")
    return 0
