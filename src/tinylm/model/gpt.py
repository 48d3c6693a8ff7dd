"""The GPT model: embeddings, a stack of blocks, and a projection back to the vocabulary.

``GPT(config)`` maps token ids ``(B, T)`` to logits ``(B, T, vocab_size)``: at
every position, an unnormalised score for each possible next token. Training
compares them with the actual next tokens (cross-entropy); generation samples
from the last position's scores, appends the token and repeats.

Reading order of the forward pass (``_trunk``):

1. token embedding (+ additive position embedding, unless rope or none),
2. ``n_layer`` blocks of attention + feed-forward, each residual,
3. a final norm, and the output projection ``lm_head`` to one logit per token.

With ``tie_embeddings`` the output projection *is* the token embedding matrix
(Press & Wolf, 2017): a token's input vector and output vector are the same, which
saves ``vocab_size * n_embd`` parameters, a third of GPT-2 small.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Iterator, Sequence
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from tinylm.errors import TinylmError
from tinylm.model.block import Block
from tinylm.model.config import ModelConfig
from tinylm.model.embeddings import (
    LearnedPositionEmbedding,
    TokenEmbedding,
    build_position_embedding,
)
from tinylm.model.kv_cache import KVCache
from tinylm.model.norms import build_norm
from tinylm.model.roles import ParamRoles, split_by_shape
from tinylm.model.rope import build_rotary


def check_token_ids(ids: Any, vocab_size: int) -> None:
    """Raise ``TinylmError`` if any id in ``ids`` is negative or ``>= vocab_size``."""
    if isinstance(ids, Tensor):
        if ids.numel() == 0:
            return
        low, high = int(ids.min()), int(ids.max())
    else:
        array = np.asarray(ids)
        if array.size == 0:
            return
        low, high = int(array.min()), int(array.max())
    if low < 0 or high >= vocab_size:
        bad = low if low < 0 else high
        raise TinylmError(
            f"token id {bad} is outside the vocabulary [0, {vocab_size}); "
            "check the tokenizer matches the model's vocab_size"
        )


class GPT(nn.Module):
    """A decoder-only transformer language model built from a ``ModelConfig``."""

    def __init__(self, config: ModelConfig) -> None:
        super().__init__()
        if not isinstance(config, ModelConfig):
            raise TinylmError(
                f"GPT needs a ModelConfig, got {type(config).__name__}; "
                "build one with ModelConfig(...) or ModelConfig.from_preset(name)"
            )
        self.config = config
        self.tok_emb = TokenEmbedding(config.vocab_size, config.n_embd)
        self.pos_emb = build_position_embedding(config)  # None for rope and none
        self.emb_norm = build_norm(config) if config.embedding_norm else None
        self.emb_dropout = nn.Dropout(config.dropout)
        rotary = build_rotary(config)  # one RoPE table for every layer (or None)
        self.blocks = nn.ModuleList(Block(config, i, rotary) for i in range(config.n_layer))
        self.final_norm = build_norm(config) if config.final_norm else None
        self.lm_head = nn.Linear(config.n_embd, config.vocab_size, bias=False)
        if config.tie_embeddings:
            self.lm_head.weight = self.tok_emb.weight  # one tensor, two uses
        # The projections that write into the residual stream, for the scaled init.
        self._residual_ids = {id(m) for b in self.blocks for m in b.residual_projections()}
        self.apply(self._init_weights)

    def _init_weights(self, module: nn.Module) -> None:
        """Normal(0, init_std) weights, zero biases; norms start as the identity.

        With ``scaled_residual_init`` the projections that write into the residual
        stream (attention ``w_o``, feed-forward ``w2``) get ``init_std / sqrt(2 *
        n_layer)`` (GPT-2): the stream is a sum of ``2 * n_layer`` such outputs, and
        this keeps its variance at initialisation independent of depth.
        """
        std = self.config.init_std
        if isinstance(module, nn.Linear):
            if self.config.scaled_residual_init and id(module) in self._residual_ids:
                std = std / math.sqrt(2 * self.config.n_layer)
            nn.init.normal_(module.weight, mean=0.0, std=std)
            if module.bias is not None:
                nn.init.zeros_(module.bias)
        elif isinstance(module, (TokenEmbedding, LearnedPositionEmbedding)):
            nn.init.normal_(module.weight, mean=0.0, std=std)

    def param_roles(self) -> ParamRoles:
        """Which parameter is an embedding table, the head, a hidden matrix or a vector.

        The optimisers and the weight-decay rule read this (``tinylm.model.roles``
        says why each role is treated differently). A tied ``lm_head`` is the token
        table and is listed once, as an embedding; an untied one is the head.
        """
        tables = [self.tok_emb.weight]
        if isinstance(self.pos_emb, LearnedPositionEmbedding):
            tables.append(self.pos_emb.weight)
        return split_by_shape(list(self.parameters()), tables, [self.lm_head.weight])

    # -- forward -------------------------------------------------------------------

    def forward(
        self,
        idx: Tensor,
        targets: Tensor | None = None,
        *,
        ignore_index: int = -100,
        kv_cache: KVCache | None = None,
    ) -> tuple[Tensor, Tensor | None]:
        """Logits ``(B, T, vocab_size)`` for token ids ``idx`` ``(B, T)``, and the loss.

        With ``targets`` (``(B, T)``, the next token at each position) the loss is
        the mean cross-entropy over positions whose target is not ``ignore_index``
        (so padding can be masked out); without, the loss is None. With a
        ``kv_cache`` (see ``new_kv_cache``), ``idx`` holds only the new tokens, which
        continue at position ``kv_cache.length``.
        """
        self._check_input(idx, kv_cache)
        x, _ = self._trunk(idx, kv_cache, need_weights=False)
        logits = self.lm_head(x)
        loss = None
        if targets is not None:
            if targets.shape != idx.shape:
                raise TinylmError(
                    f"targets shape {tuple(targets.shape)} does not match "
                    f"idx shape {tuple(idx.shape)}; pass one target per input token"
                )
            # At least float32: a log-softmax over a large vocabulary in bf16 is too coarse.
            loss_dtype = torch.promote_types(logits.dtype, torch.float32)
            loss = F.cross_entropy(
                logits.flatten(0, 1).to(loss_dtype), targets.flatten(), ignore_index=ignore_index
            )
        return logits, loss

    def attention_maps(self, idx: Tensor) -> list[Tensor]:
        """The attention weights of every layer for ``idx`` ``(B, T)``, for inspection.

        Returns ``n_layer`` tensors of shape ``(B, n_head, T, T)``; entry
        ``[b, h, i, j]`` is how much token ``i`` attends to token ``j`` in head ``h``
        (rows sum to 1, zero above the diagonal). Always runs the explicit attention
        path, whatever ``config.kernels`` says, since the fused kernel never forms
        the weights. Gradients are kept; wrap in ``torch.no_grad()`` if unneeded.
        """
        self._check_input(idx, None)
        self.check_token_ids(idx)  # an inspection call, not the hot path
        _, weights = self._trunk(idx, None, need_weights=True)
        return weights

    def _trunk(
        self,
        idx: Tensor,
        kv_cache: KVCache | None,
        need_weights: bool,
        positions: Tensor | None = None,
        attn_mask: Tensor | None = None,
    ) -> tuple[Tensor, list[Tensor]]:
        """Everything before ``lm_head``: the final hidden states and attention weights.

        ``positions`` (``(B, T)``) and ``attn_mask`` (``(B, 1, T, T_k)``) are given
        together when rows differ (left-padded prompts); otherwise every row sits at
        ``kv_cache.length .. + T`` under the causal mask.
        """
        T = idx.shape[1]
        if positions is None:
            offset = kv_cache.length if kv_cache is not None else 0
            positions = torch.arange(offset, offset + T, device=idx.device)

        x = self.tok_emb(idx)
        if self.pos_emb is not None:
            x = x + self.pos_emb(positions)  # (T, n_embd) broadcasts over the batch
        if self.emb_norm is not None:
            x = self.emb_norm(x)
        x = self.emb_dropout(x)

        all_weights = []
        for block in self.blocks:
            x, weights = block(x, positions, kv_cache, need_weights, attn_mask)
            if weights is not None:
                all_weights.append(weights)
        if kv_cache is not None:
            kv_cache.advance(T)
        if self.final_norm is not None:
            x = self.final_norm(x)
        return x, all_weights

    def next_token_logits(
        self,
        idx: Tensor,
        kv_cache: KVCache | None = None,
        *,
        positions: Tensor | None = None,
        attn_mask: Tensor | None = None,
    ) -> Tensor:
        """Logits ``(B, vocab_size)`` at the last position only.

        What generation needs: it skips the output projection for every other
        position, which for a large vocabulary is most of the prefill cost. A batch
        of prompts of different lengths passes per-row ``positions`` ``(B, T)`` and
        an ``attn_mask`` ``(B, 1, T, T_k)`` that hides the padding (see
        ``tinylm.model.generate.generate_batch``).
        """
        self._check_input(idx, kv_cache)
        x, _ = self._trunk(idx, kv_cache, False, positions, attn_mask)
        return self.lm_head(x[:, -1])

    def _check_input(self, idx: Tensor, kv_cache: KVCache | None) -> None:
        if not isinstance(idx, Tensor) or idx.dim() != 2:
            shape = tuple(idx.shape) if isinstance(idx, Tensor) else type(idx).__name__
            raise TinylmError(f"idx must be a (batch, time) tensor of token ids, got {shape}")
        if idx.dtype not in (torch.int64, torch.int32):
            raise TinylmError(f"idx must hold integer token ids, got dtype {idx.dtype}")
        T = idx.shape[1]
        offset = kv_cache.length if kv_cache is not None else 0
        if offset + T > self.config.block_size:
            raise TinylmError(
                f"sequence length {offset + T} exceeds block_size {self.config.block_size}; "
                "crop the input to the last block_size tokens"
            )
        if idx.numel() == 0:
            raise TinylmError("idx has no tokens; pass at least one token id")
        # Token ids are checked where they enter (``check_token_ids``: the trainer's
        # data, generation's prompt), not here: reading values back on every call
        # would stall a GPU once per micro-step.

    def check_token_ids(self, ids: Any) -> None:
        """Refuse token ids outside ``[0, vocab_size)``, once, where data or a prompt enters.

        ``ids`` is anything numpy or torch can take the min and max of (a tensor,
        an array, a memmap of a whole split). An id out of range would otherwise
        index past the embedding table, a crash on CPU and an assert on a GPU.
        """
        check_token_ids(ids, self.config.vocab_size)

    # -- generation ------------------------------------------------------------------

    def new_kv_cache(self, batch_size: int = 1, max_len: int | None = None) -> KVCache:
        """An empty KV cache for this model: ``kv_heads`` heads, room for ``max_len`` tokens.

        ``max_len`` defaults to (and is capped at) ``block_size``. Generation passes
        the prompt's length plus the new tokens: the cache is allocated up front, and
        an imported model with a context of 128K tokens would otherwise set aside
        gigabytes for a short answer.
        """
        c = self.config
        ref = self.lm_head.weight
        length = c.block_size if max_len is None else max(1, min(max_len, c.block_size))
        return KVCache(c.n_layer, batch_size, c.kv_heads, length, c.head_dim, ref.dtype, ref.device)

    def generate(
        self,
        prompt_ids: Sequence[int] | Tensor,
        max_new_tokens: int,
        temperature: float = 1.0,
        top_k: int | None = None,
        top_p: float | None = None,
        stop_ids: Iterable[int] = (),
        seed: int | None = None,
        use_cache: bool = True,
        allowed_ids: Iterable[int] | None = None,
    ) -> Iterator[int]:
        """Yield up to ``max_new_tokens`` token ids continuing ``prompt_ids``, one at a time.

        See ``tinylm.model.generate.generate`` for the full contract.
        """
        from tinylm.model.generate import generate  # generate.py imports this module

        return generate(
            self,
            prompt_ids,
            max_new_tokens,
            temperature=temperature,
            top_k=top_k,
            top_p=top_p,
            stop_ids=stop_ids,
            seed=seed,
            use_cache=use_cache,
            allowed_ids=allowed_ids,
        )

    # -- parameter counts --------------------------------------------------------------

    def num_params(self, non_embedding: bool = False) -> int:
        """Number of parameters, a tied matrix counted once.

        ``non_embedding=True`` leaves out the token and learned position embeddings,
        the count scaling laws use (the lookup tables do almost no compute). When the
        embeddings are untied, the separate ``lm_head`` matrix is still counted.
        """
        counts = self.param_counts()
        return counts["non_embedding"] if non_embedding else counts["total"]

    def param_counts(self) -> dict[str, int]:
        """A breakdown of ``num_params``.

        Keys: ``total``; ``token_embedding`` (``vocab_size * n_embd``; when tied this
        matrix is also the output projection); ``position_embedding`` (learned table
        only, 0 otherwise); ``embedding`` (the two together); ``non_embedding``
        (``total - embedding``); ``lm_head`` (0 when tied); ``attention``,
        ``feedforward`` and ``norm`` summed over layers (``norm`` includes the
        embedding and final norms); ``tying_saves``, the ``vocab_size * n_embd``
        parameters that tying saves (or would save, for an untied model).

        ``total = embedding + lm_head + attention + feedforward + norm``.
        """
        c = self.config

        def count(module: nn.Module | None) -> int:
            return 0 if module is None else sum(p.numel() for p in module.parameters())

        total = sum(p.numel() for p in self.parameters())  # parameters() dedups a tied matrix
        token = self.tok_emb.weight.numel()
        position = count(self.pos_emb)
        norms = count(self.emb_norm) + count(self.final_norm)
        norms += sum(count(b.norm1) + count(b.norm2) for b in self.blocks)
        return {
            "total": total,
            "token_embedding": token,
            "position_embedding": position,
            "embedding": token + position,
            "non_embedding": total - token - position,
            "lm_head": 0 if c.tie_embeddings else self.lm_head.weight.numel(),
            "attention": sum(count(b.attn) for b in self.blocks),
            "feedforward": sum(count(b.ffn) for b in self.blocks),
            "norm": norms,
            "tying_saves": c.vocab_size * c.n_embd,
        }
