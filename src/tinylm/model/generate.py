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
from typing import TYPE_CHECKING, Protocol

import torch
from torch import Tensor

from tinylm.check_values import check_seed, is_number
from tinylm.errors import TinylmError
from tinylm.model.config import ModelConfig
from tinylm.model.kv_cache import KVCache

if TYPE_CHECKING:
    from tinylm.model.gpt import GPT


class Decoder(Protocol):
    """What generation needs of a model: a ``GPT``, or a decode engine built from one.

    (``tinylm.inference.engine.DecodeEngine`` holds packed copies of a model's
    weights; it adds a ``device`` attribute, which a ``GPT`` reads from its head.)
    """

    config: ModelConfig

    def new_kv_cache(self, batch_size: int = 1, max_len: int | None = None) -> KVCache: ...

    def next_token_logits(
        self,
        idx: Tensor,
        kv_cache: KVCache | None = None,
        *,
        positions: Tensor | None = None,
        attn_mask: Tensor | None = None,
    ) -> Tensor: ...


def decoder_device(model: GPT | Decoder) -> torch.device:
    """Where the decoder's weights live (a ``GPT``'s head, or an engine's ``device``)."""
    device = getattr(model, "device", None)
    return device if isinstance(device, torch.device) else model.lm_head.weight.device


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
    banned: Tensor | None = None,
) -> int:
    """Pick one token id from the logits ``(vocab_size,)`` of the last position."""
    return int(sample_next_tokens(logits, temperature, top_k, top_p, generator, banned))


def sample_next_tokens(
    logits: Tensor,
    temperature: float = 1.0,
    top_k: int | None = None,
    top_p: float | None = None,
    generator: torch.Generator | None = None,
    banned: Tensor | None = None,
) -> Tensor:
    """One token id per row of ``logits`` (``(..., vocab_size)`` -> ``(...)``).

    ``banned``: a ``(vocab_size,)`` bool mask of ids never to pick, whatever their
    logits (ids the tokenizer does not define: the model may still rate them).
    """
    if torch.isnan(logits).any():  # multinomial would fail with an internal message
        raise TinylmError(
            "the model's output is NaN, so nothing can be sampled; its weights are damaged "
            "or diverged: use an earlier checkpoint"
        )
    if banned is not None:
        logits = logits.masked_fill(banned, float("-inf"))
    if temperature == 0:
        return torch.argmax(logits, dim=-1)
    logits = logits.float() / temperature
    if top_k is not None:
        logits = filter_top_k(logits, top_k)
    if top_p is not None and top_p < 1.0:
        logits = filter_top_p(logits, top_p)
    probs = torch.softmax(logits, dim=-1)
    flat = probs.reshape(-1, probs.shape[-1])
    return torch.multinomial(flat, num_samples=1, generator=generator).reshape(probs.shape[:-1])


def generate(
    model: GPT | Decoder,
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
    * ``allowed_ids``: only these ids are produced (``None``: any); a tokenizer's
      defined ids, so the gaps of its vocabulary never come out.

    The arguments are checked when ``generate`` is called; the model runs lazily,
    one step per ``next()``, in eval mode and without gradients (the model's
    train/eval mode is restored before each token is handed back).
    """
    tokens = _check_prompt(model, prompt_ids)
    _check_sampling(max_new_tokens, temperature, top_k, top_p, seed)
    stops = {int(s) for s in stop_ids}
    banned = _banned_mask(model, allowed_ids)
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
        generator = torch.Generator(device=decoder_device(model)).manual_seed(seed)
    return _generate_tokens(
        model,
        tokens,
        max_new_tokens,
        (temperature, top_k, top_p, banned),
        stops,
        generator,
        use_cache,
    )


# inference_mode rather than no_grad: besides recording no graph it skips the
# version counters and view bookkeeping of every intermediate tensor, a fixed cost
# per operation that a single-token step, made of hundreds of small ones, feels.
# Nothing made here is ever differentiated. torch applies it around each resumption
# of the generator.
@torch.inference_mode()
def _generate_tokens(
    model: GPT | Decoder,
    tokens: list[int],
    max_new_tokens: int,
    sampling: tuple[float, int | None, float | None, Tensor | None],
    stops: set[int],
    generator: torch.Generator | None,
    use_cache: bool,
) -> Iterator[int]:
    temperature, top_k, top_p, banned = sampling
    block_size = model.config.block_size
    device = decoder_device(model)
    cache = model.new_kv_cache(1, len(tokens) + max_new_tokens) if use_cache else None
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
        token = sample_next_token(logits, temperature, top_k, top_p, generator, banned)
        if token in stops:
            return
        tokens.append(token)
        yield token


def generate_batch(
    model: GPT | Decoder,
    prompts: Sequence[Sequence[int] | Tensor],
    max_new_tokens: int,
    temperature: float = 1.0,
    top_k: int | None = None,
    top_p: float | None = None,
    stop_ids: Iterable[int] | Sequence[Iterable[int]] = (),
    seed: int | None = None,
    allowed_ids: Iterable[int] | None = None,
) -> list[list[int]]:
    """Continue several prompts of different lengths at once; one list of new ids per prompt.

    The prompts are *left*-padded to a common length, so every row's newest token
    sits in the last column and one forward pass per step serves them all. Padding
    must change nothing, so each row gets its own positions (its first real token
    is position 0, as alone) and an attention mask that hides the pad columns from
    every real query. Each row therefore conditions on exactly the tokens it would
    alone, and greedy output equals ``generate`` row by row (up to float rounding
    in near-ties).

    * ``stop_ids``: ids that end a row (not included in its output), either one
      collection for every row or one collection per prompt. The batch stops when
      every row has stopped or after ``max_new_tokens`` steps.
    * The context window slides as in ``generate``: once the longest row outgrows
      ``block_size``, every step re-reads each row's last ``block_size`` tokens.
    * Sampling draws all rows from one generator seeded with ``seed``, so a row's
      sampled text differs from what ``generate`` draws alone (greedy does not).
    * ``allowed_ids``: only these ids are produced, as in ``generate``.
    """
    if isinstance(prompts, Tensor) or not prompts:
        raise TinylmError("prompts must be a non-empty list of token id sequences")
    rows = [_check_prompt(model, prompt) for prompt in prompts]
    _check_sampling(max_new_tokens, temperature, top_k, top_p, seed)
    stops = _stops_per_row(stop_ids, len(rows))
    banned = _banned_mask(model, allowed_ids)
    generator = None
    if seed is not None:
        generator = torch.Generator(device=decoder_device(model)).manual_seed(seed)
    with _eval_mode(model):
        return _generate_rows(
            model, rows, max_new_tokens, (temperature, top_k, top_p, banned), stops, generator
        )


def _stops_per_row(stop_ids: Iterable[int] | Sequence[Iterable[int]], n_rows: int) -> list[set]:
    """One set of stop ids per row, from a shared collection or one per row."""
    items = list(stop_ids)
    if items and all(isinstance(item, Iterable) for item in items):
        if len(items) != n_rows:
            raise TinylmError(
                f"stop_ids has {len(items)} collections for {n_rows} prompts; "
                "give one per prompt, or one flat collection for all"
            )
        return [{int(s) for s in item} for item in items]
    shared = {int(s) for s in items}
    return [set(shared) for _ in range(n_rows)]


@torch.inference_mode()  # as _generate_tokens
def _generate_rows(
    model: GPT | Decoder,
    rows: list[list[int]],
    max_new_tokens: int,
    sampling: tuple[float, int | None, float | None, Tensor | None],
    stops: list[set],
    generator: torch.Generator | None,
) -> list[list[int]]:
    temperature, top_k, top_p, banned = sampling
    block_size = model.config.block_size
    device = decoder_device(model)
    longest = max(len(row) for row in rows)
    cache = model.new_kv_cache(len(rows), longest + max_new_tokens)
    outputs: list[list[int]] = [[] for _ in rows]
    running = [True] * len(rows)
    valid = next_pos = None  # (B, cache length) real-token columns; (B,) next positions
    for _ in range(max_new_tokens):
        if valid is None or cache.length + 1 > block_size:  # (re)fill from the windows
            cache.reset()
            idx, valid = _left_pad([row[-block_size:] for row in rows], device)
            positions = (valid.cumsum(dim=1) - 1).clamp_min(0)
            mask = _padded_causal_mask(valid)
            next_pos = valid.sum(dim=1)
        else:  # one new token per row, at the end of the cache
            idx = torch.tensor([[row[-1]] for row in rows], dtype=torch.long, device=device)
            valid = torch.cat([valid, valid.new_ones(len(rows), 1)], dim=1)
            positions = next_pos[:, None]
            mask = valid[:, None, None, :]
            next_pos = next_pos + 1
        logits = model.next_token_logits(idx, cache, positions=positions, attn_mask=mask)
        tokens = sample_next_tokens(logits, temperature, top_k, top_p, generator, banned)
        tokens = tokens.tolist()
        for b, token in enumerate(tokens):
            rows[b].append(token)  # a stopped row keeps a column, its output is final
            if running[b]:
                if token in stops[b]:
                    running[b] = False
                else:
                    outputs[b].append(token)
        if not any(running):
            break
    return outputs


def _left_pad(windows: list[list[int]], device: torch.device) -> tuple[Tensor, Tensor]:
    """Token ids ``(B, W)`` right-aligned (pad id 0) and the mask of real columns."""
    width = max(len(w) for w in windows)
    idx = torch.zeros(len(windows), width, dtype=torch.long, device=device)
    valid = torch.zeros(len(windows), width, dtype=torch.bool, device=device)
    for b, window in enumerate(windows):
        idx[b, width - len(window) :] = torch.tensor(window, dtype=torch.long)
        valid[b, width - len(window) :] = True
    return idx, valid


def _padded_causal_mask(valid: Tensor) -> Tensor:
    """``(B, 1, W, W)``: causal, and no real query sees a pad key.

    A pad query would then see nothing at all, and a softmax over nothing is
    NaN, which the next layer's values would spread (0 * NaN is NaN); so each
    pad query sees itself. Nothing real ever reads a pad column.
    """
    width = valid.shape[1]
    causal = torch.ones(width, width, dtype=torch.bool, device=valid.device).tril()
    itself = torch.eye(width, dtype=torch.bool, device=valid.device)
    return (causal & (valid[:, None, :] | itself))[:, None]


@contextlib.contextmanager
def _eval_mode(model: GPT | Decoder) -> Iterator[None]:
    """Switch dropout off for one step, then put the model back as it was."""
    was_training = getattr(model, "training", False)  # a decode engine has no dropout
    if not was_training:  # the usual case: nothing to switch (and no walk over every module)
        yield
        return
    model.eval()
    try:
        yield
    finally:
        model.train(was_training)


def _check_prompt(model: GPT | Decoder, prompt_ids: Sequence[int] | Tensor) -> list[int]:
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


def _banned_mask(model: GPT | Decoder, allowed_ids: Iterable[int] | None) -> Tensor | None:
    """A ``(vocab_size,)`` bool mask of the ids outside ``allowed_ids`` (``None``: none are)."""
    if allowed_ids is None:
        return None
    vocab_size = model.config.vocab_size
    allowed = [i for i in {int(i) for i in allowed_ids} if 0 <= i < vocab_size]
    if not allowed:
        raise TinylmError("allowed_ids holds no id of this model; nothing could be sampled")
    if len(allowed) == vocab_size:
        return None
    mask = torch.ones(vocab_size, dtype=torch.bool, device=decoder_device(model))
    mask[allowed] = False
    return mask


def _check_sampling(
    max_new_tokens: int,
    temperature: float,
    top_k: int | None,
    top_p: float | None,
    seed: int | None = None,
) -> None:
    if isinstance(max_new_tokens, bool) or not isinstance(max_new_tokens, int):
        raise TinylmError(f"max_new_tokens must be an integer, got {max_new_tokens!r}")
    if max_new_tokens < 0:
        raise TinylmError(f"max_new_tokens must be >= 0, got {max_new_tokens}")
    if not is_number(temperature) or temperature < 0:  # nan and inf too: inf is uniform noise
        raise TinylmError(f"temperature must be >= 0 and finite (0 is greedy), got {temperature!r}")
    check_seed("seed", seed, allow_none=True)
    if top_k is not None and (isinstance(top_k, bool) or not isinstance(top_k, int) or top_k < 1):
        raise TinylmError(f"top_k must be a positive integer or None, got {top_k!r}")
    if top_p is not None and (not is_number(top_p) or not 0 < top_p <= 1):
        raise TinylmError(f"top_p must be in (0, 1] or None, got {top_p!r}")
