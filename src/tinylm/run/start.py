"""Start, resume or fine-tune a run: a ready :class:`~tinylm.train.trainer.Trainer`.

These three are what ``tinylm train`` does, as functions a notebook (or
``tinylm compare``) can call with the same rules and the same errors::

    trainer = start_run("corpus.txt", overrides={"steps": 500, "n_layer": 2})
    trainer.fit()
    trainer = resume_run("runs/small", overrides={"steps": 1000})  # extend it
    trainer = init_from("runs/small", "more.txt", out_dir="runs/ft")  # fine-tune

Everything is checked before any work: settings first (so a typo fails in a
moment, not after the data is prepared), then the run folder, then the data.
A start that fails removes the run folder it created, if it left it empty.

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

from tinylm.data.corpus import BUILTIN_CORPUS, BUILTIN_WORDS
from tinylm.errors import SettingError, TinylmError
from tinylm.run import folder as rules
from tinylm.run.data_cache import training_data
from tinylm.run.lock import RunLock, lock_run_folder, remove_lock_file
from tinylm.run.settings import ENGINES, RunSettings, layer_settings
from tinylm.tokenizers.spec import load_tokenizer_file
from tinylm.train import distributed
from tinylm.train.scratch_trainer import DEFAULT_PRESET as SCRATCH_PRESET
from tinylm.train.scratch_trainer import (
    is_scratch_run,
    new_scratch_trainer,
    resume_scratch_trainer,
    scratch_model_config,
    scratch_train_config,
)
from tinylm.train.trainer import Trainer

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
    separator: str = "eot",
    progress: bool = True,
    engine: str = "pytorch",
) -> Trainer:
    """A new run (or a fine-tune, with ``init_from``), ready to ``fit()``.

    ``data``: a prepared folder, text files/folders/globs, or ``"pydocs"`` (the
    default, the built-in corpus). ``tokenizer``: ``char`` (default), ``bpe:N``
    or a tokenizer file. ``preset``, ``config_file`` and ``overrides`` are the
    settings' layers (see :mod:`tinylm.run.settings`). ``out_dir``: the run
    folder (default: the ``out_dir`` setting, else ``runs/<preset>``).
    ``separator`` cuts text files into documents. ``progress=False`` silences
    data preparation and training alike. ``engine="scratch"`` trains with
    ``tinylm.scratch`` instead (a ``ScratchTrainer``: default preset microgpt,
    default data the built-in words; see ``tinylm.train.scratch_trainer``).
    """
    _check_engine(engine)
    if engine == "scratch":
        preset = preset or SCRATCH_PRESET
        data = data if data is not None else BUILTIN_WORDS
    settings = _settings(preset, config_file, overrides, progress)
    folder = rules.resolve_out_dir(out_dir, settings.train, settings.preset, init_from)
    dist = _join_processes(settings)
    with _locked(folder, dist) as lock:
        trainer = _new_trainer(
            settings,
            folder,
            _data_specs(data),
            tokenizer,
            init_from,
            separator,
            progress,
            dist,
            engine,
        )
    return _holding(trainer, lock)


def init_from(
    run: PathLike,
    data: DataSpec = None,
    *,
    config_file: PathLike | None = None,
    overrides: Mapping[str, Any] | None = None,
    out_dir: PathLike | None = None,
    separator: str = "eot",
    progress: bool = True,
) -> Trainer:
    """Fine-tune the model of ``run`` (a run folder or a checkpoint) on ``data``.

    The model keeps its shape and tokenizer; only ``dropout`` and the training
    settings can change. The default folder is ``runs/<run>-finetune``.
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
) -> Trainer:
    """Continue the run in ``out_dir`` from its latest checkpoint, exactly.

    Train settings may change (``overrides={"steps": 2000}`` extends a finished
    run); ``data``, ``tokenizer``, ``preset``, ``init_from`` and model fields may
    only restate the run's own values, so a start command can be repeated.
    """
    settings = _settings(preset, config_file, overrides, progress)
    folder = rules.resolve_out_dir(out_dir, settings.train, settings.preset, init_from)
    dist = _join_processes(settings)
    given = {
        "data": None if data is None else _data_specs(data),
        "tokenizer": None if tokenizer is None else os.fspath(tokenizer),
        "preset": preset,
        "init_from": None if init_from is None else os.fspath(init_from),
    }
    with _locked(folder, dist) as lock:
        trainer = _resumed_trainer(settings, folder, given, dist)
    return _holding(trainer, lock)


# -- the steps ---------------------------------------------------------------------------


def _settings(
    preset: str | None,
    config_file: PathLike | None,
    overrides: Mapping[str, Any] | None,
    progress: bool,
) -> RunSettings:
    settings = layer_settings(preset, config_file, overrides)
    if not progress:  # progress=False wins; otherwise the progress setting is honoured
        settings.train["progress"] = False
    return settings


def _check_engine(engine: str) -> None:
    if engine not in ENGINES:
        raise SettingError(
            f"unknown engine {engine!r}; choose one of {', '.join(ENGINES)}",
            setting="engine",
            reason="unknown_engine",
            key="engine",
            value=engine,
        )


def _data_specs(data: DataSpec) -> list[str]:
    """The data argument as a list of strings (what ``run.json`` records)."""
    if data is None:
        return [BUILTIN_CORPUS]
    if isinstance(data, (str, os.PathLike)):
        return [os.fspath(data)]
    return [os.fspath(item) for item in data]


def _join_processes(settings: RunSettings) -> distributed.DistInfo:
    """Under torchrun, join the process group first: rank 0 prepares data while others wait."""
    from tinylm.device import resolve_device

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
    settings: RunSettings,
    out_dir: Path,
    data_specs: list[str],
    tokenizer_spec: str | os.PathLike | None,
    init_from: PathLike | None,
    separator: str,
    progress: bool,
    dist: distributed.DistInfo,
    engine: str = "pytorch",
) -> Trainer:
    """A fresh run (or a fine-tune), after every check passes."""
    import torch

    from tinylm.checkpoint import load_checkpoint
    from tinylm.inference.loading import model_for_checkpoint
    from tinylm.model import GPT, ModelConfig
    from tinylm.train.config import TrainConfig
    from tinylm.train.trainer import check_writable

    rules.refuse_existing_run(out_dir)
    scratch = engine == "scratch"
    if scratch:  # fail on a setting the scalar loop cannot honour before any data
        scratch_train_config({**settings.train, "out_dir": str(out_dir)})
    else:
        train_config = TrainConfig.from_dict({**settings.train, "out_dir": str(out_dir)})
    base = _base_model(init_from, settings.model) if init_from is not None else None
    if base is None:  # fail on a bad preset or model setting before preparing any data
        if scratch:
            scratch_model_config(
                settings.preset, settings.model, settings.model.get("vocab_size", 27)
            )
        else:
            guess = ModelConfig.from_preset(settings.preset, **settings.model)
            _check_fits(guess, train_config, dist)
    if dist.is_main:
        check_writable(out_dir)
    spec = None if tokenizer_spec is None else os.fspath(tokenizer_spec)
    found = training_data(
        data_specs,
        spec,
        out_dir,
        base_tokenizer=base["tokenizer"] if base else None,
        separator=separator,
        progress=progress,
        dist=dist,
    )
    if scratch:
        run_info = {
            "preset": None if base else settings.preset,
            "init_from": str(base["path"]) if base else None,
            **found.info,
        }
        return new_scratch_trainer(
            out_dir,
            found.data,
            found.tokenizer,
            settings.model,
            settings.train,
            preset=settings.preset,
            base=base,
            run_info=run_info,
        )
    if base is not None:
        config = ModelConfig.from_dict({**base["config"], **settings.model})
    else:
        vocab = {"vocab_size": found.tokenizer.vocab_size}
        config = ModelConfig.from_preset(settings.preset, **{**vocab, **settings.model})
    _check_fits(config, train_config, dist)
    torch.manual_seed(train_config.seed)
    if base is None:
        model = GPT(config)
    else:  # the checkpoint's weights are checked to fit before anything is allocated
        model = model_for_checkpoint(base["path"], config.to_dict())
        load_checkpoint(base["path"], model)
    run_info = {
        "preset": None if base else settings.preset,
        "init_from": str(base["path"]) if base else None,
        **found.info,
    }
    data = found.data
    return Trainer(
        model, data.train, data.val, found.tokenizer, train_config, run_info=run_info, dist=dist
    )


def _holding(trainer: Any, lock: RunLock | None) -> Any:
    """Hand the folder's lock to the trainer, which releases it when ``fit`` ends.

    A trainer that cannot hold it (the scratch engine's) gives it back now.
    """
    if lock is not None and hasattr(trainer, "run_lock"):
        trainer.run_lock = lock
    elif lock is not None:
        lock.release()
    return trainer


def _check_fits(config: Any, train_config: Any, dist: distributed.DistInfo) -> None:
    """Refuse, before allocating, a model or batch this process's device cannot hold."""
    from tinylm.device import resolve_device
    from tinylm.train.memory import check_fits

    device = distributed.process_device(dist, resolve_device(train_config.device))
    check_fits(config, train_config.batch_size, device)


def _base_model(path: PathLike, model_settings: dict[str, Any]) -> dict[str, Any]:
    """The checkpoint to fine-tune: its path, model config and tokenizer."""
    from tinylm.checkpoint import read_checkpoint_meta

    meta = read_checkpoint_meta(path)
    if not isinstance(meta.get("config"), dict):
        raise TinylmError(f"checkpoint {meta['path']} has no model config to rebuild from")
    changed = sorted(
        key
        for key, value in model_settings.items()
        if key != "dropout" and meta["config"].get(key) != value
    )  # restating the model's own value (a copied command line) is fine
    if changed:
        raise SettingError(
            f"init_from keeps the model's shape; only dropout can be set, not {changed[0]} "
            f"(the model has {changed[0]}={meta['config'].get(changed[0])!r})",
            setting="init_from",
            reason="init_from_changes_shape",
            key=changed[0],
            model_value=meta["config"].get(changed[0]),
        )
    if meta.get("tokenizer") is None:
        raise TinylmError(f"checkpoint {meta['path']} has no tokenizer.json to fine-tune with")
    return {
        "path": meta["path"],
        "config": meta["config"],
        "tokenizer": load_tokenizer_file(meta["tokenizer"]),
    }


def _resumed_trainer(
    settings: RunSettings, out_dir: Path, given: dict[str, Any], dist: distributed.DistInfo
) -> Trainer:
    """Continue the run in ``out_dir`` from its latest checkpoint, exactly."""
    import torch

    from tinylm.checkpoint import TOKENIZER_FILE, CheckpointManager
    from tinylm.data.prepared import check_tokenizer, load_prepared
    from tinylm.inference.loading import model_for_checkpoint
    from tinylm.model import ModelConfig
    from tinylm.train.config import TrainConfig

    if dist.is_main and out_dir.is_dir():  # a killed run's leftovers, before choosing latest
        CheckpointManager(out_dir).recover()
    latest = rules.checkpoint_to_resume(out_dir)
    run = rules.read_run_info(out_dir)
    rules.check_same_run(run, out_dir, settings.model, given)
    if is_scratch_run(run):  # the engine that started a run continues it
        tokenizer = load_tokenizer_file(latest / TOKENIZER_FILE)
        return resume_scratch_trainer(out_dir, run, latest, tokenizer, settings.train)
    rules.check_same_optimizer(run, out_dir, settings.train)
    stored = {**run["train"], "progress": True, **settings.train}
    train_config = TrainConfig.from_dict({**stored, "out_dir": str(out_dir)})
    data = load_prepared(out_dir / run["prepared"])  # relative when inside the run
    tokenizer = load_tokenizer_file(latest / TOKENIZER_FILE)
    check_tokenizer(data, tokenizer)
    config = ModelConfig.from_dict(run["model"])
    _check_fits(config, train_config, dist)
    torch.manual_seed(train_config.seed)
    model = model_for_checkpoint(latest, run["model"])  # refused before allocating if unfit
    run_info = {k: v for k, v in run.items() if k not in ("model", "train", "world_size")}
    trainer = Trainer(
        model, data.train, data.val, tokenizer, train_config, run_info=run_info, dist=dist
    )
    rules.check_unfinished(out_dir, trainer.resume(latest), train_config.steps)
    return trainer
