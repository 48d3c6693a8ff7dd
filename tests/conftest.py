"""Shared test fixtures: where the public test data lives.

The data sits beside the repository in ``../shared/data`` (CI always has it); a
user's checkout may not, so tests that need it skip with a reason that says so.
``TINYLM_DATA`` points elsewhere.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import random
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

REPO = Path(__file__).resolve().parents[1]
DATA_DIR = Path(os.environ.get("TINYLM_DATA", REPO.parent / "shared" / "data"))


def data_path(relative: str) -> Path:
    """Path of a file in the shared data folder, or skip the test if it is missing."""
    path = DATA_DIR / relative
    if not path.exists():
        pytest.skip(f"{path} not found: shared test data is absent (set TINYLM_DATA)")
    return path


@pytest.fixture
def shared_data():
    return data_path


@contextlib.contextmanager
def one_torch_thread() -> Iterator[None]:
    """Run torch on one intra-op thread (a no-op when torch is not imported).

    The tests use tiny tensors, so a second thread only adds synchronisation, and on
    a shared, busy machine that costs many times the work itself.
    """
    torch = sys.modules.get("torch")
    if torch is None:
        yield
        return
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(before)


@pytest.fixture(scope="session", autouse=True)
def _kernel_cache(tmp_path_factory) -> None:
    """Build tinylm's C kernels into a folder of this session's, not the user's cache."""
    os.environ.setdefault("TINYLM_KERNEL_CACHE", str(tmp_path_factory.mktemp("kernels")))


@pytest.fixture(autouse=True)
def _one_torch_thread() -> Iterator[None]:
    with one_torch_thread():
        yield


#: Values a damaged or hand-edited JSON file might hold where a field belongs.
ODD_JSON_VALUES = [None, -1, 0, 10**12, 2**63, 1.5, "x", [], {}, True, float("nan"), ""]


def damage_json(tree: Any, rng: random.Random) -> Any:
    """One random change in a parsed JSON tree, in place: a field dropped or set to an odd value.

    For the mutation tests of files tinylm reads: whatever comes out, a reader must
    load it or refuse it in one line.
    """
    paths: list[list[Any]] = []

    def walk(node: Any, path: list[Any]) -> None:
        paths.append(path)
        if isinstance(node, dict):
            children = list(node.items())
        elif isinstance(node, list):
            children = list(enumerate(node[:40]))
        else:
            return
        for key, child in children:
            walk(child, [*path, key])

    walk(tree, [])
    path = rng.choice(paths[1:])
    parent = tree
    for key in path[:-1]:
        parent = parent[key]
    if rng.random() < 0.25:
        del parent[path[-1]]
    else:
        parent[path[-1]] = rng.choice(ODD_JSON_VALUES)
    return tree


# -- runs, as the CLI tests look at them -------------------------------------------------


def fails_with(capsys, argv: list[str], message: str) -> str:
    """Run the CLI in-process; assert exit 2 and one ``tinylm: error:`` line naming ``message``."""
    from tinylm.cli.main import main  # conftest stays torch-free for the tokenizer tests

    assert main(argv) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("tinylm: error:"), err
    assert message in err[0], err[0]
    return err[0]


def metric_records(run: Path, keep: tuple[str, ...]) -> list[dict]:
    """``run``'s metrics.jsonl records, samples left out, each cut to the fields ``keep``
    (timings and samples aside, which may differ between equal runs)."""
    lines = (run / "metrics.jsonl").read_text().splitlines()
    records = map(json.loads, lines)
    return [{k: r[k] for k in keep if k in r} for r in records if "sample" not in r]


def tensors_digest(path: Path) -> str:
    """SHA-256 of a safetensors file's tensors by name (not of the file: its metadata order
    varies)."""
    from safetensors.torch import load_file  # torch only for the tests that use it

    digest = hashlib.sha256()
    for name, tensor in sorted(load_file(path).items()):
        digest.update(name.encode() + tensor.numpy().tobytes())
    return digest.hexdigest()
