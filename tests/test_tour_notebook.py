"""The guided tour notebook runs from top to bottom, so it never rots.

``examples/tour.ipynb`` is executed cell by cell in a real Jupyter kernel
(nbclient), in a temporary working directory with ``TMPDIR`` pointing there
too, so it writes nothing into the repository. Beyond "no cell raised", the
checks read the notebook's own printed numbers: training lowered the validation
loss, attention rows sum to one, the tokenizers agree on the text they encode.
"""

from __future__ import annotations

import os
import re
import subprocess
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
NOTEBOOK = REPO / "examples" / "tour.ipynb"

nbformat = pytest.importorskip("nbformat", reason="nbformat is in the test extra")
nbclient = pytest.importorskip("nbclient", reason="nbclient is in the test extra")


def _stream_text(cell) -> str:
    return "".join(o.get("text", "") for o in cell.get("outputs", []) if o.output_type == "stream")


def _git_status() -> str:
    try:
        return subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=all"],
            cwd=REPO,
            capture_output=True,
            text=True,
            check=True,
        ).stdout
    except (OSError, subprocess.CalledProcessError):
        return ""  # not a git checkout: nothing to compare


def test_committed_notebook_has_no_outputs():
    notebook = nbformat.read(NOTEBOOK, as_version=4)
    code = [c for c in notebook.cells if c.cell_type == "code"]
    assert code, "the tour has code cells"
    assert all(not c.outputs and c.execution_count is None for c in code)


@pytest.mark.slow
def test_tour_notebook_runs_top_to_bottom(tmp_path, monkeypatch):
    notebook = nbformat.read(NOTEBOOK, as_version=4)
    src = str(REPO / "src")  # the kernel imports this checkout's tinylm
    monkeypatch.setenv(
        "PYTHONPATH", os.pathsep.join(filter(None, [src, os.environ.get("PYTHONPATH")]))
    )
    monkeypatch.setenv("TMPDIR", str(tmp_path))
    monkeypatch.setenv("MPLBACKEND", "Agg")
    before = _git_status()
    client = nbclient.NotebookClient(
        notebook,
        timeout=600,
        kernel_name="python3",
        resources={"metadata": {"path": str(tmp_path)}},
    )
    setup = client.setup_kernel()
    try:
        setup.__enter__()
    except Exception as exc:  # no kernelspec, no ipykernel, no sockets: cannot run here
        pytest.skip(f"a Jupyter kernel cannot start here: {type(exc).__name__}: {exc}")
    try:
        for index, cell in enumerate(notebook.cells):
            client.execute_cell(cell, index)
    finally:
        setup.__exit__(None, None, None)

    printed = "\n".join(_stream_text(c) for c in notebook.cells if c.cell_type == "code")
    found = re.search(r"validation loss ([\d.]+) -> ([\d.]+) .* would be ([\d.]+)", printed)
    first, last, uniform = map(float, found.groups())
    assert last < first, f"training did not lower the validation loss: {first} -> {last}"
    assert last < uniform - 1.5, f"loss {last} is barely better than a uniform guess ({uniform})"
    rows = re.search(r"each row sums to \[([^\]]+)\]", printed).group(1).split()
    assert [float(r) for r in rows] == pytest.approx([1.0] * len(rows), abs=1e-3)
    assert "nearest to 'e' (trained)" in printed
    assert any(tmp_path.glob("tinylm-tour-*/tour/metrics.jsonl")), "the run went to TMPDIR"
    assert _git_status() == before, "the notebook wrote into the repository"
