"""Direct Preference Optimization: learn from pairs of replies, one preferred to the other.

Rafailov et al. (2023) showed that the RLHF objective -- maximise a reward while
staying close (in KL) to a reference model -- has a closed-form optimum, in which
the reward is a log-ratio of the two models. Training on preference pairs then
needs no reward model and no sampling: only the likelihoods of the two replies
under the model being trained (the *policy* π) and under a frozen copy of where
it started (the *reference*).

For one pair, with ``logπ(y|x)`` the summed log-probability of a reply's tokens
(:func:`reply_logprobs`; the prompt's tokens are context, not counted):

* the **implicit reward** of reply ``y`` is ``r(y) = β · (logπ(y|x) − logπ_ref(y|x))``:
  how much more likely the policy makes the reply than the reference did, in nats,
  scaled by β. It is zero for every reply before the first step.
* the **loss** is ``−log σ(r(chosen) − r(rejected))``: the negative log-probability,
  under a Bradley-Terry model, that the chosen reply is preferred. It is
  ``log 2`` at the start and falls as the policy raises the chosen reply's
  likelihood relative to the rejected one's, each measured against the reference.

**β** is the strength of the tie to the reference (the KL penalty's inverse
temperature). A small β (0.1, the paper's usual value) lets the log-ratios grow
large before the loss saturates, so the policy may move far from the reference; a
large β saturates the sigmoid after a small move, keeping the policy close. β does
not change which reply is preferred, only how far the policy is pushed.

Two numbers tell how training goes (:func:`reward_stats`): the **reward margin**,
the mean of ``r(chosen) − r(rejected)`` (in nats times β), and the **reward
accuracy**, the fraction of pairs whose chosen reply has the larger reward
(strictly: a tie, as at step 0, counts as wrong).
"""

from __future__ import annotations

import copy
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from tinylm.errors import TinylmError


def reply_logprobs(logits: Tensor, targets: Tensor, mask: Tensor) -> Tensor:
    """Per row, the summed log-probability of the targets where ``mask`` is true: ``(B,)``.

    ``logits`` is ``(B, T, V)``, ``targets`` and ``mask`` ``(B, T)``. A *sum*, not a
    mean: the likelihood of the whole reply, so a reply's length is part of what it
    costs (the DPO paper's definition). Computed in at least float32.
    """
    if targets.shape != logits.shape[:-1] or mask.shape != targets.shape:
        raise TinylmError(
            f"logits {tuple(logits.shape)}, targets {tuple(targets.shape)} and mask "
            f"{tuple(mask.shape)} do not line up; give one target and one mask entry per position"
        )
    dtype = torch.promote_types(logits.dtype, torch.float32)
    logp = F.log_softmax(logits.to(dtype), dim=-1)
    picked = logp.gather(-1, targets.unsqueeze(-1)).squeeze(-1)
    return (picked * mask.to(dtype)).sum(dim=-1)


def sequence_logprobs(model: nn.Module, inputs: Tensor, targets: Tensor, mask: Tensor) -> Tensor:
    """:func:`reply_logprobs` of ``model``'s logits for ``inputs``: ``(B,)``."""
    logits, _ = model(inputs)
    return reply_logprobs(logits, targets, mask)


@dataclass(frozen=True)
class DPOLoss:
    """The loss of a batch of pairs and each pair's implicit rewards (``(B,)``, detached)."""

    loss: Tensor
    chosen_rewards: Tensor
    rejected_rewards: Tensor


def dpo_loss(
    policy_chosen: Tensor,
    policy_rejected: Tensor,
    reference_chosen: Tensor,
    reference_rejected: Tensor,
    beta: float,
) -> DPOLoss:
    """The mean DPO loss from the four ``(B,)`` log-likelihoods (formula in the module docstring).

    ``log σ`` is torch's ``logsigmoid``, exact for large margins of either sign
    where ``log(sigmoid(x))`` would underflow to ``-inf``.
    """
    if not beta > 0:
        raise TinylmError(f"beta must be above 0, got {beta!r}")
    chosen = beta * (policy_chosen - reference_chosen)
    rejected = beta * (policy_rejected - reference_rejected)
    loss = -F.logsigmoid(chosen - rejected).mean()
    return DPOLoss(loss, chosen.detach(), rejected.detach())


def reward_stats(chosen_rewards: Tensor, rejected_rewards: Tensor) -> dict[str, float]:
    """``reward_margin``: mean chosen − rejected reward; ``reward_accuracy``: chosen > rejected."""
    margin = chosen_rewards - rejected_rewards
    return {
        "reward_margin": float(margin.mean()),
        "reward_accuracy": float((margin > 0).to(torch.float64).mean()),
    }


@dataclass(frozen=True)
class PairBatch:
    """Pairs as model inputs: rows ``0..B-1`` the chosen replies, ``B..2B-1`` the rejected.

    Both halves go through the model in one forward pass. Rows are padded on the
    right; padding is masked out, so it counts in neither likelihood.
    """

    inputs: Tensor
    targets: Tensor
    mask: Tensor

    @property
    def pairs(self) -> int:
        return self.inputs.shape[0] // 2


def pair_batch(
    chosen: list[tuple[list[int], list[bool]]],
    rejected: list[tuple[list[int], list[bool]]],
    device: torch.device | str = "cpu",
) -> PairBatch:
    """Rendered ``(ids, mask)`` rows as a batch: inputs ``ids[:-1]``, targets ``ids[1:]``."""
    if len(chosen) != len(rejected) or not chosen:
        raise TinylmError("a pair batch needs one rejected reply per chosen one, and at least one")
    rows = [*chosen, *rejected]
    width = max(len(ids) for ids, _ in rows) - 1
    inputs = torch.zeros(len(rows), width, dtype=torch.long)
    targets = torch.zeros(len(rows), width, dtype=torch.long)
    mask = torch.zeros(len(rows), width, dtype=torch.bool)
    for row, (ids, counted) in enumerate(rows):
        n = len(ids) - 1
        inputs[row, :n] = torch.tensor(ids[:-1])
        targets[row, :n] = torch.tensor(ids[1:])
        mask[row, :n] = torch.tensor(counted[1:])
    return PairBatch(inputs.to(device), targets.to(device), mask.to(device))


@dataclass(frozen=True)
class PairLogprobs:
    """The four ``(B,)`` log-likelihoods of a batch of pairs; the reference's without gradient."""

    policy_chosen: Tensor
    policy_rejected: Tensor
    reference_chosen: Tensor
    reference_rejected: Tensor

    def loss(self, beta: float) -> DPOLoss:
        return dpo_loss(
            self.policy_chosen,
            self.policy_rejected,
            self.reference_chosen,
            self.reference_rejected,
            beta,
        )


def pair_logprobs(policy: nn.Module, reference: nn.Module, batch: PairBatch) -> PairLogprobs:
    """Both replies' log-likelihoods under both models (only the policy's with gradients)."""
    policy_logp = sequence_logprobs(policy, batch.inputs, batch.targets, batch.mask)
    with torch.no_grad():
        reference_logp = sequence_logprobs(reference, batch.inputs, batch.targets, batch.mask)
    b = batch.pairs
    return PairLogprobs(policy_logp[:b], policy_logp[b:], reference_logp[:b], reference_logp[b:])


def frozen_copy(model: nn.Module) -> nn.Module:
    """A copy of ``model`` that no optimiser can move: no gradients, eval mode.

    DPO's rewards are measured against where the policy started, so the
    reference must stay exactly that model for the whole run.
    """
    reference = copy.deepcopy(model).eval()
    for parameter in reference.parameters():
        parameter.requires_grad_(False)
    return reference
