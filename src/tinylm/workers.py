"""How many worker processes to use: one answer for every pool in tinylm.

Tokenizer training, batch encoding and ``tinylm prepare`` all start process pools.
They default to the CPUs *this process may run on*, not the machine's count: in a
container or under ``taskset`` the two differ, and a pool sized for the whole
machine would only make its workers take turns.
"""

from __future__ import annotations

import os

from tinylm.errors import TinylmError


def default_workers() -> int:
    """CPUs this process may use (respects CPU affinity where the platform has it)."""
    if hasattr(os, "sched_getaffinity"):
        return max(1, len(os.sched_getaffinity(0)))
    return max(1, os.cpu_count() or 1)


def resolve_workers(workers: int | None) -> int:
    """``None`` means :func:`default_workers`; anything else must be a positive integer."""
    if workers is None:
        return default_workers()
    if isinstance(workers, bool) or not isinstance(workers, int) or workers < 1:
        raise TinylmError(f"workers must be a positive integer or None, got {workers!r}")
    return workers
