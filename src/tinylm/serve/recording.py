"""A decode engine seen through a window: the logits of each step it takes, kept.

The page colours each generated token by the probability the model gave it.
Generation (``tinylm.model.generate``) hands out only token ids; the numbers the
token was sampled from are the logits of the step that sampled it. Asking the
model again, over the whole window, would cost a second forward per token.
:class:`RecordingDecoder` has the interface generation needs (``config``,
``device``, ``new_kv_cache``, ``next_token_logits``, ``generate``) and passes each
call to the engine, keeping a copy of each step's logits, so the probability
costs nothing more than a softmax.

One recorder serves one request: the engine is shared by every request, the
recorder is not, so no request sees another's logits.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Any

import numpy as np
from torch import Tensor

from tinylm.inference.engine import DecodeEngine
from tinylm.inspect.next_token import softmax_with_temperature
from tinylm.model.generate import generate
from tinylm.model.kv_cache import KVCache


class RecordingDecoder:
    """``engine``, with the last-position logits of every step kept (see the module docstring)."""

    def __init__(self, engine: DecodeEngine) -> None:
        self.engine = engine
        self.config = engine.config
        self.device = engine.device
        self._rows: list[np.ndarray] = []

    def new_kv_cache(self, batch_size: int = 1, max_len: int | None = None) -> KVCache:
        return self.engine.new_kv_cache(batch_size, max_len)

    def next_token_logits(self, idx: Tensor, kv_cache: KVCache, **options: Any) -> Tensor:
        logits = self.engine.next_token_logits(idx, kv_cache, **options)
        self._rows.append(logits[-1].float().cpu().numpy())
        return logits

    def generate(
        self, prompt_ids: Sequence[int] | Tensor, max_new_tokens: int, **sampling: Any
    ) -> Iterator[int]:
        """``tinylm.model.generate.generate`` on this decoder (and so on the engine)."""
        return generate(self, prompt_ids, max_new_tokens, **sampling)

    def take(self) -> list[np.ndarray]:
        """The logits rows of the steps since the last call, oldest first."""
        rows, self._rows = self._rows, []
        return rows


def token_probability(logits: np.ndarray, token: int) -> float:
    """The probability of ``token`` under ``softmax(logits)``: temperature 1, nothing cut.

    How sure the model itself was of the token, whatever the sampling settings
    (a temperature, top-k or top-p change which token is drawn, not this number).
    """
    return float(softmax_with_temperature(logits, 1.0)[token])
