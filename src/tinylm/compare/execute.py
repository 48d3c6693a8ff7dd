"""Run a comparison's variants through the run layer, resumably.

Every variant is an ordinary run (``OUT/runs/<slug>/``) started with
:func:`~tinylm.run.start.start_run` in this process, on data prepared once for
the whole comparison (``OUT/data/``), so all runs see the same tokens. When a run
finishes, its numbers go to ``compare.json`` in its folder; that file is what
"finished" means. Running the same comparison again therefore skips finished
runs, resumes a run that has a checkpoint (exactly, like ``resume_run``), and
starts over a run that was killed before its first checkpoint.

With learning-rate tuning (:mod:`~tinylm.compare.tuning`), each configuration first
runs its sweep (``OUT/tune/<slug>/``, the same kind of runs, with the tuning seed),
and its seeds then run at the rate the sweep chose (``OUT/runs/<slug>/``, the rate
in the slug). The sweep is decided from the sweep runs' own results, so a rerun
walks it again without training what has finished.

Time is the sum of the runs' own step times (``ms_per_step`` in
``metrics.jsonl``): training time, across interruptions, without evaluation.
"""

from __future__ import annotations

import json
import math
import os
import shutil
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

from tinylm.check_values import is_number
from tinylm.compare.plan import Budget, Variant, configurations
from tinylm.compare.tuning import LrTuning, chosen_lr, lr_grid, next_lr
from tinylm.errors import SettingError, TinylmError, TrainingDiverged
from tinylm.fileio import atomic_write
from tinylm.progress import progress_bar
from tinylm.run.settings import layer_settings
from tinylm.run_layout import (
    COMPARE_PLAN_FILE,
    COMPARE_RESULT_FILE,
    COMPARE_TUNE_DIR,
    DATA_CACHE,
    METRICS_FILE,
    RUNS_DIR,
)
from tinylm.untrusted_files import Record, read_json

EVALS_PER_RUN = 10  # evaluations per run, unless eval_every is set: the curve's points


@dataclass
class RunResult:
    """One finished run: its variant, size, speed and losses, and its val-loss curve."""

    label: str
    settings: dict[str, Any]
    seed: int
    run_dir: str
    steps: int
    params_total: int
    params_embedding: int
    tokens_per_s: float
    seconds: float
    final_val_loss: float
    best_val_loss: float
    curve: list[list[float]] = field(default_factory=list)  # [step, seconds, val_loss]
    # Bits per byte, comparable across tokenizers; None in results written before it was.
    final_val_bpb: float | None = None
    best_val_bpb: float | None = None
    tokenizer: str | None = None  # the tokenizer's fingerprint: which unit val_loss is in
    # A tuned comparison: the run's learning rate, and (in a run at the chosen rate) the
    # sweep that chose it as [lr, final val loss or None when diverged] pairs.
    lr: float | None = None
    lr_sweep: list[list[float | None]] | None = None
    diverged: str | None = None  # a sweep run that stopped on a NaN/inf: why (its losses: nan)

    @classmethod
    def read(cls, path: Path) -> RunResult:
        """A result file, checked field by field (it is a file on disk, so untrusted)."""
        hint = "delete it to run that variant again"
        record = Record(read_json(path, hint), str(path), hint)
        settings = record.dict("settings")
        for name, value in settings.items():
            if not (value is None or isinstance(value, (str, bool)) or is_number(value)):
                raise record.error(f"settings.{name}", "a setting's value", value)
        curve = record.list("curve")
        for point in curve:
            if not (isinstance(point, list) and len(point) == 3 and all(map(is_number, point))):
                raise record.error("curve", "[step, seconds, val_loss] triples", point)
        diverged = _optional(record, record.str, "diverged")
        sweep = _optional(record, record.list, "lr_sweep")
        for pair in sweep or []:
            if not (
                isinstance(pair, list)
                and len(pair) == 2
                and is_number(pair[0])
                and (pair[1] is None or is_number(pair[1]))
            ):
                raise record.error("lr_sweep", "[lr, val_loss or null] pairs", pair)
        return cls(
            label=record.str("label"),
            settings=settings,
            seed=record.int("seed", minimum=0),
            run_dir=record.str("run_dir"),
            steps=record.int("steps", minimum=0),
            params_total=record.int("params_total", minimum=0),
            params_embedding=record.int("params_embedding", minimum=0),
            tokens_per_s=record.float("tokens_per_s", finite=False),  # nan: no time measured
            seconds=record.float("seconds"),
            final_val_loss=record.float("final_val_loss", finite=diverged is None),
            best_val_loss=record.float("best_val_loss", finite=diverged is None),
            curve=curve,
            final_val_bpb=_optional(record, record.float, "final_val_bpb"),
            best_val_bpb=_optional(record, record.float, "best_val_bpb"),
            tokenizer=_optional(record, record.str, "tokenizer"),
            lr=_optional(record, record.float, "lr"),
            lr_sweep=sweep,
            diverged=diverged,
        )


def _optional(record: Record, read: Callable[[str], Any], key: str) -> Any:
    """A field that older result files lack (or hold as null): None, else checked by ``read``."""
    return None if record.data.get(key) is None else read(key)


@dataclass
class RunEvent:
    """What a progress callback hears after each run: which, how, and the result."""

    index: int  # 1-based
    total: int
    variant: Variant
    result: RunResult
    skipped: bool  # finished in an earlier session
    tuning: bool = False  # a run of a learning-rate sweep (index/total: within its sweep so far)


ProgressCallback = Callable[[RunEvent], None]


def prepare_comparison_data(
    out_dir: Path,
    data: str | os.PathLike | Sequence[str | os.PathLike] | None,
    tokenizer: str | os.PathLike | None,
    *,
    separator: str = "eot",
    progress: bool = True,
) -> Path:
    """The prepared folder every run trains on: ``data`` itself, or made once in ``OUT/data``."""
    # torch-free start-up: cli/compare_cmds imports this module for every tinylm command
    from tinylm.run.data_cache import is_prepared_dir, prepare_cached

    specs = [] if data is None else [data] if isinstance(data, (str, os.PathLike)) else data
    specs = [os.fspath(s) for s in specs]
    if len(specs) == 1 and is_prepared_dir(specs[0]):
        if tokenizer is not None:
            raise SettingError(
                f"{specs[0]} is already tokenized; leave tokenizer unset", setting="tokenizer"
            )
        return Path(specs[0])
    tokenizer_spec = None if tokenizer is None else os.fspath(tokenizer)
    return prepare_cached(
        specs, tokenizer_spec, out_dir / DATA_CACHE, separator=separator, progress=progress
    )


def run_settings(
    variant: Variant,
    budget: Budget | None,
    *,
    preset: str | None,
    config_file: str | os.PathLike | None,
    overrides: Mapping[str, Any] | None,
    init_from: str | os.PathLike | None = None,
) -> dict[str, Any]:
    """The overrides of one run: the base ones, the variant's values, its seed and budget.

    Checked here with the run layer's own rules (both configs are built), so a bad
    value fails before any run starts. With ``init_from`` the model is that
    checkpoint's (a token budget counts its context per row).
    """
    # torch-free start-up: cli/compare_cmds imports this module for every tinylm command
    from tinylm.model.config import ModelConfig
    from tinylm.train.config import TrainConfig

    given = {**(overrides or {}), **variant.run_settings, "seed": variant.seed}
    layered = layer_settings(preset, config_file, given)
    if init_from is None:
        block_size = ModelConfig.from_preset(layered.preset, **layered.model).block_size
    else:
        block_size = _base_block_size(init_from)
    train = TrainConfig.from_dict(layered.train)
    steps = train.steps
    if budget is not None:
        tokens_per_step = train.batch_size * train.grad_accum * block_size
        steps = budget.steps_for(tokens_per_step, train.steps)
    given["steps"] = steps
    if "eval_every" not in layered.train:  # enough points for a curve
        given["eval_every"] = max(1, steps // EVALS_PER_RUN)
    if "sample_every" not in layered.train:  # samples are for people, not tables
        given["sample_every"] = 0
    layer_settings(preset, config_file, given)  # the final layers must still be valid
    return given


def _base_block_size(init_from: str | os.PathLike) -> int:
    """The context of the checkpoint every run fine-tunes (its config, checked as read)."""
    # torch-free start-up: cli/compare_cmds imports this module for every tinylm command
    from tinylm.checkpoint.save_load import read_checkpoint_meta
    from tinylm.model.config import ModelConfig

    config = read_checkpoint_meta(init_from).model_config
    if not isinstance(config, dict):
        raise SettingError(
            f"checkpoint {init_from} has no model config to fine-tune from; point init_from "
            "at a run folder or checkpoint tinylm wrote",
            setting="init_from",
        )
    return ModelConfig.from_dict(config).block_size


def configured_lr(
    variant: Variant,
    *,
    preset: str | None,
    config_file: str | os.PathLike | None,
    overrides: Mapping[str, Any] | None,
) -> float:
    """The learning rate ``variant`` would train at untuned: a sweep's centre."""
    # torch-free start-up: cli/compare_cmds imports this module for every tinylm command
    from tinylm.train.config import TrainConfig

    given = {**(overrides or {}), **variant.settings, "seed": variant.seed}
    return TrainConfig.from_dict(layer_settings(preset, config_file, given).train).lr


def run_comparison(
    variants: Sequence[Variant],
    out_dir: str | os.PathLike,
    *,
    data: str | os.PathLike | Sequence[str | os.PathLike] | None = None,
    preset: str | None = None,
    tokenizer: str | os.PathLike | None = None,
    config_file: str | os.PathLike | None = None,
    overrides: Mapping[str, Any] | None = None,
    budget: Budget | None = None,
    separator: str = "eot",
    progress: bool = True,
    on_run: ProgressCallback | None = None,
    tuning: LrTuning | None = None,
    init_from: str | os.PathLike | None = None,
) -> list[RunResult]:
    """Train every variant (or take its finished result) and return the results in order.

    ``progress`` shows data preparation and a bar per run (in a terminal);
    ``on_run`` is called after each run, finished now or earlier (sweep runs too).
    ``tuning`` first sweeps each configuration's learning rate, then runs the
    variants at the rate chosen for their configuration. ``init_from`` (a run
    folder or checkpoint) makes every run a fine-tune of that model on ``data``
    (text, or ``chat:...`` conversations), each run preparing it with the base's
    tokenizer as ``init_from`` does, so all see the same ids.
    """
    out = Path(out_dir)
    common = {"preset": preset, "config_file": config_file, "overrides": overrides}
    if tuning is not None:
        _check_tunable(variants)
    for v in variants:  # every value checked before anything runs
        run_settings(v, budget, **common, init_from=init_from)
    shared = shared_plan(data, preset, tokenizer, config_file, overrides, budget, separator, tuning)
    if init_from is not None:  # absent otherwise, as a plan.json from before it reads
        shared["init_from"] = str(Path(init_from).resolve())
    check_same_plan(out, shared)
    if init_from is None:
        prepared: Any = prepare_comparison_data(
            out, data, tokenizer, separator=separator, progress=progress
        )
    else:
        prepared = FineTune(Path(init_from), _data_list(data), separator)
    atomic_write(out / COMPARE_PLAN_FILE, json.dumps(shared, indent=1) + "\n")

    runs = _Runs(out, prepared, budget, common, progress, on_run)
    planned = [(v, None) for v in variants] if tuning is None else _tune(variants, tuning, runs)
    total = len(planned)
    return [
        runs.run(variant, index, total, sweep=sweep)
        for index, (variant, sweep) in enumerate(planned, start=1)
    ]


@dataclass(frozen=True)
class FineTune:
    """What every run of a fine-tuning comparison starts from: the base and its data."""

    init_from: Path
    data: list[str] | None  # None: the engine's default corpus
    separator: str


def _data_list(data: str | os.PathLike | Sequence[str | os.PathLike] | None) -> list[str] | None:
    if data is None:
        return None
    return [os.fspath(data)] if isinstance(data, (str, os.PathLike)) else list(map(os.fspath, data))


def _check_tunable(variants: Sequence[Variant]) -> None:
    """A tuned comparison chooses ``lr`` itself: it may be set (the sweep's centre), not varied."""
    if any("lr" in v.settings for v in variants):
        raise SettingError(
            "lr is both varied and tuned; drop the lr axis or turn tuning off",
            setting="vary",
            reason="usage",
        )


Sweep = list[list[float | None]]  # [lr, final val loss or None when diverged], smallest lr first


@dataclass
class _Runs:
    """One comparison's runs: each trained into its folder, or read back when finished."""

    out: Path
    prepared: Path | FineTune  # the tokens every run trains on, or the base it fine-tunes
    budget: Budget | None
    common: Mapping[str, Any]  # preset, config_file, overrides
    progress: bool
    on_run: ProgressCallback | None

    def run(
        self, variant: Variant, index: int, total: int, *, tune: bool = False, sweep: Any = None
    ) -> RunResult:
        """``variant``'s result; a sweep run (``tune``) goes to ``OUT/tune/``, and a run at a
        chosen rate keeps the ``sweep`` that chose it in its ``compare.json``."""
        folder = self.out / (COMPARE_TUNE_DIR if tune else RUNS_DIR) / variant.slug
        done = folder / COMPARE_RESULT_FILE
        skipped = done.is_file()
        if skipped:
            result = RunResult.read(done)
            _check_result_is(variant, result, done)
        else:
            name = _name(variant.label, variant.lr, variant.seed)
            bar = f"[{'tune ' if tune else ''}{index}/{total}] {name}"
            base = self.prepared.init_from if isinstance(self.prepared, FineTune) else None
            settings = run_settings(variant, self.budget, **self.common, init_from=base)
            result = _train(
                variant,
                settings,
                folder,
                self.prepared,
                self.common["preset"],
                self.common["config_file"],
                self.budget,
                bar,
                self.progress,
                sweep_run=tune,
            )
            result.lr_sweep = sweep
            atomic_write(done, json.dumps(asdict(result), indent=1) + "\n")
        if self.on_run is not None:
            self.on_run(RunEvent(index, total, variant, result, skipped, tuning=tune))
        return result


def _tune(
    variants: Sequence[Variant], tuning: LrTuning, runs: _Runs
) -> list[tuple[Variant, Sweep]]:
    """Sweep each configuration's rate; each variant at its configuration's chosen rate,
    with that configuration's sweep."""
    chosen: list[tuple[Any, float, Sweep]] = []
    for values in configurations(variants):
        probe = Variant(values, tuning.seed)
        scores: dict[float, float | None] = {}
        grid = lr_grid(configured_lr(probe, **runs.common), tuning)
        while len(scores) < len(grid):
            lr = grid[len(scores)]
            result = runs.run(replace(probe, lr=lr), len(scores) + 1, len(grid), tune=True)
            scores[lr] = None if result.diverged else result.final_val_loss
            beyond = next_lr(scores, tuning, len(grid) - tuning.points)
            if len(scores) == len(grid) and beyond is not None:
                grid.append(beyond)
        sweep = [[lr, scores[lr]] for lr in sorted(scores)]
        chosen.append((values, chosen_lr(scores, probe.label), sweep))
    return [
        (replace(v, lr=lr), sweep)
        for v in variants
        for values, lr, sweep in chosen
        if values == v.values
    ]


def shared_plan(
    data: str | os.PathLike | Sequence[str | os.PathLike] | None,
    preset: str | None,
    tokenizer: str | os.PathLike | None,
    config_file: str | os.PathLike | None,
    overrides: Mapping[str, Any] | None,
    budget: Budget | None,
    separator: str,
    tuning: LrTuning | None = None,
) -> dict[str, Any]:
    """What every run of a comparison shares, as JSON: the key its finished runs are kept by.

    Variants may be added to a comparison (more values, more seeds) and its
    finished runs are reused; but a run trained under another budget, other
    shared settings or other data is a different experiment, so a comparison
    folder keeps this plan and refuses a command whose plan differs.
    """
    specs = [] if data is None else [data] if isinstance(data, (str, os.PathLike)) else data
    config_text = None
    if config_file is not None and Path(config_file).is_file():
        config_text = Path(config_file).read_text(encoding="utf-8", errors="replace")
    return {
        "data": [os.fspath(s) for s in specs],
        "preset": preset,
        "tokenizer": None if tokenizer is None else os.fspath(tokenizer),
        "config_file": config_text,  # its contents: an edited file is another plan
        "overrides": {k: v for k, v in sorted((overrides or {}).items())},
        "budget": None if budget is None else str(budget),
        "separator": separator,
        # null untuned, as a plan.json from before tuning reads: its folders stay usable
        "tune": None if tuning is None else tuning.to_dict(),
    }


def check_same_plan(out: Path, plan: dict[str, Any]) -> None:
    """Refuse to reuse ``out``'s runs under a plan other than the one they were made with."""
    path = out / COMPARE_PLAN_FILE
    if not path.is_file():
        return  # a new comparison (or one made before plans were kept)
    hint = f"use another out folder, or delete {out} to start this comparison over"
    record = Record(read_json(path, hint), str(path), hint)
    for key, value in plan.items():
        kept = record.data.get(key)
        if json.loads(json.dumps(value)) != kept:
            raise SettingError(
                f"{out} holds a comparison made with {key} {_plan_text(key, kept)}, "
                f"not {_plan_text(key, value)}; {hint}",
                setting="out",
                reason="other_plan",
            )


def _plan_text(key: str, value: Any) -> str:
    if key == "config_file":
        return "another config file" if value is not None else "no config file"
    if key == "tune" and value is None:
        return "off"  # no learning-rate sweep
    return json.dumps(value, ensure_ascii=True)


def _check_result_is(variant: Variant, result: RunResult, path: Path) -> None:
    """A finished result belongs to this variant (its exact values and seed), or is refused."""
    expected = json.loads(json.dumps(variant.settings))
    if result.settings != expected or result.seed != variant.seed or result.lr != variant.lr:
        raise TinylmError(
            f"{path} holds the result of {_name(result.label, result.lr, result.seed)}, not "
            f"{_name(variant.label, variant.lr, variant.seed)}; delete it to run that variant again"
        )


def _name(label: str, lr: float | None, seed: int) -> str:
    return f"{label}{'' if lr is None else f' lr {lr:g}'} seed {seed}"


# -- one run -------------------------------------------------------------------------------


class _Clock:
    """A trainer callback: a progress bar, and the stop when a seconds budget is spent."""

    def __init__(self, seconds_before: float, budget_seconds: float | None, bar: Any) -> None:
        self.seconds = seconds_before
        self.budget_seconds = budget_seconds
        self.bar = bar

    def on_step(self, trainer: Any, record: dict[str, Any]) -> None:
        self.seconds += record["ms_per_step"] / 1000
        self.bar.update(1)
        self.bar.set_postfix(loss=f"{record['loss']:.3f}", refresh=False)
        if self.budget_seconds is not None and self.seconds >= self.budget_seconds:
            trainer.should_stop = True


def _train(
    variant: Variant,
    settings: dict[str, Any],
    run_dir: Path,
    prepared: Path | FineTune,
    preset: str | None,
    config_file: str | os.PathLike | None,
    budget: Budget | None,
    description: str,
    progress: bool,
    sweep_run: bool = False,
) -> RunResult:
    """Train (or resume) one run and collect its numbers; a ``sweep_run`` that diverges
    is a result (marked ``diverged``), not an error: a sweep expects its largest rates to."""
    # torch-free start-up: cli/compare_cmds imports this module for every tinylm command
    from tinylm.run import folder as rules
    from tinylm.run.start import resume_run, start_run

    common = {"config_file": config_file, "overrides": settings, "progress": False}
    if rules.has_checkpoints(run_dir):
        try:
            trainer = resume_run(run_dir, preset=preset, **common)
        except SettingError as exc:
            if exc.reason != "run_finished":  # killed between its last save and compare.json
                raise
            return collect_result(variant, run_dir)
    else:
        if run_dir.exists():  # killed before its first checkpoint: nothing worth keeping
            shutil.rmtree(run_dir)
        if isinstance(prepared, FineTune):
            trainer = start_run(
                prepared.data,
                init_from=prepared.init_from,
                separator=prepared.separator,
                out_dir=run_dir,
                **common,
            )
        else:
            trainer = start_run(prepared, preset=preset, out_dir=run_dir, **common)
    seconds_before = _training_seconds(_read_records(run_dir))
    with progress_bar(
        progress, total=trainer.config.steps, initial=trainer.step, desc=description, leave=False
    ) as bar:
        trainer.callbacks.append(_Clock(seconds_before, budget and budget.seconds, bar))
        try:
            trainer.fit()
        except TrainingDiverged as exc:
            if not sweep_run:
                raise
            return collect_result(variant, run_dir, trainer.model, trainer.tokenizer, str(exc))
    result = collect_result(variant, run_dir, trainer.model, trainer.tokenizer)
    if sweep_run and not math.isfinite(result.final_val_loss):
        return collect_result(
            variant, run_dir, trainer.model, trainer.tokenizer, "validation loss is not finite"
        )
    return result


def collect_result(
    variant: Variant,
    run_dir: Path,
    model: Any = None,
    tokenizer: Any = None,
    diverged: str | None = None,
) -> RunResult:
    """A run's numbers, read back from its own ``metrics.jsonl`` (and its model's size).

    A ``diverged`` run's validation losses are nan: it has no score to rank by.
    """
    if model is None:
        # torch-free start-up: cli/compare_cmds imports this module for every tinylm command
        from tinylm.inference.loading import load_model

        model, tokenizer, _ = load_model(run_dir)
    records = _read_records(run_dir)
    steps = [r for r in records if "loss" in r and "ms_per_step" in r]
    evals = [r for r in records if "val_loss" in r]
    if diverged is None and (not steps or not evals):
        raise TinylmError(f"{run_dir} has no training steps or evaluations in metrics.jsonl")
    counts = model.param_counts()
    seconds = _training_seconds(records)
    tokens = sum(r["tokens_per_s"] * r["ms_per_step"] / 1000 for r in steps)
    curve = []
    for e in evals:
        if not math.isfinite(e["val_loss"]):
            continue  # a diverged run's last evaluation
        before = [r["ms_per_step"] for r in steps if r["step"] <= e["step"]]
        curve.append([e["step"], sum(before) / 1000, e["val_loss"]])
    return RunResult(
        label=variant.label,
        settings=variant.settings,
        seed=variant.seed,
        run_dir=str(run_dir),
        steps=steps[-1]["step"] if steps else 0,
        params_total=counts["total"],
        params_embedding=counts["embedding"],
        tokens_per_s=tokens / seconds if seconds > 0 else math.nan,
        seconds=seconds,
        final_val_loss=math.nan if diverged else evals[-1]["val_loss"],
        best_val_loss=math.nan if diverged else min(e["val_loss"] for e in evals),
        curve=curve,
        **_bpb_fields([] if diverged else evals),
        tokenizer=None if tokenizer is None else tokenizer.fingerprint(),
        lr=variant.lr,
        diverged=diverged,
    )


def _bpb_fields(evals: list[dict[str, Any]]) -> dict[str, float | None]:
    """Final and best ``val_bpb`` when every evaluation measured it (older runs did not)."""
    values = [e.get("val_bpb") for e in evals]
    if not values or not all(is_number(v) for v in values):
        return {"final_val_bpb": None, "best_val_bpb": None}
    return {"final_val_bpb": values[-1], "best_val_bpb": min(values)}


def _read_records(run_dir: Path) -> list[dict[str, Any]]:
    # torch-free start-up: cli/compare_cmds imports this module for every tinylm command
    from tinylm.train.metrics import read_metrics

    path = run_dir / METRICS_FILE
    return read_metrics(path) if path.is_file() else []


def _training_seconds(records: list[dict[str, Any]]) -> float:
    return sum(r["ms_per_step"] for r in records if "ms_per_step" in r) / 1000
