"""The scalar engine's graphs have no cycles: run its tests without the cycle collector."""

from __future__ import annotations

import pytest

from tinylm.scratch.value import no_cycle_collector


@pytest.fixture(autouse=True)
def _no_cycle_collector():
    with no_cycle_collector():
        yield
