"""A learning rate for each configuration: a small sweep, widened at its edge.

An ablation at one fixed learning rate measures which variant suits that rate,
not which variant is better: SwiGLU or a warm-up may want a different LR than
the baseline. So each configuration gets its own best LR first:

1. a log-spaced *grid* around the base LR (the preset's, or the one the overrides or
   the config file gives): ``points`` rates, each ``factor`` times the last,
   centred on the base (3 points, factor 2: ``lr/2, lr, 2·lr``);
2. one short run per rate, all with one *tuning seed*, scored by final
   validation loss (a diverged run has no score and is never chosen);
3. while the best rate sits at an edge of what was tried, one more rate beyond
   that edge (``factor`` further), at most ``widen`` times: a best at the edge
   means the optimum may lie outside;
4. the lowest score wins; a tie goes to the smaller rate (the safer one).

Then the comparison's seeds run at the chosen rate. The cost, per configuration,
is ``points`` (+ up to ``widen``) tuning runs and then the seeds, so a comparison
of C configurations and S seeds makes at least ``C × points + C × S`` runs.

Within one configuration every rate trains the same tokenizer on the same
validation tokens, so bits per byte is the validation loss times one constant:
it would pick the same rate. Bits per byte matters between configurations with
different tokenizers, where the table (:mod:`~tinylm.compare.results`) uses it.

Everything here is pure: rates in, rates out; :mod:`~tinylm.compare.execute` runs them.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass

from tinylm.check_values import MAX_SEED
from tinylm.errors import SettingError, TinylmError

SIGNIFICANT_DIGITS = 4  # rates are rounded to this, so folder names and tables read cleanly


@dataclass(frozen=True)
class LrTuning:
    """How to sweep: grid ``points``, the ``factor`` between rates, the most extra points
    (``widen``) per configuration, and the ``seed`` every tuning run uses."""

    points: int = 3
    factor: float = 2.0
    widen: int = 2
    seed: int = 0

    def __post_init__(self) -> None:
        if isinstance(self.points, bool) or not isinstance(self.points, int) or self.points < 2:
            raise SettingError(
                f"tune_points must be a whole number >= 2, got {self.points!r}",
                setting="tune_points",
            )
        if not (isinstance(self.factor, (int, float)) and math.isfinite(self.factor)) or not (
            self.factor > 1
        ):
            raise SettingError(
                f"tune_factor must be a number above 1, got {self.factor!r}", setting="tune_factor"
            )
        if isinstance(self.widen, bool) or not isinstance(self.widen, int) or self.widen < 0:
            raise SettingError(
                f"tune_widen must be a whole number >= 0, got {self.widen!r}", setting="tune_widen"
            )
        if (
            isinstance(self.seed, bool)
            or not isinstance(self.seed, int)
            or not 0 <= self.seed <= MAX_SEED
        ):
            raise SettingError(
                f"tune_seed must be an integer from 0 to 2**64 - 1, got {self.seed!r}",
                setting="tune_seed",
            )

    def to_dict(self) -> dict[str, float | int]:
        return {
            "points": self.points,
            "factor": self.factor,
            "widen": self.widen,
            "seed": self.seed,
        }


def rounded(lr: float) -> float:
    """``lr`` to :data:`SIGNIFICANT_DIGITS` significant digits (0.0030000000000000005 → 0.003)."""
    return float(f"{lr:.{SIGNIFICANT_DIGITS}g}")


def lr_grid(base: float, tuning: LrTuning) -> list[float]:
    """The starting rates, smallest first, log-spaced and centred on ``base``."""
    middle = (tuning.points - 1) / 2
    rates = {rounded(base * tuning.factor ** (i - middle)) for i in range(tuning.points)}
    return sorted(rates)  # a set: a factor near 1 may round two rates onto one


def pick_lr(scores: Mapping[float, float | None]) -> float | None:
    """The rate with the lowest finite score (a tie: the smaller rate); None if none has one.

    A score of None, NaN or infinity is a run that diverged: never chosen.
    """
    finite = [(score, lr) for lr, score in scores.items() if _is_finite(score)]
    return min(finite)[1] if finite else None


def next_lr(scores: Mapping[float, float | None], tuning: LrTuning, extra: int) -> float | None:
    """The rate to try next, or None when the sweep is done.

    ``extra`` is how many rates were already added beyond the grid. While the best
    rate is the largest (or smallest) tried, the next is one ``factor`` beyond it;
    when every rate diverged, one below the smallest. At most ``tuning.widen`` extra.
    """
    if extra >= tuning.widen or not scores:
        return None
    best = pick_lr(scores)
    lowest, highest = min(scores), max(scores)
    if best is None or best == lowest:
        beyond = rounded(lowest / tuning.factor)
    elif best == highest:
        beyond = rounded(highest * tuning.factor)
    else:
        return None
    return None if beyond in scores else beyond  # a factor too close to 1 for the rounding


def at_edge(scores: Mapping[float, float | None]) -> bool:
    """Whether the chosen rate is the smallest or largest tried: the optimum may lie beyond."""
    best = pick_lr(scores)
    return best is not None and best in (min(scores), max(scores))


def chosen_lr(scores: Mapping[float, float | None], label: str) -> float:
    """The rate a configuration runs its seeds at, or one line saying none trained."""
    best = pick_lr(scores)
    if best is None:
        tried = ", ".join(f"{lr:g}" for lr in sorted(scores))
        raise TinylmError(
            f"every learning rate tried for {label} diverged ({tried}); "
            "set a lower lr, or allow more widening"
        )
    return best


def _is_finite(score: float | None) -> bool:
    return score is not None and math.isfinite(score)
