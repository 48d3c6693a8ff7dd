"""The key-value cache that makes generation linear instead of quadratic.

When generating, token ``t`` attends to the keys and values of tokens ``0..t``.
Those of ``0..t-1`` do not change from one step to the next (the model is causal),
so recomputing them every step wastes work. The cache keeps every layer's keys
and values, and each step only computes the new token's and appends them.

It stores ``kv_heads`` heads per layer, not ``n_head``: with grouped-query or
multi-query attention several query heads share one key/value head, which is
the point of GQA/MQA (a cache several times smaller). Keys are stored after RoPE
has rotated them, since a token's position never changes once it is cached.
"""

from __future__ import annotations

import torch
from torch import Tensor

from tinylm.errors import TinylmError


class KVCache:
    """Preallocated keys and values for ``n_layer`` layers, up to ``max_len`` tokens.

    Usage, inside a forward pass over ``T`` new tokens: every layer calls
    ``update(layer, k, v)``, which writes at position ``length`` and returns all
    keys and values so far; after the last layer the model calls ``advance(T)``.
    """

    def __init__(
        self,
        n_layer: int,
        batch_size: int,
        kv_heads: int,
        max_len: int,
        head_dim: int,
        dtype: torch.dtype = torch.float32,
        device: torch.device | str | None = None,
    ) -> None:
        shape = (n_layer, batch_size, kv_heads, max_len, head_dim)
        self.keys = torch.zeros(shape, dtype=dtype, device=device)
        self.values = torch.zeros(shape, dtype=dtype, device=device)
        self.max_len = max_len
        self.length = 0  # tokens stored (the position of the next token)

    def update(self, layer: int, k: Tensor, v: Tensor) -> tuple[Tensor, Tensor]:
        """Store ``k``, ``v`` (shape ``(B, kv_heads, T, head_dim)``) for ``layer``.

        Returns views of this layer's keys and values for all ``length + T`` tokens.
        """
        end = self.length + k.shape[-2]
        if end > self.max_len:
            raise TinylmError(
                f"KV cache holds {self.max_len} tokens but {end} were requested; "
                "start a new cache or crop the context"
            )
        self.keys[layer, :, :, self.length : end] = k
        self.values[layer, :, :, self.length : end] = v
        # Hand back the caller's dtype: under autocast the new keys may be bfloat16
        # while the cache is float32, and attention needs q, k, v to agree.
        keys = self.keys[layer, :, :, :end].to(k.dtype)
        values = self.values[layer, :, :, :end].to(v.dtype)
        return keys, values

    def advance(self, n_tokens: int) -> None:
        """Mark ``n_tokens`` more tokens as stored, once every layer has written them."""
        self.length += n_tokens

    def reset(self) -> None:
        """Forget everything (the buffers are reused)."""
        self.length = 0
