"""Training: optimisers, learning-rate schedules, batches, checkpoints and the loop.

Names are imported lazily from the module that defines them (the table below), so
``from tinylm.train import lr_at`` imports only ``schedule.py``, and a module that
is missing or broken only fails the names that come from it.
"""

from __future__ import annotations

from tinylm.lazy import lazy_exports

_EXPORTS = {
    "AdamW": "tinylm.train.optim",
    "Muon": "tinylm.train.optim",
    "build_optimizer": "tinylm.train.optim",
    "param_groups": "tinylm.train.optim",
    "scale_lr": "tinylm.train.optim",
    "SCHEDULES": "tinylm.train.schedule",
    "lr_at": "tinylm.train.schedule",
    "cosine_schedule": "tinylm.train.schedule",
    "get_batch": "tinylm.train.data",
    "save_checkpoint": "tinylm.checkpoint",
    "load_checkpoint": "tinylm.checkpoint",
    "Trainer": "tinylm.train.trainer",
    "TrainConfig": "tinylm.train.trainer",
}

__all__ = list(_EXPORTS)


__getattr__ = lazy_exports(__name__, _EXPORTS)
