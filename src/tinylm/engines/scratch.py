"""The scratch engine: ``tinylm.scratch``'s microgpt in plain Python scalars.

One document per step, plain Adam, the seed's hyperparameters; the run folder,
data and checkpoints are the PyTorch engine's, so either engine reads the
other's runs (see :mod:`tinylm.engines.scratch_trainer` for the trainer and
:mod:`tinylm.engines.scratch_convert` for the bridge to tensors). Its defaults
are the seed's: the ``microgpt`` preset on the built-in words, one per line.

The trainer is imported inside the methods, so listing the engines stays torch-free.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from tinylm.data.corpus import BUILTIN_WORDS
from tinylm.engines.base import Engine

if TYPE_CHECKING:
    from tinylm.data.prepared import PreparedData
    from tinylm.engines.scratch_trainer import ScratchTrainer
    from tinylm.tokenizers.base import Tokenizer
    from tinylm.train.config import TrainConfig
    from tinylm.train.distributed import DistInfo


class ScratchEngine(Engine):
    """Pure-Python training of the microgpt network, one document per step."""

    name = "scratch"  # what ScratchTrainer records in run.json and its checkpoints
    default_preset = "microgpt"
    default_data = BUILTIN_WORDS
    default_separator = "line"

    def train_config(self, settings: dict[str, Any]) -> TrainConfig:
        # torch-free: listing the engines (the CLI's engine choices) loads no torch
        from tinylm.engines.scratch_trainer import scratch_train_config

        return scratch_train_config(settings)

    def check_model(
        self, preset: str, model_settings: dict[str, Any], config: TrainConfig, dist: DistInfo
    ) -> None:
        # torch-free: listing the engines (the CLI's engine choices) loads no torch
        from tinylm.engines.scratch_trainer import scratch_model_config

        # Any vocabulary will do before the data is read: only the network is checked.
        scratch_model_config(preset, model_settings, model_settings.get("vocab_size", 27))

    def start(
        self,
        data: PreparedData,
        tokenizer: Tokenizer,
        config: TrainConfig,
        *,
        preset: str,
        model_settings: dict[str, Any],
        base: dict[str, Any] | None,
        run_info: dict[str, Any],
        dist: DistInfo,
    ) -> ScratchTrainer:
        # torch-free: listing the engines (the CLI's engine choices) loads no torch
        from tinylm.engines.scratch_trainer import new_scratch_trainer

        return new_scratch_trainer(
            data, tokenizer, config, model_settings, preset=preset, base=base, run_info=run_info
        )

    def resume(
        self,
        model: dict[str, Any],
        latest: Path,
        data: PreparedData,
        tokenizer: Tokenizer,
        config: TrainConfig,
        *,
        run_info: dict[str, Any],
        dist: DistInfo,
    ) -> ScratchTrainer:
        # torch-free: listing the engines (the CLI's engine choices) loads no torch
        from tinylm.engines.scratch_trainer import resumed_scratch_trainer

        return resumed_scratch_trainer(model, latest, data, tokenizer, config, run_info)
