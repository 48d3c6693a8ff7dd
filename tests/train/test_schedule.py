"""Learning-rate schedules: endpoints, warm-up, continuity, floor, agreement with torch."""

from __future__ import annotations

import math
import subprocess
import sys
from itertools import pairwise

import pytest
import torch

from tinylm.errors import TinylmError
from tinylm.train.schedule import (
    SCHEDULES,
    Schedule,
    constant,
    cosine_schedule,
    linear_decay,
    lr_at,
    plot_schedules,
)

MAX, MIN = 1e-3, 1e-4


def torch_lrs(make_scheduler, n: int, base_lr: float = MAX) -> list[float]:
    """The learning rates a torch scheduler produces for steps 0 .. n-1."""
    opt = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=base_lr)
    scheduler = make_scheduler(opt)
    rates = []
    for _ in range(n):
        rates.append(opt.param_groups[0]["lr"])
        opt.step()
        scheduler.step()
    return rates


def is_non_increasing(values) -> bool:
    return all(b <= a + 1e-15 for a, b in pairwise(values))


def test_constant():
    assert [constant(s, MAX) for s in (0, 10, 10**6)] == [MAX] * 3
    assert lr_at(500, "constant", MAX, total_steps=100) == MAX


def test_linear_decay_is_microgpts_formula_and_matches_linear_lr():
    total = 50
    ours = [linear_decay(s, MAX, total) for s in range(total)]
    assert ours == pytest.approx([MAX * (1 - s / total) for s in range(total)], rel=1e-12)
    ref = torch_lrs(
        lambda o: torch.optim.lr_scheduler.LinearLR(o, 1.0, 0.0, total_iters=total), total
    )
    assert ours == pytest.approx(ref, rel=1e-9, abs=1e-15)


def test_linear_decay_endpoints_floor_and_monotone():
    total = 40
    rates = [linear_decay(s, MAX, total, MIN) for s in range(total + 20)]
    assert rates[0] == MAX
    assert rates[total] == MIN and set(rates[total:]) == {MIN}
    assert is_non_increasing(rates)


def test_cosine_warmup_values():
    warm = 10
    for s in range(warm):
        assert cosine_schedule(s, MAX, MIN, warm, 100) == pytest.approx(MAX * (s + 1) / warm)
    # the same ramp as torch's LinearLR from 1/warm to 1 over warm - 1 steps
    ref = torch_lrs(
        lambda o: torch.optim.lr_scheduler.LinearLR(o, 1 / warm, 1.0, total_iters=warm - 1), warm
    )
    assert [cosine_schedule(s, MAX, MIN, warm, 100) for s in range(warm)] == pytest.approx(ref)


def test_cosine_endpoints_continuity_floor_and_monotone():
    warm, cos = 20, 200
    rates = [cosine_schedule(s, MAX, MIN, warm, cos) for s in range(warm + cos + 50)]
    assert rates[0] == pytest.approx(MAX / warm)  # starts near 0, not at 0
    assert rates[warm - 1] == pytest.approx(MAX) and rates[warm] == MAX  # continuous
    assert max(abs(b - a) for a, b in pairwise(rates)) <= MAX / warm + 1e-15
    assert rates[warm + cos // 2] == pytest.approx((MAX + MIN) / 2)  # half-way down
    assert rates[warm + cos] == MIN and set(rates[warm + cos :]) == {MIN}  # floor forever
    assert is_non_increasing(rates[warm:])
    assert all(b >= a for a, b in pairwise(rates[:warm]))


def test_cosine_matches_cosine_annealing_lr():
    cos = 100
    ours = [cosine_schedule(s, MAX, MIN, 0, cos) for s in range(cos + 1)]
    ref = torch_lrs(
        lambda o: torch.optim.lr_scheduler.CosineAnnealingLR(o, T_max=cos, eta_min=MIN), cos + 1
    )
    assert ours == pytest.approx(ref, rel=1e-9, abs=1e-15)
    closed = [MIN + (MAX - MIN) * (1 + math.cos(math.pi * s / cos)) / 2 for s in range(cos + 1)]
    assert ours == pytest.approx(closed, rel=1e-12)


@pytest.mark.parametrize("schedule", SCHEDULES)
def test_lr_at_warms_up_every_schedule(schedule):
    warm, total = 10, 100
    rates = [lr_at(s, schedule, MAX, MIN, warm, total) for s in range(total + 10)]
    assert rates[:warm] == pytest.approx([MAX * (s + 1) / warm for s in range(warm)])
    assert rates[warm] == MAX
    assert is_non_increasing(rates[warm:])
    assert rates[-1] == (MAX if schedule == "constant" else MIN)


def test_lr_at_matches_the_shapes():
    warm, total = 10, 110
    for s in range(0, 150, 7):
        assert lr_at(s, "cosine", MAX, MIN, warm, total) == cosine_schedule(
            s, MAX, MIN, warm, total - warm
        )
        if s >= warm:
            assert lr_at(s, "linear", MAX, MIN, warm, total) == linear_decay(
                s - warm, MAX, total - warm, MIN
            )
    assert lr_at(0, "linear", MAX) == MAX  # defaults: no warm-up, total_steps=1
    assert lr_at(1, "linear", MAX) == 0.0


def test_lr_at_errors():
    assert SCHEDULES == ("constant", "linear", "cosine")
    with pytest.raises(TinylmError, match="constant, linear, cosine"):
        lr_at(0, "exponential", MAX)
    for kwargs in (
        {"step": -1},
        {"min_lr": 2 * MAX},
        {"warmup_steps": 200, "total_steps": 100},
        {"warmup_steps": -1},
    ):
        args = {"step": 0, "schedule": "cosine", "max_lr": MAX, **kwargs}
        with pytest.raises(TinylmError):
            lr_at(**args)


def test_importing_schedule_does_not_import_matplotlib():
    code = "import sys, tinylm.train.schedule; assert 'matplotlib' not in sys.modules"
    subprocess.run([sys.executable, "-c", code], check=True)


def test_plot_schedules_writes_a_png(tmp_path):
    path = tmp_path / "sub" / "schedules.png"
    plot_schedules(path, total_steps=200, warmup_steps=20)
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert [p.name for p in path.parent.iterdir()] == ["schedules.png"]  # no temp file left


@pytest.mark.parametrize("name", SCHEDULES)
def test_schedule_object_is_checked_once_and_equals_lr_at(name):
    schedule = Schedule(name, MAX, MIN, warmup_steps=10, total_steps=100)
    assert [schedule(s) for s in range(120)] == [
        lr_at(s, name, MAX, MIN, 10, 100) for s in range(120)
    ]
    bad_args = [{"min_lr": 2 * MAX}, {"warmup_steps": -1}]
    if name != "constant":  # a constant rate has no decay for the warm-up to outlast
        bad_args.append({"warmup_steps": 200})
    for bad in bad_args:
        with pytest.raises(TinylmError):
            Schedule(**{"name": name, "max_lr": MAX, "total_steps": 100, **bad})


def test_schedule_call_does_no_checks(monkeypatch):
    """The trainer calls the schedule every step: the checks ran when it was made."""
    import tinylm.train.schedule as module

    schedule = Schedule("cosine", MAX, MIN, 10, 100)
    for name in ("_check_step", "_check_range", "_check_count"):
        monkeypatch.setattr(module, name, lambda *a: pytest.fail("checked per step"))
    assert 0 < schedule(50) < MAX
