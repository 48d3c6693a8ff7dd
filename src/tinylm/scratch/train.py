"""Training and sampling on scalars: Adam, a learning-rate schedule, the loop, sampling.

**Adam** (Kingma & Ba, 2015) keeps, for every weight, a running mean of its
gradient ``m`` (momentum: steps keep their direction through noisy gradients)
and a running mean of its squared gradient ``v`` (its typical size). The step is
``lr * m_hat / (sqrt(v_hat) + eps)``, so every weight moves by about ``lr``
whatever the scale of its gradients. ``m`` and ``v`` start at zero, so after
``t`` steps their weights sum to ``1 - beta^t``, not 1; dividing by that (the
bias correction) removes the pull towards zero in the first steps. An optional
decoupled weight decay shrinks the weights directly (AdamW); the seed uses none.
The operations are those of ``tinylm.train.optim.AdamW``, in the same order.

**The loop** takes one document per step: ``[BOS] + tokens + [BOS]``, cut to
``block_size + 1`` tokens, so the model learns both where a document starts and
where it ends. Forward, backward, one Adam step at the scheduled rate, reset the
gradients, repeat. The default schedule is microgpt's linear decay to zero.

**Sampling** starts from BOS and feeds each drawn token back in, until BOS comes
out again (the document is over) or the context is full. Logits are divided by
the temperature before the softmax: below 1 sharpens the distribution, above 1
flattens it.
"""

from __future__ import annotations

import math
import random
from collections.abc import Callable, Sequence

from tinylm.scratch.model import MicroGPT, Vector, softmax
from tinylm.scratch.value import Value, no_cycle_collector


class Adam:
    """Adam with bias correction (and optional decoupled weight decay) over ``Value``s."""

    def __init__(
        self,
        params: Sequence[Value],
        betas: tuple[float, float] = (0.85, 0.99),
        eps: float = 1e-8,
        weight_decay: float = 0.0,
    ) -> None:
        self.params = list(params)
        self.betas, self.eps, self.weight_decay = betas, eps, weight_decay
        self.m = [0.0] * len(self.params)  # running mean of the gradient
        self.v = [0.0] * len(self.params)  # running mean of the squared gradient
        self.t = 0  # steps taken

    def step(self, lr: float) -> None:
        """Move every parameter along its gradient, then reset the gradients to zero."""
        beta1, beta2 = self.betas
        self.t += 1
        correction1 = 1 - beta1**self.t
        root_correction2 = math.sqrt(1 - beta2**self.t)
        for i, p in enumerate(self.params):
            g = p.grad
            if self.weight_decay:
                p.data *= 1 - lr * self.weight_decay
            self.m[i] = self.m[i] + (1 - beta1) * (g - self.m[i])
            self.v[i] = self.v[i] * beta2 + (1 - beta2) * g * g
            denominator = math.sqrt(self.v[i]) / root_correction2 + self.eps
            p.data -= lr / correction1 * self.m[i] / denominator
            p.grad = 0.0


def linear_decay(step: int, lr: float, steps: int) -> float:
    """microgpt's schedule: ``lr`` at step 0, falling in a straight line to 0 at ``steps``."""
    return lr * (1 - step / steps)


def document_tokens(document: Sequence[int], bos: int, block_size: int) -> list[int]:
    """``[BOS] + document + [BOS]``, at most ``block_size + 1`` tokens (inputs + targets)."""
    return ([bos, *document, bos])[: block_size + 1]


def train(
    model: MicroGPT,
    documents: Sequence[Sequence[int]],
    bos: int,
    steps: int,
    *,
    lr: float = 0.01,
    schedule: Callable[[int], float] | None = None,
    optimizer: Adam | None = None,
    start_step: int = 0,
    on_step: Callable[[int, float, float], None] | None = None,
) -> Adam:
    """Train ``model`` for steps ``start_step .. steps - 1``, document ``step % len``.

    ``documents`` are token ids without boundaries (the loop adds BOS).
    ``schedule(step)`` gives the learning rate (default: ``linear_decay`` from
    ``lr``). Pass the ``optimizer`` of an earlier call to continue a run.
    ``on_step(step, loss, lr)`` is called after each step, ``step`` counting
    from 1. Returns the optimizer, whose state a checkpoint needs.
    """
    if not documents:
        raise ValueError("no documents to train on")
    schedule = schedule or (lambda step: linear_decay(step, lr, steps))
    optimizer = optimizer or Adam(model.parameters())
    with no_cycle_collector():
        for step in range(start_step, steps):
            tokens = document_tokens(documents[step % len(documents)], bos, model.config.block_size)
            loss = model.loss(tokens)
            loss.backward()
            rate = schedule(step)
            optimizer.step(rate)
            if on_step is not None:
                on_step(step + 1, loss.data, rate)
    return optimizer


def mean_loss(model: MicroGPT, documents: Sequence[Sequence[int]], bos: int) -> float:
    """Mean per-token cross-entropy over ``documents`` (no training)."""
    nats, count, _, _ = loss_sums(model, documents, bos)
    return nats / count


def loss_sums(
    model: MicroGPT,
    documents: Sequence[Sequence[int]],
    bos: int,
    byte_counts: Sequence[int] | None = None,
) -> tuple[float, int, float, int]:
    """``(nats, tokens, text_nats, text_bytes)`` summed over ``documents`` (no training).

    ``byte_counts`` (a tokenizer's ``token_byte_counts``: UTF-8 bytes per id) gives
    the text side, for bits per byte: the loss of the targets that stand for text,
    and their bytes. A target of 0 bytes (BOS closing a document) adds to neither,
    as in :mod:`tinylm.inference.evaluation`. Without it both are 0.
    """
    nats, count, text_nats, text_bytes = 0.0, 0, 0.0, 0
    for document in documents:
        tokens = document_tokens(document, bos, model.config.block_size)
        for loss, target in zip(model.token_losses(tokens), tokens[1:], strict=True):
            nats += loss.data
            count += 1
            size = 0 if byte_counts is None else byte_counts[target]
            if size > 0:
                text_nats += loss.data
                text_bytes += size
    return nats, count, text_nats, text_bytes


def sample(
    model: MicroGPT, bos: int, temperature: float = 0.5, rng: random.Random | None = None
) -> list[int]:
    """Draw one document (token ids, without the BOS around it)."""
    if temperature <= 0:
        raise ValueError(f"temperature must be positive, got {temperature}")
    rng = rng or random.Random()
    n_layer = model.config.n_layer
    keys: list[list[Vector]] = [[] for _ in range(n_layer)]
    values: list[list[Vector]] = [[] for _ in range(n_layer)]
    token, out = bos, []
    for pos in range(model.config.block_size):
        logits = model.forward(token, pos, keys, values)
        probs = softmax([v * (1.0 / temperature) for v in logits])
        token = rng.choices(range(len(probs)), weights=[p.data for p in probs])[0]
        if token == bos:
            break
        out.append(token)
    return out
