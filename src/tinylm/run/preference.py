"""Preference tuning (DPO) of a run: a new run whose model prefers the chosen replies.

``train_dpo("runs/chat", "prefs:builtin", "runs/chat-dpo", DPOSettings(steps=200))``
does what ``tinylm dpo`` does, in this order:

1. **Data.** The pairs are read and checked (:mod:`tinylm.chat.preferences`), a
   seeded ``held_out`` fraction is set aside, and each pair is rendered with the
   chat template; a pair longer than the context has its replies cut to fit
   (:func:`tinylm.chat.preferences.fit_pairs` says when one is dropped instead),
   and both are counted in the report.
2. **Models.** The policy is the base run's latest checkpoint. A base without
   the chat tokens (a pretrained model, not yet chat fine-tuned) gains them as
   chat fine-tuning does: the tokenizer gets ``<|system|>`` ... ``<|end|>`` and
   the model grows by mean-initialised rows (:mod:`tinylm.model.grow_vocab`).
   DPO works best after chat fine-tuning, but a base model is accepted so the
   whole path runs right after the quickstart. The reference is a frozen copy of
   the policy made after growing, so both start identical.
3. **Training.** AdamW (:func:`tinylm.train.optim.build_optimizer`) at a constant
   rate, ``batch_size`` pairs per step drawn without replacement (a new seeded
   order every pass over the pairs), gradients clipped to norm ``grad_clip``. Both
   models run without dropout: the rewards are log-ratios of the two, which must
   be exactly zero before the first step.
4. **Record.** ``metrics.jsonl`` gets ``dpo_loss``, ``reward_margin``,
   ``reward_accuracy`` and ``lr`` every step, and the held-out numbers
   (``heldout_dpo_loss``, ``heldout_reward_margin``, ``heldout_reward_accuracy``
   and ``heldout_preference_accuracy``) before the first step and after the last.
   The held-out reward accuracy is 0 before training by construction (every
   reward is 0, and a tie counts as wrong); the *preference accuracy* -- the
   fraction of pairs to which the policy itself gives the chosen reply the higher
   likelihood -- is the number to compare before and after.
5. **Checkpoint.** The last step is saved as a checkpoint in the out folder, with
   the grown tokenizer and ``chat_template.json``, so ``sample`` and everything
   else that reads a run treat it as a chat model. Weights only: resuming a
   preference run is not supported (start a new one from its checkpoint).
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from tinylm.chat.preferences import (
    FittedPairs,
    Preference,
    fit_pairs,
    preferences_from,
    render_pair,
    split_held_out,
)
from tinylm.chat.template import (
    ChatTemplate,
    Rendered,
    add_chat_tokens,
    load_chat_template,
    template_record,
)
from tinylm.check_values import is_number
from tinylm.checkpoint.manager import CheckpointManager
from tinylm.device import resolve_device
from tinylm.errors import TinylmError
from tinylm.inference.loading import load_model
from tinylm.model.grow_vocab import grow_vocab
from tinylm.progress import progress_bar
from tinylm.run import folder as rules
from tinylm.run.lock import lock_run_folder
from tinylm.tokenizers.base import Tokenizer
from tinylm.train.dpo import PairBatch, frozen_copy, pair_batch, pair_logprobs, reward_stats
from tinylm.train.metrics import MetricsLogger
from tinylm.train.optim import build_optimizer
from tinylm.train.trainer import check_writable

PathLike = str | os.PathLike


@dataclass(frozen=True)
class DPOSettings:
    """How a preference run trains; every field is checked when it is made.

    ``beta`` is DPO's β (see :mod:`tinylm.train.dpo`); ``held_out`` the fraction of
    pairs set aside to measure on; ``lr`` is small, as for any fine-tuning: the
    policy should move away from the reference, not forget what it knew.
    """

    steps: int = 100
    beta: float = 0.1
    lr: float = 1e-5
    batch_size: int = 8
    weight_decay: float = 0.0
    grad_clip: float = 1.0
    held_out: float = 0.1
    seed: int = 1337

    def __post_init__(self) -> None:
        for name in ("steps", "batch_size"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise TinylmError(f"{name} must be an integer of at least 1, got {value!r}")
        for name, low, words in _NUMBER_RULES:
            value = getattr(self, name)
            if not is_number(value) or value < low or (value == low and words == "above"):
                raise TinylmError(f"{name} must be a number {words} {low}, got {value!r}")
        if not self.held_out < 1:
            raise TinylmError(f"held_out must be below 1, got {self.held_out!r}")


#: (setting, bound, "above" or "of at least") for the numbers a preference run is given.
_NUMBER_RULES = (
    ("beta", 0, "above"),
    ("lr", 0, "above"),
    ("weight_decay", 0, "of at least"),
    ("grad_clip", 0, "of at least"),
    ("held_out", 0, "of at least"),
)


@dataclass
class DPOSummary:
    """What a preference run did: where it wrote, and the held-out numbers before and after."""

    out_dir: Path
    checkpoint: Path
    steps: int
    train_pairs: int
    held_out_pairs: int
    cut: int
    dropped: int
    grew_vocab: bool
    before: dict[str, float]
    after: dict[str, float]
    last: dict[str, float]


def train_dpo(
    base: PathLike,
    data: str | Sequence[Preference],
    out_dir: PathLike,
    settings: DPOSettings | None = None,
    *,
    device: str = "auto",
    progress: bool = True,
) -> DPOSummary:
    """Train a copy of ``base`` on preference pairs into the new run ``out_dir`` (steps above).

    ``data`` is a spec (``prefs:builtin``, ``prefs:hf:NAME``, a JSON-lines file) or
    the pairs themselves. ``out_dir`` must not hold a run already.
    """
    settings = settings or DPOSettings()
    out_dir = Path(out_dir)
    if rules.is_existing_run(out_dir):
        raise TinylmError(f"{out_dir} already holds a run; choose another out folder")
    pairs = preferences_from(data) if isinstance(data, str) else list(data)
    train_pairs, held_pairs = split_held_out(pairs, settings.held_out, settings.seed)
    target = resolve_device(device)
    policy, tokenizer, grew = chat_policy(base, target)
    template = ChatTemplate(tokenizer)
    block_size = policy.config.block_size
    train = fit_pairs(render_all(template, train_pairs), block_size)
    held = fit_pairs(render_all(template, held_pairs), block_size, allow_empty=True)
    check_writable(out_dir)
    lock = lock_run_folder(out_dir)
    try:
        return _train(
            policy, tokenizer, train, held, out_dir, settings, target, progress,
            record={"base": str(base), "data": data if isinstance(data, str) else "<pairs>"},
            grew=grew,
        )  # fmt: skip
    finally:
        lock.release()


def chat_policy(base: PathLike, device: torch.device) -> tuple[nn.Module, Tokenizer, bool]:
    """The model and tokenizer of ``base``, with the chat tokens (grown if it lacked them).

    Returns whether the vocabulary grew. A base that stores a chat template keeps
    its tokenizer as it is (the template checks it has the tokens).
    """
    model, tokenizer, meta = load_model(base, str(device), require_tokenizer=True)
    assert tokenizer is not None  # require_tokenizer
    if meta.chat_template_file is not None:
        load_chat_template(meta.chat_template_file, tokenizer)
        return model, tokenizer, False
    grown = add_chat_tokens(tokenizer)
    if grown.vocab_size > model.config.vocab_size:
        grow_vocab(model, grown.vocab_size)
    return model, grown, grown is not tokenizer


def render_all(
    template: ChatTemplate, pairs: Sequence[Preference]
) -> list[tuple[Rendered, Rendered]]:
    """Each pair's chosen and rejected renders (:func:`tinylm.chat.preferences.render_pair`)."""
    return [render_pair(template, pair) for pair in pairs]


def _batches(count: int, size: int, seed: int) -> Iterator[list[int]]:
    """Endless batches of pair indices: each pass a new seeded order, no pair twice per pass."""
    generator = torch.Generator().manual_seed(seed)
    size = min(size, count)
    while True:
        order = torch.randperm(count, generator=generator).tolist()
        for start in range(0, count - size + 1, size):
            yield order[start : start + size]


def _batch(pairs: list[tuple[Rendered, Rendered]], device: torch.device) -> PairBatch:
    chosen = [(c.ids, c.mask) for c, _ in pairs]
    rejected = [(r.ids, r.mask) for _, r in pairs]
    return pair_batch(chosen, rejected, device)


@torch.no_grad()
def evaluate_pairs(
    policy: nn.Module,
    reference: nn.Module,
    pairs: list[tuple[Rendered, Rendered]],
    beta: float,
    device: torch.device,
    batch_size: int = 8,
) -> dict[str, float]:
    """DPO loss, reward margin and accuracy, and preference accuracy over ``pairs``.

    Preference accuracy is the fraction of pairs whose chosen reply the *policy*
    finds more likely than the rejected one (summed log-probabilities), the
    reference aside: it means something before training too.
    """
    chosen, rejected, preferred, losses = [], [], [], []
    for start in range(0, len(pairs), batch_size):
        part = pairs[start : start + batch_size]
        logp = pair_logprobs(policy, reference, _batch(part, device))
        result = logp.loss(beta)
        losses.append(float(result.loss.detach()) * len(part))
        chosen.append(result.chosen_rewards)
        rejected.append(result.rejected_rewards)
        preferred.append(logp.policy_chosen > logp.policy_rejected)
    stats = reward_stats(torch.cat(chosen), torch.cat(rejected))
    return {
        "dpo_loss": sum(losses) / len(pairs),
        **stats,
        "preference_accuracy": float(torch.cat(preferred).double().mean()),
    }


def _train(
    policy: nn.Module,
    tokenizer: Tokenizer,
    train: FittedPairs,
    held: FittedPairs,
    out_dir: Path,
    settings: DPOSettings,
    device: torch.device,
    progress: bool,
    *,
    record: dict[str, Any],
    grew: bool,
) -> DPOSummary:
    torch.manual_seed(settings.seed)
    reference = frozen_copy(policy)
    policy.eval()  # no dropout: see the module docstring
    optimizer = build_optimizer(policy, "adamw", lr=settings.lr, weight_decay=settings.weight_decay)
    metrics = MetricsLogger(out_dir, tensorboard=False)
    metrics.truncate_after(-1)  # a start that failed before its checkpoint left stale lines
    before = after = {}
    if held.pairs:
        before = evaluate_pairs(policy, reference, held.pairs, settings.beta, device)
        metrics.log({"step": 0, **{f"heldout_{k}": v for k, v in before.items()}})
    batches = _batches(len(train.pairs), settings.batch_size, settings.seed)
    bar = progress_bar(progress, total=settings.steps, desc="dpo", unit="step")
    last: dict[str, float] = {}
    try:
        for step in range(1, settings.steps + 1):
            batch = _batch([train.pairs[i] for i in next(batches)], device)
            result = pair_logprobs(policy, reference, batch).loss(settings.beta)
            loss = float(result.loss.detach())
            if loss != loss:
                raise TinylmError(
                    f"the DPO loss became NaN at step {step}; lower lr or beta and start again"
                )
            optimizer.zero_grad(set_to_none=True)
            result.loss.backward()
            if settings.grad_clip > 0:
                torch.nn.utils.clip_grad_norm_(policy.parameters(), settings.grad_clip)
            optimizer.step()
            rewards = reward_stats(result.chosen_rewards, result.rejected_rewards)
            last = {"dpo_loss": loss, **rewards}
            metrics.log({"step": step, **last, "lr": settings.lr})
            bar.update(1)
            bar.set_postfix(loss=f"{loss:.4f}", acc=f"{last['reward_accuracy']:.2f}")
        if held.pairs:
            after = evaluate_pairs(policy, reference, held.pairs, settings.beta, device)
            metrics.log({"step": settings.steps, **{f"heldout_{k}": v for k, v in after.items()}})
    finally:
        bar.close()
        metrics.close()
    checkpoint = CheckpointManager(out_dir).save(
        settings.steps,
        policy,
        None,
        tokenizer=tokenizer,
        chat_template=template_record(),
        train_config={"dpo": asdict(settings), **record},
        metrics={**last, **{f"heldout_{k}": v for k, v in after.items()}},
    )
    return DPOSummary(
        out_dir=out_dir,
        checkpoint=checkpoint,
        steps=settings.steps,
        train_pairs=len(train.pairs),
        held_out_pairs=len(held.pairs),
        cut=train.cut + held.cut,
        dropped=train.dropped + held.dropped,
        grew_vocab=grew,
        before=before,
        after=after,
        last=last,
    )
