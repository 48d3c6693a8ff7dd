"""Autoregressive generation: predict a token, append it, repeat.

Each step turns the logits at the last position into a probability distribution
and picks the next token from it:

* ``temperature`` divides the logits before the softmax: below 1 sharpens the
  distribution (safer, more repetitive), above 1 flattens it. 0 means greedy:
  always the most likely token.
* ``top_k`` keeps only the ``k`` most likely tokens.
* ``top_p`` (nucleus sampling, Holtzman et al., 2019) keeps the smallest set of
  most likely tokens whose probabilities add up to at least ``p``.

The context window. The model sees at most ``block_size`` tokens, so the context
of each step is the last ``block_size`` tokens of prompt + output (a sliding
window), for learned, sinusoidal, rope and no positions alike. With the KV cache,
each new token costs one single-token forward while the window is filling. Once
prompt + output exceed ``block_size``, the window start moves every step; the
cached keys were computed for the old window (learned positions restart at 0, and
deeper layers' keys depend on every token they attended to), so they cannot be
reused exactly. The cache is then cleared and the new window re-prefilled, each
step, which costs the same as not caching. Both paths therefore condition on
exactly the same tokens and give the same greedy output.
"""

from __future__ import annotations

import contextlib
import warnings
from collections.abc import Iterable, Iterator, Sequence
from typing import TYPE_CHECKING

import torch
from torch import Tensor

from tinylm.errors import TinylmError

if TYPE_CHECKING:
    from tinylm.model.gpt import GPT


def filter_top_k(logits: Tensor, k: int) -> Tensor:
    """Set every logit below the ``k``-th largest to -inf (ties at the cut survive)."""
    k = min(k, logits.shape[-1])
    kth_largest = torch.topk(logits, k, dim=-1).values[..., -1:]
    return logits.masked_fill(logits < kth_largest, float("-inf"))


def filter_top_p(logits: Tensor, p: float) -> Tensor:
    """Keep the fewest most-likely tokens whose probability sums to at least ``p``.

    A token is dropped when the tokens ranked above it already reach ``p``; the
    most likely token therefore always survives.
    """
    sorted_logits, order = torch.sort(logits, dim=-1, descending=True)
    sorted_probs = torch.softmax(sorted_logits, dim=-1)
    mass_above = sorted_probs.cumsum(dim=-1) - sorted_probs
    drop_sorted = mass_above >= p
    drop = drop_sorted.scatter(-1, order, drop_sorted)  # back to vocabulary order
    return logits.masked_fill(drop, float("-inf"))


def sample_next_token(
    logits: Tensor,
    temperature: float = 1.0,
    top_k: int | None = None,
    top_p: float | None = None,
    generator: torch.Generator | None = None,
) -> int:
    """Pick one token id from the logits ``(vocab_size,)`` of the last position."""
    if temperature == 0:
        return int(torch.argmax(logits))
    logits = logits.float() / temperature
    if top_k is not None:
        logits = filter_top_k(logits, top_k)
    if top_p is not None and top_p < 1.0:
        logits = filter_top_p(logits, top_p)
    probs = torch.softmax(logits, dim=-1)
    return int(torch.multinomial(probs, num_samples=1, generator=generator))


def generate(
    model: GPT,
    prompt_ids: Sequence[int] | Tensor,
    max_new_tokens: int,
    temperature: float = 1.0,
    top_k: int | None = None,
    top_p: float | None = None,
    stop_ids: Iterable[int] = (),
    seed: int | None = None,
    use_cache: bool = True,
) -> Iterator[int]:
    """An iterator over up to ``max_new_tokens`` new token ids, yielded as produced.

    * ``prompt_ids``: a non-empty 1-D sequence (list or tensor) of token ids. A
      prompt longer than ``block_size`` is cropped to its last ``block_size``
      tokens, with a warning.
    * ``temperature`` >= 0 (0 is greedy), ``top_k`` >= 1, ``0 < top_p <= 1``.
    * ``stop_ids``: generation ends when one of these is produced; the stop token
      itself is not yielded.
    * ``seed``: sampling draws from a private ``torch.Generator`` seeded with it,
      so output is reproducible and the global RNG is left untouched. With None
      it draws from torch's global RNG (so ``torch.manual_seed`` applies).
    * ``use_cache``: keep a KV cache (see the module docstring for the window).

    The arguments are checked when ``generate`` is called; the model runs lazily,
    one step per ``next()``, in eval mode and without gradients (the model's
    train/eval mode is restored before each token is handed back).
    """
    tokens = _check_prompt(model, prompt_ids)
    _check_sampling(max_new_tokens, temperature, top_k, top_p)
    stops = {int(s) for s in stop_ids}
    block_size = model.config.block_size
    if len(tokens) > block_size:
        warnings.warn(
            f"prompt has {len(tokens)} tokens but the context window (block_size) is "
            f"{block_size}; only the last {block_size} are used",
            stacklevel=3,
        )
        tokens = tokens[-block_size:]
    generator = None
    if seed is not None:
        generator = torch.Generator(device=model.lm_head.weight.device).manual_seed(seed)
    return _generate_tokens(
        model, tokens, max_new_tokens, temperature, top_k, top_p, stops, generator, use_cache
    )


@torch.no_grad()  # torch applies this around each resumption of the generator
def _generate_tokens(
    model: GPT,
    tokens: list[int],
    max_new_tokens: int,
    temperature: float,
    top_k: int | None,
    top_p: float | None,
    stops: set[int],
    generator: torch.Generator | None,
    use_cache: bool,
) -> Iterator[int]:
    block_size = model.config.block_size
    device = model.lm_head.weight.device
    cache = model.new_kv_cache(batch_size=1) if use_cache else None
    cache_start = 0  # position in ``tokens`` of the cache's first entry
    for _ in range(max_new_tokens):
        start = max(0, len(tokens) - block_size)  # the sliding context window
        with _eval_mode(model):
            if cache is None:
                new = tokens[start:]
            else:
                if start != cache_start:  # window moved: cached keys are stale
                    cache.reset()
                    cache_start = start
                new = tokens[start + cache.length :]  # only what the cache lacks
            idx = torch.tensor([new], dtype=torch.long, device=device)
            logits = model.next_token_logits(idx, cache)[0]
        token = sample_next_token(logits, temperature, top_k, top_p, generator)
        if token in stops:
            return
        tokens.append(token)
        yield token


@contextlib.contextmanager
def _eval_mode(model: GPT) -> Iterator[None]:
    """Switch dropout off for one step, then put the model back as it was."""
    was_training = model.training
    model.eval()
    try:
        yield
    finally:
        model.train(was_training)


def _check_prompt(model: GPT, prompt_ids: Sequence[int] | Tensor) -> list[int]:
    if isinstance(prompt_ids, Tensor):
        if prompt_ids.dim() != 1:
            raise TinylmError(
                f"prompt_ids must be 1-D (one sequence), got shape {tuple(prompt_ids.shape)}"
            )
        tokens = [int(t) for t in prompt_ids.tolist()]
    else:
        tokens = [int(t) for t in prompt_ids]
    if not tokens:
        raise TinylmError("prompt_ids is empty; start from at least one token (e.g. BOS)")
    vocab_size = model.config.vocab_size
    for t in tokens:
        if not 0 <= t < vocab_size:
            raise TinylmError(
                f"prompt token id {t} is outside the vocabulary [0, {vocab_size}); "
                "check the tokenizer matches the model"
            )
    return tokens


def _check_sampling(
    max_new_tokens: int, temperature: float, top_k: int | None, top_p: float | None
) -> None:
    if isinstance(max_new_tokens, bool) or not isinstance(max_new_tokens, int):
        raise TinylmError(f"max_new_tokens must be an integer, got {max_new_tokens!r}")
    if max_new_tokens < 0:
        raise TinylmError(f"max_new_tokens must be >= 0, got {max_new_tokens}")
    if not isinstance(temperature, (int, float)) or temperature < 0:
        raise TinylmError(f"temperature must be >= 0 (0 is greedy), got {temperature!r}")
    if top_k is not None and (isinstance(top_k, bool) or not isinstance(top_k, int) or top_k < 1):
        raise TinylmError(f"top_k must be a positive integer or None, got {top_k!r}")
    if top_p is not None and (not isinstance(top_p, (int, float)) or not 0 < top_p <= 1):
        raise TinylmError(f"top_p must be in (0, 1] or None, got {top_p!r}")
