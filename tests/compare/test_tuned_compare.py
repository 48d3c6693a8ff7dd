"""``tinylm compare`` with learning rates tuned per configuration, end to end.

Tiny runs (one layer, a few steps). What is checked comes from the run folders
themselves: each sweep run's learning rate and seed from its ``run.json``, its
loss from its ``metrics.jsonl``, the best rate picked here from those losses.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from tinylm.compare import execute
from tinylm.compare.execute import run_comparison
from tinylm.compare.plan import Budget, plan_comparison
from tinylm.compare.results import write_report
from tinylm.compare.tuning import LrTuning
from tinylm.errors import TinylmError, TrainingDiverged
from tinylm.run_layout import COMPARE_RESULT_FILE, METRICS_FILE

TINY = {
    "n_layer": 1,
    "n_embd": 32,
    "n_head": 2,
    "block_size": 16,
    "batch_size": 4,
    "eval_batches": 2,
    "threads": 1,
    "compile": False,
    "lr": 0.004,
}
TUNING = LrTuning(points=3, factor=4.0, widen=1, seed=5)


@pytest.fixture(scope="module")
def corpus(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("corpus") / "text.txt"
    lines = [f"the {w} sat on the mat and the {w} ran away." for w in ("cat", "dog", "fox")]
    path.write_text("\n".join(lines * 40), encoding="utf-8")
    return path


def _options(corpus: Path) -> dict:
    return {"data": corpus, "overrides": TINY, "progress": False, "budget": Budget("steps", 3)}


def _final_val_loss(run_dir: Path) -> float:
    records = [json.loads(line) for line in (run_dir / METRICS_FILE).read_text().splitlines()]
    return [r["val_loss"] for r in records if "val_loss" in r][-1]


def _files(out: Path) -> dict[Path, int]:
    names = (COMPARE_RESULT_FILE, METRICS_FILE)
    return {p: p.stat().st_mtime_ns for p in sorted(out.rglob("*")) if p.name in names}


@pytest.fixture(scope="module")
def tuned(tmp_path_factory, corpus):
    """One tuned comparison (two configurations, two seeds), and the events it reported."""
    out = tmp_path_factory.mktemp("tuned")
    variants = plan_comparison({"activation": ["relu", "swiglu"]}, seeds=2)
    events = []
    results = run_comparison(variants, out, tuning=TUNING, on_run=events.append, **_options(corpus))
    return out, variants, results, events


def test_each_configuration_runs_at_the_rate_its_own_sweep_found_best(tuned):
    out, variants, results, _ = tuned
    tune_runs = sorted(p for p in (out / "tune").iterdir())
    by_activation: dict[str, dict[float, float]] = {}
    for run_dir in tune_runs:
        info = json.loads((run_dir / "run.json").read_text())
        assert info["train"]["seed"] == TUNING.seed  # every sweep run: the tuning seed
        activation = info["model"]["activation"]
        by_activation.setdefault(activation, {})[info["train"]["lr"]] = _final_val_loss(run_dir)
        assert (run_dir / COMPARE_RESULT_FILE).is_file()
    for losses in by_activation.values():
        # the grid around --set lr=0.004 is all there, plus at most one widening
        assert {0.001, 0.004, 0.016} <= set(losses) and len(losses) <= 3 + TUNING.widen
    assert set(by_activation) == {"relu", "swiglu"}
    for variant, result in zip(variants, results, strict=True):
        losses = by_activation[variant.settings["activation"]]
        best = min(losses, key=lambda lr: (losses[lr], lr))
        assert result.lr == best
        info = json.loads((Path(result.run_dir) / "run.json").read_text())
        assert info["train"]["lr"] == best and info["train"]["seed"] == variant.seed
        assert result.lr_sweep == [[lr, losses[lr]] for lr in sorted(losses)]
        saved = json.loads((Path(result.run_dir) / COMPARE_RESULT_FILE).read_text())
        assert saved["lr"] == best and saved["lr_sweep"] == result.lr_sweep
    assert len(results) == 4 and {r.seed for r in results} == {1337, 1338}


def test_the_table_shows_each_configurations_chosen_rate_and_its_sweep(tuned):
    out, _, results, _ = tuned
    paths = write_report(results, out, "activations, tuned")
    table = paths["table"].read_text()
    assert "| lr (tuned) |" in table
    for r in results:
        assert f"| {r.label} | {r.lr:g} | 2 |" in table
        for lr, loss in r.lr_sweep:
            assert f"{lr:g}: {loss:.4f}" in table
    sweep_rows = [line for line in table.splitlines() if " · " in line]
    assert [row.count("◀") for row in sweep_rows] == [1, 1]  # one chosen rate per configuration
    csv_rows = paths["csv"].read_text().splitlines()
    assert csv_rows[0].endswith(",lr") and all(
        row.endswith(f",{r.lr:g}") for row, r in zip(csv_rows[1:], results, strict=True)
    )


def test_rerunning_a_tuned_comparison_trains_nothing_again(tuned, corpus):
    out, variants, results, events = tuned
    assert not any(e.skipped for e in events)
    before = _files(out)
    again_events = []
    again = run_comparison(
        variants, out, tuning=TUNING, on_run=again_events.append, **_options(corpus)
    )
    assert again == results
    assert all(e.skipped for e in again_events)
    assert len(again_events) == len(events)  # the same sweep walked, from its results
    assert _files(out) == before  # no metrics or result file rewritten


def test_a_comparison_killed_mid_sweep_continues_where_it_stopped(tmp_path, corpus, monkeypatch):
    variants = plan_comparison({"activation": ["relu"]})
    whole = run_comparison(variants, tmp_path / "whole", tuning=TUNING, **_options(corpus))

    original = execute._Clock.on_step

    def killing(self, trainer, record):
        original(self, trainer, record)
        if trainer.config.lr == 0.004 and trainer.step == 2:  # the sweep's second run
            raise KeyboardInterrupt

    monkeypatch.setattr(execute._Clock, "on_step", killing)
    with pytest.raises(KeyboardInterrupt):
        run_comparison(variants, tmp_path / "killed", tuning=TUNING, **_options(corpus))
    monkeypatch.setattr(execute._Clock, "on_step", original)
    events = []
    again = run_comparison(
        variants, tmp_path / "killed", tuning=TUNING, on_run=events.append, **_options(corpus)
    )
    assert [(e.tuning, e.skipped) for e in events][:2] == [(True, True), (True, False)]
    assert [r.lr for r in again] == [r.lr for r in whole]
    assert [r.lr_sweep for r in again] == [r.lr_sweep for r in whole]
    assert again[0].final_val_loss == whole[0].final_val_loss


def test_a_diverged_sweep_run_is_kept_as_diverged_and_never_chosen(tmp_path, corpus, monkeypatch):
    original = execute._Clock.on_step

    def diverging(self, trainer, record):
        original(self, trainer, record)
        if trainer.config.lr == 0.016:  # the top of the grid "blows up"
            raise TrainingDiverged("loss became nan at step 2; lower lr")

    monkeypatch.setattr(execute._Clock, "on_step", diverging)
    variants = plan_comparison({"activation": ["gelu"]})
    tuning = LrTuning(points=3, factor=4.0, widen=0, seed=5)
    out = tmp_path / "cmp"
    results = run_comparison(variants, out, tuning=tuning, **_options(corpus))
    sweep = dict((lr, loss) for lr, loss in results[0].lr_sweep)
    assert sweep[0.016] is None and results[0].lr in (0.001, 0.004)
    diverged = json.loads(
        (out / "tune" / "activation-gelu_lr-0.016_seed5" / COMPARE_RESULT_FILE).read_text()
    )
    assert "nan" in diverged["diverged"]
    assert "diverged" in write_report(results, out, "t")["table"].read_text()
    # Rerun with training that would fail loudly: the diverged run is not trained again.
    monkeypatch.setattr(execute._Clock, "on_step", lambda *a: pytest.fail("trained again"))
    assert run_comparison(variants, out, tuning=tuning, **_options(corpus)) == results


def test_an_untuned_run_that_diverges_still_stops_the_comparison(tmp_path, corpus, monkeypatch):
    def diverging(self, trainer, record):
        raise TrainingDiverged("loss became nan at step 1; lower lr")

    monkeypatch.setattr(execute._Clock, "on_step", diverging)
    with pytest.raises(TrainingDiverged):
        run_comparison(plan_comparison({"activation": ["gelu"]}), tmp_path, **_options(corpus))


def test_tuning_and_not_tuning_are_different_plans_for_one_folder(tmp_path, corpus):
    variants = plan_comparison({"activation": ["gelu"]})
    options = {**_options(corpus), "budget": Budget("steps", 2)}
    run_comparison(variants, tmp_path / "plain", **options)
    with pytest.raises(TinylmError, match="made with tune off"):
        run_comparison(variants, tmp_path / "plain", tuning=TUNING, **options)
    tuning = LrTuning(points=2, factor=2.0, widen=0)
    run_comparison(variants, tmp_path / "tuned", tuning=tuning, **options)
    with pytest.raises(TinylmError, match="made with tune"):
        run_comparison(variants, tmp_path / "tuned", **options)


def test_varying_lr_while_tuning_it_is_refused(tmp_path, corpus):
    with pytest.raises(TinylmError, match="lr is both varied and tuned"):
        run_comparison(
            plan_comparison({"lr": [0.001, 0.002]}), tmp_path, tuning=TUNING, **_options(corpus)
        )
    assert not (tmp_path / "runs").exists()


# -- the command line ------------------------------------------------------------------------


def _compare(tmp_path: Path, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "tinylm.cli.main", "compare", "--out", str(tmp_path / "c"), *args],
        capture_output=True,
        text=True,
        timeout=300,
    )


def test_the_command_tunes_and_prints_the_chosen_rates(tmp_path, corpus):
    sets = [x for k, v in TINY.items() for x in ("--set", f"{k}={str(v).lower()}")]
    proc = _compare(
        tmp_path,
        "--vary", "activation=relu", "--data", str(corpus), "--budget", "steps=2",
        "--tune-lr", "--tune-points", "2", "--tune-factor", "3", "--tune-widen", "0",
        *sets,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    assert "learning-rate sweep of 2-2 runs for each of 1 configuration(s)" in proc.stdout
    assert proc.stdout.count("[tune ") == 2 and "| lr (tuned) |" in proc.stdout
    plan = json.loads((tmp_path / "c" / "plan.json").read_text())
    assert plan["tune"] == {"points": 2, "factor": 3.0, "widen": 0, "seed": 0}
    tuned = sorted(p.name for p in (tmp_path / "c" / "tune").iterdir())
    assert tuned == ["activation-relu_lr-0.002309_seed0", "activation-relu_lr-0.006928_seed0"]


@pytest.mark.parametrize(
    ("args", "needle"),
    [
        (["--tune-points", "3"], "--tune-points needs --tune-lr"),
        (["--tune-lr", "--tune-points", "1"], "(--tune-points N)"),
        (["--tune-lr", "--tune-factor", "0.5"], "(--tune-factor F)"),
        (["--tune-lr", "--vary", "lr=0.1,0.2"], "lr is both varied and tuned"),
    ],
)
def test_bad_tuning_options_are_one_line_and_exit_2(tmp_path, args, needle):
    if "--vary" not in args:
        args = ["--vary", "activation=relu,gelu", *args]
    proc = _compare(tmp_path, *args, "--quiet")
    assert proc.returncode == 2, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and needle in lines[0], proc.stderr
    assert not (tmp_path / "c").exists()


def test_a_comparison_folder_from_before_tuning_is_reused_as_it_is(tmp_path, corpus):
    variants = plan_comparison({"activation": ["gelu"]})
    options = {**_options(corpus), "budget": Budget("steps", 2)}
    first = run_comparison(variants, tmp_path, **options)
    # Make the folder as main wrote it: no "tune" in plan.json, no lr fields in compare.json.
    plan_path = tmp_path / "plan.json"
    plan = json.loads(plan_path.read_text())
    del plan["tune"]
    plan_path.write_text(json.dumps(plan))
    result_path = Path(first[0].run_dir) / COMPARE_RESULT_FILE
    old = json.loads(result_path.read_text())
    for key in ("lr", "lr_sweep", "diverged"):
        del old[key]
    result_path.write_text(json.dumps(old))
    events = []
    again = run_comparison(variants, tmp_path, on_run=events.append, **options)
    assert [e.skipped for e in events] == [True] and again == first
