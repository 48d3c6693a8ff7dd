"""Run-time choices: the thread count that fits the machine, and compiling when it pays."""

from __future__ import annotations

import pytest
import torch
from torch import nn

import tinylm.train.runtime as runtime
from tinylm.train.runtime import CompileAuto, ThreadTuner, compile_pays, thread_candidates


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
