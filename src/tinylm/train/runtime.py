"""Which device and number format to train in, and whether to compile.

The device and dtype rules (``auto`` -> CUDA, MPS or CPU; bf16 autocast where it
pays) are shared with sampling and serving and live in :mod:`tinylm.device`. What
is left here only matters while training:

* ``compile`` runs ``torch.compile``; compilation happens lazily at the first
  forward pass, so :class:`CompiledOrEager` catches a failure there (no C++
  compiler, unsupported platform) and falls back to the plain model with a
  warning instead of ending the run. ``compile = auto`` (:class:`CompileAuto`)
  compiles only when the run is long enough to pay the compile time back.
* ``threads = auto`` (:class:`ThreadTuner`) times real training steps at a few
  intra-op thread counts, keeps the fastest, and measures again if the step time
  collapses (another job took the cores). The count does not change the results:
  a run is bit-identical at any count (docs/training.md, Determinism).
"""

from __future__ import annotations

import json
import os
import statistics
import tempfile
import warnings
from collections import deque
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from torch import nn

from tinylm.device import quiet_cuda_home_probe
from tinylm.errors import TinylmError
from tinylm.fileio import atomic_write
from tinylm.workers import default_workers


class CompiledOrEager:
    """Calls a compiled module, and permanently switches to the eager one if that fails.

    ``torch.compile`` returns immediately and compiles at the first call, so this
    is where a missing compiler shows up. The failing call is retried eagerly; the
    caller must not have run ``backward`` on anything from it, which holds because
    a failure is raised by the forward call itself.
    """

    def __init__(self, module: nn.Module, eager: nn.Module) -> None:
        self.module = module
        self.eager = eager
        self.compiled = module is not eager

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        if not self.compiled:
            return self.eager(*args, **kwargs)
        try:
            with quiet_cuda_home_probe():  # the first call compiles
                return self.module(*args, **kwargs)
        except TinylmError:
            raise  # bad input, not a compiler problem
        except Exception as exc:  # any compile failure means: run eagerly
            warnings.warn(
                f"torch.compile failed ({type(exc).__name__}: {str(exc).splitlines()[0][:200]}); "
                "continuing without compilation",
                stacklevel=2,
            )
            self.compiled = False
            return self.eager(*args, **kwargs)


def maybe_compile(module: nn.Module, enabled: bool) -> Callable[..., Any]:
    """``module`` wrapped for calling: compiled when asked (and possible), eager otherwise."""
    if not enabled:
        return CompiledOrEager(module, module)
    try:
        with quiet_cuda_home_probe():
            compiled = torch.compile(module)
    except Exception as exc:  # e.g. unsupported Python version
        warnings.warn(f"torch.compile is unavailable ({exc}); running eagerly", stacklevel=2)
        return CompiledOrEager(module, module)
    return CompiledOrEager(compiled, module)


# -- threads ------------------------------------------------------------------------------


#: The variables torch takes its start-up thread count from; MKL's wins when both are set.
THREAD_VARIABLES = ("MKL_NUM_THREADS", "OMP_NUM_THREADS")
SET_IN_CODE = "set by torch.set_num_threads"

# tinylm's own changes to the count, so that a second Trainer in the same notebook
# does not mistake the count the first one chose for the user's: the last count
# tinylm set, and the count that was in place before it.
_tinylm_threads: int | None = None
_threads_before_tinylm = 0


def set_threads(count: int) -> None:
    """``torch.set_num_threads``, remembering what the user had before tinylm changed it."""
    global _tinylm_threads, _threads_before_tinylm
    current = torch.get_num_threads()
    if _tinylm_threads is None or current != _tinylm_threads:
        _threads_before_tinylm = current
    torch.set_num_threads(count)
    _tinylm_threads = count


def users_threads() -> int:
    """torch's intra-op thread count as the user left it (tinylm's own change undone)."""
    current = torch.get_num_threads()
    if _tinylm_threads is not None and current == _tinylm_threads:
        return _threads_before_tinylm
    return current


def machine_default_threads() -> int:
    """The count torch starts with when nothing says otherwise: the physical cores.

    torch gives the same figure as its inter-op default, which no thread
    variable changes, so it is read there.
    """
    return torch.get_num_interop_threads()


def chosen_threads() -> tuple[int, str] | None:
    """The intra-op thread count the user already chose, and how; ``None`` if nobody did.

    The rule: a valid ``MKL_NUM_THREADS`` or ``OMP_NUM_THREADS`` is a choice (torch
    started from it; MKL's build caps it at the physical cores). A count that differs
    both from what such a variable gave and from torch's own default
    (:func:`machine_default_threads`) was set by ``torch.set_num_threads``. A call
    that set torch's default again cannot be told from no call, and counts as none.
    """
    count, default = users_threads(), machine_default_threads()
    for name in THREAD_VARIABLES:
        value = os.environ.get(name, "").strip()
        if value.isdigit() and int(value) > 0:
            return count, name if count in {int(value), min(int(value), default)} else SET_IN_CODE
    if count != default:
        return count, SET_IN_CODE
    return None


def thread_candidates(cpus: int) -> list[int]:
    """1, the powers of two below ``cpus``, and ``cpus``: the counts worth timing."""
    counts, n = {1, cpus}, 2
    while n < cpus:
        counts.add(n)
        n *= 2
    return sorted(counts)


class ThreadTuner:
    """Chooses torch's intra-op thread count on CPU by timing the run's own steps.

    On a machine shared with other work, two threads can be many times slower
    than one (each operation waits for the slowest thread, and the cores are
    busy), while on an idle machine two are faster; only a measurement knows.
    With ``setting = "auto"`` on a CPU the tuner skips the first step (warm-up),
    gives each candidate count ``PROBE_STEPS`` real training steps, keeps the count
    with the lowest median step time, and starts over if the median of the last
    ``WINDOW`` steps becomes ``COLLAPSE`` times the chosen one. ``auto`` leaves
    alone a count the user already chose (``OMP_NUM_THREADS``, or
    ``torch.set_num_threads`` in a notebook: :func:`chosen_threads`) and says so in
    :meth:`describe`. An integer setting fixes the count over all of that;
    elsewhere (GPU) nothing is changed. The trainer calls ``before_step()`` and
    ``after_step(seconds)`` around every step.
    """

    PROBE_STEPS = 3
    WINDOW = 20
    COLLAPSE = 2.0

    def __init__(self, setting: str | int, device: torch.device) -> None:
        chosen = chosen_threads() if setting == "auto" and device.type == "cpu" else None
        self.source = chosen[1] if chosen else "auto"  # who chose the count, for describe()
        self.auto = setting == "auto" and device.type == "cpu" and chosen is None
        if isinstance(setting, int) and device.type == "cpu":
            set_threads(setting)
        elif chosen and chosen[0] != torch.get_num_threads():
            torch.set_num_threads(chosen[0])  # the user's count, which an earlier run replaced
        self.threads = torch.get_num_threads()
        self.candidates = thread_candidates(default_workers()) if self.auto else [self.threads]
        self.measuring = self.auto and len(self.candidates) > 1
        self._queue = [c for c in self.candidates for _ in range(self.PROBE_STEPS)]
        self._samples: dict[int, list[float]] = {c: [] for c in self.candidates}
        self._warm_up = True
        self._chosen_median = 0.0
        self._recent: deque[float] = deque(maxlen=self.WINDOW)
        self.choices: list[int] = []  # every choice made, for the logs and tests

    def before_step(self) -> None:
        """Set the thread count the next step runs with."""
        if self.measuring and not self._warm_up:
            self._set(self._queue[0])

    def after_step(self, seconds: float) -> None:
        """Record how long the step took; choose, or start measuring again, when due."""
        if not self.auto:
            return
        if self.measuring:
            if self._warm_up:
                self._warm_up = False
                return
            self._samples[self._queue.pop(0)].append(seconds)
            if not self._queue:
                self._choose()
            return
        self._recent.append(seconds)
        if (
            len(self._recent) == self.WINDOW
            and statistics.median(self._recent) > self.COLLAPSE * self._chosen_median
        ):
            self._remeasure()

    def describe(self) -> str:
        """The count and who chose it, for the progress line: ``1 thread (OMP_NUM_THREADS)``."""
        if self.measuring:
            return f"threads auto: timing {', '.join(map(str, self.candidates))}"
        count = f"{self.threads} thread{'s' if self.threads != 1 else ''}"
        if self.auto or self.source != "auto":
            return f"{count} ({self.source})"
        return count

    def _choose(self) -> None:
        medians = {c: statistics.median(t) for c, t in self._samples.items()}
        best = min(medians, key=lambda c: medians[c])
        self._set(best)
        self._chosen_median = medians[best]
        self.measuring = False
        self._recent.clear()
        self.choices.append(best)

    def _remeasure(self) -> None:
        self.measuring = True
        self._queue = [c for c in self.candidates for _ in range(self.PROBE_STEPS)]
        self._samples = {c: [] for c in self.candidates}

    def _set(self, threads: int) -> None:
        if threads != self.threads:
            set_threads(threads)
            self.threads = threads


# -- compile when it pays -----------------------------------------------------------------

#: What a first compile is assumed to cost, and to save, when this machine has no
#: measurement yet (docs/training.md: the baby model compiled in 39 s on 2 cores and
#: then ran 56 -> 36 ms per step). Deliberately cautious: a wrong "no" costs a
#: little speed, a wrong "yes" costs the whole compile time.
COLD_COMPILE_S = {"cpu": 45.0, "cuda": 60.0}
ASSUMED_SPEEDUP = 0.3  # fraction of the eager step time compiling saves
RECORD_FILE = "tinylm-compile-times.json"


def compile_pays(
    remaining_steps: int, eager_step_s: float, compile_s: float, speedup: float
) -> bool:
    """Whether compiling now saves time over the rest of the run (with a 20% margin)."""
    return remaining_steps * eager_step_s * speedup > 1.2 * compile_s


def compile_record_path() -> Path:
    """A note of measured compile times, kept beside inductor's own cache.

    Beside it, so that when the cache is wiped (and the next compile is cold again)
    the note goes with it.
    """
    base = os.environ.get("TORCHINDUCTOR_CACHE_DIR")
    if base is None:
        user = os.environ.get("USER", "user")
        base = os.path.join(tempfile.gettempdir(), f"torchinductor_{user}")
    return Path(base) / RECORD_FILE


def read_compile_record(key: str) -> dict[str, float] | None:
    """The last measured ``compile_s`` and ``speedup`` for ``key``, if any and plausible."""
    try:
        data = json.loads(compile_record_path().read_text(encoding="utf-8"))
        entry = data[key]
        compile_s, speedup = float(entry["compile_s"]), float(entry["speedup"])
    except (OSError, ValueError, KeyError, TypeError):
        return None
    if not (0 <= compile_s < 1e5 and -10 < speedup < 1):
        return None
    return {"compile_s": compile_s, "speedup": speedup}


def write_compile_record(key: str, compile_s: float, speedup: float) -> None:
    """Remember what compiling ``key`` cost and saved; best effort (a cache, not a result)."""
    path = compile_record_path()
    try:
        data = json.loads(path.read_text(encoding="utf-8")) if path.exists() else {}
        if not isinstance(data, dict):
            data = {}
        data[key] = {"compile_s": round(compile_s, 3), "speedup": round(speedup, 4)}
        path.parent.mkdir(parents=True, exist_ok=True)
        atomic_write(path, json.dumps(data, indent=1) + "\n")
    except OSError:
        pass


class CompileAuto:
    """``compile = auto``: run eagerly, compile when the rest of the run pays for it.

    After ``EAGER_STEPS`` measured eager steps it compares the time compiling would
    save over the remaining steps with the compile time: the one measured on this
    machine for the same model and batch shape (``read_compile_record``, kept beside
    inductor's cache, so a warm cache is known to be cheap) or, the first time, a
    cautious assumption (``COLD_COMPILE_S``). Once compiled, it times the compiled
    steps; if they are not faster it goes back to eager for good. A compile failure
    falls back to eager with a warning (``CompiledOrEager``).
    """

    EAGER_STEPS = 8
    COMPILED_STEPS = 8

    def __init__(self, module: nn.Module, key: str, total_steps: int, device: torch.device) -> None:
        self.module, self.key, self.total_steps = module, key, total_steps
        self.device = device
        self.call = CompiledOrEager(module, module)
        self.state = "eager"  # eager -> compiled | stays eager
        self.decision = "eager (deciding)"
        self._eager: list[float] = []
        self._compiled: list[float] = []
        self._compile_s = 0.0

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        return self.call(*args, **kwargs)

    def after_step(self, step: int, seconds: float) -> None:
        """Feed one step's time (``step`` steps done); may switch the path for the next."""
        if self.state == "eager":
            self._eager.append(seconds)
            if len(self._eager) == self.EAGER_STEPS:
                self._decide(step)
        elif self.state == "compiling":
            self._compile_s = max(0.0, seconds - statistics.median(self._eager))
            self.state = "timing"
        elif self.state == "timing":
            if not self.call.compiled:  # the compile failed; already warned
                self.state, self.decision = "done", "eager (compile failed)"
                return
            self._compiled.append(seconds)
            if len(self._compiled) == self.COMPILED_STEPS:
                self._judge()

    def _decide(self, step: int) -> None:
        eager = statistics.median(self._eager[1:])  # the first step is warm-up
        record = read_compile_record(self.key)
        compile_s = record["compile_s"] if record else COLD_COMPILE_S.get(self.device.type, 60.0)
        speedup = record["speedup"] if record else ASSUMED_SPEEDUP
        if not compile_pays(self.total_steps - step, eager, compile_s, speedup):
            self.state = "done"
            self.decision = f"eager (compiling ~{compile_s:.0f} s would not pay back)"
            return
        self.call = maybe_compile(self.module, True)
        self.state = "compiling"
        self.decision = "compiling"

    def _judge(self) -> None:
        eager = statistics.median(self._eager[1:])
        compiled = statistics.median(self._compiled)
        speedup = 1 - compiled / eager
        write_compile_record(self.key, self._compile_s, speedup)
        self.state = "done"
        if compiled < eager:
            self.decision = f"compiled ({compiled / eager:.2f}x the eager step)"
        else:
            self.call = CompiledOrEager(self.module, self.module)
            self.decision = "eager (the compiled step was not faster)"
