"""Training: optimisers, learning-rate schedules, checkpoints and the loop.

Batches come from :mod:`tinylm.data.batches`; ``get_batch`` is handed out here
too, because a training loop in a notebook wants it beside the optimiser.
"""

from __future__ import annotations

from tinylm.checkpoint.save_load import load_checkpoint, save_checkpoint
from tinylm.data.batches import get_batch
from tinylm.train.optim import AdamW, Muon, build_optimizer, param_groups, scale_lr
from tinylm.train.schedule import SCHEDULES, Schedule, cosine_schedule, lr_at
from tinylm.train.trainer import TrainConfig, Trainer

__all__ = [
    "SCHEDULES",
    "Schedule",
    "AdamW",
    "Muon",
    "TrainConfig",
    "Trainer",
    "build_optimizer",
    "cosine_schedule",
    "get_batch",
    "load_checkpoint",
    "lr_at",
    "param_groups",
    "save_checkpoint",
    "scale_lr",
]
