"""Run-time choices: the thread count that fits the machine, and compiling when it pays."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from torch import nn

import tinylm.train.runtime as runtime
from tinylm.train.runtime import (
    SET_IN_CODE,
    CompileAuto,
    ThreadTuner,
    chosen_threads,
    compile_pays,
    set_threads,
    thread_candidates,
)

SRC = Path(__file__).resolve().parents[2] / "src"


def test_thread_candidates():
    assert thread_candidates(1) == [1]
    assert thread_candidates(2) == [1, 2]
    assert thread_candidates(6) == [1, 2, 4, 6]
    assert thread_candidates(16) == [1, 2, 4, 8, 16]


def feed(tuner: ThreadTuner, seconds_at: dict[int, float], steps: int) -> list[int]:
    """Run ``steps`` fake steps; each takes ``seconds_at[threads]``. The counts used."""
    used = []
    for _ in range(steps):
        tuner.before_step()
        used.append(torch.get_num_threads())
        tuner.after_step(seconds_at[torch.get_num_threads()])
    return used


def test_auto_threads_times_each_count_keeps_the_fastest_and_remeasures(monkeypatch):
    monkeypatch.setattr(runtime, "default_workers", lambda: 2)
    monkeypatch.setattr(runtime, "chosen_threads", lambda: None)  # nobody chose a count
    tuner = ThreadTuner("auto", torch.device("cpu"))
    assert tuner.describe() == "threads auto: timing 1, 2"
    used = feed(tuner, {1: 0.010, 2: 0.030}, 1 + 2 * ThreadTuner.PROBE_STEPS)
    # a warm-up step, then PROBE_STEPS at 1 thread and PROBE_STEPS at 2
    assert used[1:] == [1] * ThreadTuner.PROBE_STEPS + [2] * ThreadTuner.PROBE_STEPS
    assert tuner.choices == [1] and torch.get_num_threads() == 1
    assert tuner.describe() == "1 thread (auto)"
    # steady: no re-measuring while the time holds
    assert set(feed(tuner, {1: 0.011, 2: 0.030}, 3 * ThreadTuner.WINDOW)) == {1}
    assert tuner.choices == [1]
    # one thread collapses (another job took the core): measure again, switch to 2
    feed(tuner, {1: 0.100, 2: 0.040}, ThreadTuner.WINDOW + 2 * ThreadTuner.PROBE_STEPS)
    assert tuner.choices == [1, 2] and torch.get_num_threads() == 2


def test_fixed_threads_are_set_and_never_changed():
    tuner = ThreadTuner(2, torch.device("cpu"))
    assert torch.get_num_threads() == 2 and tuner.describe() == "2 threads"
    assert set(feed(tuner, {2: 0.5}, 50)) == {2}


@pytest.fixture
def fresh_threads(monkeypatch):
    """No thread variable set, tinylm has changed nothing, and torch's default is 4."""
    for name in runtime.THREAD_VARIABLES:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setattr(runtime, "_tinylm_threads", None)
    monkeypatch.setattr(runtime, "machine_default_threads", lambda: 4)
    before = torch.get_num_threads()
    yield monkeypatch
    torch.set_num_threads(before)


def test_a_thread_variable_is_the_users_choice(fresh_threads):
    torch.set_num_threads(1)  # what torch starts with under OMP_NUM_THREADS=1
    fresh_threads.setenv("OMP_NUM_THREADS", "1")
    assert chosen_threads() == (1, "OMP_NUM_THREADS")
    fresh_threads.setenv("MKL_NUM_THREADS", "1")  # torch reads MKL's first
    assert chosen_threads() == (1, "MKL_NUM_THREADS")
    fresh_threads.delenv("MKL_NUM_THREADS")
    # torch's MKL build caps the variable at the physical cores: 16 -> the default 4
    fresh_threads.setenv("OMP_NUM_THREADS", "16")
    torch.set_num_threads(4)
    assert chosen_threads() == (4, "OMP_NUM_THREADS")
    # a torch.set_num_threads call after start-up overrides the variable
    torch.set_num_threads(3)
    assert chosen_threads() == (3, SET_IN_CODE)
    # a variable torch could not read is no choice
    fresh_threads.setenv("OMP_NUM_THREADS", "abc")
    torch.set_num_threads(4)
    assert chosen_threads() is None


def test_a_count_other_than_torchs_default_was_set_in_code(fresh_threads):
    torch.set_num_threads(4)
    assert chosen_threads() is None
    torch.set_num_threads(3)
    assert chosen_threads() == (3, SET_IN_CODE)


def test_tinylms_own_earlier_choice_is_not_taken_for_the_users(fresh_threads):
    torch.set_num_threads(4)
    set_threads(1)  # an earlier run in this notebook chose 1 thread
    assert torch.get_num_threads() == 1 and chosen_threads() is None
    torch.set_num_threads(3)  # then the user chose 3 ...
    set_threads(1)  # ... and another run chose 1: the user's 3 is what counts
    assert chosen_threads() == (3, SET_IN_CODE)
    tuner = ThreadTuner("auto", torch.device("cpu"))
    assert torch.get_num_threads() == 3 and tuner.describe() == f"3 threads ({SET_IN_CODE})"


def test_a_chosen_count_is_kept_and_named_and_a_setting_wins_over_it(fresh_threads):
    fresh_threads.setenv("OMP_NUM_THREADS", "1")
    torch.set_num_threads(1)
    tuner = ThreadTuner("auto", torch.device("cpu"))
    assert not tuner.measuring and tuner.describe() == "1 thread (OMP_NUM_THREADS)"
    assert set(feed(tuner, {1: 0.5}, 50)) == {1} and tuner.choices == []
    tuner = ThreadTuner(2, torch.device("cpu"))
    assert torch.get_num_threads() == 2 and tuner.describe() == "2 threads"


# -- in a fresh process, as a user starts it -----------------------------------------------------

TINY = [
    "--steps", "8", "--set", "n_layer=1", "--set", "n_embd=16", "--set", "n_head=2",
    "--set", "block_size=32", "--set", "batch_size=4", "--set", "eval_batches=2",
    "--set", "sample_tokens=5", "--set", "eval_every=100",
]  # fmt: skip

TRAIN_AFTER_SET_NUM_THREADS = """
import sys, torch
torch.set_num_threads(int(sys.argv[1]))
from tinylm.cli.main import main
sys.exit(main(sys.argv[2:]))
"""


def train_in_a_fresh_process(tmp_path: Path, env: dict[str, str], prefix: list[str], *extra: str):
    """``tinylm train`` on a small text in a new process: (stderr, threads of each step)."""
    corpus = tmp_path / "zen.txt"
    corpus.write_text("Beautiful is better than ugly. Simple is better than complex. " * 40)
    out = tmp_path / "run"
    env = {k: v for k, v in os.environ.items() if k not in runtime.THREAD_VARIABLES} | env
    env["PYTHONPATH"] = str(SRC)
    argv = ["train", "--data", str(corpus), "--out", str(out), *TINY, *extra]
    result = subprocess.run(
        [sys.executable, *prefix, *argv], capture_output=True, text=True, env=env, check=False
    )
    assert result.returncode == 0, result.stderr
    records = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    return result.stderr, [r["threads"] for r in records if "threads" in r]


def progress_lines(stderr: str) -> list[str]:
    return [line for line in stderr.splitlines() if line.startswith("step ") and "/8" in line]


def test_omp_num_threads_is_respected_and_named_in_the_progress_line(tmp_path):
    stderr, threads = train_in_a_fresh_process(
        tmp_path, {"OMP_NUM_THREADS": "1"}, ["-m", "tinylm.cli.main"]
    )
    assert threads == [1] * 8
    lines = progress_lines(stderr)
    assert lines and all("  1 thread (OMP_NUM_THREADS)" in line for line in lines), stderr


def test_a_threads_setting_wins_over_omp_num_threads(tmp_path):
    stderr, threads = train_in_a_fresh_process(
        tmp_path, {"OMP_NUM_THREADS": "1"}, ["-m", "tinylm.cli.main"], "--set", "threads=2"
    )
    assert threads == [2] * 8
    assert all("  2 threads, " in line for line in progress_lines(stderr)), stderr


def test_an_earlier_torch_set_num_threads_is_respected_and_named(tmp_path):
    # a count other than torch's default for this machine, so that the call can be seen
    count = 1 if torch.get_num_interop_threads() > 1 else 2
    prefix = ["-c", TRAIN_AFTER_SET_NUM_THREADS, str(count)]
    stderr, threads = train_in_a_fresh_process(tmp_path, {}, prefix)
    assert threads == [count] * 8
    label = f"  {count} thread{'s' if count > 1 else ''} (set by torch.set_num_threads)"
    lines = progress_lines(stderr)
    assert lines and all(label in line for line in lines), stderr


def test_compile_pays_only_when_the_rest_of_the_run_saves_more_than_it_costs():
    assert not compile_pays(remaining_steps=800, eager_step_s=0.15, compile_s=45, speedup=0.3)
    assert compile_pays(remaining_steps=2000, eager_step_s=0.15, compile_s=45, speedup=0.3)
    assert compile_pays(remaining_steps=2000, eager_step_s=0.04, compile_s=5, speedup=0.3)
    assert not compile_pays(remaining_steps=10**6, eager_step_s=0.04, compile_s=5, speedup=-0.1)


class Doubler(nn.Module):
    def forward(self, x):
        return 2 * x


def run_auto(auto: CompileAuto, steps: int, seconds: float) -> None:
    for step in range(1, steps + 1):
        auto(torch.ones(2))
        auto.after_step(step, seconds)


def test_compile_auto_stays_eager_on_a_short_run(monkeypatch):
    monkeypatch.setattr(runtime, "read_compile_record", lambda key: None)
    calls = []
    monkeypatch.setattr(torch, "compile", lambda m, *a, **k: calls.append(m) or m)
    auto = CompileAuto(Doubler(), "k", total_steps=200, device=torch.device("cpu"))
    run_auto(auto, 20, 0.05)
    assert not calls and auto.decision.startswith("eager (compiling ~45 s would not pay")


def test_compile_auto_compiles_a_long_run_and_falls_back_to_eager_on_failure(monkeypatch):
    monkeypatch.setattr(runtime, "read_compile_record", lambda k: {"compile_s": 1, "speedup": 0.4})
    monkeypatch.setattr(runtime, "write_compile_record", lambda *a: None)

    def broken_compile(module, *args, **kwargs):
        def call(*a, **k):
            raise RuntimeError("no C++ compiler found")

        return call

    monkeypatch.setattr(torch, "compile", broken_compile)
    auto = CompileAuto(Doubler(), "k", total_steps=10_000, device=torch.device("cpu"))
    with pytest.warns(UserWarning, match="torch.compile failed.*no C\\+\\+ compiler"):
        run_auto(auto, 20, 0.05)
    assert torch.equal(auto(torch.ones(2)), torch.full((2,), 2.0))  # eager, same answer
    assert auto.decision == "eager (compile failed)"


def test_compile_auto_drops_a_compiled_path_that_is_not_faster(monkeypatch):
    monkeypatch.setattr(runtime, "read_compile_record", lambda k: {"compile_s": 1, "speedup": 0.4})
    written = []
    monkeypatch.setattr(runtime, "write_compile_record", lambda *a: written.append(a))
    # "compiles" to a plain wrapper: the same speed as eager
    monkeypatch.setattr(torch, "compile", lambda m, *a, **k: lambda *x, **y: m(*x, **y))
    auto = CompileAuto(Doubler(), "k", total_steps=10_000, device=torch.device("cpu"))
    run_auto(auto, 40, 0.05)  # compiled steps no faster than eager ones
    assert auto.decision == "eager (the compiled step was not faster)"
    assert written and written[0][0] == "k" and written[0][2] == pytest.approx(0.0)


def test_compile_record_round_trips_and_ignores_garbage(tmp_path, monkeypatch):
    monkeypatch.setenv("TORCHINDUCTOR_CACHE_DIR", str(tmp_path))
    assert runtime.read_compile_record("k") is None
    runtime.write_compile_record("k", 12.5, 0.35)
    assert runtime.read_compile_record("k") == {"compile_s": 12.5, "speedup": 0.35}
    (tmp_path / runtime.RECORD_FILE).write_text('{"k": {"compile_s": "soon"}}')
    assert runtime.read_compile_record("k") is None
