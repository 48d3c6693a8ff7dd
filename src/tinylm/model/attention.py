"""Causal multi-head self-attention (Vaswani et al., 2017), with GQA/MQA.

Each token emits a query ("what am I looking for"), a key ("what do I offer")
and a value ("what I pass on"). Token ``i`` scores every earlier token ``j`` by
``q_i . k_j / sqrt(d_k)``, turns the scores into weights with a softmax, and
takes the weighted sum of the values. Several heads do this in parallel on
slices of the vector, each free to attend to something different; their outputs
are concatenated and mixed by an output projection ``W_O``.

Two interchangeable implementations, chosen by ``config.kernels`` (the switch
that also chooses the norms', activations' and RoPE's paths):

* ``explicit``: the formula above, step by step, in ``scaled_dot_product_attention``.
  It materialises the ``T x T`` weight matrix, so it can return it for inspection.
* ``fused``: ``torch.nn.functional.scaled_dot_product_attention``, which computes
  the same thing without keeping the weight matrix (faster, less memory).

With grouped-query attention there are fewer key/value heads than query heads;
each key/value head is shared by ``n_head // kv_heads`` consecutive query heads.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from tinylm.model.config import ModelConfig
from tinylm.model.kv_cache import KVCache
from tinylm.model.rope import Rotary, apply_rope, build_rotary


def scaled_dot_product_attention(
    q: Tensor,
    k: Tensor,
    v: Tensor,
    mask: Tensor | None = None,
    dropout_p: float = 0.0,
) -> tuple[Tensor, Tensor]:
    """``softmax(Q K^T / sqrt(d_k) + mask) V``, written out. Returns ``(output, weights)``.

    Shapes: ``q`` is ``(..., T_q, d_k)``, ``k`` is ``(..., T_k, d_k)``, ``v`` is
    ``(..., T_k, d_v)``; ``T_q`` and ``T_k`` may differ (a KV cache feeds one new
    query against all cached keys). ``mask`` is a boolean tensor broadcastable to
    ``(..., T_q, T_k)`` where True means "may attend"; ``None`` lets every query
    see every key. Masked scores become -inf, so they get exactly zero weight.
    A query row with no allowed key at all has no defined softmax and gives NaN,
    as torch's fused version does.

    ``output`` has shape ``(..., T_q, d_v)``; ``weights`` (``(..., T_q, T_k)``, rows
    summing to 1) are the softmax probabilities before dropout.
    """
    d_k = q.shape[-1]
    # Dividing by sqrt(d_k) keeps the scores' variance near 1 whatever the head size;
    # large scores would saturate the softmax and starve it of gradient.
    scores = q @ k.transpose(-2, -1) / math.sqrt(d_k)
    if mask is not None:
        scores = scores.masked_fill(~mask, float("-inf"))
    weights = torch.softmax(scores, dim=-1)
    used = F.dropout(weights, p=dropout_p) if dropout_p > 0 else weights
    return used @ v, weights


def causal_mask(q_len: int, k_len: int, device: torch.device | None = None) -> Tensor:
    """Boolean ``(q_len, k_len)`` mask: query ``i`` may see keys ``0 .. i + k_len - q_len``.

    The queries are the *last* ``q_len`` of the ``k_len`` tokens (with a cache the
    earlier keys come from previous steps), hence the diagonal offset.
    """
    ones = torch.ones(q_len, k_len, dtype=torch.bool, device=device)
    return ones.tril(diagonal=k_len - q_len)


def repeat_kv(x: Tensor, n_rep: int) -> Tensor:
    """``(B, kv_heads, T, d) -> (B, kv_heads * n_rep, T, d)``, each head repeated in place.

    Query head ``h`` then lines up with key/value head ``h // n_rep``.
    """
    return x if n_rep == 1 else x.repeat_interleave(n_rep, dim=1)


class CausalSelfAttention(nn.Module):
    """Multi-head (or grouped-/multi-query) causal self-attention for one layer."""

    def __init__(
        self, config: ModelConfig, layer_idx: int = 0, rotary: Rotary | None = None
    ) -> None:
        """``rotary``: the model's shared RoPE table (``rope.build_rotary``); a layer
        built on its own makes its own."""
        super().__init__()
        self.layer_idx = layer_idx  # which slot of a KVCache is ours
        self.n_head = config.n_head
        self.kv_heads = config.kv_heads
        self.head_dim = config.head_dim
        self.use_rope = config.position == "rope"
        self.rope_theta = config.rope_theta
        # kernels=fused: the rotations are tabulated once per model (rope.Rotary)
        self.rotary = rotary if rotary is not None else build_rotary(config)
        self.fused = config.kernels == "fused"
        self.dropout_p = config.dropout

        kv_width = self.kv_heads * self.head_dim  # smaller than n_embd under GQA/MQA
        self.w_q = nn.Linear(config.n_embd, config.n_embd, bias=config.bias)
        self.w_k = nn.Linear(config.n_embd, kv_width, bias=config.bias)
        self.w_v = nn.Linear(config.n_embd, kv_width, bias=config.bias)
        self.w_o = nn.Linear(config.n_embd, config.n_embd, bias=config.bias)
        self.resid_dropout = nn.Dropout(config.dropout)

    def forward(
        self,
        x: Tensor,
        positions: Tensor,
        kv_cache: KVCache | None = None,
        need_weights: bool = False,
        attn_mask: Tensor | None = None,
    ) -> tuple[Tensor, Tensor | None]:
        """``x`` is ``(B, T, n_embd)`` for tokens at ``positions`` (``(T,)``, absolute).

        Returns the layer output ``(B, T, n_embd)`` and, if ``need_weights`` (which
        forces the explicit path), the weights ``(B, n_head, T, T_k)``, else None.
        ``attn_mask`` (boolean, ``(B, 1, T, T_k)``, True = may attend) replaces the
        causal mask when rows differ, as in a batch of left-padded prompts; then
        ``positions`` is ``(B, T)``.
        """
        B, T, _ = x.shape
        q, k, v = self.project_qkv(x)
        q = self._split_heads(q, self.n_head)  # (B, n_head, T, head_dim)
        k = self._split_heads(k, self.kv_heads)  # (B, kv_heads, T, head_dim)
        v = self._split_heads(v, self.kv_heads)
        if self.rotary is not None:
            q, k = self.rotary.rotate_pair(q, k, positions)
        elif self.use_rope:
            q = apply_rope(q, positions, self.rope_theta)
            k = apply_rope(k, positions, self.rope_theta)
        if kv_cache is not None:
            k, v = kv_cache.update(self.layer_idx, k, v)  # now all T_k tokens so far

        out, weights = self._attend(q, k, v, need_weights, attn_mask)

        out = out.transpose(1, 2).reshape(B, T, self.n_head * self.head_dim)  # concat heads
        return self.resid_dropout(self.w_o(out)), weights

    def project_qkv(self, x: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """The queries, keys and values of ``x``: three products with W_q, W_k, W_v."""
        return self.w_q(x), self.w_k(x), self.w_v(x)

    def _split_heads(self, x: Tensor, n_heads: int) -> Tensor:
        B, T, _ = x.shape
        return x.view(B, T, n_heads, self.head_dim).transpose(1, 2)

    def _attend(
        self, q: Tensor, k: Tensor, v: Tensor, need_weights: bool, attn_mask: Tensor | None = None
    ) -> tuple[Tensor, Tensor | None]:
        q_len = q.shape[-2]
        n_rep = self.n_head // self.kv_heads
        dropout_p = self.dropout_p if self.training else 0.0
        if self.fused and not need_weights and q_len == 1 and n_rep > 1:
            return self._attend_grouped(q, k, v, attn_mask, dropout_p), None
        k, v = repeat_kv(k, n_rep), repeat_kv(v, n_rep)
        k_len = k.shape[-2]
        if self.fused and not need_weights:
            if attn_mask is not None:
                out = F.scaled_dot_product_attention(
                    q, k, v, attn_mask=attn_mask, dropout_p=dropout_p
                )
            elif q_len == k_len:  # no cache offset: torch's own causal masking applies
                out = F.scaled_dot_product_attention(q, k, v, dropout_p=dropout_p, is_causal=True)
            else:  # is_causal assumes aligned starts, so pass the offset mask instead
                # (one new query may see every cached key: no mask needed at all)
                mask = None if q_len == 1 else causal_mask(q_len, k_len, q.device)
                out = F.scaled_dot_product_attention(q, k, v, attn_mask=mask, dropout_p=dropout_p)
            return out, None
        mask = causal_mask(q_len, k_len, q.device) if attn_mask is None else attn_mask
        out, weights = scaled_dot_product_attention(q, k, v, mask, dropout_p)
        return out, (weights if need_weights else None)

    def _attend_grouped(
        self, q: Tensor, k: Tensor, v: Tensor, attn_mask: Tensor | None, dropout_p: float
    ) -> Tensor:
        """One new token under GQA/MQA, without copying any key or value head.

        ``repeat_kv`` copies every cached key and value ``n_rep`` times, each step,
        so that each query head has its own. With a single query position there is
        no causal mask to tell the heads apart, so the ``n_rep`` query heads sharing
        a key/value head can instead be stacked as ``n_rep`` query *rows* against
        that head: ``(B, n_head, 1, d)`` viewed as ``(B, kv_heads, n_rep, d)``. Each
        row is the same softmax over the same keys; only the copies are gone. A
        padding mask ``(B, 1, 1, T_k)`` broadcasts over the rows unchanged.
        """
        B, _, _, head_dim = q.shape
        grouped = q.reshape(B, self.kv_heads, self.n_head // self.kv_heads, head_dim)
        out = F.scaled_dot_product_attention(
            grouped, k, v, attn_mask=attn_mask, dropout_p=dropout_p
        )
        return out.reshape(B, self.n_head, 1, head_dim)
