"""Validation during training: loss and bits per byte on fixed batches, summed across processes.

The measuring itself is :mod:`tinylm.inference.evaluation`'s; what training adds
is data parallelism. Each rank scores its own slice of the fixed global batches,
and the sums are added up, so every rank reports the same value.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor, nn

from tinylm.inference.evaluation import LossSums, loss_sum, perplexity
from tinylm.train.distributed import DistInfo, all_reduce_sum


def estimate_loss(
    model: nn.Module,
    batches: list[tuple[Tensor, Tensor]],
    autocast: Callable[[], object] | None = None,
    dist: DistInfo | None = None,
    token_bytes: Tensor | None = None,
) -> dict[str, float]:
    """``{"val_loss", "val_ppl"}`` over a fixed list of batches (all ranks together),
    and ``"val_bpb"`` when given the tokenizer's ``token_bytes`` table."""
    dist = dist or DistInfo()
    sums = loss_sum(model, batches, autocast, token_bytes)
    if dist.enabled:
        device = next(model.parameters()).device
        fields = [sums.nats, sums.tokens, sums.text_nats, sums.bytes]
        added = all_reduce_sum(torch.tensor(fields, dtype=torch.float64, device=device), dist)
        nats, tokens, text_nats, nbytes = added.tolist()
        sums = LossSums(nats, int(tokens), text_nats, int(nbytes))
    metrics = {"val_loss": sums.loss, "val_ppl": perplexity(sums.loss)}
    if token_bytes is not None:
        metrics["val_bpb"] = sums.bpb
    return metrics
