"""``tinylm compare``: the plan, the runs it makes, resuming, the table and the CLI.

Runs are tiny (one layer, 32 wide, a few steps on a small text) so the module
takes seconds. What is checked comes from outside the comparison code: counts
from the axes' sizes, settings read back from each run's own ``run.json``,
losses from its own ``metrics.jsonl``, and an uninterrupted comparison for the
resumed one.
"""

from __future__ import annotations

import json
import math
import subprocess
import sys
from dataclasses import asdict
from pathlib import Path

import pytest

from tinylm.compare import execute
from tinylm.compare.execute import RunResult, run_comparison, run_settings
from tinylm.compare.plan import Budget, combinations, parse_budget, plan_comparison
from tinylm.compare.results import markdown_table, summarise, write_report
from tinylm.errors import TinylmError
from tinylm.run_layout import COMPARE_RESULT_FILE

TINY = {
    "n_layer": 1,
    "n_embd": 32,
    "n_head": 2,
    "block_size": 16,
    "batch_size": 4,
    "eval_batches": 2,
    "threads": 1,
    "compile": False,
}


@pytest.fixture(scope="module")
def corpus(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("corpus") / "text.txt"
    lines = [f"the {w} sat on the mat and the {w} ran away." for w in ("cat", "dog", "fox")]
    path.write_text("\n".join(lines * 40), encoding="utf-8")
    return path


# -- the plan --------------------------------------------------------------------------------


def test_grid_is_every_combination():
    axes = {"position": ["learned", "rope", "none"], "activation": ["gelu", "swiglu"]}
    configs = combinations(axes)
    assert len(configs) == 3 * 2
    expected = [
        {"position": p, "activation": a} for p in axes["position"] for a in ("gelu", "swiglu")
    ]
    assert configs == expected


def test_one_at_a_time_changes_one_setting_from_the_baseline():
    axes = {"position": ["learned", "rope", "none"], "activation": ["gelu", "swiglu"]}
    configs = combinations(axes, one_at_a_time=True)
    assert len(configs) == 1 + (3 - 1) + (2 - 1)
    baseline = {"position": "learned", "activation": "gelu"}
    assert configs[0] == baseline
    for config in configs[1:]:
        changed = [k for k in config if config[k] != baseline[k]]
        assert len(changed) == 1
    assert {"position": "none", "activation": "gelu"} in configs
    assert {"position": "learned", "activation": "swiglu"} in configs


def test_seeds_repeat_each_configuration_with_distinct_seeds():
    variants = plan_comparison({"norm": ["rmsnorm", "layernorm"]}, seeds=3, first_seed=10)
    assert [(v.settings["norm"], v.seed) for v in variants] == [
        ("rmsnorm", 10), ("rmsnorm", 11), ("rmsnorm", 12),
        ("layernorm", 10), ("layernorm", 11), ("layernorm", 12),
    ]  # fmt: skip
    assert len({v.slug for v in variants}) == 6


@pytest.mark.parametrize(
    ("text", "kind", "amount"),
    [
        ("steps=300", "steps", 300),
        ("tokens=1000000", "tokens", 1e6),
        ("seconds=2.5", "seconds", 2.5),
    ],
)
def test_budget_parses(text, kind, amount):
    assert parse_budget(text) == Budget(kind, amount)


@pytest.mark.parametrize(
    "text", ["steps", "steps=0", "steps=1.5", "minutes=3", "tokens=-1", "seconds=nan", "steps=x"]
)
def test_bad_budget_is_refused(text):
    with pytest.raises(TinylmError, match="budget"):
        parse_budget(text)


def test_tokens_budget_gives_steps_from_each_runs_batch():
    assert Budget("tokens", 1000).steps_for(4 * 16, default_steps=800) == math.ceil(1000 / 64)
    assert Budget("seconds", 5).steps_for(64, default_steps=800) == 800


def test_tokens_budget_counts_every_accumulated_micro_batch():
    # One optimiser step of batch_size 4, grad_accum 2 and block 16 trains on 128 tokens,
    # so tokens=1000 is ceil(1000 / 128) = 8 steps, and without accumulation 16.
    budget = Budget("tokens", 1000)
    for accum, steps in ((2, 8), (1, 16)):
        variant = plan_comparison({"grad_accum": [accum]})[0]
        settings = run_settings(variant, budget, preset=None, config_file=None, overrides=TINY)
        assert settings["grad_accum"] == accum
        assert settings["steps"] == steps == math.ceil(1000 / (4 * accum * 16))


# -- running ---------------------------------------------------------------------------------


def _read(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def test_runs_differ_only_in_the_varied_settings(tmp_path, corpus):
    variants = plan_comparison(
        {"position": ["learned", "rope"], "activation": ["gelu", "relu"]}, one_at_a_time=True
    )
    results = run_comparison(
        variants, tmp_path, data=corpus, overrides=TINY, budget=Budget("steps", 4), progress=False
    )
    infos = [json.loads((Path(r.run_dir) / "run.json").read_text()) for r in results]
    base = infos[0]
    for variant, info in zip(variants, infos, strict=True):
        for part in ("model", "train"):
            differs = {k for k in base[part] if base[part][k] != info[part][k]}
            assert differs <= {*variant.settings, "out_dir"}, (variant.label, differs)
        assert info["model"]["position"] == variant.settings["position"]
        assert info["model"]["activation"] == variant.settings["activation"]
        assert info["train"]["steps"] == 4
    # every run trained on the same prepared tokens
    prepared = {
        (Path(r.run_dir) / i["prepared"]).resolve() for r, i in zip(results, infos, strict=True)
    }
    assert len(prepared) == 1 and prepared.pop().is_relative_to(tmp_path / "data")


def test_table_numbers_are_the_runs_own_metrics(tmp_path, corpus):
    variants = plan_comparison({"norm": ["rmsnorm", "layernorm"]})
    results = run_comparison(
        variants,
        tmp_path,
        data=corpus,
        overrides=TINY,
        budget=Budget("tokens", 300),
        progress=False,
    )
    for r in results:
        records = _read(Path(r.run_dir) / "metrics.jsonl")
        evals = [x["val_loss"] for x in records if "val_loss" in x]
        steps = [x for x in records if "ms_per_step" in x]
        assert r.final_val_loss == evals[-1]
        assert r.best_val_loss == min(evals)
        bpbs = [x["val_bpb"] for x in records if "val_loss" in x]
        assert r.final_val_bpb == bpbs[-1] and r.best_val_bpb == min(bpbs)
        assert r.tokenizer == results[0].tokenizer is not None  # one tokenizer: rank by loss
        assert r.steps == steps[-1]["step"] == math.ceil(300 / (4 * 16))
        assert r.seconds == pytest.approx(sum(x["ms_per_step"] for x in steps) / 1000)
    paths = write_report(results, tmp_path, "norms")
    table = paths["table"].read_text()
    assert "| final val bpb |" in table and "vs best |" in table
    for r in results:
        assert f"{r.final_val_loss:.4f}" in table and f"{r.final_val_bpb:.4f}" in table
    rows = paths["csv"].read_text().splitlines()
    assert len(rows) == 1 + len(results)
    for path in (paths["steps_plot"], paths["time_plot"]):
        assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_a_killed_comparison_continues_and_matches_an_uninterrupted_one(
    tmp_path, corpus, monkeypatch
):
    variants = plan_comparison({"activation": ["gelu", "relu"]})
    options = {
        "data": corpus,
        "overrides": {**TINY, "eval_every": 2},
        "progress": False,
        "budget": Budget("steps", 6),
    }
    whole = run_comparison(variants, tmp_path / "whole", **options)

    # Kill the second run after its step-4 checkpoint.
    original = execute._Clock.on_step

    def killing(self, trainer, record):
        original(self, trainer, record)
        if (
            trainer.config.to_dict()["seed"]
            and "relu" in str(trainer.run_dir)
            and trainer.step == 5
        ):
            raise KeyboardInterrupt

    monkeypatch.setattr(execute._Clock, "on_step", killing)
    with pytest.raises(KeyboardInterrupt):
        run_comparison(variants, tmp_path / "killed", **options)
    first = tmp_path / "killed" / "runs" / variants[0].slug / COMPARE_RESULT_FILE
    before = first.stat().st_mtime_ns
    monkeypatch.setattr(execute._Clock, "on_step", original)

    events = []
    again = run_comparison(variants, tmp_path / "killed", on_run=events.append, **options)
    assert [e.skipped for e in events] == [True, False]
    assert first.stat().st_mtime_ns == before  # the finished run was not repeated
    for a, b in zip(whole, again, strict=True):
        assert a.final_val_loss == b.final_val_loss  # resumed exactly
        assert [p[2] for p in a.curve] == [p[2] for p in b.curve]


def test_a_damaged_result_file_is_a_clear_error(tmp_path):
    path = tmp_path / "compare.json"
    path.write_text('{"label": 3}')
    with pytest.raises(TinylmError, match="delete it"):
        RunResult.read(path)


@pytest.mark.parametrize(
    ("key", "value", "expected"),
    [
        ("settings", [], "an object"),
        ("settings", {"lr": [[1]]}, "a setting's value"),
        ("seed", "x", "an integer"),
        ("params_total", None, "an integer"),
        ("best_val_loss", "low", "a finite number"),
        ("final_val_loss", float("nan"), "a finite number"),
        ("curve", [[1, 2]], "[step, seconds, val_loss] triples"),
        ("curve", [["a", 1, 2]], "[step, seconds, val_loss] triples"),
    ],
)
def test_every_field_of_a_result_file_is_checked_before_the_report(tmp_path, key, value, expected):
    # Each of these used to pass read() and fail inside the report (a TypeError,
    # an IndexError, statistics on a NaN) when a resumed comparison wrote its table.
    good = asdict(_result("a", 1, 2.0))
    path = tmp_path / "compare.json"
    path.write_text(json.dumps({**good, key: value}))
    with pytest.raises(TinylmError) as exc:
        RunResult.read(path)
    message = str(exc.value)
    assert "\n" not in message and f"field '{key}" in message and expected in message
    assert message.endswith("delete it to run that variant again")
    path.write_text(json.dumps(good))
    assert RunResult.read(path) == _result("a", 1, 2.0)  # the good file reads back equal


# -- the table -------------------------------------------------------------------------------


def _result(label: str, seed: int, final: float, **more: object) -> RunResult:
    return RunResult(
        label=label,
        settings={"x": label},
        seed=seed,
        run_dir="r",
        steps=10,
        params_total=100,
        params_embedding=10,
        tokens_per_s=1000.0,
        seconds=1.0,
        final_val_loss=final,
        best_val_loss=final,
        curve=[[10, 1.0, final]],
        **more,
    )


def test_runs_of_different_tokenizers_are_ranked_by_bits_per_byte():
    # Per token the BPE run looks worse (more nats per longer token); per byte it is better.
    chars = _result("char", 1, 1.5, final_val_bpb=2.2, best_val_bpb=2.2, tokenizer="c1")
    bpe = _result("bpe", 1, 3.0, final_val_bpb=1.9, best_val_bpb=1.9, tokenizer="b2")
    by_label = {s.label: s for s in summarise([chars, bpe])}
    assert by_label["bpe"].delta == 0 and by_label["char"].delta == pytest.approx(0.3)
    table = markdown_table(list(by_label.values()))
    assert "vs best (bpb)" in table and "compared by bits per byte" in table
    # One tokenizer: nats per token are comparable, and they rank.
    same = summarise([chars, _result("b", 1, 3.0, final_val_bpb=1.9, tokenizer="c1")])
    assert {s.label: s.delta for s in same} == {"char": 0, "b": pytest.approx(1.5)}


def test_a_result_file_from_before_bits_per_byte_reads_and_reports(tmp_path):
    old = asdict(_result("a", 1, 2.0))
    for key in ("final_val_bpb", "best_val_bpb", "tokenizer"):
        del old[key]
    path = tmp_path / "compare.json"
    path.write_text(json.dumps(old))
    result = RunResult.read(path)
    assert result.final_val_bpb is None and result.tokenizer is None
    new = _result("b", 1, 2.5, final_val_bpb=1.0, tokenizer="x")
    summaries = summarise([result, new])  # bpb unknown for one: ranked by loss
    assert [s.delta for s in summaries] == [0, 0.5]
    assert "| 2.0000 | – |" in markdown_table(summaries)


def test_differences_inside_the_seed_spread_are_marked():
    # a: mean 2.0, sd 0.1; b: mean 2.05, sd 0.1 -> |0.05| <= 0.2: noise;
    # c: mean 3.0, sd 0.1 -> 1.0 > 0.2: real.
    results = [
        _result("a", 1, 1.9),
        _result("a", 2, 2.1),
        _result("b", 1, 1.95),
        _result("b", 2, 2.15),
        _result("c", 1, 2.9),
        _result("c", 2, 3.1),
    ]
    by_label = {s.label: s for s in summarise(results)}
    assert by_label["a"].final == pytest.approx(2.0)
    assert by_label["a"].final_std == pytest.approx(math.sqrt(0.02))  # sample sd of 1.9, 2.1
    assert by_label["a"].delta == 0
    assert by_label["b"].within_noise is True
    assert by_label["c"].within_noise is False
    table = markdown_table(list(by_label.values()))
    assert "| b |" in table and "+0.0500 ≈" in table
    assert "+1.0000 |" in table


def test_noise_is_judged_against_both_spreads_added():
    # a: mean 2.0, sd 0.1414 (the best); b: mean 2.3, sd 0.2828. |0.3| is more than
    # either sd (or the larger one) but at most their sum, 0.4243: noise.
    # c: mean 2.5, sd 0.1414: |0.5| is more than the sum, 0.2828: real.
    results = [
        _result("a", 1, 1.9),
        _result("a", 2, 2.1),
        _result("b", 1, 2.1),
        _result("b", 2, 2.5),
        _result("c", 1, 2.4),
        _result("c", 2, 2.6),
    ]
    by_label = {s.label: s for s in summarise(results)}
    a, b, c = by_label["a"], by_label["b"], by_label["c"]
    assert max(a.final_std, b.final_std) < abs(b.delta) <= a.final_std + b.final_std
    assert b.within_noise is True
    assert abs(c.delta) > a.final_std + c.final_std
    assert c.within_noise is False
    assert "+0.3000 ≈" in markdown_table(list(by_label.values()))


def test_one_seed_says_the_spread_is_unknown():
    summaries = summarise([_result("a", 1, 2.0), _result("b", 1, 2.5)])
    assert all(s.within_noise is None for s in summaries)
    assert "more seeds" in markdown_table(summaries)


# -- the command line ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("args", "needle"),
    [
        (["--vary", "position"], "--vary wants KEY=V1,V2"),
        (["--vary", "position=learned,rope", "--budget", "steps=0"], "budget steps"),
        (["--vary", "position=learned,rope", "--budget", "hours=1"], "--budget"),
        (["--vary", "colour=red,blue"], "unknown"),
        (["--vary", "position=learned,learned"], "repeats"),
        (["--vary", "n_layer=1,2", "--set", "n_layer=3"], "both varied and set"),
        (["--vary", "position=learned,sideways"], "position"),
        (["--vary", "position=learned,rope", "--seeds", "0"], "seeds"),
    ],
)
def test_bad_input_is_one_line_and_exit_2(tmp_path, args, needle):
    out = tmp_path / "cmp"
    proc = subprocess.run(
        [sys.executable, "-m", "tinylm.cli.main", "compare", *args, "--out", str(out), "--quiet"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 2, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("tinylm: error:"), proc.stderr
    assert needle in lines[0]
    assert not out.exists()


# -- issue 23: what a comparison keeps runs by -------------------------------------------------


def test_varying_seed_names_the_seeds_of_every_configuration():
    # --vary seed=1,2 used to label two runs seed=1 and seed=2 and train both with 1337.
    variants = plan_comparison({"norm": ["rmsnorm", "layernorm"], "seed": [1, 2]})
    assert [(v.settings, v.seed) for v in variants] == [
        ({"norm": "rmsnorm"}, 1),
        ({"norm": "rmsnorm"}, 2),
        ({"norm": "layernorm"}, 1),
        ({"norm": "layernorm"}, 2),
    ]
    only_seeds = plan_comparison({"seed": [7, 9]})
    assert [(v.label, v.seed) for v in only_seeds] == [("baseline", 7), ("baseline", 9)]


@pytest.mark.parametrize(
    ("axes", "seeds", "needle"),
    [
        ({"seed": [1, 2]}, 2, "leave seeds at 1"),
        ({"seed": [1, "x"]}, 1, "integers"),
        ({"seed": [1, -1]}, 1, "integers"),
        ({"seed": [1, True]}, 1, "integers"),
        ({"seed": [3, 3]}, 1, "repeats"),
    ],
)
def test_a_bad_seed_axis_is_refused(axes, seeds, needle):
    with pytest.raises(TinylmError, match=needle):
        plan_comparison(axes, seeds=seeds)


def test_the_varied_seed_is_the_seed_each_run_trains_with(tmp_path, corpus):
    variants = plan_comparison({"seed": [3, 4]})
    options = {"data": corpus, "overrides": TINY, "progress": False}
    results = run_comparison(variants, tmp_path / "cmp", budget=Budget("steps", 2), **options)
    for variant, result in zip(variants, results, strict=True):
        run = json.loads((Path(result.run_dir) / "run.json").read_text())
        assert run["train"]["seed"] == variant.seed == result.seed
    assert results[0].final_val_loss != results[1].final_val_loss  # two seeds, two runs


def test_values_that_read_alike_as_folder_names_get_folders_of_their_own():
    # "a b" and "a?b" both became "sample_prompt-a-b_seed1337": one folder, one row.
    a, b = plan_comparison({"sample_prompt": ["a b", "a?b"]})
    assert a.slug != b.slug
    assert a.slug.startswith("sample_prompt-a-b_seed1337-")
    plain = plan_comparison({"position": ["learned", "rope"]})
    assert [v.slug for v in plain] == ["position-learned_seed1337", "position-rope_seed1337"]


def test_a_result_of_another_variant_in_a_folder_is_refused(tmp_path):
    variant = plan_comparison({"norm": ["rmsnorm", "layernorm"]})[0]
    path = tmp_path / "compare.json"
    other = RunResult(**{**asdict(_result("norm=layernorm", 1337, 2.0))})
    other.settings = {"norm": "layernorm"}
    path.write_text(json.dumps(asdict(other)))
    with pytest.raises(TinylmError, match="not norm=rmsnorm seed 1337"):
        execute._check_result_is(variant, RunResult.read(path), path)
    other.settings = {"norm": "rmsnorm"}
    execute._check_result_is(variant, other, path)  # its own result is taken


@pytest.mark.parametrize(
    ("change", "needle"),
    [
        ({"budget": Budget("steps", 3)}, "budget"),
        ({"overrides": {**TINY, "lr": 0.01}}, "overrides"),
        ({"separator": "line"}, "separator"),
    ],
)
def test_another_plan_on_the_same_folder_is_refused(tmp_path, corpus, change, needle):
    # Re-running with another --budget, --set or --data reused the earlier results.
    variants = plan_comparison({"activation": ["gelu"]})
    options = {"data": corpus, "overrides": TINY, "progress": False, "budget": Budget("steps", 2)}
    first = run_comparison(variants, tmp_path / "cmp", **options)
    with pytest.raises(TinylmError, match=f"made with {needle}") as exc:
        run_comparison(variants, tmp_path / "cmp", **{**options, **change})
    assert "\n" not in str(exc.value) and "another out folder" in str(exc.value)
    again = run_comparison(variants, tmp_path / "cmp", **options)  # the same plan: reused
    assert again == first


def test_another_data_set_on_the_same_folder_is_refused(tmp_path, corpus):
    other = tmp_path / "other.txt"
    other.write_text(corpus.read_text(encoding="utf-8")[::-1], encoding="utf-8")
    variants = plan_comparison({"activation": ["gelu"]})
    options = {"overrides": TINY, "progress": False, "budget": Budget("steps", 2)}
    run_comparison(variants, tmp_path / "cmp", data=corpus, **options)
    with pytest.raises(TinylmError, match="made with data"):
        run_comparison(variants, tmp_path / "cmp", data=other, **options)
