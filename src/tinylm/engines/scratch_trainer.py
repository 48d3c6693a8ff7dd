"""The scratch engine's trainer (``engine="scratch"``; the engine is ``engines.scratch``).

The algorithm is ``tinylm.scratch`` (plain Python scalars); this module gives it
what a tinylm run has, so that a scratch run is a tinylm run like any other:

* the same **data**: raw text prepared and cached in the run folder exactly as
  for the PyTorch engine (same tokenizer, same train/val split), read back as
  documents; one document per step, in an order shuffled by ``seed``;
* the same **run folder**: ``run.json`` (with ``"engine": "scratch"``),
  ``metrics.jsonl``, ``loss.png``, ``ckpt-*`` and ``best/``;
* the same **checkpoints**: an ordinary ``GPT`` checkpoint (float64 tensors, see
  ``scratch_convert``), so ``tinylm sample`` and ``tinylm eval`` read it, the
  PyTorch engine fine-tunes it (``init_from``), and resuming continues it here,
  exactly;
* a progress bar, validation loss, samples and a summary.

The training settings are ``TrainConfig``'s, with the seed's defaults
(``SCRATCH_DEFAULTS``: 1,000 steps of Adam at 0.01 with betas 0.85/0.99, no
weight decay, linear decay to 0). Settings the scalar loop has no use for
(a batch of several documents, Muon, clipping, a device) are refused.
"""

from __future__ import annotations

import json
import math
import random
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

from tinylm.checkpoint.manager import CheckpointManager
from tinylm.checkpoint.save_load import load_checkpoint, read_checkpoint_meta
from tinylm.data.prepared import PreparedData, check_tokenizer
from tinylm.engines.base import FolderLock
from tinylm.engines.scratch_convert import (
    adam_from_adamw,
    adamw_from_adam,
    gpt_from_scratch,
    scratch_config,
    scratch_from_gpt,
)
from tinylm.errors import SettingError, TinylmError
from tinylm.fileio import atomic_write
from tinylm.inference.evaluation import bits_per_byte
from tinylm.model import GPT, ModelConfig
from tinylm.progress import progress_bar
from tinylm.run_layout import PLOT_FILE, RUN_FILE
from tinylm.scratch.model import MicroGPT
from tinylm.scratch.train import Adam, loss_sums, sample
from tinylm.scratch.train import train as train_loop
from tinylm.scratch.value import no_cycle_collector
from tinylm.tokenizers.base import Tokenizer
from tinylm.train.config import TrainConfig
from tinylm.train.distributed import DistInfo
from tinylm.train.metrics import MetricsLogger, plot_losses, read_metrics
from tinylm.train.schedule import lr_at
from tinylm.train.trainer import check_writable, saved_best_val_loss, saved_extra

ENGINE = "scratch"  # in run.json and checkpoints; ScratchEngine.name

#: The seed's hyperparameters, under whatever a caller sets.
SCRATCH_DEFAULTS: dict[str, Any] = {
    "steps": 1000,
    "batch_size": 1,
    "lr": 0.01,
    "betas": (0.85, 0.99),
    "eps": 1e-8,
    "weight_decay": 0.0,
    "optimizer": "adamw",
    "grad_clip": 0.0,
    "schedule": "linear",
    "warmup_steps": 0,
    "eval_every": 200,
    "eval_batches": 50,  # validation documents per evaluation
}

#: Settings the scalar loop cannot honour, with the only value it accepts.
_FIXED = {"batch_size": 1, "grad_accum": 1, "optimizer": "adamw", "grad_clip": 0.0}
SAMPLE_DOCUMENTS = 10
SAMPLE_TEMPERATURE = 0.5  # the seed's


def scratch_train_config(settings: dict[str, Any]) -> TrainConfig:
    """``TrainConfig`` from ``SCRATCH_DEFAULTS`` and ``settings``; refuse what it cannot do."""
    config = TrainConfig.from_dict({**SCRATCH_DEFAULTS, **settings})
    for key, value in _FIXED.items():
        if getattr(config, key) != value:
            raise TinylmError(
                f"the scratch engine trains one document per step with plain Adam: {key} must "
                f"be {value!r}, not {getattr(config, key)!r}; leave {key} unset"
            )
    return config


def documents_of(data: np.ndarray, spans: np.ndarray, bos: int, eos: int | None) -> list[list[int]]:
    """The documents of a prepared split as token lists, without their boundary tokens."""
    documents = []
    for start, end in spans:
        ids = data[start:end].tolist()
        if ids and ids[0] == bos:
            ids = ids[1:]
        if ids and eos is not None and ids[-1] == eos:
            ids = ids[:-1]
        documents.append(ids)
    return documents


class ScratchTrainer:
    """Runs ``tinylm.scratch.train`` with a run folder, checkpoints and reports.

    An :class:`~tinylm.engines.base.EngineTrainer`, like ``Trainer``: ``fit()``,
    ``sample()``, ``step``, ``config``, ``tokenizer``, ``last_checkpoint``,
    ``saved_step``, and ``run_lock``, which ``fit`` releases when it ends.
    """

    def __init__(
        self,
        model: MicroGPT,
        model_config: ModelConfig,
        tokenizer: Tokenizer,
        data: PreparedData,
        config: TrainConfig,
        run_info: dict[str, Any] | None = None,
    ) -> None:
        if tokenizer.bos_id is None:
            raise TinylmError("the scratch engine needs a tokenizer with a BOS token")
        self.model, self.model_config, self.tokenizer = model, model_config, tokenizer
        self.config, self.run_info = config, dict(run_info or {})
        self.chat_template = None  # the scratch engine trains on text only
        self.run_dir = Path(config.out_dir) if config.out_dir else None
        bos, eos = tokenizer.bos_id, tokenizer.eos_id
        self.train_docs = documents_of(data.train, data.document_spans("train"), bos, eos)
        self.val_docs = documents_of(data.val, data.document_spans("val"), bos, eos)
        if not self.train_docs:
            raise TinylmError(f"the prepared data in {data.path} holds no training documents")
        random.Random(config.seed).shuffle(self.train_docs)  # the order is the seed's
        self.val_docs = self.val_docs[: config.eval_batches] or self.train_docs[:1]
        self.byte_counts = tokenizer.token_byte_counts()  # bytes per id, for val_bpb
        self.optimizer = Adam(
            model.parameters(),
            betas=config.betas,
            eps=config.eps,
            weight_decay=config.weight_decay,
        )
        self.dist = DistInfo()  # one process: the scalar loop is not distributed
        #: The run folder's lock when a run was set up for us (``tinylm.run.start``).
        self.run_lock: FolderLock | None = None
        self.step = self.saved_step = 0
        self.best_val_loss = math.inf
        self.last_checkpoint: Path | None = None
        self._metrics: MetricsLogger | None = None
        self._bar: Any = None

    # -- training -------------------------------------------------------------------------

    def lr(self, step: int) -> float:
        c = self.config
        return lr_at(step, c.schedule, c.lr, c.min_lr, c.warmup_steps or 0, c.steps)

    def fit(self) -> dict[str, Any]:
        """Train to ``config.steps``, evaluating, sampling and saving on the way.

        The run folder's lock is released when it ends, however it ends, so the
        run can be resumed (in this process too).
        """
        try:
            return self._fit()
        finally:
            if self.run_lock is not None:
                self.run_lock.release()

    def _fit(self) -> dict[str, Any]:
        self._open_run()
        last_eval: dict[str, Any] | None = None
        with progress_bar(
            self.config.progress,
            total=self.config.steps,
            initial=self.step,
            unit="step",
            mininterval=0.5,
        ) as self._bar:
            self._say(self.describe())
            started, first = time.perf_counter(), self.step
            while self.step < self.config.steps:
                end = self._next_stop()
                train_loop(
                    self.model,
                    self.train_docs,
                    self.tokenizer.bos_id,
                    end,
                    schedule=self.lr,
                    optimizer=self.optimizer,
                    start_step=self.step,
                    on_step=lambda step, loss, lr: self._on_step(step, loss, lr, started, first),
                )
                last_eval = self._evaluate_and_save()
        self._bar = None
        self.plot()
        return self._summary(last_eval)

    def _next_stop(self) -> int:
        every = self.config.eval_every
        if every <= 0:
            return self.config.steps
        return min(self.config.steps, (self.step // every + 1) * every)

    def _on_step(self, step: int, loss: float, lr: float, started: float, first: int) -> None:
        self.step = step
        if not math.isfinite(loss):
            raise TinylmError(
                f"the loss became {loss} at step {step} (lr {lr:.2e}); lower lr and start again"
            )
        if self._metrics is not None:
            self._metrics.log({"step": step, "loss": loss, "lr": lr})
        if self._bar is None:
            return
        if self._bar.disable:
            total = self.config.steps
            if self.config.progress and (step % max(1, total // 10) == 0 or step == total):
                rate = (step - first) / max(time.perf_counter() - started, 1e-9)
                self._say(f"step {step}/{total}  loss {loss:.4f}  lr {lr:.2e}  {rate:.1f} steps/s")
            return
        self._bar.update(step - self._bar.n)
        self._bar.set_postfix(loss=f"{loss:.4f}", lr=f"{lr:.2e}", refresh=False)

    def evaluate(self) -> dict[str, Any]:
        """Mean loss per token and bits per byte on the validation documents."""
        with no_cycle_collector():
            nats, count, text_nats, text_bytes = loss_sums(
                self.model, self.val_docs, self.tokenizer.bos_id, self.byte_counts
            )
        loss = nats / count
        return {
            "step": self.step,
            "val_loss": loss,
            "val_ppl": math.exp(min(loss, 50.0)),
            "val_bpb": bits_per_byte(text_nats, text_bytes),
        }

    def _evaluate_and_save(self) -> dict[str, Any]:
        record = self.evaluate()
        if self._metrics is not None:
            self._metrics.log(record)
        self._say(
            f"step {self.step}: val loss {record['val_loss']:.4f}, "
            f"perplexity {record['val_ppl']:.2f}, {record['val_bpb']:.4f} bits/byte"
        )
        text = self.sample(seed=self.step)
        self._say(f"--- samples at step {self.step} ---\n{text}\n---")
        self.best_val_loss = min(self.best_val_loss, record["val_loss"])
        self.save_checkpoint(record["val_loss"])
        return record

    def sample(
        self, prompt: str | None = None, max_tokens: int | None = None, seed: int | None = None
    ) -> str:
        """``SAMPLE_DOCUMENTS`` documents drawn from BOS, one per line.

        (A document ends at BOS or at ``block_size`` tokens; ``prompt`` and
        ``max_tokens`` are accepted for ``Trainer``'s signature and not used:
        ``tinylm sample`` continues prompts with the same weights.)
        """
        rng = random.Random(seed)
        with no_cycle_collector():
            documents = [
                sample(self.model, self.tokenizer.bos_id, SAMPLE_TEMPERATURE, rng)
                for _ in range(SAMPLE_DOCUMENTS)
            ]
        return "\n".join(self.tokenizer.decode(ids) for ids in documents)

    def describe(self) -> str:
        params = len(self.model.parameters())
        start = f" from step {self.step}" if self.step else ""
        return (
            f"training {params:,} parameters in pure Python (the scratch engine) on "
            f"{len(self.train_docs):,} documents: {self.config.steps} steps{start}, "
            f"one document each, Adam lr {self.config.lr:g}"
        )

    def _say(self, text: str) -> None:
        if not self.config.progress:
            return
        if self._bar is not None:
            self._bar.write(text, file=sys.stderr)
        else:
            print(text, file=sys.stderr)

    def _summary(self, last_eval: dict[str, Any] | None) -> dict[str, Any]:
        last_eval = last_eval or self.evaluate()
        return {
            "step": self.step,
            "val_loss": last_eval["val_loss"],
            "val_ppl": last_eval["val_ppl"],
            "val_bpb": last_eval["val_bpb"],
            "best_val_loss": min(self.best_val_loss, last_eval["val_loss"]),
        }

    # -- files ------------------------------------------------------------------------------

    def _open_run(self) -> None:
        if self.run_dir is None:
            return
        check_writable(self.run_dir)
        self._metrics = MetricsLogger(self.run_dir, tensorboard=False)
        self._metrics.truncate_after(self.step)
        info = {
            **self.run_info,
            "engine": ENGINE,
            "model": self.model_config.to_dict(),
            "train": self.config.to_dict(),
        }
        atomic_write(self.run_dir / RUN_FILE, json.dumps(info, indent=2) + "\n")

    def save_checkpoint(self, val_loss: float | None = None) -> Path | None:
        """An ordinary tinylm checkpoint of the current weights and Adam state."""
        if self.run_dir is None:
            return None
        gpt = gpt_from_scratch(self.model, self.model_config)
        optimizer = adamw_from_adam(self.optimizer, self.model, gpt, self.lr(self.step))
        path = CheckpointManager(self.run_dir, keep_last=self.config.keep_last).save(
            self.step,
            gpt,
            optimizer,
            val_loss=val_loss,
            config=self.model_config,
            tokenizer=self.tokenizer,
            train_config=self.config.to_dict(),
            extra={
                "engine": ENGINE,
                "best_val_loss": self.best_val_loss if math.isfinite(self.best_val_loss) else None,
            },
        )
        self.last_checkpoint, self.saved_step = Path(path), self.step
        return path

    def resume(self, path: str | Path) -> int:
        """Continue from a scratch checkpoint: weights, Adam state, step."""
        meta = read_checkpoint_meta(path)
        if meta.extra.get("engine") != ENGINE:
            raise SettingError(
                f"checkpoint {meta.path} was not written by the scratch engine; continue it "
                "with the PyTorch engine, or start from its weights with init_from",
                setting="init_from",
            )
        gpt = gpt_from_scratch(self.model, self.model_config)
        optimizer = adamw_from_adam(self.optimizer, self.model, gpt, self.config.lr)
        step = load_checkpoint(meta.path, gpt, optimizer, restore_rng=False)
        self.model = scratch_from_gpt(gpt)
        self.optimizer = adam_from_adamw(optimizer, self.model, gpt)
        self.best_val_loss = saved_best_val_loss(saved_extra(meta))
        self.step = self.saved_step = step
        self.last_checkpoint = meta.path
        return step

    def plot(self) -> Path | None:
        if self.run_dir is None or self._metrics is None:
            return None
        return plot_losses(read_metrics(self._metrics.path), self.run_dir / PLOT_FILE)


# -- starting and resuming runs ------------------------------------------------------------


def scratch_model_config(
    preset: str, model_settings: dict[str, Any], vocab_size: int
) -> ModelConfig:
    """The model of a new scratch run: ``preset`` and the settings, if the engine can run it."""
    config = ModelConfig.from_preset(preset, **{"vocab_size": vocab_size, **model_settings})
    scratch_config(config)  # raises unless the scratch engine implements it
    return config


def new_scratch_trainer(
    data: PreparedData,
    tokenizer: Tokenizer,
    config: TrainConfig,
    model_settings: dict[str, Any],
    *,
    preset: str,
    base: dict[str, Any] | None = None,
    run_info: dict[str, Any] | None = None,
) -> ScratchTrainer:
    """A fresh scratch run on prepared ``data``, in ``config.out_dir``.

    ``base`` (``{"path", "config"}`` of a checkpoint) starts from trained weights,
    from either engine: the model keeps its shape.
    """
    check_tokenizer(data, tokenizer)
    if base is not None:
        model_config = ModelConfig.from_dict({**base["config"], **model_settings})
        scratch_config(model_config)
        gpt = _float64_gpt(model_config)
        load_checkpoint(base["path"], gpt)
        model = scratch_from_gpt(gpt)
    else:
        model_config = scratch_model_config(preset, model_settings, tokenizer.vocab_size)
        model = MicroGPT(scratch_config(model_config), seed=config.seed)
    if model_config.vocab_size != tokenizer.vocab_size:
        raise TinylmError(
            f"the model's vocab_size {model_config.vocab_size} differs from the tokenizer's "
            f"{tokenizer.vocab_size}; leave vocab_size unset"
        )
    return ScratchTrainer(model, model_config, tokenizer, data, config, run_info)


def resumed_scratch_trainer(
    model: dict[str, Any],
    latest: Path,
    data: PreparedData,
    tokenizer: Tokenizer,
    config: TrainConfig,
    run_info: dict[str, Any],
) -> ScratchTrainer:
    """The scratch run whose model is ``model`` (its ``run.json``'s), at ``latest``'s step."""
    check_tokenizer(data, tokenizer)
    model_config = ModelConfig.from_dict(model)
    scalar = MicroGPT(scratch_config(model_config), seed=config.seed)
    trainer = ScratchTrainer(scalar, model_config, tokenizer, data, config, run_info)
    trainer.resume(latest)
    return trainer


def _float64_gpt(config: ModelConfig) -> Any:
    return GPT(config).double()
