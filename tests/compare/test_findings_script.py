"""``bench/findings.py``: its plan's arithmetic, its verdict rules, and where its page goes.

The script's runs take an hour; these check what decides them without training: the
full budget meets the method (tuned, 3 seeds, several budgets up to 2,000 steps) and
fits two hours on two cores by its own estimate; the run count equals the documented
formula worked by hand; the budget-dependent verdicts say when they change; a quick
page never lands on ``docs/findings.md``.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import pytest

from tinylm.compare.execute import RunResult

BENCH = Path(__file__).resolve().parents[2] / "bench"


@pytest.fixture(scope="module")
def findings():
    sys.path.insert(0, str(BENCH))
    try:
        import findings as module
    finally:
        sys.path.remove(str(BENCH))
    return module


def result(label: str, loss: float, seed: int = 1337) -> RunResult:
    return RunResult(label, {}, seed, "", 1, 1, 1, 1.0, 1.0, loss, loss)


def test_the_full_budget_meets_the_method(findings):
    full = findings.FULL
    assert full.tuning is not None and full.seeds >= 3 and full.deep_seeds >= 3
    assert len(full.budgets) >= 2 and max(full.budgets) >= 2000
    assert "char" in full.quality and any(q.startswith("bpe:") for q in full.quality)
    first = findings.FIRST  # the first page's method: untuned, 2 seeds, 300 steps
    assert first.tuning is None and first.seeds == 2 and first.budgets == (300,)


def test_the_full_plan_is_the_documented_formula_worked_by_hand(findings):
    # runs = points x configs + seeds x configs (up to widen x configs more), per corpus.
    # Tuned, 3 points (+1 widening), 3 seeds: tying 2 + positions 4 + KV heads 3,
    # activations 4 + schedules 3, norms 2, tokenizers 3, all at the main budget.
    tuned_configs = 2 + 4 + 3 + (4 + 3) + 2 + 3
    # activations and schedules again at 2,000 steps: 3 seeds at the rates chosen above
    longer = (4 + 3) * 3
    # the first method: those comparisons untuned at one budget, 2 seeds; norms 3 seeds
    first = (2 + 4 + 3 + 4 + 3) * 2 + 2 * 3
    embeddings = 1
    fewest = 2 * (tuned_configs * (3 + 3) + longer + first + embeddings)
    most = 2 * (tuned_configs * (3 + 1 + 3) + longer + first + embeddings)
    runs, seconds = findings.planned_cost(findings.FULL, findings.FIRST, 2)
    assert runs == (fewest, most) == (372, 414)
    assert 0 < seconds[0] < seconds[1]


def test_the_full_page_fits_two_hours_on_two_cores_by_its_estimate(findings):
    _, seconds = findings.planned_cost(findings.FULL, findings.FIRST, 2)
    assert seconds[1] / 2 + findings.REPORT_SECONDS <= 2 * 3600


def test_a_longer_budget_costs_more(findings):
    short = findings.comparison_cost(findings.FULL, 4, 300)
    long = findings.comparison_cost(findings.FULL, 4, 2000)
    untuned = findings.comparison_cost(findings.FULL, 4, 300, tuned=False)
    assert short[0] == long[0] == ((3 + 3) * 4, (3 + 1 + 3) * 4)
    assert long[1][0] > short[1][0] and untuned[0] == (3 * 4, 3 * 4)


def test_across_budgets_says_whether_the_verdict_changes(findings):
    def rule(by):
        return by["word"], f"detail {by['word']}"

    changed = findings.across_budgets(
        {300: {"word": "contradicted"}, 2000: {"word": "confirmed"}}, rule
    )
    assert changed[0] == "confirmed"  # the longest budget's
    assert "changes with the budget: contradicted → confirmed" in changed[2]
    assert "at 300 steps" in changed[1] and "at 2000 steps" in changed[1]
    same = findings.across_budgets({300: {"word": "qualified"}, 2000: {"word": "qualified"}}, rule)
    assert same[2] == "the verdict does not change with the budget"


def test_schedule_rule_on_known_losses(findings):
    decaying = [result("schedule=linear", 2.0), result("schedule=cosine", 1.9)]
    confirmed = {"a": decaying + [result("schedule=constant", 2.1)]}
    assert findings.schedule_rule(confirmed)[0] == "confirmed"
    constant_best = {"a": decaying + [result("schedule=constant", 1.5)]}
    assert findings.schedule_rule(constant_best)[0] == "contradicted"


def test_activation_rule_counts_corpora_where_swiglu_wins(findings):
    def corpus(swiglu: float):
        return [
            result("activation=relu", 2.0),
            result("activation=gelu", 1.95),
            result("activation=swiglu", swiglu),
        ]

    assert findings.activation_rule({"a": corpus(1.8), "b": corpus(1.9)})[0] == "confirmed"
    assert findings.activation_rule({"a": corpus(1.8), "b": corpus(2.1)})[0] == "qualified"
    assert findings.activation_rule({"a": corpus(2.1)})[0] == "contradicted"


def test_headline_is_the_verdicts_bold_words(findings):
    assert findings.headline("**confirmed** for a, **qualified** for b: 1.0") == (
        "confirmed / qualified"
    )
    assert findings.headline("no verdict") == "—"


def test_a_quick_page_goes_beside_its_runs_not_over_the_full_page(findings, tmp_path):
    def args(**given):
        return argparse.Namespace(**{"quick": False, "only": None, "out": None, **given})

    assert findings.page_path(args(quick=True), tmp_path) == tmp_path / "findings.md"
    assert findings.page_path(args(only=[7]), tmp_path) == tmp_path / "findings.md"
    assert findings.page_path(args(), tmp_path) == findings.DOC
    assert findings.page_path(args(quick=True, out=tmp_path / "x.md"), tmp_path) == (
        tmp_path / "x.md"
    )


def test_the_first_methods_runs_go_where_the_first_page_kept_them(findings):
    # the first page's runs were WORK/<corpus>/activation (300 steps, untuned): a kept
    # folder then supplies the first method; the new method's runs live under WORK/tuned
    assert findings.folder("activation", 300, findings.FIRST) == "activation"
    assert findings.folder("activation", 300, findings.FULL) == "activation"
    # a longer budget's runs use the main budget's tuned rates: a folder of their own
    assert findings.folder("activation", 2000, findings.FULL) == "activation-2000-lr300"


def test_a_longer_budget_reuses_each_configurations_chosen_rate(findings):
    from types import SimpleNamespace

    results = [
        SimpleNamespace(label="activation=relu", lr=0.006),
        SimpleNamespace(label="activation=relu", lr=0.006),
        SimpleNamespace(label="activation=swiglu", lr=0.012),
    ]
    rates = findings.chosen_rates(results)
    assert rates == {"activation=relu": 0.006, "activation=swiglu": 0.012}
    untuned = [SimpleNamespace(label="activation=relu", lr=None)]
    assert findings.chosen_rates(untuned) is None
    assert findings.TUNED_DIR not in ("", ".") and 9 in findings.SAME_METHOD
