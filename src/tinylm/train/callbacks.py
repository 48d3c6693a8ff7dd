"""Hooks into a training run, and the console progress display built on them.

A callback is any object with some of the methods of :class:`Callback`; the
trainer calls those it has. A notebook can plot live losses from ``on_step``,
stop early by setting ``trainer.should_stop = True``, or save extra artefacts
from ``on_checkpoint``. The records passed are the same dicts that go to
``metrics.jsonl``.

:class:`ConsoleReporter` is the default display: a tqdm bar with step, loss,
learning rate, tokens/s and ETA, plus one line per evaluation and the samples.
"""

from __future__ import annotations

import sys
import time
from typing import TYPE_CHECKING, Any

from tinylm.progress import progress_bar
from tinylm.terminal import printable

if TYPE_CHECKING:
    from tinylm.train.trainer import Trainer


class Callback:
    """No-op base class: override what you need."""

    def on_fit_start(self, trainer: Trainer) -> None: ...

    def on_step(self, trainer: Trainer, record: dict[str, Any]) -> None: ...

    def on_eval(self, trainer: Trainer, record: dict[str, Any]) -> None: ...

    def on_sample(self, trainer: Trainer, step: int, text: str) -> None: ...

    def on_checkpoint(self, trainer: Trainer, path: Any) -> None: ...

    def on_fit_end(self, trainer: Trainer, summary: dict[str, Any]) -> None: ...


def call_all(callbacks: list[Any], event: str, *args: Any) -> None:
    """Call ``event`` on every callback that defines it."""
    for callback in callbacks:
        method = getattr(callback, event, None)
        if method is not None:
            method(*args)


class ConsoleReporter(Callback):
    """Progress on stderr, evaluations and samples printed above it.

    In a terminal that is a live bar (step, loss, lr, tokens/s, ETA); when stderr is a
    log file or a pipe, where a bar would be noise, a plain line every tenth of the run.
    """

    #: Plain progress lines per run when no bar is drawn.
    LINES_PER_RUN = 10

    def __init__(self, file: Any = None) -> None:
        self.file = file
        self.bar: Any = None
        self.started = 0.0
        self.first_step = 0

    def on_fit_start(self, trainer: Trainer) -> None:
        self._write(describe_run(trainer))
        if trainer.resume_changes:
            self._write("resumed with new settings: " + ", ".join(trainer.resume_changes))
        self.started, self.first_step = time.perf_counter(), trainer.step
        self.bar = progress_bar(
            total=trainer.config.steps,
            initial=trainer.step,
            unit="step",
            file=self.file or sys.stderr,
            mininterval=0.5,
        )

    def on_step(self, trainer: Trainer, record: dict[str, Any]) -> None:
        if self.bar is None:
            return
        if self.bar.disable:
            self._plain_progress(trainer, record)
            return
        self.bar.update(record["step"] - self.bar.n)
        self.bar.set_postfix(
            loss=f"{record['loss']:.4f}",
            lr=f"{record['lr']:.2e}",
            tok_s=f"{record['tokens_per_s']:,.0f}",
            speed=self._speed_note(trainer),
            refresh=False,
        )

    def _plain_progress(self, trainer: Trainer, record: dict[str, Any]) -> None:
        total, step = trainer.config.steps, record["step"]
        if step % max(1, total // self.LINES_PER_RUN) and step != total:
            return
        elapsed = time.perf_counter() - self.started
        eta = elapsed / max(1, step - self.first_step) * (total - step)
        self._write(
            f"step {step}/{total}  loss {record['loss']:.4f}  lr {record['lr']:.2e}  "
            f"{record['tokens_per_s']:,.0f} tokens/s  ETA {eta:.0f} s  "
            f"{self._speed_note(trainer)}"
        )

    @staticmethod
    def _speed_note(trainer: Trainer) -> str:
        """Which thread count (and, with compile auto, which path) the run is on."""
        note = trainer.threads.describe()
        if trainer.compile_auto is not None:
            note += f", {trainer.compile_auto.decision}"
        return note

    def _write(self, text: str) -> None:
        if self.bar is not None:
            self.bar.write(text, file=self.file or sys.stderr)
        else:
            print(text, file=self.file or sys.stderr)

    def on_eval(self, trainer: Trainer, record: dict[str, Any]) -> None:
        self._write(f"step {record['step']}: {describe_eval(record)}")

    def on_sample(self, trainer: Trainer, step: int, text: str) -> None:
        self._write(f"--- sample at step {step} ---\n{printable(text)}\n---")

    def on_fit_end(self, trainer: Trainer, summary: dict[str, Any]) -> None:
        if self.bar is not None:
            self.bar.close()
            self.bar = None


def describe_eval(record: dict[str, Any]) -> str:
    """``val loss 1.7686, perplexity 5.86, 2.5500 bits/byte`` (bits/byte when measured)."""
    text = f"val loss {record['val_loss']:.4f}, perplexity {record['val_ppl']:.2f}"
    if "val_bpb" in record:
        text += f", {record['val_bpb']:.4f} bits/byte"
    return text


def _parameters(model: Any) -> str:
    """``0.82M parameters``, or for a model partly frozen (LoRA) how many of them train."""
    total = sum(p.numel() for p in model.parameters())
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    if trainable == total:
        return f"{total / 1e6:.2f}M parameters"
    return f"{trainable:,} of {total / 1e6:.2f}M parameters (the rest frozen)"


def describe_run(trainer: Trainer) -> str:
    """One line saying what is about to be trained, on what, for how long."""
    config = trainer.config
    params = _parameters(trainer.model)
    start = f" from step {trainer.step}" if trainer.step else ""
    if getattr(trainer, "conversations", False):  # chat fine-tuning: whole conversations
        chat = trainer.run_info.get("chat", {})
        fitted = f" ({chat['fitted']})" if "fitted" in chat else ""
        rows = config.batch_size * config.grad_accum * trainer.dist.world_size
        return (
            f"fine-tuning {params} on {len(trainer.batches.rows):,} "
            f"conversations{fitted}: {config.steps} steps{start} of {rows:,} conversations, "
            f"masked loss (replies only), {config.optimizer}, {trainer.device.type}"
        )
    return (
        f"training {params} on {len(trainer.batches.data):,} tokens: "
        f"{config.steps} steps{start} of "
        f"{trainer.batches.tokens_per_step:,} tokens, {config.optimizer}, "
        f"{trainer.device.type}"
    )
