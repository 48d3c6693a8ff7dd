"""``tinylm train``, ``tinylm sample`` and ``tinylm eval``.

This module only turns arguments into calls of the training library
(``tinylm.train``); it is imported when the CLI starts, so torch and the model
are imported inside the ``run_*`` functions, never at the top.

Configuration is layered, later layers winning: the model preset and
``TrainConfig``'s defaults, then ``--config FILE.toml`` (``[model]`` and
``[train]`` tables, or flat keys), then ``--steps`` and ``--set key=value``.
Every key is a field of ``ModelConfig`` or ``TrainConfig``; the two share no
names, so ``--set`` needs no prefix.
"""

from __future__ import annotations

import argparse
import contextlib
import sys
from pathlib import Path
from typing import Any

from tinylm.cli.options import add_doc_sep
from tinylm.data.corpus import BUILTIN_CORPUS
from tinylm.errors import TinylmError

DEFAULT_PRESET = "small"
DEFAULT_TOKENIZER = "char"
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
        f"{BUILTIN_CORPUS!r} (default: the built-in corpus)",
    )
    p.add_argument("--preset", help=f"model preset (default: {DEFAULT_PRESET})")
    p.add_argument(
        "--tokenizer",
        metavar="SPEC",
        help="char, bpe:N (trained on the data), or a tokenizer file "
        f"(default: {DEFAULT_TOKENIZER}; a prepared folder brings its own)",
    )
    p.add_argument("--steps", type=int, help="optimiser steps (TrainConfig.steps)")
    p.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        dest="overrides",
        help="set a model or train config field, e.g. --set n_layer=2 --set lr=3e-4 (repeatable)",
    )
    p.add_argument("--config", type=Path, metavar="FILE.toml", help="config file ([model]/[train])")
    p.add_argument("--out", type=Path, metavar="DIR", help="run folder (default: runs/<preset>)")
    p.add_argument("--resume", action="store_true", help="continue the run in --out")
    p.add_argument(
        "--init-from", metavar="RUN", help="start from a trained run or checkpoint (fine-tune)"
    )
    add_doc_sep(p)
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
    p.set_defaults(run=run_sample)


def _register_eval(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser("eval", help="loss and perplexity of a trained model on some text")
    p.add_argument("run_path", metavar="RUN", help="a run folder or a checkpoint folder")
    p.add_argument(
        "--data",
        nargs="+",
        required=True,
        metavar="PATH",
        help=f"a prepared data folder, text files/folders/globs, or {BUILTIN_CORPUS!r}",
    )
    p.add_argument(
        "--split", choices=("val", "train"), default="val", help="split of a prepared folder"
    )
    p.add_argument("--batch-size", type=int, default=16)
    p.add_argument("--max-batches", type=int, default=None, help="stop after this many batches")
    add_doc_sep(p)
    p.add_argument("--best", action="store_true", help="use the best checkpoint, not the latest")
    p.add_argument("--device", default="auto", help="auto, cpu, cuda or mps")
    p.set_defaults(run=run_eval)


# -- configuration layers -----------------------------------------------------------------


def parse_value(text: str) -> Any:
    """A ``--set`` value: bool, none, int, float, a comma list of those, or a string.

    The config classes then check the type, so ``--set lr=fast`` fails with the
    field's own message.
    """
    lowered = text.strip().lower()
    if lowered in ("true", "false"):
        return lowered == "true"
    if lowered in ("none", "null"):
        return None
    for convert in (int, float):
        try:
            return convert(text)
        except ValueError:
            pass
    if "," in text:
        return [parse_value(part) for part in text.split(",")]
    return text


def _field_names() -> tuple[list[str], list[str]]:
    from tinylm.model.config import field_names
    from tinylm.train.config import train_field_names

    return field_names(), train_field_names()


def _unknown_key(key: str, source: str) -> TinylmError:
    model_keys, train_keys = _field_names()
    return TinylmError(
        f"unknown {source} key {key!r}; valid keys are model: {', '.join(model_keys)}; "
        f"train: {', '.join(train_keys)}"
    )


def split_settings(settings: dict[str, Any], source: str) -> tuple[dict, dict]:
    """Route flat ``key: value`` pairs to the model or the train config."""
    model_keys, train_keys = _field_names()
    model, train = {}, {}
    for key, value in settings.items():
        if key in model_keys:
            model[key] = value
        elif key in train_keys:
            train[key] = value
        else:
            raise _unknown_key(key, source)
    return model, train


def _toml_layers(path: Path | None) -> tuple[str | None, dict, dict]:
    """``(preset, model settings, train settings)`` from a TOML file.

    ``[model]`` (which may name a ``preset``) and ``[train]`` tables, plus flat
    top-level keys routed by name.
    """
    if path is None:
        return None, {}, {}
    from tinylm.train.config import read_toml

    data = dict(read_toml(path))
    model, train = _toml_table(data, "model", path), _toml_table(data, "train", path)
    preset = model.pop("preset", None) or data.pop("preset", None)
    flat_model, flat_train = split_settings(data, path.name)
    model_keys, train_keys = _field_names()
    for table, keys, valid in (("model", model, model_keys), ("train", train, train_keys)):
        for key in keys:
            if key not in valid:
                raise _unknown_key(key, f"{path.name} [{table}]")
    return preset, {**flat_model, **model}, {**flat_train, **train}


def _toml_table(data: dict[str, Any], name: str, path: Path) -> dict[str, Any]:
    table = data.pop(name, {})
    if not isinstance(table, dict):
        raise TinylmError(f"{name} in {path} must be a [{name}] table")
    return dict(table)


def _cli_settings(args: argparse.Namespace) -> tuple[dict, dict]:
    """``--set`` pairs and ``--steps``, split into model and train settings."""
    pairs: dict[str, Any] = {}
    for item in args.overrides:
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise TinylmError(f"--set wants KEY=VALUE, got {item!r}; e.g. --set n_layer=2")
        pairs[key.strip()] = parse_value(value.strip())
    model, train = split_settings(pairs, "--set")
    if args.steps is not None:
        train["steps"] = args.steps
    return model, train


def collect_settings(args: argparse.Namespace) -> tuple[str, dict, dict]:
    """``(preset, model overrides, train overrides)`` from the TOML file and the flags."""
    toml_preset, toml_model, toml_train = _toml_layers(args.config)
    cli_model, cli_train = _cli_settings(args)
    preset = args.preset or toml_preset or DEFAULT_PRESET
    return preset, {**toml_model, **cli_model}, {**toml_train, **cli_train}


# -- train ------------------------------------------------------------------------------


def _default_out(args: argparse.Namespace, preset: str, train_settings: dict) -> Path:
    """``--out``, else ``out_dir`` from ``--set`` or the TOML file, else ``runs/<name>``.

    Pops ``out_dir`` from ``train_settings``: the caller puts the resolved folder
    back, so the data cache, checkpoints and summary all use the same one.
    """
    from_settings = train_settings.pop("out_dir", None)
    if args.out is not None:
        return args.out
    if from_settings is not None:
        if not isinstance(from_settings, str) or not from_settings:
            raise TinylmError(f"out_dir must be a folder name, got {from_settings!r}")
        return Path(from_settings)
    if args.init_from:
        return Path("runs") / f"{Path(args.init_from).name or 'model'}-finetune"
    return Path("runs") / preset


def run_train(args: argparse.Namespace) -> int:
    from tinylm.train import distributed
    from tinylm.train.runtime import resolve_device

    preset, model_settings, train_settings = collect_settings(args)
    out_dir = _default_out(args, preset, train_settings)
    if args.quiet:  # --quiet wins; otherwise --set progress=false is honoured
        train_settings["progress"] = False
    info = distributed.DistInfo.from_env()
    if info.enabled:  # rank 0 prepares the data while the others wait, so join first
        device = resolve_device(str(train_settings.get("device", "auto")))
        distributed.setup(info, distributed.process_device(info, device))
    created = not out_dir.exists()
    try:
        if args.resume:
            trainer = _resume_trainer(args, out_dir, preset, model_settings, train_settings, info)
        else:
            trainer = _new_trainer(args, out_dir, preset, model_settings, train_settings, info)
        try:
            summary = trainer.fit()
        except KeyboardInterrupt:
            if info.is_main:
                _report_interrupt(trainer, out_dir)
            raise
        if info.is_main:
            _print_summary(trainer, summary, out_dir)
    except TinylmError:
        if created and info.is_main:
            _remove_if_empty(out_dir)  # a failed start leaves no empty run folder behind
        raise
    finally:
        distributed.teardown()
    return 0


def _remove_if_empty(folder: Path) -> None:
    with contextlib.suppress(OSError):
        folder.rmdir()  # only succeeds when empty


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
    print(f"tinylm: training stopped at step {step} of {total}; {saved}", file=sys.stderr)


def _new_trainer(args, out_dir, preset, model_settings, train_settings, info):
    """A fresh run (or a fine-tune with ``--init-from``), after every check passes."""
    import torch

    from tinylm.model import GPT, ModelConfig
    from tinylm.train.checkpoint import load_checkpoint
    from tinylm.train.config import TrainConfig
    from tinylm.train.runs import is_existing_run, model_for_checkpoint
    from tinylm.train.trainer import Trainer, check_writable

    if is_existing_run(out_dir):
        raise TinylmError(
            f"{out_dir} already holds a run; pass --resume to continue it, "
            "or --out DIR for a new run"
        )
    train_config = TrainConfig.from_dict({**train_settings, "out_dir": str(out_dir)})
    base = _init_from(args.init_from, model_settings) if args.init_from else None
    if base is None:  # fail on a bad preset or model setting before preparing any data
        ModelConfig.from_preset(preset, **model_settings)
    if info.is_main:
        check_writable(out_dir)
    data, tokenizer, data_info = _training_data(args, out_dir, base, info)
    if base is not None:
        config = ModelConfig.from_dict({**base["config"], **model_settings})
    else:
        vocab = {"vocab_size": tokenizer.vocab_size}
        config = ModelConfig.from_preset(preset, **{**vocab, **model_settings})
    torch.manual_seed(train_config.seed)
    if base is None:
        model = GPT(config)
    else:  # the checkpoint's weights are checked to fit before anything is allocated
        model = model_for_checkpoint(base["path"], config.to_dict())
        load_checkpoint(base["path"], model)
    run_info = {
        "preset": None if base else preset,
        "init_from": str(base["path"]) if base else None,
        **data_info,
    }
    return Trainer(model, data.train, data.val, tokenizer, train_config, run_info=run_info)


def _init_from(path: str, model_settings: dict[str, Any]) -> dict[str, Any]:
    """The checkpoint to fine-tune: its path, model config and tokenizer."""
    from tinylm.train.checkpoint import read_checkpoint_meta
    from tinylm.train.runs import load_tokenizer_file

    meta = read_checkpoint_meta(path)
    if not isinstance(meta.get("config"), dict):
        raise TinylmError(f"checkpoint {meta['path']} has no model config to rebuild from")
    changed = sorted(
        key
        for key, value in model_settings.items()
        if key != "dropout" and meta["config"].get(key) != value
    )  # restating the model's own value (a copied command line) is fine
    if changed:
        raise TinylmError(
            f"--init-from keeps the model's shape; only dropout can be set, not {changed[0]} "
            f"(the model has {changed[0]}={meta['config'].get(changed[0])!r})"
        )
    if meta.get("tokenizer") is None:
        raise TinylmError(f"checkpoint {meta['path']} has no tokenizer.json to fine-tune with")
    return {
        "path": meta["path"],
        "config": meta["config"],
        "tokenizer": load_tokenizer_file(meta["tokenizer"]),
    }


def _training_data(args, out_dir: Path, base: dict | None, info) -> tuple[Any, Any, dict]:
    """``(PreparedData, tokenizer, run info)``: a prepared folder, or raw text prepared now."""
    from tinylm.data.prepared import check_tokenizer, load_prepared
    from tinylm.train import distributed
    from tinylm.train.runs import DATA_CACHE, is_prepared_dir, prepare_cached

    specs = list(args.data or [BUILTIN_CORPUS])
    given = base["tokenizer"] if base else None
    if base and args.tokenizer:
        raise TinylmError("--init-from uses the checkpoint's tokenizer; drop --tokenizer")
    if len(specs) == 1 and is_prepared_dir(specs[0]):
        folder = Path(specs[0])
        if given is None and args.tokenizer:
            from tinylm.train.runs import load_tokenizer_file, parse_tokenizer_spec

            kind, value = parse_tokenizer_spec(args.tokenizer)
            if kind != "file":
                raise TinylmError(
                    f"{folder} is already tokenized; --tokenizer must be its tokenizer file, "
                    f"not {args.tokenizer!r} (or leave it out)"
                )
            given = load_tokenizer_file(value)
    else:
        spec = args.tokenizer or DEFAULT_TOKENIZER
        cache = out_dir / DATA_CACHE
        if info.is_main:
            folder = prepare_cached(
                specs, spec, cache, tokenizer=given, separator=args.doc_sep, progress=not args.quiet
            )
        distributed.barrier(info)
        if not info.is_main:
            folder = prepare_cached(specs, spec, cache, tokenizer=given, separator=args.doc_sep)
    data = load_prepared(folder)
    tokenizer = given if given is not None else _data_tokenizer(data)
    check_tokenizer(data, tokenizer)
    data_info = {
        "data": specs,
        "tokenizer": args.tokenizer or (None if base else DEFAULT_TOKENIZER),
        "prepared": str(_relative_to(folder, out_dir)),
    }
    return data, tokenizer, data_info


def _relative_to(path: Path, root: Path) -> Path:
    """``path`` relative to ``root`` when inside it (so a run folder can be moved)."""
    try:
        return path.resolve().relative_to(root.resolve())
    except ValueError:
        return path.resolve()


def _data_tokenizer(data: Any) -> Any:
    from tinylm.train.runs import load_tokenizer_file

    return load_tokenizer_file(data.tokenizer_path)


def _resume_trainer(args, out_dir, preset, model_settings, train_settings, info):
    """Continue the run in ``out_dir`` from its latest checkpoint, exactly."""
    import torch

    from tinylm.data.prepared import check_tokenizer, load_prepared
    from tinylm.train.checkpoint import CheckpointManager
    from tinylm.train.config import TrainConfig
    from tinylm.train.runs import load_tokenizer_file, model_for_checkpoint, read_run_info
    from tinylm.train.trainer import Trainer

    if info.is_main and out_dir.is_dir():  # leftovers of a killed run, before choosing latest
        CheckpointManager(out_dir).recover()
    latest = CheckpointManager(out_dir).latest() if out_dir.is_dir() else None
    if latest is None:
        raise TinylmError(f"nothing to resume in {out_dir}: it has no checkpoint; drop --resume")
    run = read_run_info(out_dir)
    _check_same_run(args, run, model_settings, out_dir)
    stored = {**run.get("train", {}), "progress": True, **train_settings}
    train_config = TrainConfig.from_dict({**stored, "out_dir": str(out_dir)})
    data = load_prepared(out_dir / run["prepared"])  # relative when inside the run
    tokenizer = load_tokenizer_file(latest / "tokenizer.json")
    check_tokenizer(data, tokenizer)
    torch.manual_seed(train_config.seed)
    model = model_for_checkpoint(latest, run["model"])  # refused before allocating if unfit
    run_info = {k: v for k, v in run.items() if k not in ("model", "train", "world_size")}
    trainer = Trainer(model, data.train, data.val, tokenizer, train_config, run_info=run_info)
    step = trainer.resume(latest)
    if step >= train_config.steps:
        raise TinylmError(
            f"the run in {out_dir} already finished its {train_config.steps} steps; "
            f"pass --steps N with N > {step} to train further"
        )
    return trainer


def _check_same_run(args, run: dict, model_settings: dict, out_dir: Path) -> None:
    """With --resume, flags that choose data, tokenizer or model must match the run's."""
    stored_model = run.get("model") or {}
    for key, value in model_settings.items():
        if stored_model.get(key) != value:
            raise TinylmError(f"cannot change model field {key!r} when resuming {out_dir}")
    checks = (
        ("--data", args.data, run.get("data")),
        ("--tokenizer", args.tokenizer, run.get("tokenizer")),
        ("--preset", args.preset, run.get("preset")),
        ("--init-from", args.init_from, run.get("init_from")),
    )
    for flag, given, stored in checks:
        if flag == "--init-from" and given and stored and _same_checkpoint(given, stored):
            continue
        if given is not None and given != stored:
            raise TinylmError(
                f"{flag} {given} differs from the run's ({stored}); resume without it, "
                "or start a new run with --out DIR"
            )


def _same_checkpoint(given: str, stored: str) -> bool:
    """Whether ``--init-from given`` names the checkpoint the run recorded (or its run)."""
    given_path, stored_path = Path(given).resolve(), Path(stored).resolve()
    return given_path == stored_path or given_path == stored_path.parent


def _print_summary(trainer: Any, summary: dict[str, Any], out_dir: Path) -> None:
    print(
        f"trained {summary['step']} steps: val loss {summary['val_loss']:.4f} "
        f"(perplexity {summary['val_ppl']:.2f}), best {summary['best_val_loss']:.4f}"
    )
    print(f"run folder: {out_dir} (checkpoints, metrics.jsonl, loss.png)")
    if trainer.tokenizer is None:
        return
    for i in range(FINAL_SAMPLES):
        text = trainer.sample(max_tokens=max(trainer.config.sample_tokens, 300), seed=i)
        print(f"\n--- sample {i + 1} ---\n{text}")
    print(f"\nmore: tinylm sample {out_dir} --prompt '...'")


# -- sample -------------------------------------------------------------------------------


def _load_run(args: argparse.Namespace) -> tuple[Any, Any, dict[str, Any]]:
    """The model, tokenizer and metadata of ``args.run_path`` (latest or ``--best``)."""
    from tinylm.train.runs import load_model
    from tinylm.train.runtime import resolve_device

    device = resolve_device(args.device)
    model, tokenizer, meta = load_model(
        args.run_path, str(device), "best" if args.best else "latest"
    )
    if tokenizer is None:
        raise TinylmError(
            f"checkpoint {meta['path']} has no tokenizer.json, so text cannot be encoded or "
            "written; point at a checkpoint saved with its tokenizer"
        )
    return model, tokenizer, meta


def run_sample(args: argparse.Namespace) -> int:
    """One sample streams as it is written; several are generated as one batch."""
    from tinylm.train.sampling import prompt_ids, sample_texts, stream_text

    if args.num < 1:
        raise TinylmError(f"--num must be at least 1, got {args.num}")
    model, tokenizer, _ = _load_run(args)
    prompt_ids(tokenizer, args.prompt)  # an unencodable prompt fails before any output
    sampling = {
        "temperature": args.temperature,
        "top_k": args.top_k,
        "top_p": args.top_p,
        "seed": args.seed,
    }
    if args.num > 1:
        texts = sample_texts(model, tokenizer, args.prompt, args.max_tokens, args.num, **sampling)
        sys.stdout.write("\n---\n".join(args.prompt + text for text in texts) + "\n")
        return 0
    sys.stdout.write(args.prompt)
    for piece in stream_text(model, tokenizer, args.prompt, args.max_tokens, **sampling):
        sys.stdout.write(piece)
        sys.stdout.flush()
    sys.stdout.write("\n")
    return 0


# -- eval ---------------------------------------------------------------------------------


def run_eval(args: argparse.Namespace) -> int:
    from tinylm.data.batches import check_long_enough, sequential_batches
    from tinylm.train.evaluation import full_pass_loss

    if args.batch_size < 1:
        raise TinylmError(f"--batch-size must be at least 1, got {args.batch_size}")
    model, tokenizer, meta = _load_run(args)
    tokens, what = _eval_tokens(args, tokenizer)
    block_size = model.config.block_size
    check_long_enough(tokens, block_size, what, hint="give more text to evaluate on")
    device = next(model.parameters()).device
    batches = sequential_batches(tokens, block_size, args.batch_size, device, args.max_batches)
    result = full_pass_loss(model, batches)
    print(
        f"{what}: loss {result['loss']:.4f}, perplexity {result['perplexity']:.2f} "
        f"over {result['tokens']:,} tokens (checkpoint {meta['path']}, step {meta['step']})"
    )
    return 0


def _eval_tokens(args: argparse.Namespace, tokenizer: Any) -> tuple[Any, str]:
    """The token ids to score: a prepared split, or raw text encoded with the run's tokenizer."""
    import numpy as np

    from tinylm.data.corpus import corpus_from_specs, iter_documents
    from tinylm.data.prepared import check_tokenizer, load_prepared
    from tinylm.train.runs import is_prepared_dir

    if len(args.data) == 1 and is_prepared_dir(args.data[0]):
        data = load_prepared(args.data[0])
        check_tokenizer(data, tokenizer)
        return (data.val if args.split == "val" else data.train), f"{args.data[0]} ({args.split})"
    corpus = corpus_from_specs(args.data)
    ids: list[int] = []
    for document in iter_documents(corpus, args.doc_sep):
        ids.extend(tokenizer.encode_document(document))
    return np.asarray(ids, dtype=np.int64), " ".join(args.data)
