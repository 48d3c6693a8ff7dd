"""Measuring a model on held-out text: loss, perplexity and bits per byte.

The loss is the mean cross-entropy of the next token, in nats. Perplexity is
``exp(loss)``: the number of equally likely tokens the model is, on average, as
uncertain as. A model that knows nothing scores ``vocab_size``; a perfect one, 1.
Bits per byte (below) is the same loss per byte of text, comparable across tokenizers.

Two ways to measure:

* over a *fixed* set of random batches, the same at every evaluation of a run,
  so that the curve moves only because the model changed (the trainer's
  ``estimate_loss``, built on :func:`loss_sum`);
* :func:`evaluate`: every token of a split or a text once, in order (``tinylm
  eval``), for the number to report.
"""

from __future__ import annotations

import contextlib
import math
import os
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn
from torch.nn import functional as F

from tinylm.data.batches import check_long_enough, sequential_batches
from tinylm.data.corpus import corpus_from_specs, iter_documents
from tinylm.data.prepared import check_tokenizer, is_prepared_dir, load_prepared
from tinylm.errors import TinylmError
from tinylm.tokenizers.base import Tokenizer

SPLITS = ("val", "train")


def perplexity(loss: float) -> float:
    """``exp(loss)``, capped so that a diverged model reports inf rather than overflowing."""
    return math.exp(loss) if loss < 700 else math.inf


# -- bits per byte -------------------------------------------------------------------------
#
# Nats per token depend on what a token is: a char model predicts one character at a
# time, a BPE model a few. Bits per byte do not: the total cross-entropy, in bits,
# over the UTF-8 bytes of the text the scored tokens stand for. A target's bytes come
# from the tokenizer's table (``Tokenizer.token_byte_counts``). Special tokens (BOS,
# EOS, PAD) stand for no text: they count 0 bytes and, as in nanochat's ``val_bpb``,
# their loss is left out too, so bpb measures the text alone.


def token_byte_table(tokenizer: Tokenizer, device: torch.device | str = "cpu") -> Tensor:
    """The tokenizer's bytes per id as a tensor, built once per run or evaluation."""
    return torch.tensor(tokenizer.token_byte_counts(), dtype=torch.int64, device=device)


def text_sums(losses: Tensor, targets: Tensor, token_bytes: Tensor) -> tuple[Tensor, Tensor]:
    """Summed loss (nats) of the targets that stand for text, and their UTF-8 bytes.

    ``losses`` and ``targets`` have the same shape; targets of ``-100`` (not scored)
    and targets of 0 bytes (special tokens) add nothing to either sum.
    """
    scored = targets != -100
    nbytes = torch.where(scored, token_bytes[targets.clamp(min=0)], 0)
    return (losses * (nbytes > 0)).sum(), nbytes.sum()


def bits_per_byte(nats: float, num_bytes: int) -> float:
    """Summed cross-entropy in nats over ``num_bytes`` bytes of text, as bits per byte."""
    return nats / (math.log(2) * num_bytes) if num_bytes else math.nan


def token_bits_per_byte(losses: Tensor, targets: Tensor, token_bytes: Tensor) -> float:
    """Bits per byte of per-token ``losses`` (nats) at ``targets``: :func:`text_sums`, converted."""
    nats, nbytes = text_sums(losses, targets, token_bytes)
    return bits_per_byte(float(nats), int(nbytes))


# -- scoring batches -----------------------------------------------------------------------


@dataclass
class LossSums:
    """What a pass over batches adds up; sums, so parts scored apart add exactly."""

    nats: float = 0.0  # loss over every scored target
    tokens: int = 0
    text_nats: float = 0.0  # loss over the targets that stand for text (for bpb)
    bytes: int = 0

    @property
    def loss(self) -> float:
        return self.nats / self.tokens if self.tokens else math.nan

    @property
    def bpb(self) -> float:
        return bits_per_byte(self.text_nats, self.bytes)


def token_losses(model: nn.Module, x: Tensor, y: Tensor) -> Tensor:
    """Cross-entropy (nats) of each target in ``y`` given ``x``; ``-100`` targets get 0."""
    logits, _ = model(x)
    # At least float32: a log-softmax over a large vocabulary in bf16 is too coarse.
    logits = logits.to(torch.promote_types(logits.dtype, torch.float32))
    losses = F.cross_entropy(logits.flatten(0, 1), y.flatten(), reduction="none")
    return losses.view_as(y)


@torch.no_grad()
def loss_sum(
    model: nn.Module,
    batches: Iterable[tuple[Tensor, Tensor]],
    autocast: Callable[[], object] | None = None,
    token_bytes: Tensor | None = None,
) -> LossSums:
    """Summed next-token loss (nats) over ``batches``, the tokens scored, and with
    ``token_bytes`` (:func:`token_byte_table`) the sums bits per byte need.

    Sums rather than a mean, so that parts scored apart (data-parallel ranks,
    batches of different sizes) add up to the exact token-weighted mean.
    Targets of ``-100`` are not scored. The model is in eval mode meanwhile.
    """
    was_training = model.training
    model.eval()
    sums = LossSums()  # Python floats: exact enough, and MPS has no float64
    try:
        for x, y in batches:
            context = autocast() if autocast is not None else contextlib.nullcontext()
            with context:
                losses = token_losses(model, x, y)
            sums.nats += float(losses.sum())
            sums.tokens += int((y != -100).sum())
            if token_bytes is not None:
                nats, nbytes = text_sums(losses, y, token_bytes)
                sums.text_nats += float(nats)
                sums.bytes += int(nbytes)
    finally:
        model.train(was_training)
    return sums


def mean_loss(
    model: nn.Module,
    batches: Iterable[tuple[Tensor, Tensor]],
    autocast: Callable[[], object] | None = None,
) -> tuple[float, int]:
    """Token-weighted mean loss over ``batches`` and the number of tokens scored."""
    sums = loss_sum(model, batches, autocast)
    return sums.loss, sums.tokens


def full_pass_loss(
    model: nn.Module,
    batches: Iterable[tuple[Tensor, Tensor]],
    token_bytes: Tensor | None = None,
) -> dict[str, float | int]:
    """``{"loss", "perplexity", "tokens"}`` over every batch, and with ``token_bytes``
    ``"bpb"`` and ``"bytes"``."""
    sums = loss_sum(model, batches, token_bytes=token_bytes)
    result: dict[str, float | int] = {
        "loss": sums.loss,
        "perplexity": perplexity(sums.loss),
        "tokens": sums.tokens,
    }
    if token_bytes is not None:
        result.update(bpb=sums.bpb, bytes=sums.bytes)
    return result


# -- what to score -------------------------------------------------------------------------


@dataclass
class EvalTokens:
    """Token ids to score, and how to name them in a report."""

    tokens: Any  # a 1-D integer array (a memmap for a prepared split)
    description: str


def eval_tokens(
    tokenizer: Tokenizer,
    data: str | os.PathLike | Sequence[str | os.PathLike],
    split: str = "val",
    separator: str = "eot",
) -> EvalTokens:
    """A prepared folder's ``split``, or text (files, folders, globs, ``pydocs``) encoded now.

    Text is cut into documents by ``separator`` and each is encoded as training
    encodes it (with BOS/EOS), so the loss is comparable with the run's.
    """
    if split not in SPLITS:
        raise TinylmError(f"split must be one of {', '.join(SPLITS)}, got {split!r}")
    specs = [os.fspath(data)] if isinstance(data, (str, os.PathLike)) else list(map(str, data))
    if len(specs) == 1 and is_prepared_dir(specs[0]):
        prepared = load_prepared(specs[0])
        check_tokenizer(prepared, tokenizer)
        tokens = prepared.val if split == "val" else prepared.train
        return EvalTokens(tokens, f"{specs[0]} ({split})")
    ids: list[int] = []
    for document in iter_documents(corpus_from_specs(specs), separator):
        ids.extend(tokenizer.encode_document(document))
    return EvalTokens(np.asarray(ids, dtype=np.int64), " ".join(specs))


def evaluate(
    model: nn.Module,
    tokenizer: Tokenizer,
    data: str | os.PathLike | Sequence[str | os.PathLike],
    *,
    split: str = "val",
    batch_size: int = 16,
    max_batches: int | None = None,
    separator: str = "eot",
) -> dict[str, Any]:
    """Loss, perplexity and bits per byte of ``model`` over every window of ``data``, in order.

    Returns ``{"loss", "perplexity", "bpb", "tokens", "bytes", "data"}`` (``bytes``:
    the UTF-8 bytes of the scored text; ``data`` describes what was scored).
    ``max_batches`` stops early, for a quick estimate on a large split.
    """
    if batch_size < 1:
        raise TinylmError(f"batch_size must be at least 1, got {batch_size}")
    found = eval_tokens(tokenizer, data, split, separator)
    block_size = model.config.block_size
    check_long_enough(
        found.tokens, block_size, found.description, hint="give more text to evaluate on"
    )
    device = next(model.parameters()).device
    batches = sequential_batches(found.tokens, block_size, batch_size, device, max_batches)
    token_bytes = token_byte_table(tokenizer, device)
    return {**full_pass_loss(model, batches, token_bytes), "data": found.description}
