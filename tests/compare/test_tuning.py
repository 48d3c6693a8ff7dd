"""Choosing a learning rate per configuration: the grid, the pick, the widening.

The sweep is walked here by hand against made-up loss curves (a parabola in
log(lr) whose minimum we place), so each test knows the right answer before
asking the code for it.
"""

from __future__ import annotations

import math

import pytest

from tinylm.compare.tuning import LrTuning, at_edge, chosen_lr, lr_grid, next_lr, pick_lr
from tinylm.errors import TinylmError


def sweep(loss_at, base: float, tuning: LrTuning) -> dict[float, float | None]:
    """Walk the sweep the way the executor does: the grid, then one rate beyond at a time."""
    grid = lr_grid(base, tuning)
    scores = {lr: loss_at(lr) for lr in grid}
    while (beyond := next_lr(scores, tuning, len(scores) - tuning.points)) is not None:
        scores[beyond] = loss_at(beyond)
    return scores


def parabola(best: float):
    return lambda lr: 2.0 + (math.log2(lr) - math.log2(best)) ** 2


def test_the_grid_is_log_spaced_and_centred_on_the_base_rate():
    assert lr_grid(0.003, LrTuning(points=3, factor=2)) == [0.0015, 0.003, 0.006]
    five = lr_grid(1e-3, LrTuning(points=5, factor=10))
    assert five == [1e-5, 1e-4, 1e-3, 1e-2, 1e-1]
    even = lr_grid(0.004, LrTuning(points=2, factor=4))  # no middle point: either side of it
    assert even == [0.002, 0.008]


def test_a_best_rate_in_the_middle_is_chosen_without_widening():
    tuning = LrTuning(points=3, factor=2, widen=3)
    scores = sweep(parabola(0.003), 0.003, tuning)
    assert sorted(scores) == [0.0015, 0.003, 0.006]  # nothing added
    assert pick_lr(scores) == 0.003 and not at_edge(scores)


def test_a_best_rate_at_the_top_edge_widens_upward_until_it_is_inside():
    # The true optimum is 4x the base: 0.012. The grid tops out at 0.006, so the sweep
    # adds 0.012 (best again, at the edge), then 0.024 (worse): the best is inside.
    tuning = LrTuning(points=3, factor=2, widen=5)
    scores = sweep(parabola(0.012), 0.003, tuning)
    assert sorted(scores) == [0.0015, 0.003, 0.006, 0.012, 0.024]
    assert chosen_lr(scores, "x") == 0.012 and not at_edge(scores)


def test_a_best_rate_at_the_bottom_edge_widens_downward():
    tuning = LrTuning(points=3, factor=2, widen=5)
    scores = sweep(parabola(0.00075), 0.003, tuning)
    assert sorted(scores) == [0.000375, 0.00075, 0.0015, 0.003, 0.006]
    assert pick_lr(scores) == 0.00075


def test_widening_stops_at_its_cap_and_says_the_best_is_at_the_edge():
    tuning = LrTuning(points=3, factor=2, widen=2)
    scores = sweep(parabola(1.0), 0.003, tuning)  # far above anything the cap reaches
    assert sorted(scores) == [0.0015, 0.003, 0.006, 0.012, 0.024]  # 3 + 2 rates
    assert pick_lr(scores) == 0.024 and at_edge(scores)
    assert next_lr(scores, tuning, extra=2) is None


def test_no_widening_when_the_cap_is_zero():
    scores = sweep(parabola(1.0), 0.003, LrTuning(points=3, factor=2, widen=0))
    assert len(scores) == 3


def test_a_tie_goes_to_the_smaller_rate():
    assert pick_lr({0.001: 2.5, 0.002: 2.0, 0.004: 2.0}) == 0.002
    assert pick_lr({0.004: 2.0, 0.002: 2.0, 0.001: 2.0}) == 0.001  # order of trying aside


@pytest.mark.parametrize("bad", [None, math.nan, math.inf])
def test_a_diverged_run_is_never_chosen(bad):
    # The diverged rate would "win" if nan/inf compared as small; it must be skipped.
    scores = {0.001: 2.3, 0.002: 2.1, 0.004: bad}
    assert pick_lr(scores) == 0.002
    # and a diverged top rate means the best is not at the edge: no widening upward
    assert next_lr(scores, LrTuning(widen=3), extra=0) is None


def test_when_every_rate_diverges_the_sweep_goes_lower_then_says_so():
    tuning = LrTuning(points=2, factor=2, widen=1)
    scores = {0.002: None, 0.004: math.nan}
    assert pick_lr(scores) is None
    assert next_lr(scores, tuning, extra=0) == 0.001
    scores[0.001] = None
    assert next_lr(scores, tuning, extra=1) is None
    with pytest.raises(TinylmError, match="every learning rate tried for act=relu diverged") as e:
        chosen_lr(scores, "act=relu")
    assert "0.001, 0.002, 0.004" in str(e.value) and "\n" not in str(e.value)


def test_a_factor_too_close_to_one_for_the_rounding_does_not_loop():
    tuning = LrTuning(points=2, factor=1.00001, widen=5)
    grid = lr_grid(0.003, tuning)
    scores = {lr: float(i) for i, lr in enumerate(grid)}  # the smallest is best
    assert next_lr(scores, tuning, extra=0) is None  # the next rate rounds onto a tried one


@pytest.mark.parametrize(
    ("kwargs", "needle"),
    [
        ({"points": 1}, "tune_points"),
        ({"points": True}, "tune_points"),
        ({"factor": 1.0}, "tune_factor"),
        ({"factor": math.nan}, "tune_factor"),
        ({"widen": -1}, "tune_widen"),
        ({"seed": -3}, "tune_seed"),
    ],
)
def test_a_bad_sweep_is_refused_in_one_line(kwargs, needle):
    with pytest.raises(TinylmError, match=needle) as e:
        LrTuning(**kwargs)
    assert "\n" not in str(e.value)
