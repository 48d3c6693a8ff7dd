"""A decode engine: a trained ``GPT``'s weights copied once, in the layout decoding wants.

The model's own forward is the readable training path: ``nn.Linear`` layers,
parameters, autograd. Decoding wants other things: every layer's query, key and
value weights as one matrix (one product reads all three), widening matrices
stored column-major, and smaller number formats (``weight_formats``), since a
one-token step is bound by the bytes of weight it reads. ``DecodeEngine`` makes
those copies when it is built and computes with them alone, so the model's
parameters are never touched: a model can train, or be inspected, while an engine
built from it generates (the engine then keeps the weights it was built with).

The forward pass below is the model's (``tinylm.model``), written for inference:

1. token rows (+ the position table's rows, for learned and sinusoidal positions),
   then the embedding norm if the model has one;
2. per block, pre-norm ``x = x + attn(norm1(x)); x = x + ffn(norm2(x))`` or post-norm
   ``x = norm1(x + attn(x)); x = norm2(x + ffn(x))``; attention rotates queries and
   keys for RoPE, appends keys and values to the ``KVCache`` and lets each query
   head attend to its key/value head (MHA, GQA, MQA);
3. the final norm and the output head, at the last position only.

It has the interface generation needs (``config``, ``device``, ``new_kv_cache``,
``next_token_logits``), so ``tinylm.model.generate``'s ``generate`` and
``generate_batch`` run on it unchanged: same prompts checks, sampling, sliding
window and padding. At ``float32`` its greedy tokens equal the model's.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor

from tinylm.errors import SettingError
from tinylm.inference.weight_formats import (
    WEIGHT_FORMATS,
    Float32Linear,
    Int8Linear,
    PackedLinear,
    pack_linear,
)
from tinylm.model.attention import causal_mask, repeat_kv
from tinylm.model.config import ModelConfig
from tinylm.model.feedforward import FUSED_ACTIVATIONS
from tinylm.model.generate import generate, generate_batch
from tinylm.model.gpt import GPT
from tinylm.model.kv_cache import KVCache
from tinylm.model.rope import Rotary


@dataclass
class Norm:
    """A norm's kind and its float32 gain and bias (either may be absent)."""

    rms: bool
    eps: float
    gain: Tensor | None
    bias: Tensor | None

    def __call__(self, x: Tensor) -> Tensor:
        shape = x.shape[-1:]
        y = (
            F.rms_norm(x, shape, None, self.eps)
            if self.rms
            else F.layer_norm(x, shape, eps=self.eps)
        )
        if self.gain is not None:
            y = y * self.gain
        if self.bias is not None:
            y = y + self.bias
        return y


@dataclass
class Layer:
    """One block's weights: the two norms, Q/K/V as one matrix, W_O, the feed-forward."""

    norm1: Norm
    qkv: PackedLinear  # rows: W_q, then W_k, then W_v
    w_o: PackedLinear
    norm2: Norm
    up: PackedLinear  # FeedForward's w1, or SwiGLU's gate w and value v as one matrix
    down: PackedLinear  # w2


class DecodeEngine:
    """Prefill and one-token decoding over packed copies of a ``GPT``'s weights.

    ``weights`` is one of ``WEIGHT_FORMATS``: ``float32`` (equal greedy output to the
    model), ``bfloat16`` or ``int8`` (weight-only, per output channel). Norm gains,
    biases and position tables stay float32; so do activations and the KV cache.
    ``int8`` maps the model's state-dict names to ``(q, scale)`` already quantised
    (an int8 run's own, :mod:`tinylm.inference.quantized_run`): at ``weights="int8"``
    they are used as stored instead of quantising the model's (dequantised) weights.
    """

    def __init__(
        self,
        model: GPT,
        weights: str = "float32",
        *,
        int8: Mapping[str, tuple[Tensor, Tensor]] | None = None,
    ) -> None:
        if weights not in WEIGHT_FORMATS:
            raise SettingError(
                f"unknown weight format {weights!r}; choose one of {', '.join(WEIGHT_FORMATS)}",
                setting="weights",
            )
        self.config: ModelConfig = model.config
        self.weights = weights
        self.device = model.lm_head.weight.device
        c = self.config
        pack = _Packer(model, weights, int8 if weights == "int8" else None)
        with torch.no_grad():
            self.head = pack([model.lm_head.weight], None)
            tied = c.tie_embeddings
            self.token_table = None if tied else _table(model.tok_emb.weight, pack)
            self.position_table = _position_table(model)
            self.emb_norm = _norm(model.emb_norm, c)
            self.layers = [_pack_block(block, c, pack) for block in model.blocks]
            self.final_norm = _norm(model.final_norm, c)
        self.rotary = _rotary(c, self.device)
        self.activation = FUSED_ACTIVATIONS["silu" if c.activation == "swiglu" else c.activation]

    # -- what generation calls -----------------------------------------------------

    def new_kv_cache(self, batch_size: int = 1, max_len: int | None = None) -> KVCache:
        """An empty float32 cache with room for ``max_len`` tokens (at most ``block_size``)."""
        c = self.config
        length = c.block_size if max_len is None else max(1, min(max_len, c.block_size))
        return KVCache(
            c.n_layer, batch_size, c.kv_heads, length, c.head_dim, torch.float32, self.device
        )

    @torch.inference_mode()
    def next_token_logits(
        self,
        idx: Tensor,
        kv_cache: KVCache,
        *,
        positions: Tensor | None = None,
        attn_mask: Tensor | None = None,
    ) -> Tensor:
        """Logits ``(B, vocab_size)`` after the tokens ``idx`` ``(B, T)``, which continue the cache.

        As ``GPT.next_token_logits``: every row at ``kv_cache.length ..`` under the
        causal mask, or per-row ``positions`` ``(B, T)`` with an ``attn_mask``
        ``(B, 1, T, T_k)`` (True = may attend) for left-padded prompts.
        """
        x = self._hidden(idx, kv_cache, positions, attn_mask)
        return self.head(x[:, -1])

    @torch.inference_mode()
    def logits(self, idx: Tensor) -> Tensor:
        """Logits ``(B, T, vocab_size)`` at every position of ``idx`` (at most ``block_size``).

        The teacher-forced pass a loss needs, to compare formats on held-out text.
        """
        cache = self.new_kv_cache(idx.shape[0], idx.shape[1])
        return self.head(self._hidden(idx, cache, None, None))

    def _hidden(
        self, idx: Tensor, cache: KVCache, positions: Tensor | None, attn_mask: Tensor | None
    ) -> Tensor:
        """The final hidden states ``(B, T, n_embd)`` of ``idx``, which continue the cache."""
        T = idx.shape[1]
        if positions is None:
            positions = torch.arange(cache.length, cache.length + T, device=idx.device)
        x = self._embed(idx, positions)
        for i, layer in enumerate(self.layers):
            x = self._block(i, layer, x, positions, cache, attn_mask)
        cache.advance(T)
        return x if self.final_norm is None else self.final_norm(x)

    # -- the same contract as tinylm.model.generate ---------------------------------

    def generate(
        self, prompt_ids: Sequence[int] | Tensor, max_new_tokens: int, **sampling
    ) -> Iterator[int]:
        """Ids continuing ``prompt_ids``, one at a time (``tinylm.model.generate.generate``).

        ``sampling`` is that function's: temperature, top_k, top_p, stop_ids, seed,
        allowed_ids.
        """
        return generate(self, prompt_ids, max_new_tokens, **sampling)

    def generate_batch(
        self, prompts: Sequence[Sequence[int] | Tensor], max_new_tokens: int, **sampling
    ) -> list[list[int]]:
        """Several prompts at once (``tinylm.model.generate.generate_batch``)."""
        return generate_batch(self, prompts, max_new_tokens, **sampling)

    @property
    def nbytes(self) -> int:
        """Bytes of the packed weights (not the KV cache): what a step reads, about."""
        packed = [self.head, self.token_table, *(_layer_parts(layer) for layer in self.layers)]
        total = 0
        for part in packed:
            for linear in part if isinstance(part, list) else [part]:
                total += 0 if linear is None else linear.nbytes
        return total

    # -- the forward pass ----------------------------------------------------------

    def _embed(self, idx: Tensor, positions: Tensor) -> Tensor:
        table = self.head if self.token_table is None else self.token_table
        if isinstance(table, Int8Linear):
            x = table.rows(idx)
        else:
            x = F.embedding(idx, table.weight).float()
        if self.position_table is not None:
            x = x + self.position_table[positions]
        if self.emb_norm is not None:
            x = self.emb_norm(x)
        return x

    def _block(
        self,
        i: int,
        layer: Layer,
        x: Tensor,
        positions: Tensor,
        cache: KVCache,
        attn_mask: Tensor | None,
    ) -> Tensor:
        if self.config.norm_placement == "pre":
            x = x + self._attention(i, layer, layer.norm1(x), positions, cache, attn_mask)
            return x + self._feedforward(layer, layer.norm2(x))
        x = layer.norm1(x + self._attention(i, layer, x, positions, cache, attn_mask))
        return layer.norm2(x + self._feedforward(layer, x))

    def _attention(
        self,
        i: int,
        layer: Layer,
        x: Tensor,
        positions: Tensor,
        cache: KVCache,
        attn_mask: Tensor | None,
    ) -> Tensor:
        c = self.config
        B, T, _ = x.shape
        kv_width = c.kv_heads * c.head_dim
        q, k, v = layer.qkv(x).split((c.n_embd, kv_width, kv_width), dim=-1)
        q = q.view(B, T, c.n_head, c.head_dim).transpose(1, 2)  # (B, n_head, T, head_dim)
        k = k.view(B, T, c.kv_heads, c.head_dim).transpose(1, 2)  # (B, kv_heads, T, head_dim)
        v = v.view(B, T, c.kv_heads, c.head_dim).transpose(1, 2)
        if self.rotary is not None:
            q, k = self.rotary.rotate_pair(q, k, positions)
        k, v = cache.update(i, k, v)  # every key and value so far
        out = self._attend(q, k, v, attn_mask)
        return layer.w_o(out.transpose(1, 2).reshape(B, T, c.n_embd))

    def _attend(self, q: Tensor, k: Tensor, v: Tensor, attn_mask: Tensor | None) -> Tensor:
        """softmax(Q K^T / sqrt(d) + mask) V, each query head on its key/value head."""
        c = self.config
        B, _, q_len, head_dim = q.shape
        n_rep = c.n_head // c.kv_heads
        if q_len == 1 and n_rep > 1:  # one token: a group's query heads are rows of one head
            grouped = q.reshape(B, c.kv_heads, n_rep, head_dim)
            out = F.scaled_dot_product_attention(grouped, k, v, attn_mask=attn_mask)
            return out.reshape(B, c.n_head, 1, head_dim)
        k, v = repeat_kv(k, n_rep), repeat_kv(v, n_rep)
        k_len = k.shape[-2]
        if attn_mask is None and q_len == k_len:
            return F.scaled_dot_product_attention(q, k, v, is_causal=True)
        if attn_mask is None and q_len > 1:
            attn_mask = causal_mask(q_len, k_len, q.device)
        return F.scaled_dot_product_attention(q, k, v, attn_mask=attn_mask)

    def _feedforward(self, layer: Layer, x: Tensor) -> Tensor:
        h = layer.up(x)
        if self.config.activation == "swiglu":
            gate, value = h.chunk(2, dim=-1)
            return layer.down(self.activation(gate) * value)
        return layer.down(self.activation(h))


# -- packing a model -------------------------------------------------------------------


class _Packer:
    """Packs linear layers, their weights stacked by rows, in the engine's format.

    Given ``int8`` (state-dict name -> ``(q, scale)``), an int8 weight is the stored
    one, found by the parameter's name; otherwise it is quantised here.
    """

    def __init__(
        self, model: GPT, weights: str, int8: Mapping[str, tuple[Tensor, Tensor]] | None
    ) -> None:
        self.weights = weights
        self.int8 = int8
        self.names = {id(p): name for name, p in model.named_parameters(remove_duplicate=False)}

    def __call__(self, matrices: Sequence[Tensor], biases: Sequence[Tensor] | None) -> PackedLinear:
        bias = None if biases is None else torch.cat(list(biases))
        if self.int8 is None:
            return pack_linear(torch.cat(list(matrices)), bias, self.weights)
        pairs = [self.int8[self.names[id(m)]] for m in matrices]
        device = matrices[0].device
        q = torch.cat([p[0] for p in pairs]).to(device)
        scale = torch.cat([p[1] for p in pairs]).to(device)
        return Int8Linear.from_quantized(q, scale, bias)

    def linear(self, layer) -> PackedLinear:
        """One ``nn.Linear``'s weight and bias."""
        return self([layer.weight], None if layer.bias is None else [layer.bias])

    def stacked(self, layers: Sequence) -> PackedLinear:
        """Several ``nn.Linear`` layers with one input, as one matrix (rows in order)."""
        biases = None if layers[0].bias is None else [layer.bias for layer in layers]
        return self([layer.weight for layer in layers], biases)


def _pack_block(block, config: ModelConfig, pack: _Packer) -> Layer:
    attn, ffn = block.attn, block.ffn
    # SwiGLU: the gate's rows, then the value's, read by one product
    up_layers = (ffn.w, ffn.v) if config.activation == "swiglu" else (ffn.w1,)
    return Layer(
        norm1=_norm(block.norm1, config),
        qkv=pack.stacked((attn.w_q, attn.w_k, attn.w_v)),
        w_o=pack.linear(attn.w_o),
        norm2=_norm(block.norm2, config),
        up=pack.stacked(up_layers),
        down=pack.linear(ffn.w2),
    )


def _layer_parts(layer: Layer) -> list[PackedLinear]:
    return [layer.qkv, layer.w_o, layer.up, layer.down]


def _norm(module, config: ModelConfig) -> Norm | None:
    if module is None:
        return None
    bias = getattr(module, "bias", None)
    return Norm(
        rms=config.norm == "rmsnorm",
        eps=config.norm_eps,
        gain=None if module.weight is None else module.weight.detach().float().clone(),
        bias=None if bias is None else bias.detach().float().clone(),
    )


def _table(weight: Tensor, pack: _Packer) -> PackedLinear:
    """An untied token table in the engine's format (its rows are read, never multiplied)."""
    if pack.weights == "float32":
        return Float32Linear(weight, None, column_major=False)
    return pack([weight], None)


def _position_table(model: GPT) -> Tensor | None:
    """The additive position rows (learned or sinusoidal), float32; None for rope and none."""
    pos = model.pos_emb
    if pos is None:
        return None
    table = pos.weight if hasattr(pos, "weight") else pos.table
    return table.detach().float().clone()


def _rotary(config: ModelConfig, device: torch.device) -> Rotary | None:
    if config.position != "rope":
        return None
    return Rotary(config.block_size, config.head_dim, config.rope_theta).to(device)
