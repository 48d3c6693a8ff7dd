"""The run folder's names have one home, ``tinylm.run_layout``, and say what today's runs hold.

The source scan parses every module under ``src/`` (nothing is imported) and
looks for the names of a run folder's files spelt as string literals anywhere
but in ``tinylm/run_layout.py``. A few modules spell some of the same names for
another format's folder (a Hugging Face model folder, a prepared dataset); they
are listed with the names they may use. The scan is also run on planted source,
to show what it catches and what it leaves alone.
"""

from __future__ import annotations

import ast
import textwrap
from collections.abc import Iterator
from pathlib import Path

from tinylm import run_layout
from tinylm.run_layout import (
    BEST_DIR,
    MODEL_FILE,
    RUN_FILE,
    RUNS_ROOT,
    checkpoint_name,
    checkpoint_step,
    step_checkpoints,
)

SRC = Path(__file__).resolve().parents[1] / "src"
LAYOUT_MODULE = Path("tinylm/run_layout.py")

#: Names a run folder holds: spelt as a literal only in the layout module.
RUN_FOLDER_NAMES = frozenset(
    {
        "run.json",
        "metrics.jsonl",
        "loss.png",
        "tensorboard",
        ".lock",
        "compare.json",
        "model.safetensors",
        "optimizer.safetensors",
        "optimizer.json",
        "config.json",
        "tokenizer.json",
        "rng.safetensors",
        "state.json",
    }
)
#: Modules that name another format's files, which happen to share a name with ours.
OTHER_FORMATS: dict[Path, frozenset[str]] = {
    # a Hugging Face model folder, read and written by the interop layer
    Path("tinylm/interop/export.py"): frozenset(
        {"config.json", "model.safetensors", "tokenizer.json"}
    ),
    Path("tinylm/interop/hf_import.py"): frozenset(
        {"config.json", "model.safetensors", "tokenizer.json"}
    ),
    Path("tinylm/interop/hf_config.py"): frozenset({"config.json"}),
    # a prepared dataset folder (``tinylm prepare``), owned by tinylm.data.prepared
    Path("tinylm/data/prepared.py"): frozenset({"tokenizer.json"}),
    # an example file name in a message (the tokenizers stand alone, beneath any run)
    Path("tinylm/tokenizers/base.py"): frozenset({"tokenizer.json"}),
}


# -- the scan ------------------------------------------------------------------------------


def _strings(tree: ast.AST) -> Iterator[tuple[ast.AST, str]]:
    """Every string constant (f-string pieces included) with its parent node."""
    for parent in ast.walk(tree):
        for child in ast.iter_child_nodes(parent):
            if isinstance(child, ast.Constant) and isinstance(child.value, str):
                yield parent, child.value


def _in_path_position(parent: ast.AST, value: str) -> bool:
    """Whether ``value`` is used as a path: ``Path(value)``, ``x / value``, ``NAME = value``."""
    if isinstance(parent, ast.BinOp) and isinstance(parent.op, ast.Div):
        return True
    if isinstance(parent, ast.Call) and ast.unparse(parent.func).split(".")[-1] == "Path":
        return any(isinstance(a, ast.Constant) and a.value == value for a in parent.args)
    return isinstance(parent, (ast.Assign, ast.AnnAssign))


def layout_literals(source: str, allowed: frozenset[str] = frozenset()) -> list[str]:
    """The run-folder names ``source`` spells itself, as ``line: 'name'``."""
    found = []
    for parent, value in _strings(ast.parse(source)):
        hit = (
            (value in RUN_FOLDER_NAMES and value not in allowed)
            or value.startswith(("ckpt-", "runs/"))
            or (value == "runs" and _in_path_position(parent, value))
        )
        if hit:
            found.append((getattr(parent, "lineno", 0), value))
    return [f"{line}: {value!r}" for line, value in sorted(found)]


def test_run_folder_names_are_spelt_only_in_the_layout_module():
    problems = []
    for path in sorted(SRC.rglob("*.py")):
        module = path.relative_to(SRC)
        if module == LAYOUT_MODULE:
            continue
        allowed = OTHER_FORMATS.get(module, frozenset())
        problems += [f"{module}:{hit}" for hit in layout_literals(path.read_text(), allowed)]
    assert problems == []


def test_the_layout_module_spells_every_name_the_scan_looks_for():
    """Else the scan would look for a name nobody may write, or miss one a run holds."""
    spelt = {value for _, value in _strings(ast.parse((SRC / LAYOUT_MODULE).read_text()))}
    assert spelt >= RUN_FOLDER_NAMES | {"runs", "ckpt-", "data", "best", "inspect"}


def test_the_scan_finds_names_spelt_elsewhere():
    planted = textwrap.dedent(
        """
        RUNS_DIR = "runs"
        ROOT = Path("runs")
        OUT = Path("runs/compare")
        folder = out / "runs" / slug
        info = run_dir / "run.json"
        name = f"ckpt-{step:06d}"
        """
    )
    assert layout_literals(planted) == [
        "2: 'runs'",
        "3: 'runs'",
        "4: 'runs/compare'",
        "5: 'runs'",
        "6: 'run.json'",
        "7: 'ckpt-'",
    ]


def test_the_scan_leaves_other_uses_of_the_words_alone():
    """A JSON key or an argument named ``runs`` is no path; docstrings and messages are prose."""
    planted = textwrap.dedent(
        '''
        def f():
            """Reads run.json and metrics.jsonl."""
            p.add_argument("runs", nargs="*")
            raise TinylmError(f"{run_dir} has no run.json; resume from an earlier ckpt-* folder")
            return {"runs": [], "step": 1}
        '''
    )
    assert layout_literals(planted) == []
    hf = 'path = folder / "tokenizer.json"\n'
    assert layout_literals(hf) == ["1: 'tokenizer.json'"]
    assert layout_literals(hf, allowed=frozenset({"tokenizer.json"})) == []


# -- the names themselves --------------------------------------------------------------------


def test_checkpoint_names_sort_by_step_and_read_back():
    assert checkpoint_name(7) == "ckpt-000007" and checkpoint_name(1234567) == "ckpt-1234567"
    assert [checkpoint_step(checkpoint_name(s)) for s in (0, 7, 1234567)] == [0, 7, 1234567]
    for other in ("best", "ckpt-", "ckpt-12a", ".ckpt-000001.tmp-x", "ckpt-1/"):
        assert checkpoint_step(other) is None


def test_step_checkpoints_are_listed_by_step_and_ignore_everything_else(tmp_path):
    for name in ("ckpt-000010", "ckpt-000002", "ckpt-1000000", BEST_DIR, "data", "ckpt-x"):
        (tmp_path / name).mkdir()
    (tmp_path / "ckpt-000005").write_text("a file, not a checkpoint folder")
    (tmp_path / RUN_FILE).write_text("{}")
    names = [p.name for p in step_checkpoints(tmp_path)]
    assert names == ["ckpt-000002", "ckpt-000010", "ckpt-1000000"]
    assert step_checkpoints(tmp_path / "missing") == []


def test_the_names_are_those_of_runs_written_before_the_layout_had_a_home():
    """A run folder from an earlier tinylm must still be found: these are a file format."""
    assert RUNS_ROOT == Path("runs") and RUN_FILE == "run.json" and BEST_DIR == "best"
    assert MODEL_FILE == "model.safetensors"
    assert (run_layout.METRICS_FILE, run_layout.PLOT_FILE) == ("metrics.jsonl", "loss.png")
    assert (run_layout.LOCK_FILE, run_layout.DATA_CACHE) == (".lock", "data")
    assert (run_layout.STATE_FILE, run_layout.RNG_FILE) == ("state.json", "rng.safetensors")
    assert (run_layout.OPTIMIZER_FILE, run_layout.OPTIMIZER_JSON) == (
        "optimizer.safetensors",
        "optimizer.json",
    )
    assert (run_layout.CONFIG_FILE, run_layout.TOKENIZER_FILE) == ("config.json", "tokenizer.json")
