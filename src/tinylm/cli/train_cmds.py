"""``tinylm train``, ``tinylm sample`` and ``tinylm eval``.

This module only turns arguments into calls of the library and prints the
results: ``train`` calls the run layer (:mod:`tinylm.run`: settings layering,
run-folder rules, cached data), ``sample`` and ``eval`` the inference helpers
(:mod:`tinylm.inference`). It is imported when the CLI starts, so torch and the
model are imported inside the ``run_*`` functions, never at the top.

``--config FILE.toml``, then ``--set key=value`` and ``--steps`` are the layers
of settings on top of ``--preset`` (see :mod:`tinylm.run.settings`).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from tinylm.cli.data_cmds import HUB_PREFIX
from tinylm.cli.options import add_doc_sep, add_overrides, parse_overrides
from tinylm.cli.output import note_decode_kernels, say
from tinylm.data.corpus import BUILTIN_CORPUS, BUILTIN_WORDS
from tinylm.data.mc_tasks import BUILTIN_TASKS, load_hub_task, load_task
from tinylm.engines import DEFAULT_ENGINE, ENGINES
from tinylm.errors import TinylmError
from tinylm.fileio import atomic_write
from tinylm.inference.sampling import prompt_ids, sample_texts, stream_text
from tinylm.run.settings import DEFAULT_PRESET, DEFAULT_TOKENIZER
from tinylm.terminal import printable

FINAL_SAMPLES = 2


def register(subparsers: argparse._SubParsersAction) -> None:
    _register_train(subparsers)
    _register_sample(subparsers)
    _register_eval(subparsers)


def _register_train(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "train",
        help="train a model (default: the small preset on the built-in corpus, ~2-3 min on CPU)",
        description="Train a GPT from scratch, resume a run, or fine-tune a trained model.",
    )
    p.add_argument(
        "--data",
        nargs="+",
        metavar="PATH",
        help=f"a prepared data folder (has meta.json), text files/folders/globs, or "
        f"{BUILTIN_CORPUS!r} (default: the built-in corpus); with --init-from, chat:builtin, "
        "chat:FILE.jsonl or chat:hf:NAME fine-tunes on conversations (replies only)",
    )
    p.add_argument("--preset", help=f"model preset (default: {DEFAULT_PRESET})")
    p.add_argument(
        "--tokenizer",
        metavar="SPEC",
        help="char, bpe:N (trained on the data), or a tokenizer file "
        f"(default: {DEFAULT_TOKENIZER}; a prepared folder brings its own)",
    )
    p.add_argument("--steps", type=int, help="optimiser steps (TrainConfig.steps)")
    add_overrides(
        p, "set a model or train config field, e.g. --set n_layer=2 --set lr=3e-4 (repeatable)"
    )
    p.add_argument("--config", type=Path, metavar="FILE.toml", help="config file ([model]/[train])")
    p.add_argument("--out", type=Path, metavar="DIR", help="run folder (default: runs/<preset>)")
    p.add_argument("--resume", action="store_true", help="continue the run in --out")
    p.add_argument(
        "--init-from", metavar="RUN", help="start from a trained run or checkpoint (fine-tune)"
    )
    p.add_argument(
        "--engine",
        choices=tuple(ENGINES),
        help=f"{DEFAULT_ENGINE} (default; with --resume: the run's own), or scratch: the "
        "microgpt preset in pure Python scalars, one document per step (default data: "
        f"{BUILTIN_WORDS!r}, default --doc-sep: line)",
    )
    add_doc_sep(p)
    p.set_defaults(doc_sep=None)  # not given: the engine's own separator
    p.add_argument("--quiet", action="store_true", help="no progress bar or periodic output")
    p.set_defaults(run=run_train)


def _register_sample(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser("sample", help="generate text from a trained run or checkpoint")
    p.add_argument("run_path", metavar="RUN", help="a run folder or a checkpoint folder")
    p.add_argument("--prompt", default="", help="text to continue (default: start of a document)")
    p.add_argument("--num", type=int, default=1, help="number of samples")
    p.add_argument("--max-tokens", type=int, default=300, help="tokens per sample")
    p.add_argument("--temperature", type=float, default=0.8, help="0 is greedy")
    p.add_argument("--top-k", type=int, default=None)
    p.add_argument("--top-p", type=float, default=None)
    p.add_argument("--seed", type=int, default=None, help="for reproducible samples")
    p.add_argument("--best", action="store_true", help="use the best checkpoint, not the latest")
    p.add_argument("--device", default="auto", help="auto, cpu, cuda or mps")
    p.add_argument(
        "--weights",
        default=None,
        help="the weights generation reads: float32, bfloat16 or int8 (8-bit, one scale per "
        "output channel; about a quarter of the memory); default: the run's own (float32, or "
        "what tinylm quantize stored)",
    )
    p.set_defaults(run=run_sample)


def _register_eval(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "eval",
        help="loss and perplexity of a trained model on some text, or its accuracy on a "
        "multiple-choice task",
    )
    p.add_argument("run_path", metavar="RUN", help="a run folder or a checkpoint folder")
    p.add_argument(
        "--data",
        nargs="+",
        metavar="PATH",
        help=f"a prepared data folder, text files/folders/globs, or {BUILTIN_CORPUS!r}",
    )
    p.add_argument(
        "--task",
        metavar="NAME|FILE",
        help=f"a multiple-choice task instead of --data: built-in ({', '.join(BUILTIN_TASKS)}), "
        f"a JSONL file of items, or {HUB_PREFIX}NAME[:CONFIG]:SPLIT",
    )
    p.add_argument(
        "--output", type=Path, metavar="FILE.jsonl", help="with --task: write per-item results"
    )
    p.add_argument("--quiet", action="store_true", help="with --task: no progress bar")
    p.add_argument(
        "--split", choices=("val", "train"), default="val", help="split of a prepared folder"
    )
    p.add_argument("--batch-size", type=int, default=16)
    p.add_argument("--max-batches", type=int, default=None, help="stop after this many batches")
    add_doc_sep(p)
    p.add_argument("--best", action="store_true", help="use the best checkpoint, not the latest")
    p.add_argument("--device", default="auto", help="auto, cpu, cuda or mps")
    p.set_defaults(run=run_eval)


# -- train ------------------------------------------------------------------------------


def _overrides(args: argparse.Namespace) -> dict[str, Any]:
    """``--set`` pairs, then ``--steps``: the last layer of settings."""
    pairs = parse_overrides(args.overrides)
    if args.steps is not None:
        pairs["steps"] = args.steps
    return pairs


def run_train(args: argparse.Namespace) -> int:
    # torch-free start-up: every tinylm command imports this module
    from tinylm.run.start import resume_run, start_run
    from tinylm.train import distributed

    given = {
        "data": args.data,
        "preset": args.preset,
        "tokenizer": args.tokenizer,
        "config_file": args.config,
        "overrides": _overrides(args),
        "init_from": args.init_from,
        "progress": not args.quiet,
        "engine": args.engine,  # None: the default engine, or the run's own on --resume
    }
    try:
        if args.resume:
            trainer = resume_run(args.out, separator=args.doc_sep, **given)
        else:  # no --doc-sep (None): the engine's separator; "" is refused by the library
            trainer = start_run(out_dir=args.out, separator=args.doc_sep, **given)
        out_dir = Path(trainer.config.out_dir)
        try:
            summary = trainer.fit()
        except KeyboardInterrupt:
            if trainer.dist.is_main:
                _report_interrupt(trainer, out_dir)
            raise
        if trainer.dist.is_main:
            _print_summary(trainer, summary, out_dir)
    finally:
        distributed.teardown()
    return 0


def _report_interrupt(trainer: Any, out_dir: Path) -> None:
    """After Ctrl-C: where the run stopped, what was saved, and how to continue."""
    step, total = trainer.step, trainer.config.steps
    if trainer.last_checkpoint is None:
        saved = "no checkpoint was saved yet, so run the same command again to start over"
    else:
        saved = (
            f"the last checkpoint is {trainer.last_checkpoint} (step {trainer.saved_step}); "
            f"continue with: tinylm train --out {out_dir} --resume"
        )
    line = f"tinylm: training stopped at step {step} of {total}; {saved}"
    print(printable(line, one_line=True), file=sys.stderr)


def _print_summary(trainer: Any, summary: dict[str, Any], out_dir: Path) -> None:
    bpb = f", {summary['val_bpb']:.4f} bits/byte" if "val_bpb" in summary else ""
    print(
        f"trained {summary['step']} steps: val loss {summary['val_loss']:.4f} "
        f"(perplexity {summary['val_ppl']:.2f}{bpb}), best {summary['best_val_loss']:.4f}"
    )
    folder = printable(str(out_dir), one_line=True)
    print(f"run folder: {folder} (checkpoints, metrics.jsonl, loss.png)")
    if trainer.tokenizer is None:
        return
    if trainer.chat_template is not None:
        # a chat model answers turns; a raw continuation of nothing would show it badly
        print(f"\nnext: tinylm chat {folder}")
        return
    for i in range(FINAL_SAMPLES):
        try:  # the run is saved; a sample that fails must not turn it into a failure
            text = trainer.sample(max_tokens=max(trainer.config.sample_tokens, 300), seed=i)
        except (TinylmError, RuntimeError) as exc:
            text = f"<no sample: {exc}>"
        print(f"\n--- sample {i + 1} ---\n{printable(text)}")
    print(f"\nmore: tinylm sample {folder} --prompt '...'")


# -- sample -------------------------------------------------------------------------------


def _load_run(args: argparse.Namespace) -> tuple[Any, Any, dict[str, Any]]:
    """The model, tokenizer and metadata of ``args.run_path`` (latest or ``--best``)."""
    # torch-free start-up: every tinylm command imports this module
    from tinylm.device import resolve_device
    from tinylm.inference.loading import load_model

    device = str(resolve_device(args.device))
    which = "best" if args.best else "latest"
    return load_model(args.run_path, device, which, require_tokenizer=True)


def run_sample(args: argparse.Namespace) -> int:
    """One sample streams as it is written; several are generated as one batch."""
    if args.num < 1:
        raise TinylmError(f"--num must be at least 1, got {args.num}")
    # torch-free start-up: every tinylm command imports this module
    from tinylm.device import resolve_device
    from tinylm.inference.loading import load_engine

    device = str(resolve_device(args.device))
    which = "best" if args.best else "latest"
    # packed copies of the weights, once (an int8 run's as it stored them)
    model, _, tokenizer, _ = load_engine(
        args.run_path, device, which, args.weights, require_tokenizer=True
    )
    note_decode_kernels(model.weights, device)
    prompt_ids(tokenizer, args.prompt)  # an unencodable prompt fails before any output
    sampling = {
        "temperature": args.temperature,
        "top_k": args.top_k,
        "top_p": args.top_p,
        "seed": args.seed,
    }
    if args.num > 1:
        texts = sample_texts(model, tokenizer, args.prompt, args.max_tokens, args.num, **sampling)
        sys.stdout.write("\n---\n".join(printable(args.prompt + text) for text in texts) + "\n")
        return 0
    sys.stdout.write(printable(args.prompt))  # a prompt or a sample may hold ESC, BEL...
    for piece in stream_text(model, tokenizer, args.prompt, args.max_tokens, **sampling):
        sys.stdout.write(printable(piece))
        sys.stdout.flush()
    sys.stdout.write("\n")
    return 0


# -- eval ---------------------------------------------------------------------------------


def run_eval(args: argparse.Namespace) -> int:
    # torch-free start-up: every tinylm command imports this module
    from tinylm.inference.evaluation import evaluate

    if (args.data is None) == (args.task is None):
        raise TinylmError("give either --data (loss on text) or --task (a multiple-choice task)")
    if args.batch_size < 1:
        raise TinylmError(f"--batch-size must be at least 1, got {args.batch_size}")
    if args.task is not None:
        return _run_task(args)
    if args.output is not None:
        raise TinylmError("--output writes per-item results of a --task; drop it for --data")
    if args.max_batches is not None and args.max_batches < 1:
        raise TinylmError(f"--max-batches must be at least 1, got {args.max_batches}")
    model, tokenizer, meta = _load_run(args)
    result = evaluate(
        model,
        tokenizer,
        args.data,
        split=args.split,
        batch_size=args.batch_size,
        max_batches=args.max_batches,
        separator=args.doc_sep,
    )
    say(
        f"{result['data']}: loss {result['loss']:.4f}, perplexity {result['perplexity']:.2f}, "
        f"{result['bpb']:.4f} bits/byte over {result['tokens']:,} tokens "
        f"({result['bytes']:,} bytes) (checkpoint {meta.path}, step {meta.step})"
    )
    return 0


def _load_task(spec: str) -> Any:
    """``--task``: a built-in name, a JSONL file, or ``hf:NAME[:CONFIG]:SPLIT``."""
    if not spec.startswith(HUB_PREFIX):
        return load_task(spec)
    name, *rest = spec[len(HUB_PREFIX) :].split(":")
    if not name or len(rest) > 2 or not all(rest):
        raise TinylmError(
            f"write {HUB_PREFIX}NAME, {HUB_PREFIX}NAME:SPLIT or {HUB_PREFIX}NAME:CONFIG:SPLIT, "
            f"e.g. {HUB_PREFIX}allenai/ai2_arc:ARC-Easy:validation"
        )
    config = rest[0] if len(rest) == 2 else None
    split = rest[-1] if rest else "validation"
    return load_hub_task(name, split, config=config)


def _run_task(args: argparse.Namespace) -> int:
    """``eval --task``: accuracy on a multiple-choice task, beside chance."""
    # torch-free start-up: every tinylm command imports this module
    from tinylm.inference.benchmarks import score_task

    if args.max_batches is not None:
        raise TinylmError("--max-batches applies to --data; a --task scores every item")
    task = _load_task(args.task)  # a malformed file fails before the model loads
    model, tokenizer, meta = _load_run(args)
    result = score_task(model, tokenizer, task, batch_size=args.batch_size, progress=not args.quiet)
    if args.output is not None:
        atomic_write(args.output, result.jsonl())
    say(
        f"{task.name}: acc {result.acc:.4f}, acc_norm {result.acc_norm:.4f}, "
        f"acc_bytes {result.acc_bytes:.4f} over {len(result.items):,} items "
        f"(chance {task.chance:.4f}) (checkpoint {meta.path}, step {meta.step})"
    )
    if args.output is not None:
        say(f"per-item results: {args.output}")
    return 0
