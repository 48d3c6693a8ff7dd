"""The DPO loss: the hand formula, the reply log-likelihood, and a reference that never moves."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from tinylm.errors import TinylmError
from tinylm.model import GPT, ModelConfig
from tinylm.train.dpo import (
    dpo_loss,
    frozen_copy,
    pair_batch,
    pair_logprobs,
    reply_logprobs,
    reward_stats,
    sequence_logprobs,
)
from tinylm.train.optim import build_optimizer


def hand_loss(pc: float, pr: float, rc: float, rr: float, beta: float) -> float:
    """-log sigmoid(beta * ((pc - rc) - (pr - rr))), written with math alone."""
    z = beta * ((pc - rc) - (pr - rr))
    return math.log(1.0 + math.exp(-z))


def test_the_loss_is_the_hand_formula_from_the_four_log_likelihoods():
    policy_c = [-12.5, -3.0, -40.0]
    policy_r = [-14.0, -2.0, -41.5]
    ref_c = [-13.0, -3.5, -39.0]
    ref_r = [-13.0, -2.25, -43.0]
    beta = 0.3
    out = dpo_loss(
        *(torch.tensor(v, dtype=torch.float64) for v in (policy_c, policy_r, ref_c, ref_r)), beta
    )
    expected = [
        hand_loss(*four, beta) for four in zip(policy_c, policy_r, ref_c, ref_r, strict=True)
    ]
    assert out.loss.item() == pytest.approx(sum(expected) / 3, rel=1e-12)
    # rewards: beta * (policy - reference), per pair
    assert out.chosen_rewards.tolist() == pytest.approx([0.3 * 0.5, 0.3 * 0.5, 0.3 * -1.0])
    assert out.rejected_rewards.tolist() == pytest.approx([0.3 * -1.0, 0.3 * 0.25, 0.3 * 1.5])
    stats = reward_stats(out.chosen_rewards, out.rejected_rewards)
    assert stats["reward_margin"] == pytest.approx(0.3 * (1.5 + 0.25 - 2.5) / 3)
    assert stats["reward_accuracy"] == pytest.approx(2 / 3)


def test_equal_models_give_log_two_and_no_reward_and_a_tie_is_not_accuracy():
    same = torch.tensor([-5.0, -7.0])
    out = dpo_loss(same, same - 1, same, same - 1, beta=0.1)
    assert out.loss.item() == pytest.approx(math.log(2))
    assert reward_stats(out.chosen_rewards, out.rejected_rewards) == {
        "reward_margin": 0.0,
        "reward_accuracy": 0.0,
    }


def test_large_margins_stay_finite_and_beta_must_be_positive():
    big = dpo_loss(
        torch.tensor([0.0]), torch.tensor([-1e4]), torch.tensor([0.0]), torch.tensor([0.0]), 1.0
    )
    assert big.loss.item() == 0.0
    wrong = dpo_loss(
        torch.tensor([-1e4]), torch.tensor([0.0]), torch.tensor([0.0]), torch.tensor([0.0]), 1.0
    )
    assert wrong.loss.item() == pytest.approx(1e4)
    with pytest.raises(TinylmError, match="beta must be above 0"):
        dpo_loss(torch.zeros(1), torch.zeros(1), torch.zeros(1), torch.zeros(1), 0.0)


def test_reply_logprobs_is_the_masked_sum_of_each_targets_log_probability():
    torch.manual_seed(3)
    logits = torch.randn(2, 5, 7, dtype=torch.float64)
    targets = torch.randint(0, 7, (2, 5))
    mask = torch.tensor([[0, 1, 1, 0, 1], [1, 1, 1, 1, 0]], dtype=torch.bool)
    got = reply_logprobs(logits, targets, mask)
    for b in range(2):  # written out: logit of the target minus log-sum-exp of the row
        total = 0.0
        for t in range(5):
            if mask[b, t]:
                row = logits[b, t].tolist()
                total += row[targets[b, t]] - math.log(sum(math.exp(x) for x in row))
        assert got[b].item() == pytest.approx(total, rel=1e-12)
    with pytest.raises(TinylmError, match="do not line up"):
        reply_logprobs(logits, targets[:, :4], mask[:, :4])


@pytest.fixture
def model():
    torch.manual_seed(0)
    config = ModelConfig(vocab_size=13, block_size=16, n_layer=2, n_embd=16, n_head=4, dropout=0.0)
    return GPT(config).eval()


def rows():
    chosen = [([1, 2, 3, 4, 5], [False, False, True, True, True]), ([1, 6, 7], [False, True, True])]
    rejected = [
        ([1, 2, 3, 8], [False, False, True, True]),
        ([1, 6, 9, 10, 11, 12], [False] + [True] * 5),
    ]
    return chosen, rejected


def test_a_pair_batch_pads_and_masks_and_the_model_agrees_with_log_softmax_picks(model):
    chosen, rejected = rows()
    batch = pair_batch(chosen, rejected)
    assert batch.pairs == 2 and batch.inputs.shape == (4, 5)
    assert batch.inputs[1].tolist() == [1, 6, 0, 0, 0] and batch.targets[1].tolist() == [
        6,
        7,
        0,
        0,
        0,
    ]
    assert batch.mask[1].tolist() == [True, True, False, False, False]
    got = sequence_logprobs(model, batch.inputs, batch.targets, batch.mask)
    for row, (ids, counted) in enumerate([*chosen, *rejected]):
        # each row alone, unpadded, through torch's log_softmax and an index per position
        logits = model(torch.tensor([ids[:-1]]))[0][0]
        logp = torch.log_softmax(logits.double(), dim=-1)
        expected = sum(logp[t, ids[t + 1]].item() for t in range(len(ids) - 1) if counted[t + 1])
        assert got[row].item() == pytest.approx(expected, abs=1e-5)
    # and the model's own masked cross-entropy: the mean of the same picks, negated
    targets = batch.targets.masked_fill(~batch.mask, -100)
    _, mean_nll = model(batch.inputs, targets)
    assert mean_nll.item() == pytest.approx(-got.sum().item() / batch.mask.sum().item(), rel=1e-5)


def test_the_reference_gets_no_gradient_and_stays_unchanged_while_the_policy_learns(model):
    reference = frozen_copy(model)
    before = {k: v.clone() for k, v in reference.state_dict().items()}
    batch = pair_batch(*rows())
    optimizer = build_optimizer(model, "adamw", lr=1e-2, weight_decay=0.0)
    assert all(not p.requires_grad for p in reference.parameters())
    first = pair_logprobs(model, reference, batch).loss(0.5)
    assert first.loss.item() == pytest.approx(math.log(2), abs=1e-6)  # equal models at start
    losses = []
    for _ in range(5):
        logp = pair_logprobs(model, reference, batch)
        assert not logp.reference_chosen.requires_grad and logp.policy_chosen.requires_grad
        out = logp.loss(0.5)
        optimizer.zero_grad()
        out.loss.backward()
        assert all(p.grad is None for p in reference.parameters())
        optimizer.step()
        losses.append(out.loss.item())
    assert losses[-1] < losses[0] - 0.05
    assert all(torch.equal(before[k], v) for k, v in reference.state_dict().items())
    assert not torch.equal(model.lm_head.weight, reference.lm_head.weight)
    final = pair_logprobs(model, reference, batch).loss(0.5)
    assert reward_stats(final.chosen_rewards, final.rejected_rewards)["reward_accuracy"] == 1.0


def test_pair_batch_refuses_unmatched_halves():
    chosen, rejected = rows()
    with pytest.raises(TinylmError, match="one rejected reply per chosen one"):
        pair_batch(chosen, rejected[:1])
    with pytest.raises(TinylmError, match="one rejected reply per chosen one"):
        pair_batch([], [])


def test_dpo_loss_matches_torch_logsigmoid_of_the_margin_elementwise():
    """A second reference: F.binary_cross_entropy_with_logits(z, 1) is -log sigmoid(z)."""
    torch.manual_seed(1)
    four = [torch.randn(6, dtype=torch.float64) * 10 for _ in range(4)]
    z = 0.2 * ((four[0] - four[2]) - (four[1] - four[3]))
    expected = F.binary_cross_entropy_with_logits(z, torch.ones_like(z))
    assert dpo_loss(*four, 0.2).loss.item() == pytest.approx(expected.item(), rel=1e-12)
