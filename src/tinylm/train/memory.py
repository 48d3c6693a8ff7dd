"""Will it fit? A memory estimate made before a model or a batch is allocated.

A model of ``n_embd=100000000`` fails deep inside an allocation, and a
``batch_size`` of a hundred million gets the process killed by the operating
system after a minute of swapping, with no message at all. Both are settings a
user typed, so both are refused up front, with the estimate, in one line.

The estimate is deliberately rough and on the low side, so a run that fits is
never refused: a run is refused only when even this much exceeds the memory
the device has free.

* **Parameters**, counted exactly on the ``meta`` device (no memory is used):
  the weights, their gradients and the optimiser's two moments, 4 bytes each.
* **Activations** kept for the backward pass, per token of a micro-batch: about
  16 numbers of ``n_embd`` per layer (residual stream, norms, attention inputs
  and output, the feed-forward's input, hidden and output) plus the attention
  scores of the written-out attention, and the logits with their softmax.
"""

from __future__ import annotations

import torch

from tinylm.device import available_bytes, gib, meta_device
from tinylm.errors import SettingError
from tinylm.model import GPT, ModelConfig

BYTES = 4  # float32 master weights, gradients and moments
COPIES = 4  # weights, gradients, and the optimiser's two moments


def count_params(config: ModelConfig) -> int:
    """The model's parameter count, without allocating it (built on the ``meta`` device)."""
    with meta_device():
        return GPT(config).num_params()


def training_bytes(config: ModelConfig, batch_size: int) -> int:
    """A low estimate of the bytes one training step needs (see the module docstring)."""
    tokens = batch_size * config.block_size
    per_layer = 16 * config.n_embd + config.n_head * config.block_size
    activations = tokens * (config.n_layer * per_layer + 2 * config.vocab_size) * BYTES
    return count_params(config) * BYTES * COPIES + activations


def check_fits(config: ModelConfig, batch_size: int, device: torch.device) -> None:
    """Refuse a model and micro-batch that cannot fit in ``device``'s free memory."""
    free = available_bytes(device)
    if free is None:
        return
    params = count_params(config)
    needed = training_bytes(config, batch_size)
    if needed > free:
        model_fits = params * BYTES * COPIES <= free
        raise SettingError(
            f"this run needs at least {gib(needed)} of memory to train ({params:,} "
            f"parameters, micro-batches of {batch_size} x {config.block_size} tokens) but "
            f"{device.type} has {gib(free)} free; make the model or batch_size smaller",
            setting="batch_size" if model_fits else "model",
            reason="out_of_memory",
        )
