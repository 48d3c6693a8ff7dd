"""The training loop: batches in, a better model (and checkpoints, metrics, samples) out.

Read it top to bottom: :class:`Trainer` sets up (device, batches, optimiser,
data parallelism), :meth:`Trainer.train_step` is one optimiser step,
:meth:`Trainer.fit` repeats it with evaluation, sampling and checkpoints at
intervals. Everything else lives in small modules beside this one:

* ``config``: :class:`TrainConfig`, the validated hyperparameters;
* ``batches``: how a step's examples are drawn (exact resume, exact DDP);
* ``runtime``: the thread count and ``torch.compile`` decisions (the device and
  bf16 autocast come from :mod:`tinylm.device`);
* ``distributed``: torchrun/DDP setup and all-reduces;
* ``evaluation`` and ``sampling``: validation loss, perplexity, text;
* ``metrics`` and ``callbacks``: ``metrics.jsonl``, the plot, the progress bar.

A notebook can drive the pieces directly::

    trainer = Trainer(model, data.train, data.val, tokenizer, TrainConfig(steps=500))
    for _ in range(100):
        trainer.train_step()
    print(trainer.evaluate(), trainer.sample())
    trainer.fit()  # the rest of the run

Exactness. The state that decides what happens next is: the weights, the
optimiser's moments, the step (which fixes the learning rate, a pure function of
it), the batch generator's state (which fixes the data) and torch's global RNG
(dropout). A checkpoint holds all five, so a resumed run repeats an
uninterrupted one bit for bit on CPU. Evaluation and sampling use private,
freshly seeded generators, so how often they run cannot change the training.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import time
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from torch import Tensor, nn

from tinylm.check_values import MAX_SEED
from tinylm.checkpoint.adapter import BaseIdentity, write_adapter_files
from tinylm.checkpoint.manager import CheckpointManager
from tinylm.checkpoint.save_load import load_checkpoint, read_checkpoint_meta
from tinylm.data.batches import StepBatches, check_long_enough, fixed_batches
from tinylm.data.conversation_batches import (
    ConversationBatches,
    ConversationRows,
    validation_batches,
)
from tinylm.device import autocast, configure_backends, resolve_device, resolve_dtype
from tinylm.errors import SettingError, TinylmError, TrainingDiverged
from tinylm.fileio import atomic_write
from tinylm.inference.evaluation import token_byte_table
from tinylm.inference.sampling import sample_text
from tinylm.model.gpt import GPT
from tinylm.model.lora import has_lora
from tinylm.run_layout import PLOT_FILE, RUN_FILE, STATE_FILE
from tinylm.train import distributed
from tinylm.train.callbacks import ConsoleReporter, call_all
from tinylm.train.config import TrainConfig
from tinylm.train.distributed import DistInfo
from tinylm.train.evaluation import estimate_loss
from tinylm.train.masked_loss import masked_cross_entropy
from tinylm.train.metrics import MetricsLogger, plot_losses, read_metrics
from tinylm.train.optim import build_optimizer, scale_lr
from tinylm.train.runtime import CompileAuto, ThreadTuner, maybe_compile
from tinylm.train.schedule import Schedule
from tinylm.untrusted_files import Record

if TYPE_CHECKING:
    from tinylm.checkpoint.meta import CheckpointMeta

__all__ = ["Trainer", "TrainConfig"]

EVAL_SEED_OFFSET = 1  # the validation batches' seed is seed + this


class Trainer:
    """Trains ``model`` on token arrays ``train_data`` / ``val_data`` (1-D, memmap is fine).

    Or, for chat fine-tuning, on :class:`~tinylm.data.conversation_batches.ConversationRows`
    (rendered conversations and their loss masks): each batch row is one whole
    conversation and the loss is :func:`~tinylm.train.masked_loss.masked_cross_entropy`,
    so only the assistant's replies count, in training and validation alike.

    ``tokenizer`` is used for samples and saved with checkpoints; ``callbacks``
    receive every record (see :mod:`tinylm.train.callbacks`). ``run_info`` is
    extra JSON written to ``run.json`` (the CLI records the data and tokenizer
    spec there). ``dist`` defaults to what torchrun's environment says.
    ``chat_template`` (a :func:`tinylm.chat.template.template_record`) is saved in
    every checkpoint, so a chat model's checkpoints render conversations as it learnt them.
    ``lora_base``: for a model with LoRA adapters (``config.lora``, added by
    :mod:`tinylm.train.lora_run`), the checkpoint they were trained on; each
    checkpoint then holds the merged weights and the adapter beside them.
    """

    def __init__(
        self,
        model: GPT,
        train_data: np.ndarray | Tensor,
        val_data: np.ndarray | Tensor,
        tokenizer: Any = None,
        config: TrainConfig | None = None,
        callbacks: Iterable[Any] = (),
        *,
        run_info: dict[str, Any] | None = None,
        dist: DistInfo | None = None,
        chat_template: dict[str, Any] | None = None,
        lora_base: BaseIdentity | None = None,
    ) -> None:
        self.config = config = config if config is not None else TrainConfig()
        if not isinstance(config, TrainConfig):
            raise TinylmError(f"config must be a TrainConfig, got {type(config).__name__}")
        #: The run folder's lock (``tinylm.run.lock``) when a run was set up for us;
        #: released when ``fit`` ends, so the folder can be resumed in this process.
        self.run_lock: Any = None
        self.dist = dist if dist is not None else DistInfo.from_env()
        self.device = distributed.process_device(self.dist, resolve_device(config.device))
        configure_backends(self.device)
        distributed.setup(self.dist, self.device)
        self.amp_dtype = resolve_dtype(config.dtype, self.device)

        if not isinstance(model, GPT):
            raise TinylmError(
                f"Trainer trains a tinylm GPT, got {type(model).__name__}; "
                "build one with GPT(ModelConfig(...))"
            )
        self.model = model.to(self.device)  # the plain module: evaluation, sampling, saving
        self.tokenizer = tokenizer
        self.chat_template = chat_template
        self.lora_base = lora_base
        if (lora_base is not None) != (config.lora is not None and has_lora(model)):
            raise TinylmError(
                "a LoRA trainer needs config.lora_rank > 0, a model with those adapters "
                "(tinylm.train.lora_run.add_run_adapters) and lora_base, all three"
            )
        self.block_size = model.config.block_size
        _check_vocab(model, tokenizer)
        #: Chat fine-tuning: whole conversations per row, and the masked loss.
        self.conversations = isinstance(train_data, ConversationRows)
        if self.conversations != isinstance(val_data, ConversationRows):
            raise TinylmError("train_data and val_data must both be conversations or both tokens")
        if not self.conversations:
            check_long_enough(val_data, self.block_size, "validation split")
        # Token ids are checked once, here where the data enters, not in every forward.
        for split in (train_data, val_data):
            model.check_token_ids(split.all_ids() if self.conversations else split)
        self.schedule = Schedule(
            config.schedule, config.lr, config.min_lr, config.warmup, config.steps
        )

        # One generator for the training batches: its state is the data position.
        self.batch_generator = torch.Generator().manual_seed(config.seed)
        where = {
            "rank": self.dist.rank,
            "world_size": self.dist.world_size,
            "generator": self.batch_generator,
            "device": self.device,
        }
        if self.conversations:
            self._check_rows_fit(train_data, val_data)
            self.batches: StepBatches | ConversationBatches = ConversationBatches(
                train_data, config.batch_size, config.grad_accum, **where
            )
        else:
            self.batches = StepBatches(
                train_data, self.block_size, config.batch_size, config.grad_accum, **where
            )
        self.val_batches = self._validation_batches(val_data)
        # Bytes per id, for val_bpb; without a tokenizer there is no text to count.
        self.token_bytes = None if tokenizer is None else token_byte_table(tokenizer, self.device)
        self.optimizer = build_optimizer(
            self.model,
            config.optimizer,
            lr=config.lr,
            weight_decay=config.weight_decay,
            betas=config.betas,
            eps=config.eps,
            decay_embeddings=config.decay_embeddings,
            muon_lr=config.muon_lr,
            muon_momentum=config.muon_momentum,
            fused=self.model.config.kernels == "fused",  # one switch for every fused kernel
        )
        self.ddp = _wrap_ddp(self.model, self.dist, self.device)
        self.threads = ThreadTuner(config.threads, self.device)
        self.forward, self.compile_auto = self._forward_path()

        self.step = 0
        self.best_val_loss = math.inf
        self.last_checkpoint: Path | None = None  # on rank 0; None on the others
        self.saved_step: int | None = None  # the same on every rank
        self.resume_changes: list[str] = []  # settings a resume changed (see resume)
        self.should_stop = False  # a callback may set this to end fit() early
        self.history: list[dict[str, Any]] = []  # every record of this session
        self.run_info = dict(run_info or {})
        self.run_dir = Path(config.out_dir) if config.out_dir and self.dist.is_main else None
        self.callbacks = list(callbacks)
        if config.progress and self.dist.is_main:
            self.callbacks.append(ConsoleReporter())
        self._metrics: MetricsLogger | None = None
        self._checkpoints: Any = None

    def _forward_path(self) -> tuple[Any, CompileAuto | None]:
        """What ``train_step`` calls: the model, compiled, or compiled when it pays."""
        module = self.model if self.ddp is None else self.ddp
        if self.config.compile != "auto":
            return maybe_compile(module, self.config.compile), None
        c = self.config
        key = "|".join(
            [
                self.model.config.to_json(indent=None),
                f"batch {c.batch_size}",
                f"torch {torch.__version__}",
                f"{self.device.type} {self.amp_dtype}",
            ]
        )
        auto = CompileAuto(module, key, c.steps, self.device)
        return auto, auto

    def _check_rows_fit(self, *splits: ConversationRows) -> None:
        """A conversation longer than the context would fail in the first forward; say so now."""
        longest = max(len(ids) for rows in splits for ids in rows.ids)
        if longest > self.block_size + 1:
            raise TinylmError(
                f"a conversation has {longest} ids, more than block_size + 1 = "
                f"{self.block_size + 1}; drop the long ones first (tinylm.chat.template."
                "fit_to_context)"
            )

    def _validation_batches(
        self, val_data: np.ndarray | Tensor | ConversationRows
    ) -> list[tuple[Tensor, Tensor]]:
        """This rank's slice of fixed global validation batches (the same for any world size).

        Each global batch has ``batch_size * world_size`` rows, like a training
        micro-step, so one process with the larger batch scores the same windows.
        Held-out conversations are scored in order, their masked-out targets ignored.
        """
        c, rank, size = self.config, self.dist.rank, self.config.batch_size
        if isinstance(val_data, ConversationRows):
            return validation_batches(
                val_data,
                size,
                c.eval_batches,
                self.device,
                rank=rank,
                world_size=self.dist.world_size,
            )
        batches = fixed_batches(
            val_data,
            self.block_size,
            size * self.dist.world_size,
            c.eval_batches,
            c.seed + EVAL_SEED_OFFSET,
            self.device,
        )
        return [
            (x[rank * size : (rank + 1) * size], y[rank * size : (rank + 1) * size])
            for x, y in batches
        ]

    # -- one optimiser step ------------------------------------------------------------

    def train_step(self) -> dict[str, Any]:
        """Forward and backward over ``grad_accum`` micro-batches, clip, update.

        Returns the step's record: ``step`` (steps done, counting this one),
        ``loss`` (mean over the step's examples and all ranks), ``lr``,
        ``grad_norm`` (before clipping), ``tokens_per_s``, ``ms_per_step``.
        """
        config = self.config
        self.threads.before_step()
        start = time.perf_counter()
        lr = self._apply_lr_schedule()
        if not self.model.training:  # evaluation and sampling switch it off; once back
            self.model.train()
        micro_batches = self.batches.next_step()
        loss_sum = torch.zeros((), device=self.device)
        for i, batch in enumerate(micro_batches):
            # Gradients are only averaged across ranks on the last micro-batch.
            with self._gradient_sync(last=i == len(micro_batches) - 1):
                with autocast(self.device, self.amp_dtype):
                    loss = self._loss(batch)
                # Mean over micro-batches: the same gradient as one big batch.
                (loss / config.grad_accum).backward()
            loss_sum += loss.detach()
        loss_value = float(distributed.all_reduce_mean(loss_sum / config.grad_accum, self.dist))
        self._stop_if_not_finite("loss", loss_value, lr)
        grad_norm = self._clip_gradients()
        self._stop_if_not_finite("gradient norm", grad_norm, lr)
        self.optimizer.step()
        self.optimizer.zero_grad(set_to_none=True)
        self.step += 1
        seconds = time.perf_counter() - start
        threads = self.threads.threads  # the count this step ran with
        self.threads.after_step(seconds)
        if self.compile_auto is not None:
            self.compile_auto.after_step(self.step, seconds)
        return {
            "step": self.step,
            "loss": loss_value,
            "lr": lr,
            "grad_norm": grad_norm,
            "tokens_per_s": self.batches.tokens_per_step / seconds,
            "ms_per_step": 1000 * seconds,
            "threads": threads,
        }

    def _loss(self, batch: Sequence[Tensor]) -> Tensor:
        """One micro-batch's mean loss: next-token, or masked for ``(x, y, mask)`` batches.

        A chat micro-batch's loss is the mean over its counted tokens; a step
        averages its micro-batches' means (as nanochat does), so with gradient
        accumulation a token weighs by how many others its micro-batch counts.
        """
        if len(batch) == 3:
            x, y, mask = batch
            logits, _ = self.forward(x)
            return masked_cross_entropy(logits, y, mask)
        x, y = batch
        _, loss = self.forward(x, y)
        return loss

    def _apply_lr_schedule(self) -> float:
        """Set every param group's rate for this step; returns the AdamW peak-scaled rate."""
        lr = self.schedule(self.step)
        scale_lr(self.optimizer, lr / self.config.lr)
        return lr

    def _gradient_sync(self, last: bool) -> contextlib.AbstractContextManager:
        """DDP's ``no_sync`` for all but the last micro-batch: one all-reduce per step."""
        if self.ddp is None or last:
            return contextlib.nullcontext()
        return self.ddp.no_sync()

    def _clip_gradients(self) -> float:
        """Scale all gradients down together if their global norm exceeds ``grad_clip``.

        The norm is over every parameter at once (as if they were one vector), so
        the update's direction is kept and only its length is capped. Returns the
        norm before clipping (also when clipping is off, for the logs).
        """
        max_norm = self.config.grad_clip if self.config.grad_clip > 0 else math.inf
        norm = torch.nn.utils.clip_grad_norm_(self.model.parameters(), max_norm)
        return float(norm)

    def _stop_if_not_finite(self, what: str, value: float, lr: float) -> None:
        """End the run before a NaN/inf can reach the weights; saved checkpoints stay good."""
        if math.isfinite(value):
            return
        self.optimizer.zero_grad(set_to_none=True)
        saved = (
            f"the last good checkpoint is {self.last_checkpoint}"
            if self.last_checkpoint
            else ("no checkpoint was saved yet")
        )
        advice = f"lower lr (it was {lr:.3g})" + (
            "" if self.config.grad_clip > 0 else " or turn gradient clipping on (grad_clip=1.0)"
        )
        raise TrainingDiverged(
            f"{what} became {value} at step {self.step + 1}; stopped before updating the "
            f"weights ({saved}); {advice}"
        )

    # -- measuring -----------------------------------------------------------------------

    def evaluate(self) -> dict[str, Any]:
        """``{"step", "val_loss", "val_ppl", "val_bpb"}`` on the run's fixed validation batches
        (``val_bpb``, bits per byte, only when the trainer has a tokenizer)."""
        metrics = estimate_loss(
            self.model,
            self.val_batches,
            lambda: autocast(self.device, self.amp_dtype),
            self.dist,
            self.token_bytes,
        )
        return {"step": self.step, **metrics}

    def sample(self, prompt: str | None = None, max_tokens: int | None = None, **kw: Any) -> str:
        """Text the model writes now (seeded by the step, so reruns give the same text)."""
        if self.tokenizer is None:
            raise TinylmError("sampling needs a tokenizer; pass one to Trainer(...)")
        kw.setdefault("seed", (self.config.seed + self.step) % (MAX_SEED + 1))
        kw.setdefault("temperature", 0.8)
        kw.setdefault("top_k", 200)
        return sample_text(
            self.model,
            self.tokenizer,
            self.config.sample_prompt if prompt is None else prompt,
            self.config.sample_tokens if max_tokens is None else max_tokens,
            **kw,
        )

    # -- the run -------------------------------------------------------------------------

    def fit(self) -> dict[str, Any]:
        """Train until ``config.steps`` (or until a callback sets ``should_stop``).

        Evaluates, samples and checkpoints at the configured intervals and at the
        end; returns a summary with the final and best validation loss.
        """
        self._open_run()
        call_all(self.callbacks, "on_fit_start", self)
        last_eval: dict[str, Any] | None = None
        try:
            while self.step < self.config.steps and not self.should_stop:
                record = self.train_step()
                self._record("on_step", record)
                last_eval = self._after_step(last_eval)
            summary = self._finish(last_eval)
        finally:
            call_all(self.callbacks, "on_fit_end", self, {"step": self.step})
            if self._metrics is not None:
                self._metrics.close()
            if self.run_lock is not None:
                self.run_lock.release()
        return summary

    def _after_step(self, last_eval: dict[str, Any] | None) -> dict[str, Any] | None:
        """Evaluate, sample and save when their intervals come round."""
        c, step = self.config, self.step
        final = step >= c.steps
        if _due(step, c.eval_every) or final:
            last_eval = self.evaluate()
            self.best_val_loss = min(self.best_val_loss, last_eval["val_loss"])
            self._record("on_eval", last_eval)
        if (
            _due(step, c.sample_interval) or (final and c.sample_interval)
        ) and self.tokenizer is not None:
            self._sample_and_report()
        if _due(step, c.checkpoint_interval) or final:
            val = last_eval["val_loss"] if last_eval and last_eval["step"] == step else None
            self.save_checkpoint(val_loss=val)
        return last_eval

    def _finish(self, last_eval: dict[str, Any] | None) -> dict[str, Any]:
        """After the loop (finished or stopped early): final numbers, checkpoint, plot."""
        if last_eval is None or last_eval["step"] != self.step:
            last_eval = self.evaluate()
            self.best_val_loss = min(self.best_val_loss, last_eval["val_loss"])
            self._record("on_eval", last_eval)
        if self.saved_step != self.step:
            self.save_checkpoint(val_loss=last_eval["val_loss"])
        plot = self.plot()
        return {
            "step": self.step,
            "val_loss": last_eval["val_loss"],
            "val_ppl": last_eval["val_ppl"],
            **({"val_bpb": last_eval["val_bpb"]} if "val_bpb" in last_eval else {}),
            "best_val_loss": self.best_val_loss,
            "checkpoint": str(self.last_checkpoint) if self.last_checkpoint else None,
            "plot": str(plot) if plot else None,
        }

    def _sample_and_report(self) -> None:
        """A sample for the log. It is only for display: a failure is logged, never fatal."""
        if not self.dist.is_main:
            return
        try:
            text = self.sample()
        except (TinylmError, RuntimeError) as exc:  # the run's checkpoints matter more
            text = f"<no sample: {exc}>"
        self.history.append({"step": self.step, "sample": text})
        if self._metrics is not None:
            self._metrics.log({"step": self.step, "sample": text})
        call_all(self.callbacks, "on_sample", self, self.step, text)

    def _record(self, event: str, record: dict[str, Any]) -> None:
        """One record to the history, the metrics file (rank 0) and the callbacks."""
        self.history.append(record)
        if self._metrics is not None:
            self._metrics.log(record)
        call_all(self.callbacks, event, self, record)

    # -- files ---------------------------------------------------------------------------

    def _open_run(self) -> None:
        """Check the output folder is writable and describe the run in ``run.json``."""
        if self.run_dir is None:
            return
        check_writable(self.run_dir)
        self.checkpoints.recover()  # leftovers of a killed run; best/ restored if lost
        self._metrics = MetricsLogger(self.run_dir)
        self._metrics.truncate_after(self.step)  # drop what a resumed run will redo
        info = {
            **self.run_info,
            "model": self.model.config.to_dict(),
            "train": self.config.to_dict(),
            "world_size": self.dist.world_size,
        }
        atomic_write(self.run_dir / RUN_FILE, json.dumps(info, indent=2) + "\n")

    @property
    def checkpoints(self) -> Any:
        """The run's ``CheckpointManager`` (keeps the last ``keep_last`` and the best)."""
        if self._checkpoints is None and self.run_dir is not None:
            self._checkpoints = CheckpointManager(self.run_dir, keep_last=self.config.keep_last)
        return self._checkpoints

    def save_checkpoint(self, val_loss: float | None = None) -> Path | None:
        """Save everything a resume needs (rank 0 writes; all ranks wait for it)."""
        path = None
        if self.checkpoints is not None:
            path = self.checkpoints.save(
                self.step,
                self.model,
                self.optimizer,
                val_loss=val_loss,
                config=self.model.config,
                tokenizer=self.tokenizer,
                train_config=self.config.to_dict(),
                extra=self._checkpoint_extra(),
                generators={"batches": self.batch_generator},
                chat_template=self.chat_template,
                write_more=self._write_adapter if self.lora_base is not None else None,
            )
            self.last_checkpoint = Path(path)
            call_all(self.callbacks, "on_checkpoint", self, self.last_checkpoint)
        self.saved_step = self.step
        distributed.barrier(self.dist)
        return path

    def _write_adapter(self, folder: Path) -> None:
        """A LoRA run's adapter files, beside the merged weights (``tinylm.train.lora_run``)."""
        assert self.config.lora is not None and self.lora_base is not None
        write_adapter_files(folder, self.model, self.config.lora, self.lora_base, step=self.step)

    def _checkpoint_extra(self) -> dict[str, Any]:
        return {
            "best_val_loss": None if math.isinf(self.best_val_loss) else self.best_val_loss,
            "world_size": self.dist.world_size,
        }

    def resume(self, path: str | os.PathLike) -> int:
        """Continue from a checkpoint: weights, optimiser, step, data position, RNG.

        The optimiser's state (moments, step counts) is the checkpoint's, but its
        hyperparameters are this trainer's config: loading a state dict would put
        back the saved ``lr``, ``weight_decay``, betas..., so a resume with a new
        ``lr`` would log the new rate and train at the old one. What the config
        changed is listed in ``resume_changes`` (and shown when ``fit`` starts).

        A LoRA run's model comes rebuilt (``tinylm.train.lora_run.rebuild_lora_model``):
        the checkpoint's merged weights are not loaded over it.
        """

        wanted = [_hyperparameters(group) for group in self.optimizer.param_groups]
        step = load_checkpoint(
            path,
            self.model,
            self.optimizer,
            generators={"batches": self.batch_generator},
            weights=self.lora_base is None,
        )
        saved = [_hyperparameters(group) for group in self.optimizer.param_groups]
        for group, settings in zip(self.optimizer.param_groups, wanted, strict=True):
            group.update(settings)
        self.resume_changes = _changed_hyperparameters(saved, wanted)
        extra = saved_extra(read_checkpoint_meta(path))
        saved_world = extra.int("world_size", self.dist.world_size, minimum=1)
        if saved_world != self.dist.world_size:
            raise TinylmError(
                f"checkpoint {path} was trained with {saved_world} processes, this run has "
                f"{self.dist.world_size}; resume with the same number of processes"
            )
        self.best_val_loss = saved_best_val_loss(extra)
        self.step = self.saved_step = int(step)
        self.last_checkpoint = Path(path)
        return self.step

    def plot(self) -> Path | None:
        """Draw ``loss.png`` from the whole ``metrics.jsonl`` (earlier sessions included)."""
        if self.run_dir is None or self._metrics is None:
            return None
        return plot_losses(read_metrics(self._metrics.path), self.run_dir / PLOT_FILE)


# -- helpers ----------------------------------------------------------------------------

#: Group entries a schedule rewrites every step (not a setting the user chose).
_SCHEDULED = ("lr",)


def _hyperparameters(group: dict[str, Any]) -> dict[str, Any]:
    """A parameter group's settings: everything but its parameters."""
    return {key: value for key, value in group.items() if key != "params"}


def _changed_hyperparameters(
    saved: list[dict[str, Any]], wanted: list[dict[str, Any]]
) -> list[str]:
    """``["base_lr 0.003 -> 0.01", ...]``: the saved settings the config replaces, once each."""
    changes: dict[str, str] = {}
    for old, new in zip(saved, wanted, strict=True):
        for key, value in new.items():
            if key in _SCHEDULED or old.get(key) == value:
                continue
            name = _setting_name(key, bool(new.get("use_muon")))
            changes.setdefault(name, f"{name} {old.get(key)!r} -> {value!r}")
    return list(changes.values())


def _setting_name(key: str, muon: bool) -> str:
    """The setting a group entry comes from (Muon's hidden matrices have settings of their own)."""
    if muon:
        return {"base_lr": "muon_lr"}.get(key, f"muon_{key}")
    return {"base_lr": "lr"}.get(key, key)


def _due(step: int, every: int) -> bool:
    return every > 0 and step % every == 0


def _check_vocab(model: GPT, tokenizer: Any) -> None:
    """A tokenizer with more ids than the model has embeddings would index out of range."""
    if tokenizer is None:
        return
    vocab_size = model.config.vocab_size
    if tokenizer.vocab_size > vocab_size:
        raise TinylmError(
            f"the tokenizer has {tokenizer.vocab_size} ids but the model's vocab_size is "
            f"{vocab_size}; build the model with vocab_size={tokenizer.vocab_size}"
        )


def _wrap_ddp(model: nn.Module, dist: DistInfo, device: torch.device) -> nn.Module | None:
    """``DistributedDataParallel`` around the model when there is more than one process.

    DDP broadcasts rank 0's weights at construction, so every rank starts equal,
    and averages gradients during ``backward``.
    """
    if not dist.enabled:
        return None
    from torch.nn.parallel import DistributedDataParallel

    device_ids = [device.index] if device.type == "cuda" else None
    return DistributedDataParallel(model, device_ids=device_ids)


def check_writable(folder: Path) -> None:
    """Fail now, with one line, if ``folder`` cannot be created or written to."""
    try:
        folder.mkdir(parents=True, exist_ok=True)
        probe = folder / f".write-test-{os.getpid()}"
        probe.write_bytes(b"")
        probe.unlink()
    except OSError as exc:
        raise SettingError(
            f"cannot write to output folder {folder}: {exc.strerror or exc}; "
            "choose another out_dir",
            setting="out_dir",
        ) from None


def losses(history: Sequence[dict[str, Any]]) -> list[float]:
    """The training losses of a history, in step order (handy in notebooks and tests)."""
    return [r["loss"] for r in history if "loss" in r]


def saved_extra(meta: CheckpointMeta) -> Record:
    """The ``extra`` fields of a checkpoint's state.json, read as untrusted (``Record``)."""
    hint = "the file was edited or damaged; resume from an earlier ckpt-* folder"
    return Record(meta.extra, f"{meta.path / STATE_FILE}: extra", hint)


def saved_best_val_loss(extra: Record) -> float:
    """The best validation loss a checkpoint recorded (``inf`` when it had none yet)."""
    if extra.data.get("best_val_loss") is None:
        return math.inf
    return extra.float("best_val_loss", finite=False)
