"""Masked cross-entropy against a hand computation; masked tokens get no gradient."""

from __future__ import annotations

import math

import pytest
import torch

from tinylm.errors import TinylmError
from tinylm.train.masked_loss import masked_cross_entropy

# A fixed batch: 2 rows, 3 positions, a vocabulary of 3.
LOGITS = [
    [[1.0, 0.0, 0.0], [0.0, 2.0, 0.0], [0.5, 0.5, 3.0]],
    [[0.0, 0.0, 0.0], [1.0, 2.0, 3.0], [-1.0, 0.0, 4.0]],
]
TARGETS = [[0, 2, 2], [1, 2, 0]]
MASK = [[False, True, True], [False, False, True]]


def test_the_loss_is_the_mean_over_counted_tokens_by_hand():
    loss = masked_cross_entropy(torch.tensor(LOGITS), torch.tensor(TARGETS), torch.tensor(MASK))
    # -log softmax(z)[t] = log(sum exp z) - z_t, for the three counted positions only
    nll_a = math.log(math.exp(0) + math.exp(2) + math.exp(0)) - 0.0  # row 0, position 1
    nll_b = math.log(2 * math.exp(0.5) + math.exp(3)) - 3.0  # row 0, position 2
    nll_c = math.log(math.exp(-1) + math.exp(0) + math.exp(4)) - (-1.0)  # row 1, position 2
    assert loss.item() == pytest.approx((nll_a + nll_b + nll_c) / 3, rel=1e-6)


def test_masked_positions_get_no_gradient_and_counted_ones_do():
    logits = torch.tensor(LOGITS, requires_grad=True)
    masked_cross_entropy(logits, torch.tensor(TARGETS), torch.tensor(MASK)).backward()
    mask = torch.tensor(MASK)
    assert torch.count_nonzero(logits.grad[~mask]) == 0
    assert (logits.grad[mask].abs().sum(-1) > 0).all()
    # and the counted gradient is softmax - one_hot over the number counted
    expected = torch.softmax(torch.tensor(LOGITS)[mask], -1)
    expected[torch.arange(3), torch.tensor(TARGETS)[mask]] -= 1
    torch.testing.assert_close(logits.grad[mask], expected / 3)


def test_an_all_false_mask_and_misshapen_inputs_are_one_line_errors():
    logits, targets = torch.tensor(LOGITS), torch.tensor(TARGETS)
    with pytest.raises(TinylmError, match="mask is all false"):
        masked_cross_entropy(logits, targets, torch.zeros(2, 3, dtype=torch.bool))
    with pytest.raises(TinylmError, match="do not line up"):
        masked_cross_entropy(logits, targets, torch.ones(2, 2, dtype=torch.bool))
