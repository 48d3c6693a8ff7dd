"""Everything that decides how a model is trained, in one validated dataclass.

Like ``ModelConfig``, a ``TrainConfig`` is frozen and checked once, when it is
made, so ``TrainConfig(lr=-1)`` fails at once with a message that says what to
change rather than at step 900. Change a field with ``dataclasses.replace``.

It round-trips through JSON (``to_dict``/``from_dict``, stored in every
checkpoint) and can be read from a TOML file, either flat or under a ``[train]``
table::

    [train]
    steps = 2000
    lr = 1e-3
    betas = [0.9, 0.99]
"""

from __future__ import annotations

import dataclasses
import os
import sys
from dataclasses import dataclass
from typing import Any

from tinylm.check_values import (
    check_bool,
    check_choice,
    check_fraction,
    check_int,
    check_number,
    check_seed,
    is_number,
    shown,
)
from tinylm.device import DEVICES, DTYPES
from tinylm.errors import TinylmError
from tinylm.model.lora import MAX_RANK, LoraConfig
from tinylm.train.optim import OPTIMIZERS
from tinylm.train.schedule import SCHEDULES
from tinylm.untrusted_files import check_readable_file

#: The most CPU threads a run may ask for: far above any machine's cores, below the
#: counts at which torch's thread pool crashes the process (SIGSEGV at 100,000).
MAX_THREADS = 1024


@dataclass(frozen=True)
class TrainConfig:
    """The hyperparameters of a training run (see each field's comment).

    The defaults are what trained the ``small`` preset fastest on two CPU cores
    (docs/training.md): Muon for the hidden matrices with AdamW at 3e-3 for the
    rest, a linear decay to 0, 800 steps of 16 x 128 tokens (~2-3 minutes).

    Batch sizes: one optimiser step sees ``batch_size * grad_accum * world_size``
    sequences of ``block_size`` tokens; ``world_size`` is the number of
    data-parallel processes (1 unless launched with torchrun).
    """

    steps: int = 800  # optimiser steps in the whole run
    batch_size: int = 16  # sequences per micro-batch, per process
    grad_accum: int = 1  # micro-batches whose gradients are summed into one step
    lr: float = 3e-3  # peak learning rate (AdamW; Muon's AdamW part)
    min_lr: float = 0.0  # the rate the decay ends at
    schedule: str = "linear"  # constant | linear | cosine (after warm-up)
    warmup_steps: int | None = None  # None -> steps // 10, at most 100
    weight_decay: float = 0.1
    betas: tuple[float, float] = (0.9, 0.95)
    eps: float = 1e-8
    grad_clip: float = 1.0  # max global gradient norm; 0 turns clipping off
    optimizer: str = "muon"  # muon (hidden matrices) + AdamW (the rest) | adamw
    muon_lr: float = 0.02  # learning rate of Muon's hidden matrices
    muon_momentum: float = 0.95
    decay_embeddings: bool = False
    eval_every: int = 200  # evaluate on validation every N steps (0: only at the end)
    eval_batches: int = 20  # fixed validation batches per evaluation
    sample_every: int | None = None  # print a sample every N steps; None -> at each eval; 0 off
    sample_tokens: int = 200
    sample_prompt: str = ""
    checkpoint_every: int | None = None  # None -> at each eval; 0 -> only at the end
    keep_last: int = 3  # checkpoints kept besides the best
    seed: int = 1337
    device: str = "auto"  # auto | cpu | cuda | mps
    dtype: str = "auto"  # auto | float32 | bfloat16 (autocast)
    compile: str | bool = "auto"  # auto: compile when it pays for itself | true | false
    threads: str | int = "auto"  # CPU intra-op threads: auto (measured) | N
    out_dir: str | None = "out"  # where checkpoints and metrics go; None: write nothing
    progress: bool = True  # progress bar and printed evaluations/samples
    # LoRA fine-tuning (a run started from init_from): 0 trains every weight; r > 0
    # freezes the base and trains rank-r adapters (tinylm.model.lora, docs/chat.md).
    lora_rank: int = 0
    lora_alpha: float = 16.0  # the adapters' scale is lora_alpha / lora_rank
    lora_dropout: float = 0.0  # on each adapter's input only
    lora_targets: tuple[str, ...] = ("attn", "ffn")  # projections or groups to adapt

    def __post_init__(self) -> None:
        if isinstance(self.betas, list):  # JSON and TOML have no tuples
            object.__setattr__(self, "betas", tuple(self.betas))
        if isinstance(self.lora_targets, list):
            object.__setattr__(self, "lora_targets", tuple(self.lora_targets))
        elif isinstance(self.lora_targets, str):  # a single name, as the command line gives it
            object.__setattr__(self, "lora_targets", (self.lora_targets,))
        if isinstance(self.out_dir, os.PathLike):
            object.__setattr__(self, "out_dir", os.fspath(self.out_dir))
        _validate(self)

    # -- derived values ------------------------------------------------------------

    @property
    def warmup(self) -> int:
        """Warm-up steps: as set, or a tenth of the run up to 100 (enough for Adam's moments)."""
        return min(100, self.steps // 10) if self.warmup_steps is None else self.warmup_steps

    @property
    def lora(self) -> LoraConfig | None:
        """The adapters' settings when ``lora_rank`` > 0; None trains the whole model."""
        if self.lora_rank == 0:
            return None
        return LoraConfig(self.lora_rank, self.lora_alpha, self.lora_dropout, self.lora_targets)

    @property
    def sample_interval(self) -> int:
        return self.eval_every if self.sample_every is None else self.sample_every

    @property
    def checkpoint_interval(self) -> int:
        return self.eval_every if self.checkpoint_every is None else self.checkpoint_every

    # -- (de)serialisation -----------------------------------------------------------

    def to_dict(self) -> dict[str, Any]:
        data = dataclasses.asdict(self)
        data["betas"] = list(self.betas)
        data["lora_targets"] = list(self.lora_targets)
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> TrainConfig:
        """Build from a dict; an unknown key is an error naming the valid ones."""
        if not isinstance(data, dict):
            raise TinylmError(f"train config must be a table/dict, got {type(data).__name__}")
        valid = train_field_names()
        for key in data:
            if key not in valid:
                raise TinylmError(
                    f"unknown train config key {key!r}; valid keys are: {', '.join(valid)}"
                )
        return cls(**data)

    @classmethod
    def from_toml(cls, path: str | os.PathLike) -> TrainConfig:
        """Read the ``[train]`` table of a TOML file (or its top level if it has none)."""
        data = read_toml(path)
        return cls.from_dict(data.get("train", data))


def train_field_names() -> list[str]:
    return [f.name for f in dataclasses.fields(TrainConfig)]


def read_toml(path: str | os.PathLike) -> dict[str, Any]:
    """Parse a TOML file into a dict, with one-line errors."""
    if sys.version_info >= (3, 11):
        import tomllib
    else:  # pragma: no cover - Python 3.10
        import tomli as tomllib
    path = check_readable_file(path, "config")  # a FIFO would block the read forever
    try:
        with open(path, "rb") as handle:
            return tomllib.load(handle)
    except OSError as exc:
        raise TinylmError(f"cannot read config {path}: {exc.strerror or exc}") from None
    except UnicodeDecodeError as exc:  # tomllib decodes the bytes as UTF-8 first
        raise TinylmError(
            f"config {path} is not UTF-8 text (bad byte at offset {exc.start}); save it as UTF-8"
        ) from None
    except tomllib.TOMLDecodeError as exc:
        raise TinylmError(f"config {path} is not valid TOML: {exc}") from None


# -- validation --------------------------------------------------------------------------


def _validate(c: TrainConfig) -> None:
    for name in ("steps", "batch_size", "grad_accum", "eval_batches", "keep_last"):
        check_int(name, getattr(c, name), 1)
    check_seed("seed", c.seed)
    for name in ("eval_every", "sample_tokens", "seed"):
        check_int(name, getattr(c, name), 0)
    for name in ("warmup_steps", "sample_every", "checkpoint_every"):
        check_int(name, getattr(c, name), 0, allow_none=True)
    check_number("lr", c.lr, 0.0, strict=True)
    check_number("muon_lr", c.muon_lr, 0.0, strict=True)
    for name in ("weight_decay", "grad_clip", "eps", "min_lr"):
        check_number(name, getattr(c, name), 0.0)
    if c.min_lr > c.lr:
        raise TinylmError(
            f"min_lr {c.min_lr} is above lr {c.lr}; the floor must not exceed the peak"
        )
    if (
        not isinstance(c.betas, tuple)
        or len(c.betas) != 2
        or not all(is_number(b) and 0 <= b < 1 for b in c.betas)
    ):
        raise TinylmError(
            f"betas must be two numbers in [0, 1), got {shown(c.betas)}; try [0.9, 0.95]"
        )
    check_fraction("muon_momentum", c.muon_momentum, "; try 0.95")
    check_choice("schedule", c.schedule, SCHEDULES)
    check_choice("optimizer", c.optimizer, OPTIMIZERS)
    check_choice("device", c.device, DEVICES)
    check_choice("dtype", c.dtype, DTYPES)
    if c.schedule != "constant" and c.warmup > c.steps:
        raise TinylmError(
            f"warmup_steps {shown(c.warmup_steps)} exceeds steps {shown(c.steps)}; "
            "shorten the warm-up"
        )
    for name in ("progress", "decay_embeddings"):
        check_bool(name, getattr(c, name))
    if c.compile != "auto" and not isinstance(c.compile, bool):
        raise TinylmError(f"compile must be auto, true or false, got {shown(c.compile)}")
    if c.threads != "auto":
        check_int("threads", c.threads, 1)
        if c.threads > MAX_THREADS:  # torch.set_num_threads(100000) crashes the process
            raise TinylmError(
                f"threads {c.threads:,} is more than tinylm runs ({MAX_THREADS:,}); "
                "give at most the number of CPU cores, or threads = auto"
            )
    _validate_lora(c)
    if not isinstance(c.sample_prompt, str):
        raise TinylmError(f"sample_prompt must be a string, got {shown(c.sample_prompt)}")
    if c.out_dir is not None and not isinstance(c.out_dir, str):
        raise TinylmError(f"out_dir must be a path or None, got {shown(c.out_dir)}")


def _validate_lora(c: TrainConfig) -> None:
    """The LoRA settings, checked by ``LoraConfig`` even while off (a typo fails at once)."""
    check_int("lora_rank", c.lora_rank, 0, high=MAX_RANK)
    try:
        LoraConfig(max(c.lora_rank, 1), c.lora_alpha, c.lora_dropout, c.lora_targets)
    except TinylmError as exc:  # "lora alpha must ..." names the setting: lora_alpha
        message = str(exc)
        for word in ("alpha", "dropout", "targets"):
            message = message.replace(f"lora {word} ", f"lora_{word} ", 1)
        raise TinylmError(message) from None
