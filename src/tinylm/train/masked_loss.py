"""Masked cross-entropy: the loss of chat fine-tuning, where only the replies count.

A rendered conversation (:mod:`tinylm.chat.template`) carries a mask that is true
on the tokens of the assistant's replies and their ``<|end|>``. The model should
learn to *write* those, not to predict the user's questions or the system prompt,
so the loss is the mean negative log-likelihood over the masked-in targets only::

    loss = sum_i mask_i * -log softmax(logits_i)[target_i]  /  sum_i mask_i

A masked-out position contributes nothing to the sum, so its logits get exactly
zero gradient. The mean is over counted tokens of the whole batch (not per
conversation first), so a long reply weighs more than a short one, as every
token of pretraining does.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from tinylm.errors import TinylmError


def masked_cross_entropy(logits: Tensor, targets: Tensor, mask: Tensor) -> Tensor:
    """The mean cross-entropy over positions where ``mask`` is true.

    ``logits`` is ``(B, T, V)``, ``targets`` and ``mask`` ``(B, T)``; computed in at
    least float32. A batch with no counted position is an error: its loss would be
    0/0, and a NaN would stop training far from the cause.
    """
    if targets.shape != logits.shape[:-1] or mask.shape != targets.shape:
        raise TinylmError(
            f"logits {tuple(logits.shape)}, targets {tuple(targets.shape)} and mask "
            f"{tuple(mask.shape)} do not line up; give one target and one mask entry per position"
        )
    mask = mask.to(torch.bool)
    counted = int(mask.sum())
    if counted == 0:
        raise TinylmError("no position of this batch counts in the loss (the mask is all false)")
    loss_dtype = torch.promote_types(logits.dtype, torch.float32)
    per_token = F.cross_entropy(
        logits.flatten(0, 1).to(loss_dtype), targets.flatten(), reduction="none"
    )
    return (per_token * mask.flatten()).sum() / counted
