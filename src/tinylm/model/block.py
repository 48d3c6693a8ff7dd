"""One transformer block: attention then feed-forward, each wrapped in a residual.

The residual connection (``x + f(x)``) gives every layer a direct path for the
signal and its gradient, so a deep stack trains like a shallow one and each
layer only has to learn a correction.

Where the norm sits matters:

* ``pre`` (GPT-2 onwards): ``x = x + f(norm(x))``. The residual stream itself is
  never normalised, gradients flow straight through the additions, and deep
  models train without learning-rate warm-up tricks.
* ``post`` (the original transformer): ``x = norm(x + f(x))``. Every gradient
  passes through every norm; it tends to need warm-up and is less stable deep.
"""

from __future__ import annotations

from torch import Tensor, nn

from tinylm.model.attention import CausalSelfAttention
from tinylm.model.config import ModelConfig
from tinylm.model.feedforward import build_feedforward
from tinylm.model.kv_cache import KVCache
from tinylm.model.norms import build_norm
from tinylm.model.rope import Rotary


class Block(nn.Module):
    def __init__(
        self, config: ModelConfig, layer_idx: int = 0, rotary: Rotary | None = None
    ) -> None:
        super().__init__()
        self.pre_norm = config.norm_placement == "pre"
        self.norm1 = build_norm(config)
        self.attn = CausalSelfAttention(config, layer_idx, rotary)
        self.norm2 = build_norm(config)
        self.ffn = build_feedforward(config)

    def residual_projections(self) -> list[nn.Linear]:
        """The layers whose output is added to the residual stream (GPT-2's scaled init)."""
        return [self.attn.w_o, self.ffn.w2]

    def forward(
        self,
        x: Tensor,
        positions: Tensor,
        kv_cache: KVCache | None = None,
        need_weights: bool = False,
        attn_mask: Tensor | None = None,
    ) -> tuple[Tensor, Tensor | None]:
        """Returns the new residual stream and the attention weights (or None)."""
        if self.pre_norm:
            attn_out, weights = self.attn(
                self.norm1(x), positions, kv_cache, need_weights, attn_mask
            )
            x = x + attn_out
            x = x + self.ffn(self.norm2(x))
        else:
            attn_out, weights = self.attn(x, positions, kv_cache, need_weights, attn_mask)
            x = self.norm1(x + attn_out)
            x = self.norm2(x + self.ffn(x))
        return x, weights
