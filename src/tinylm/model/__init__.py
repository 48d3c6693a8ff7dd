"""The GPT model, written from scratch in PyTorch, one concept per file.

Read in this order: ``config`` (the hyperparameters and presets), ``embeddings``
and ``rope`` (tokens and positions to vectors), ``attention`` and ``kv_cache``,
``feedforward``, ``norms``, ``block``, ``gpt`` (the whole model) and ``generate``.
"""

from tinylm.model.attention import scaled_dot_product_attention
from tinylm.model.config import PRESETS, ModelConfig
from tinylm.model.gpt import GPT
from tinylm.model.kv_cache import KVCache
from tinylm.model.rope import apply_rope

__all__ = [
    "GPT",
    "KVCache",
    "PRESETS",
    "ModelConfig",
    "apply_rope",
    "scaled_dot_product_attention",
]
