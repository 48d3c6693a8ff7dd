"""Start, resume or fine-tune a run: a trainer ready to ``fit()``, from any engine.

These three are what ``tinylm train`` does, as functions a notebook (or
``tinylm compare``) can call with the same rules and the same errors::

    trainer = start_run("corpus.txt", overrides={"steps": 500, "n_layer": 2})
    trainer.fit()
    trainer = resume_run("runs/small", overrides={"steps": 1000})  # extend it
    trainer = init_from("runs/small", "more.txt", out_dir="runs/ft")  # fine-tune
    trainer = init_from("runs/small", "chat:builtin", out_dir="runs/chat")  # chat SFT

Everything is checked before any work: settings first (so a typo fails in a
moment, not after the data is prepared), then the run folder, then the data.
A start that fails removes the run folder it created, if it left it empty.

The engine (:mod:`tinylm.engines`) is looked up by name and driven through its
interface: this module does what every run needs, the engine what differs (its
defaults, its settings, its model and loop). The trainer it returns holds the run
folder's lock until ``fit`` ends.

Under ``torchrun`` every process calls the same function: they join the process
group first, rank 0 prepares the data while the others wait, and each gets its
own trainer. Call ``tinylm.train.distributed.teardown()`` when done.
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from tinylm.checkpoint.manager import CheckpointManager
from tinylm.checkpoint.save_load import read_checkpoint_meta
from tinylm.data.prepared import check_tokenizer, load_prepared
from tinylm.device import resolve_device
from tinylm.engines import engine_named, engine_of_run
from tinylm.engines.base import Engine, EngineTrainer
from tinylm.errors import SettingError, TinylmError
from tinylm.run import folder as rules
from tinylm.run.chat_data import chat_training_data, is_chat_data, resumed_chat_data
from tinylm.run.data_cache import training_data
from tinylm.run.lock import RunLock, lock_run_folder, remove_lock_file
from tinylm.run.settings import RunSettings, layer_settings
from tinylm.run_layout import TOKENIZER_FILE
from tinylm.tokenizers.formats import load_tokenizer
from tinylm.train import distributed
from tinylm.train.trainer import check_writable

PathLike = str | os.PathLike
DataSpec = PathLike | Sequence[PathLike] | None


def start_run(
    data: DataSpec = None,
    *,
    preset: str | None = None,
    tokenizer: str | os.PathLike | None = None,
    config_file: PathLike | None = None,
    overrides: Mapping[str, Any] | None = None,
    out_dir: PathLike | None = None,
    init_from: PathLike | None = None,
    separator: str | None = None,
    progress: bool = True,
    engine: str | None = None,
) -> EngineTrainer:
    """A new run (or a fine-tune, with ``init_from``), ready to ``fit()``.

    ``data``: a prepared folder, text files/folders/globs, or a built-in corpus
    name (default: the engine's, ``"pydocs"`` for PyTorch). ``tokenizer``:
    ``char`` (default), ``bpe:N`` or a tokenizer file. ``preset``, ``config_file``
    and ``overrides`` are the settings' layers (see :mod:`tinylm.run.settings`).
    ``out_dir``: the run folder (default: the ``out_dir`` setting, else
    ``runs/<preset>``). ``separator`` cuts text files into documents (default:
    the engine's, ``eot`` for PyTorch). ``progress=False`` silences data
    preparation and training alike. ``engine``: ``"pytorch"`` (default) or
    ``"scratch"``, which trains with ``tinylm.scratch`` (default preset microgpt,
    default data the built-in words, one per line; see ``tinylm.engines.scratch``).
    """
    chosen = engine_named(engine)
    settings = _settings(preset, config_file, overrides, progress, chosen.default_preset)
    folder = rules.resolve_out_dir(out_dir, settings.train, settings.preset, init_from)
    dist = _join_processes(settings)
    with _locked(folder, dist) as lock:
        trainer = _new_trainer(
            chosen,
            settings,
            folder,
            _data_specs(chosen.default_data if data is None else data),
            tokenizer,
            init_from,
            chosen.default_separator if separator is None else separator,
            progress,
            dist,
        )
        trainer.run_lock = lock  # released when fit ends
    return trainer


def init_from(
    run: PathLike,
    data: DataSpec = None,
    *,
    config_file: PathLike | None = None,
    overrides: Mapping[str, Any] | None = None,
    out_dir: PathLike | None = None,
    separator: str | None = None,
    progress: bool = True,
) -> EngineTrainer:
    """Fine-tune the model of ``run`` (a run folder or a checkpoint) on ``data``.

    The model keeps its shape and tokenizer; only ``dropout`` and the training
    settings can change. The default folder is ``runs/<run>-finetune``.

    ``data`` of ``"chat:builtin"``, ``"chat:FILE.jsonl"`` or ``"chat:hf:NAME"`` is
    chat fine-tuning (:mod:`tinylm.run.chat_data`): the tokenizer gains the chat
    tokens, the model grows to match, and the loss counts the replies only.
    """
    return start_run(
        data,
        config_file=config_file,
        overrides=overrides,
        out_dir=out_dir,
        init_from=run,
        separator=separator,
        progress=progress,
    )


def resume_run(
    out_dir: PathLike | None = None,
    *,
    data: DataSpec = None,
    preset: str | None = None,
    tokenizer: str | os.PathLike | None = None,
    config_file: PathLike | None = None,
    overrides: Mapping[str, Any] | None = None,
    init_from: PathLike | None = None,
    progress: bool = True,
    engine: str | None = None,
    separator: str | None = None,
) -> EngineTrainer:
    """Continue the run in ``out_dir`` from its latest checkpoint, exactly.

    Train settings may change (``overrides={"steps": 2000}`` extends a finished
    run); ``data``, ``tokenizer``, ``preset``, ``init_from``, ``engine``,
    ``separator`` and model fields may only restate the run's own values, so a
    start command can be repeated. The engine that trained the run continues it.
    """
    wanted = None if engine is None else engine_named(engine)  # fails before any work
    settings = _settings(preset, config_file, overrides, progress)
    folder = rules.resolve_out_dir(out_dir, settings.train, settings.preset, init_from)
    dist = _join_processes(settings)
    given = {
        "data": None if data is None else _data_specs(data),
        "tokenizer": None if tokenizer is None else os.fspath(tokenizer),
        "preset": preset,
        "init_from": None if init_from is None else os.fspath(init_from),
        "separator": separator,
    }
    with _locked(folder, dist) as lock:
        trainer = _resumed_trainer(settings, folder, given, wanted, dist)
        trainer.run_lock = lock  # released when fit ends
    return trainer


# -- the steps ---------------------------------------------------------------------------


def _settings(
    preset: str | None,
    config_file: PathLike | None,
    overrides: Mapping[str, Any] | None,
    progress: bool,
    default_preset: str | None = None,
) -> RunSettings:
    settings = layer_settings(preset, config_file, overrides, default_preset=default_preset)
    if not progress:  # progress=False wins; otherwise the progress setting is honoured
        settings.train["progress"] = False
    return settings


def _data_specs(data: PathLike | Sequence[PathLike]) -> list[str]:
    """The data argument as a list of strings (what ``run.json`` records)."""
    if isinstance(data, (str, os.PathLike)):
        return [os.fspath(data)]
    return [os.fspath(item) for item in data]


def _join_processes(settings: RunSettings) -> distributed.DistInfo:
    """Under torchrun, join the process group first: rank 0 prepares data while others wait."""
    dist = distributed.DistInfo.from_env()
    if dist.enabled:
        device = resolve_device(str(settings.train.get("device", "auto")))
        distributed.setup(dist, distributed.process_device(dist, device))
    return dist


@contextmanager
def _locked(folder: Path, dist: distributed.DistInfo) -> Iterator[RunLock | None]:
    """The run folder's lock for the set-up (the trainer keeps it until ``fit`` ends).

    Taken before anything is written, so a second training on the same folder is
    refused before it can touch it. Under torchrun rank 0 holds it for all ranks.
    A start that fails leaves no empty run folder behind (only one it created).
    """
    created = not folder.exists()
    missing = [p for p in (folder, *folder.parents) if not p.exists()]
    lock = lock_run_folder(folder) if dist.is_main else None
    try:
        yield lock
    except BaseException as exc:
        if lock is not None:
            lock.release()
            if created and isinstance(exc, TinylmError):
                remove_lock_file(folder)
                for made in (folder, *folder.parents[: len(missing) - 1]):
                    rules.remove_if_empty(made)  # and the parents the lock created
        raise


def _new_trainer(
    engine: Engine,
    settings: RunSettings,
    out_dir: Path,
    data_specs: list[str],
    tokenizer_spec: str | os.PathLike | None,
    init_from: PathLike | None,
    separator: str,
    progress: bool,
    dist: distributed.DistInfo,
) -> EngineTrainer:
    """A fresh run (or a fine-tune), after every check passes."""
    rules.refuse_existing_run(out_dir)
    # Settings first: a typo or a model the engine cannot build fails before any data.
    config = engine.train_config({**settings.train, "out_dir": str(out_dir)})
    if init_from is None and getattr(config, "lora_rank", 0):
        raise SettingError(
            "lora_rank fine-tunes a trained model through adapters; give init_from (a run "
            "folder or checkpoint to start from), or leave lora_rank at 0",
            setting="lora_rank",
            reason="lora_without_init_from",
        )
    base = _base_model(init_from, settings.model) if init_from is not None else None
    if base is None:  # a fine-tune's model is the checkpoint's, checked as it is built
        engine.check_model(settings.preset, settings.model, config, dist)
    if dist.is_main:
        check_writable(out_dir)
    spec = None if tokenizer_spec is None else os.fspath(tokenizer_spec)
    if is_chat_data(data_specs):
        return _chat_trainer(engine, settings, config, base, data_specs, spec, dist)
    found = training_data(
        data_specs,
        spec,
        out_dir,
        base_tokenizer=base["tokenizer"] if base else None,
        separator=separator,
        progress=progress,
        dist=dist,
    )
    run_info = {
        "preset": None if base else settings.preset,
        "init_from": str(base["path"]) if base else None,
        **found.info,
    }
    return engine.start(
        found.data,
        found.tokenizer,
        config,
        preset=settings.preset,
        model_settings=settings.model,
        base=base,
        run_info=run_info,
        dist=dist,
    )


def _chat_trainer(
    engine: Engine,
    settings: RunSettings,
    config: Any,
    base: dict[str, Any] | None,
    data_specs: list[str],
    tokenizer_spec: str | None,
    dist: distributed.DistInfo,
) -> EngineTrainer:
    """A chat fine-tune: conversations rendered with the base model's tokenizer, grown."""
    if base is None:
        raise SettingError(
            f"{data_specs[0]} fine-tunes a trained model; give init_from (a run folder or "
            "checkpoint to start from)",
            setting="init_from",
            reason="chat_without_init_from",
            spec=data_specs[0],
        )
    if tokenizer_spec:
        raise SettingError(
            "init_from uses the checkpoint's tokenizer; leave tokenizer unset",
            setting="tokenizer",
            reason="tokenizer_with_init_from",
        )
    if not engine.conversations:
        raise SettingError(
            f"the {engine.name} engine cannot fine-tune on conversations; leave engine unset",
            setting="engine",
            reason="engine_without_chat",
        )
    block_size = int(base["config"]["block_size"])
    found = chat_training_data(data_specs, base["tokenizer"], block_size, config.seed)
    run_info = {"preset": None, "init_from": str(base["path"]), **(found.info or {})}
    return engine.start(
        found,
        found.tokenizer,
        config,
        preset=settings.preset,
        model_settings=settings.model,
        base=base,
        run_info=run_info,
        dist=dist,
    )


def _base_model(path: PathLike, model_settings: dict[str, Any]) -> dict[str, Any]:
    """The checkpoint to fine-tune: its path, model config and tokenizer."""
    meta = read_checkpoint_meta(path)
    config = meta.model_config
    if not isinstance(config, dict):
        raise TinylmError(f"checkpoint {meta.path} has no model config to rebuild from")
    changed = sorted(
        key
        for key, value in model_settings.items()
        if key != "dropout" and config.get(key) != value
    )  # restating the model's own value (a copied command line) is fine
    if changed:
        raise SettingError(
            f"init_from keeps the model's shape; only dropout can be set, not {changed[0]} "
            f"(the model has {changed[0]}={config.get(changed[0])!r})",
            setting="init_from",
            reason="init_from_changes_shape",
            key=changed[0],
            model_value=config.get(changed[0]),
        )
    if meta.tokenizer_file is None:
        raise TinylmError(f"checkpoint {meta.path} has no tokenizer.json to fine-tune with")
    return {
        "path": meta.path,
        "config": config,
        "tokenizer": load_tokenizer(meta.tokenizer_file),
    }


def _resumed_trainer(
    settings: RunSettings,
    out_dir: Path,
    given: dict[str, Any],
    wanted: Engine | None,
    dist: distributed.DistInfo,
) -> EngineTrainer:
    """Continue the run in ``out_dir`` from its latest checkpoint, exactly, in its engine."""
    if dist.is_main and out_dir.is_dir():  # a killed run's leftovers, before choosing latest
        CheckpointManager(out_dir).recover()
    latest = rules.checkpoint_to_resume(out_dir)
    run = rules.read_run_info(out_dir)
    engine = engine_of_run(run)
    _check_same_engine(out_dir, engine, wanted)
    separator = given.pop("separator", None)
    rules.check_same_run(run, out_dir, settings.model, given)
    rules.check_same_optimizer(run, out_dir, settings.train)
    rules.check_same_lora(run, out_dir, settings.train)
    stored = {**run["train"], "progress": True, **settings.train}
    config = engine.train_config({**stored, "out_dir": str(out_dir)})
    tokenizer = load_tokenizer(latest / TOKENIZER_FILE)
    data: Any
    if "chat" in run:  # a chat fine-tune: its conversations, rendered again and checked
        data = resumed_chat_data(run, tokenizer, out_dir)
    else:
        data = load_prepared(out_dir / run["prepared"])  # relative when inside the run
        rules.check_same_separator(data.meta.get("separator"), out_dir, separator)
        check_tokenizer(data, tokenizer)
    run_info = {k: v for k, v in run.items() if k not in ("model", "train", "world_size", "engine")}
    trainer = engine.resume(
        run["model"], latest, data, tokenizer, config, run_info=run_info, dist=dist
    )
    rules.check_unfinished(out_dir, trainer.step, config.steps)
    return trainer


def _check_same_engine(out_dir: Path, engine: Engine, wanted: Engine | None) -> None:
    """Only the engine that trained a run continues it (another can fine-tune its weights)."""
    if wanted is None or wanted is engine:
        return
    raise SettingError(
        f"the run in {out_dir} was trained by the {engine.name} engine, not the {wanted.name} "
        f"engine; resume it without engine (or with engine={engine.name!r}), or start a new "
        f"{wanted.name} run from its weights with init_from",
        setting="engine",
        reason="resume_changes_engine",
        path=out_dir,
        stored=engine.name,
        given=wanted.name,
    )
