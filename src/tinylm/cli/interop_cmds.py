"""``tinylm export`` and ``tinylm import``: to and from Hugging Face, GGUF and tiktoken."""

from __future__ import annotations

import argparse
from pathlib import Path

from tinylm.cli.output import say
from tinylm.errors import TinylmError

FORMATS = ("hf", "gguf", "tiktoken")
QUANTS = ("q8_0",)  # tinylm.interop.gguf_export.GGUF_QUANTS, spelt here to stay torch-free


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "export",
        help="write a run as a Hugging Face folder, a GGUF file or a tiktoken vocabulary",
        description="Write a trained run for other tools: --format hf (transformers: "
        "GPT2LMHeadModel or LlamaForCausalLM + tokenizer), gguf (llama.cpp, Llama-style "
        "models), tiktoken (the BPE vocabulary).",
    )
    p.add_argument("run_path", metavar="RUN", help="a run folder or a checkpoint folder")
    p.add_argument("--format", choices=FORMATS, default="hf", help="output format (default: hf)")
    p.add_argument("--out", type=Path, required=True, metavar="DIR", help="output folder")
    p.add_argument(
        "--quant",
        choices=QUANTS,
        help="gguf only: q8_0 stores the weight matrices as 8-bit blocks of 32 with a float16 "
        "scale each (default: float32)",
    )
    p.add_argument("--best", action="store_true", help="use the best checkpoint, not the latest")
    p.set_defaults(run=run_export)

    p = subparsers.add_parser(
        "import",
        help="turn a local Hugging Face GPT-2 or Llama folder into a tinylm run",
        description="Read a local Hugging Face checkpoint folder (config.json + safetensors "
        "weights, sharded or not, + tokenizer) and write a tinylm run that sample, eval and "
        "train --init-from accept. Pickle-only weights (pytorch_model.bin) are refused.",
    )
    p.add_argument("hf_dir", metavar="DIR", help="a Hugging Face checkpoint folder")
    p.add_argument("--out", type=Path, required=True, metavar="RUN", help="the new run folder")
    p.set_defaults(run=run_import)


def run_export(args: argparse.Namespace) -> int:
    # torch-free start-up: every tinylm command imports this module
    from tinylm.chat.template import load_chat_template
    from tinylm.inference.loading import load_model
    from tinylm.interop.export import export_model

    model, tokenizer, meta = load_model(args.run_path, "cpu", "best" if args.best else "latest")
    chat = meta.chat_template_file is not None and tokenizer is not None
    if chat:
        load_chat_template(meta.chat_template_file, tokenizer)  # checked before it is written
    files = export_model(model, tokenizer, args.out, args.format, args.quant, chat=chat)
    fmt = args.format if args.quant is None else f"{args.format} {args.quant}"
    say(f"exported {meta.path} (step {meta.step}) as {fmt} to {args.out}:")
    for path in files:
        say(f"  {path.name}  ({path.stat().st_size:,} bytes)")
    return 0


def run_import(args: argparse.Namespace) -> int:
    # torch-free start-up: every tinylm command imports this module
    from tinylm.interop.hf_import import import_hf

    if not Path(args.hf_dir).is_dir():
        raise TinylmError(f"{args.hf_dir} is not a folder; give a Hugging Face checkpoint folder")
    info = import_hf(args.hf_dir, args.out)
    say(f"imported a {info['family']} model ({info['params']:,} parameters) into {args.out}")
    if info["tokenizer_note"]:
        say(f"no tokenizer came along: {info['tokenizer_note']}")
        print(
            "sample, eval and inspect need one: give the folder a byte-level BPE "
            "tokenizer.json (or vocab.json + merges.txt) and import it again into a new folder"
        )
    elif info["chat"] == "tinylm":
        say(f"it is a chat model (tinylm's chat template); next: tinylm chat {args.out}")
    else:
        say(f"next: tinylm sample {args.out}")
    if info["chat"] == "other":
        say(
            f"note: {args.hf_dir}'s chat_template is not tinylm's layout and was not carried "
            f"over; chat with the folder itself: tinylm chat {args.hf_dir}"
        )
    return 0
