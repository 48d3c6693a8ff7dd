"""Stand-ins for ``tinylm.inspect``'s views until that package lands on main.

Same names and signatures as ``tinylm.inspect.loaded.LoadedModel``,
``next_token.next_token_distribution`` / ``softmax_with_temperature`` and
``attention.attention_maps``, cut to what the server reads; the server imports
them from one place so the switch is one import line, and this file goes.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from tinylm.errors import TinylmError
from tinylm.inspect.tokens import token_pieces
from tinylm.tokenizers.base import Tokenizer


@dataclass
class LoadedModel:
    model: Any
    tokenizer: Tokenizer
    name: str = "model"
    step: int | None = None
    run_dir: Path | None = None

    def __post_init__(self) -> None:
        self.model.eval()

    @property
    def config(self) -> Any:
        return self.model.config

    def encode(self, text: str) -> list[int]:
        if not isinstance(text, str) or not text:
            raise TinylmError("the text is empty; give some text for the model to read")
        bos = self.tokenizer.bos_id
        ids = ([] if bos is None else [bos]) + self.tokenizer.encode(text)
        if len(ids) > self.config.block_size:
            raise TinylmError(
                f"the text is {len(ids)} tokens, more than the model's block_size of "
                f"{self.config.block_size}; shorten it"
            )
        return ids

    def as_batch(self, ids: list[int]) -> torch.Tensor:
        device = next(self.model.parameters()).device
        return torch.tensor([ids], dtype=torch.long, device=device)

    def pieces(self, ids: Any) -> list[str]:
        return token_pieces(self.tokenizer, np.asarray(ids, dtype=np.int64).tolist())


@dataclass(frozen=True)
class NextTokenDistribution:
    prompt_ids: list[int]
    temperature: float
    ids: np.ndarray
    pieces: list[str]
    probs: np.ndarray
    probs_t1: np.ndarray


def softmax_with_temperature(logits: np.ndarray, temperature: float) -> np.ndarray:
    logits = np.asarray(logits, dtype=np.float64)
    if temperature == 0:
        out = np.zeros_like(logits)
        np.put_along_axis(out, logits.argmax(axis=-1)[..., None], 1.0, axis=-1)
        return out
    scaled = logits / temperature
    scaled -= scaled.max(axis=-1, keepdims=True)
    weights = np.exp(scaled)
    return weights / weights.sum(axis=-1, keepdims=True)


def next_token_distribution(
    loaded: LoadedModel, text: str, k: int = 10, temperature: float = 1.0
) -> NextTokenDistribution:
    ids = loaded.encode(text)
    with torch.no_grad():
        logits = loaded.model.next_token_logits(loaded.as_batch(ids))[0]
    logits = logits.float().cpu().numpy()
    top = np.argsort(-logits, kind="stable")[: min(k, logits.size)]
    full = softmax_with_temperature(logits, temperature)
    t1 = softmax_with_temperature(logits, 1.0)
    return NextTokenDistribution(ids, temperature, top, loaded.pieces(top), full[top], t1[top])


@dataclass(frozen=True)
class AttentionMaps:
    text: str
    ids: list[int]
    pieces: list[str]
    layers: list[int]
    heads: list[int]
    weights: np.ndarray


def attention_maps(
    loaded: LoadedModel, text: str, layer: int | None = None, head: int | None = None
) -> AttentionMaps:
    ids = loaded.encode(text)
    with torch.no_grad():
        per_layer = loaded.model.attention_maps(loaded.as_batch(ids))
    layers = list(range(len(per_layer)))
    heads = list(range(loaded.config.n_head))
    weights = np.stack([per_layer[n][0, heads].float().cpu().numpy() for n in layers])
    return AttentionMaps(text, ids, loaded.pieces(ids), layers, heads, weights)
