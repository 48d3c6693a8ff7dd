"""A fresh install gets what the suite was run with (issue 23, item 1).

A fresh virtualenv takes the newest release of every unbounded requirement, so a
suite that is green on a machine with older packages can fail for a newcomer
(pytest 9.2 broke ``pytest.approx`` on 0-d tensors). The test and bench extras
are therefore bounded above, and the packages installed here must lie inside the
declared ranges, or the run below does not vouch for them.
"""

from __future__ import annotations

import sys
from importlib import metadata

import pytest
from packaging.requirements import Requirement
from packaging.version import Version

from conftest import REPO

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - the project's own dependency on older Pythons
    import tomli as tomllib

PROJECT = tomllib.loads((REPO / "pyproject.toml").read_text(encoding="utf-8"))["project"]
EXTRAS = PROJECT["optional-dependencies"]


def _requirements(*groups: str) -> list[Requirement]:
    return [Requirement(text) for group in groups for text in EXTRAS[group]]


def _has_upper_bound(req: Requirement) -> bool:
    return any(spec.operator in ("<", "<=", "==", "~=") for spec in req.specifier)


@pytest.mark.parametrize("req", _requirements("test", "bench"), ids=str)
def test_every_test_and_bench_requirement_is_bounded_above(req):
    assert _has_upper_bound(req), f"{req} admits any future release"


RUNTIME = [Requirement(text) for text in PROJECT["dependencies"]]


@pytest.mark.parametrize("req", RUNTIME, ids=str)
def test_every_runtime_requirement_but_calendar_versioned_regex_is_bounded(req):
    if req.name == "regex":  # versioned by release date: a major bound would mean nothing
        assert not _has_upper_bound(req)
        return
    assert _has_upper_bound(req), f"{req} admits any future major release"


@pytest.mark.parametrize("req", _requirements("test"), ids=str)
def test_the_installed_test_packages_lie_in_the_declared_ranges(req):
    installed = Version(metadata.version(req.name))
    assert req.specifier.contains(installed, prereleases=True), (
        f"{req.name} {installed} is installed, outside {req.specifier}: this run does not "
        "vouch for the declared range"
    )


def test_the_bound_check_can_fail():
    assert not _has_upper_bound(Requirement("pytest>=7"))
    assert _has_upper_bound(Requirement("pytest>=9.0,<9.3"))
    assert not Requirement("pytest>=9.0,<9.3").specifier.contains(Version("9.3.0"))
