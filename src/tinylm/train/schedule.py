"""Learning-rate schedules: plain functions from the step number to a learning rate.

A schedule is just ``lr = f(step)``, evaluated once per optimiser step and written
into the optimiser's param groups (see ``tinylm.train.optim.scale_lr``). Keeping
it a pure function of ``step`` makes resuming exact: a restarted run asks for the
same step and gets the same rate, with no scheduler object to save.

Three shapes, each optionally preceded by a linear warm-up:

* ``constant``: ``max_lr`` throughout.
* ``linear``: straight line from ``max_lr`` down to ``min_lr`` (microgpt's
  ``lr * (1 - step / total)`` when ``min_lr = 0``).
* ``cosine``: half a cosine from ``max_lr`` to ``min_lr`` (GPT-2/3, nanoGPT),
  which stays near the peak for longer and flattens out gently at the end.

Why warm up: at step 0 Adam's second moment ``v`` is estimated from a handful of
gradients and the weights are random, so full-size steps can throw the model into
a bad region it never leaves. Ramping the rate up over the first few hundred steps
lets those statistics settle first.

Why decay: late in training the loss is limited by the noise of minibatch
gradients; a smaller step averages that noise away and the loss drops further.

Step counting: ``step`` starts at 0. During warm-up (``step < warmup_steps``) the
rate is ``max_lr * (step + 1) / warmup_steps``, so the first step already moves
(a rate of exactly 0 would waste it) and step ``warmup_steps - 1`` reaches
``max_lr``. In ``lr_at`` the decay then runs from ``warmup_steps`` to
``total_steps``, after which the rate stays at ``min_lr`` forever.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass

from tinylm.errors import TinylmError
from tinylm.fileio import atomic_open

SCHEDULES = ("constant", "linear", "cosine")


# -- the shapes ------------------------------------------------------------------------
#
# Each public function checks its arguments and calls the bare formula below it;
# ``Schedule`` checks once, when it is made, and then calls the bare formulas every
# step (a training loop asks for a rate per step, and need not re-check per step).


def constant(step: int, max_lr: float) -> float:
    """``max_lr`` at every step: the baseline the other schedules are compared with."""
    _check_step(step)
    return float(max_lr)


def linear_decay(step: int, max_lr: float, total_steps: int, min_lr: float = 0.0) -> float:
    """A straight line from ``max_lr`` at step 0 to ``min_lr`` at ``total_steps``.

    ``lr = min_lr + (max_lr - min_lr) * (1 - step / total_steps)``, then ``min_lr``
    from ``total_steps`` on. With ``min_lr = 0`` this is microgpt's
    ``lr * (1 - step / total)``: the last step of a run of ``total_steps`` steps
    still gets ``max_lr / total_steps``, not zero.
    """
    _check_step(step)
    _check_range(max_lr, min_lr)
    return _linear(step, max_lr, total_steps, min_lr)


def _linear(step: int, max_lr: float, total_steps: int, min_lr: float) -> float:
    if total_steps <= 0 or step >= total_steps:
        return float(min_lr)
    remaining = 1.0 - step / total_steps  # 1 at the start, 0 at the end
    return min_lr + (max_lr - min_lr) * remaining


def warmup(step: int, max_lr: float, warmup_steps: int) -> float:
    """The linear warm-up rate ``max_lr * (step + 1) / warmup_steps``, for ``step < warmup_steps``.

    Starts at ``max_lr / warmup_steps`` (close to 0) and reaches ``max_lr`` at step
    ``warmup_steps - 1``; from ``warmup_steps`` on it is ``max_lr``.
    """
    _check_step(step)
    return _warmup(step, max_lr, warmup_steps)


def _warmup(step: int, max_lr: float, warmup_steps: int) -> float:
    if step >= warmup_steps:
        return float(max_lr)
    return max_lr * (step + 1) / warmup_steps


def cosine_schedule(
    step: int, max_lr: float, min_lr: float, warmup_steps: int, cosine_steps: int
) -> float:
    """Linear warm-up to ``max_lr``, half a cosine down to ``min_lr``, then ``min_lr``.

    After the ``warmup_steps`` of warm-up, with ``t = step - warmup_steps``::

        lr = min_lr + (max_lr - min_lr) * (1 + cos(pi * t / cosine_steps)) / 2

    which is ``max_lr`` at ``t = 0`` and ``min_lr`` at ``t = cosine_steps``. The
    cosine's slope is zero at both ends, so the rate leaves the peak gently and
    settles gently onto the floor.
    """
    _check_step(step)
    _check_range(max_lr, min_lr)
    _check_count("warmup_steps", warmup_steps)
    _check_count("cosine_steps", cosine_steps)
    return _cosine(step, max_lr, min_lr, warmup_steps, cosine_steps)


def _cosine(step: int, max_lr: float, min_lr: float, warmup_steps: int, cosine_steps: int) -> float:
    if step < warmup_steps:
        return _warmup(step, max_lr, warmup_steps)
    t = step - warmup_steps
    if t >= cosine_steps:
        return float(min_lr)
    cosine = 0.5 * (1.0 + math.cos(math.pi * t / cosine_steps))  # 1 -> 0
    return min_lr + (max_lr - min_lr) * cosine


# -- one entry point for the trainer and the CLI ----------------------------------------


@dataclass(frozen=True)
class Schedule:
    """A named schedule with its numbers, checked once; ``schedule(step)`` is the rate.

    ``warmup_steps`` of linear warm-up come first, whatever the schedule; the
    ``linear`` and ``cosine`` decays then run from step ``warmup_steps`` to step
    ``total_steps`` (so they last ``total_steps - warmup_steps`` steps) and hold
    ``min_lr`` afterwards. ``constant`` ignores ``min_lr`` and ``total_steps``.
    """

    name: str
    max_lr: float
    min_lr: float = 0.0
    warmup_steps: int = 0
    total_steps: int = 1

    def __post_init__(self) -> None:
        if self.name not in SCHEDULES:
            raise TinylmError(
                f"unknown learning-rate schedule {self.name!r}; "
                f"choose one of {', '.join(SCHEDULES)}"
            )
        _check_range(self.max_lr, self.min_lr)
        _check_count("warmup_steps", self.warmup_steps)
        _check_count("total_steps", self.total_steps)
        if self.name != "constant" and self.warmup_steps > self.total_steps:
            raise TinylmError(
                f"warmup_steps ({self.warmup_steps}) exceeds total_steps ({self.total_steps}); "
                "shorten the warm-up or train for longer"
            )

    def __call__(self, step: int) -> float:
        """The rate at ``step`` (0 or more); no checks here, they ran when it was made."""
        if step < self.warmup_steps:
            return _warmup(step, self.max_lr, self.warmup_steps)
        if self.name == "constant":
            return float(self.max_lr)
        decay_steps = self.total_steps - self.warmup_steps
        if self.name == "linear":
            return _linear(step - self.warmup_steps, self.max_lr, decay_steps, self.min_lr)
        return _cosine(step, self.max_lr, self.min_lr, self.warmup_steps, decay_steps)


def lr_at(
    step: int,
    schedule: str,
    max_lr: float,
    min_lr: float = 0.0,
    warmup_steps: int = 0,
    total_steps: int = 1,
) -> float:
    """The learning rate at ``step`` for the named ``schedule`` (one of ``SCHEDULES``).

    A one-off question, checked in full; a training loop makes one ``Schedule``
    and calls it every step instead. See ``Schedule`` for the shape.
    """
    rate = Schedule(schedule, max_lr, min_lr, warmup_steps, total_steps)
    _check_step(step)
    return rate(step)


# -- a picture of the three -------------------------------------------------------------


def plot_schedules(
    path: str | os.PathLike,
    total_steps: int = 1000,
    max_lr: float = 6e-4,
    min_lr: float = 6e-5,
    warmup_steps: int = 100,
) -> None:
    """Draw every schedule in ``SCHEDULES`` on one figure and save it as a PNG at ``path``.

    matplotlib is imported here, not at the top of the module, so that importing
    the schedules (which the trainer does on every run) stays cheap. The file is
    written atomically: an interrupted run never leaves a truncated image.
    """
    import matplotlib

    matplotlib.use("Agg")  # no display needed: we only write a file
    import matplotlib.pyplot as plt

    steps = range(total_steps + total_steps // 10)  # a little past the end: the floor
    fig, ax = plt.subplots(figsize=(8, 4.5), dpi=100)
    for name in SCHEDULES:
        rates = [lr_at(s, name, max_lr, min_lr, warmup_steps, total_steps) for s in steps]
        ax.plot(list(steps), rates, label=name, linewidth=2)
    ax.axvline(warmup_steps, color="grey", linestyle=":", linewidth=1)
    ax.axvline(total_steps, color="grey", linestyle=":", linewidth=1)
    ax.set_xlabel("step")
    ax.set_ylabel("learning rate")
    ax.set_title(
        f"Learning-rate schedules (warm-up {warmup_steps}, total {total_steps}, "
        f"max {max_lr:g}, min {min_lr:g})"
    )
    ax.legend()
    ax.grid(alpha=0.3)
    fig.tight_layout()
    with atomic_open(path, "wb") as handle:
        fig.savefig(handle, format="png")
    plt.close(fig)


# -- argument checks --------------------------------------------------------------------


def _check_step(step: int) -> None:
    if step < 0:
        raise TinylmError(f"step must be 0 or more, got {step}; steps count from 0")


def _check_count(name: str, value: int) -> None:
    if value < 0:
        raise TinylmError(f"{name} must be 0 or more, got {value}")


def _check_range(max_lr: float, min_lr: float) -> None:
    if min_lr < 0 or max_lr < 0:
        raise TinylmError(f"learning rates must be 0 or more, got max {max_lr}, min {min_lr}")
    if min_lr > max_lr:
        raise TinylmError(
            f"min_lr ({min_lr}) is larger than max_lr ({max_lr}); "
            "the floor must not exceed the peak"
        )
