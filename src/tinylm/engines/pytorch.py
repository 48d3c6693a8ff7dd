"""The PyTorch engine: tinylm's ``GPT`` trained by :class:`~tinylm.train.trainer.Trainer`.

The default engine. Its settings are ``ModelConfig``'s and ``TrainConfig``'s as
they are; a model or batch the device cannot hold is refused before anything is
allocated (estimated on torch's meta device, ``tinylm.train.memory``).

Torch is imported inside the methods, so listing the engines stays torch-free.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from tinylm.data.corpus import BUILTIN_CORPUS
from tinylm.engines.base import Engine

if TYPE_CHECKING:
    from tinylm.checkpoint.adapter import BaseIdentity
    from tinylm.data.conversation_batches import ConversationData
    from tinylm.data.prepared import PreparedData
    from tinylm.model import ModelConfig
    from tinylm.tokenizers.base import Tokenizer
    from tinylm.train.config import TrainConfig
    from tinylm.train.distributed import DistInfo
    from tinylm.train.trainer import Trainer


class PyTorchEngine(Engine):
    """tinylm's own model and training loop: any preset, any device, data parallel."""

    name = "pytorch"
    default_preset = "small"
    default_data = BUILTIN_CORPUS
    default_separator = "eot"
    conversations = True

    def train_config(self, settings: dict[str, Any]) -> TrainConfig:
        # torch-free: listing the engines (the CLI's engine choices) loads no torch
        from tinylm.train.config import TrainConfig

        return TrainConfig.from_dict(settings)

    def check_model(
        self, preset: str, model_settings: dict[str, Any], config: TrainConfig, dist: DistInfo
    ) -> None:
        # torch-free: listing the engines (the CLI's engine choices) loads no torch
        from tinylm.model import ModelConfig

        check_fits(ModelConfig.from_preset(preset, **model_settings), config, dist)

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
    ) -> Trainer:
        import torch

        # torch-free: listing the engines (the CLI's engine choices) loads no torch
        from tinylm.checkpoint import load_checkpoint
        from tinylm.checkpoint.adapter import base_identity
        from tinylm.inference.loading import model_for_checkpoint
        from tinylm.model import GPT, ModelConfig
        from tinylm.model.grow_vocab import grow_vocab
        from tinylm.train.lora_run import add_run_adapters

        if base is not None:
            model_config = ModelConfig.from_dict({**base["config"], **model_settings})
        else:
            vocab = {"vocab_size": tokenizer.vocab_size}
            model_config = ModelConfig.from_preset(preset, **{**vocab, **model_settings})
        check_fits(model_config, config, dist)
        torch.manual_seed(config.seed)
        lora_base = None
        if base is None:
            model = GPT(model_config)
        else:  # the checkpoint's weights are checked to fit before anything is allocated
            model = model_for_checkpoint(base["path"], model_config.to_dict())
            load_checkpoint(base["path"], model)
            # A chat fine-tune's tokenizer gained the turn tokens: new rows, mean-initialised.
            grow_vocab(model, max(tokenizer.vocab_size, model_config.vocab_size))
            if config.lora is not None:  # frozen base, trained adapters (tinylm.train.lora_run)
                add_run_adapters(model, config.lora, model_config.vocab_size)
                lora_base = base_identity(base["path"])
        return _trainer(model, data, tokenizer, config, run_info, dist, lora_base)

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
    ) -> Trainer:
        import torch

        # torch-free: listing the engines (the CLI's engine choices) loads no torch
        from tinylm.inference.loading import model_for_checkpoint
        from tinylm.model import ModelConfig
        from tinylm.train.lora_run import rebuild_lora_model

        check_fits(ModelConfig.from_dict(model), config, dist)
        torch.manual_seed(config.seed)
        lora_base = None
        if config.lora is None:
            gpt = model_for_checkpoint(latest, model)  # refused before allocating if unfit
        else:  # the frozen base, the adapters and the trained rows, exactly as saved
            gpt, adapter = rebuild_lora_model(latest, model, config.lora)
            lora_base = adapter.base
        trainer = _trainer(gpt, data, tokenizer, config, run_info, dist, lora_base)
        trainer.resume(latest)
        return trainer


def _trainer(
    model: Any,
    data: PreparedData | ConversationData,
    tokenizer: Tokenizer,
    config: TrainConfig,
    run_info: dict[str, Any],
    dist: DistInfo,
    lora_base: BaseIdentity | None = None,
) -> Trainer:
    # torch-free: listing the engines (the CLI's engine choices) loads no torch
    from tinylm.data.conversation_batches import ConversationData
    from tinylm.train.trainer import Trainer

    chat = data.chat_template if isinstance(data, ConversationData) else None
    return Trainer(
        model,
        data.train,
        data.val,
        tokenizer,
        config,
        run_info=run_info,
        dist=dist,
        chat_template=chat,
        lora_base=lora_base,
    )


def check_fits(model_config: ModelConfig, config: TrainConfig, dist: DistInfo) -> None:
    """Refuse, before allocating, a model or batch this process's device cannot hold."""
    # torch-free: listing the engines (the CLI's engine choices) loads no torch
    from tinylm.device import resolve_device
    from tinylm.train import distributed
    from tinylm.train.memory import check_fits as check_memory

    device = distributed.process_device(dist, resolve_device(config.device))
    check_memory(model_config, config.batch_size, device)
