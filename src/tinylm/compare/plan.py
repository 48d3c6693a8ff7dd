"""Which runs a comparison makes: the axes, the combinations, the seeds, the budget.

An *axis* is a setting and the values to try (``position: [learned, rope]``). A
*grid* runs every combination, so two axes of 3 and 2 values make 6
configurations; *one at a time* starts from a baseline (every axis at its first
value) and changes one axis at a time, 1 + (3 - 1) + (2 - 1) = 4 configurations,
which isolates each choice's effect for far fewer runs. Each configuration runs
once per seed, so noise can be told from a real difference.

The *budget* is what every run gets, the same for all: optimiser ``steps``,
training ``tokens`` (turned into steps from each configuration's own batch and
block size, so a bigger batch gets fewer steps), or wall-clock ``seconds`` (the
run stops when time is up; the learning-rate schedule still plans for its
``steps`` setting).
"""

from __future__ import annotations

import hashlib
import itertools
import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from tinylm.check_values import MAX_SEED
from tinylm.errors import SettingError

BUDGET_KINDS = ("steps", "tokens", "seconds")


@dataclass(frozen=True)
class Variant:
    """One run of a comparison: the varied settings (in axis order) and a seed.

    ``lr`` is the learning rate a tuned comparison gives this run (a point of its
    sweep, or the rate the sweep chose); None runs at the configured one.
    """

    values: tuple[tuple[str, Any], ...]
    seed: int
    lr: float | None = None

    @property
    def settings(self) -> dict[str, Any]:
        """The configuration's varied settings (without ``lr`` and seed)."""
        return dict(self.values)

    @property
    def run_settings(self) -> dict[str, Any]:
        """What this run overrides: the varied settings, and ``lr`` when tuned."""
        return self.settings if self.lr is None else {**self.settings, "lr": self.lr}

    @property
    def label(self) -> str:
        """``position=rope activation=gelu``: the configuration, without the seed."""
        return " ".join(f"{key}={_show(value)}" for key, value in self.values) or "baseline"

    @property
    def slug(self) -> str:
        """A folder name: ``position-rope_activation-gelu_seed1337`` (``..._lr-0.003_seed1337``
        when tuned).

        Characters a folder name should not hold become ``-``. When that loses
        anything (``a b`` and ``a?b`` would both read ``a-b``), a short hash of the
        exact values follows, so two variants never share a folder.
        """
        parts = [f"{key}-{_show(value)}" for key, value in self.values]
        parts += ([] if self.lr is None else [f"lr-{self.lr:g}"]) + [f"seed{self.seed}"]
        raw = "_".join(parts)
        slug = re.sub(r"[^A-Za-z0-9._-]+", "-", raw)
        if slug != raw:
            slug += "-" + hashlib.sha256(raw.encode("utf-8")).hexdigest()[:8]
        return slug


@dataclass(frozen=True)
class Budget:
    """What every run gets: ``steps``, ``tokens`` or ``seconds``."""

    kind: str
    amount: float

    def steps_for(self, tokens_per_step: int, default_steps: int) -> int:
        """The optimiser steps a run plans for under this budget."""
        if self.kind == "steps":
            return int(self.amount)
        if self.kind == "tokens":
            return max(1, math.ceil(self.amount / tokens_per_step))
        return default_steps  # seconds: the clock stops the run

    @property
    def seconds(self) -> float | None:
        return self.amount if self.kind == "seconds" else None

    def __str__(self) -> str:
        amount = int(self.amount) if float(self.amount).is_integer() else self.amount
        return f"{self.kind}={amount}"


def parse_budget(text: str) -> Budget:
    """``steps=500``, ``tokens=1000000`` or ``seconds=60``."""
    kind, sep, amount = text.partition("=")
    kind = kind.strip()
    if not sep or kind not in BUDGET_KINDS:
        raise SettingError(
            f"budget must be steps=N, tokens=N or seconds=N, got {text!r}", setting="budget"
        )
    try:
        value = float(amount)
    except ValueError:
        value = math.nan
    whole = kind != "seconds"
    if not math.isfinite(value) or value <= 0 or (whole and not value.is_integer()):
        what = "a positive whole number" if whole else "a positive number"
        raise SettingError(f"budget {kind} must be {what}, got {amount!r}", setting="budget")
    return Budget(kind, value)


def check_axes(axes: Mapping[str, Sequence[Any]]) -> dict[str, list[Any]]:
    """Axes as ``{setting: [values]}``: at least one, each with distinct values."""
    if not axes:
        raise SettingError("a comparison needs at least one setting to vary", setting="vary")
    checked = {}
    for key, values in axes.items():
        values = list(values)
        if not values:
            raise SettingError(f"vary {key!r} has no values", setting="vary")
        if len({_show(v) for v in values}) != len(values):
            raise SettingError(f"vary {key!r} repeats a value: {values}", setting="vary")
        checked[key] = values
    return checked


def combinations(axes: Mapping[str, Sequence[Any]], one_at_a_time: bool = False) -> list[dict]:
    """The configurations to run (each a ``{setting: value}`` over every axis)."""
    axes = check_axes(axes)
    keys = list(axes)
    if not one_at_a_time:
        return [dict(zip(keys, combo, strict=True)) for combo in itertools.product(*axes.values())]
    baseline = {key: values[0] for key, values in axes.items()}
    configs = [baseline]
    for key, values in axes.items():
        configs += [{**baseline, key: value} for value in values[1:]]
    return configs


def plan_comparison(
    axes: Mapping[str, Sequence[Any]],
    *,
    one_at_a_time: bool = False,
    seeds: int = 1,
    first_seed: int = 1337,
) -> list[Variant]:
    """Every run of the comparison: each configuration once per seed.

    Varying ``seed`` itself names the seeds: ``{"seed": [1, 2]}`` runs every
    configuration of the other axes with seed 1 and with seed 2, so the table
    shows their spread (it is not an axis of its own, whose runs would all get
    the same ``first_seed``).
    """
    if not isinstance(seeds, int) or seeds < 1:
        raise SettingError(f"seeds must be a whole number >= 1, got {seeds!r}", setting="seeds")
    axes = dict(axes)
    seed_list = [first_seed + s for s in range(seeds)]
    if "seed" in axes:
        seed_list = _seed_axis(axes.pop("seed"), seeds)
    configs = combinations(axes, one_at_a_time) if axes else [{}]
    return [Variant(tuple(config.items()), seed) for config in configs for seed in seed_list]


def configurations(variants: Sequence[Variant]) -> list[tuple[tuple[str, Any], ...]]:
    """The distinct configurations of ``variants`` (their varied values), in first-seen order."""
    seen: list[tuple[tuple[str, Any], ...]] = []
    for variant in variants:  # a list, not a set: a value may be a list (unhashable)
        if variant.values not in seen:
            seen.append(variant.values)
    return seen


def _seed_axis(values: Sequence[Any], seeds: int) -> list[int]:
    """The seeds a ``seed`` axis names: distinct integers, and not beside ``seeds=N``."""
    if seeds != 1:
        raise SettingError(
            "vary seed names the seeds itself; leave seeds at 1 (or vary something else)",
            setting="vary",
        )
    for value in values:
        if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= MAX_SEED:
            raise SettingError(
                f"vary seed wants integers from 0 to 2**64 - 1, got {value!r}", setting="vary"
            )
    return list(check_axes({"seed": values})["seed"])


def _show(value: Any) -> str:
    if isinstance(value, (list, tuple)):
        return ",".join(_show(v) for v in value)
    return str(value).lower() if isinstance(value, bool) else str(value)
