"""The dependency rules of the layout, checked on the source itself.

Every module under ``src/`` is parsed with ``ast`` (nothing is imported), and its
imports -- at the top, inside functions, anywhere but under ``if TYPE_CHECKING:``,
which never runs -- become edges of a module graph. The rules:

* no import cycles between modules;
* ``tinylm.tokenizers`` stands alone: it reaches neither torch nor the data,
  model, training, run, inference, interop or CLI packages (text is cut into
  documents by ``tinylm.documents``, which both the tokenizers and the data use);
* ``tinylm.model`` knows nothing of training, the CLI, files or the terminal;
* ``tinylm.data`` turns text into batches without the model, training or the CLI;
* ``tinylm.train`` never reaches into the CLI, the run layer or the engines above it;
* ``tinylm.engines`` (the engine interface and the engines) never reach the run
  layer or the CLI: the run layer drives the engines, not the other way round;
* ``tinylm.inference`` (loading, sampling, evaluating) reaches no training, run
  layer or CLI, and the run layer no CLI;
* ``tinylm.scratch`` and ``tinylm.run_layout`` (the run folder's names, read by
  every layer) import only the standard library;
* ``tinylm.check_values`` and ``tinylm.untrusted_files`` import the standard
  library and the few tinylm modules named for each (everything reads files and
  checks values through them, so they must be importable from anywhere, and the
  model must not reach the file reader).
* ``tinylm.inspect`` and ``tinylm.serve`` reach no CLI;
* ``tinylm.chat`` (conversations, the chat template, the built-in set) reaches no
  torch, model, training, run layer, inference or CLI;
* ``tinylm.device`` (the device and dtype every command resolves) reaches no
  training, run layer, CLI or files, so any command can import it;
* ``tinylm.train.runtime`` (the thread tuner and compile decisions) is imported
  only by ``tinylm.train``: what other commands need from it lives in
  ``tinylm.device``;
* an import of a ``tinylm`` module inside a function says why it is not at the
  top (``# torch-free start-up: ...``), on its line or above its group of imports.

"Reaches" is transitive and counts what Python runs: importing ``a.b.c`` also
runs ``a/__init__.py`` and ``a/b/__init__.py``. Cycles are looked for on the
import statements alone (a package importing its own submodules is no cycle).
Each rule is also run on a small planted graph, to show it can fail.
"""

from __future__ import annotations

import ast
import os
import subprocess
import sys
import textwrap
from collections import deque
from collections.abc import Iterable, Mapping
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[1] / "src"

Graph = Mapping[str, set[str]]

#: package -> names it must never reach (a name forbids the module and everything below it).
FORBIDDEN: dict[str, tuple[str, ...]] = {
    "tinylm.tokenizers": (
        "torch",
        "tinylm.data",
        "tinylm.model",
        "tinylm.train",
        "tinylm.run",
        "tinylm.inference",
        "tinylm.interop",
        "tinylm.cli",
    ),
    "tinylm.model": (
        "tinylm.train",
        "tinylm.cli",
        "tinylm.fileio",
        "tinylm.untrusted_files",
        "tinylm.progress",
    ),
    "tinylm.data": ("tinylm.model", "tinylm.train", "tinylm.cli"),
    "tinylm.train": ("tinylm.cli", "tinylm.run", "tinylm.engines"),
    "tinylm.engines": ("tinylm.cli", "tinylm.run"),
    "tinylm.inference": ("tinylm.train", "tinylm.run", "tinylm.cli"),
    "tinylm.run": ("tinylm.cli",),
    "tinylm.inspect": ("tinylm.cli",),
    "tinylm.serve": ("tinylm.cli",),
    "tinylm.device": ("tinylm.train", "tinylm.run", "tinylm.cli", "tinylm.fileio"),
    "tinylm.chat": (
        "torch",
        "tinylm.model",
        "tinylm.train",
        "tinylm.run",
        "tinylm.inference",
        "tinylm.cli",
    ),
}
#: packages whose modules may import only the standard library (and each other).
STDLIB_ONLY = ("tinylm.scratch", "tinylm.run_layout")
#: module -> the only tinylm modules it may import (besides the standard library).
LEAVES: dict[str, tuple[str, ...]] = {
    "tinylm.check_values": ("tinylm.errors",),
    "tinylm.untrusted_files": ("tinylm.errors", "tinylm.check_values"),
}
#: module -> the only package whose modules may import it directly.
PRIVATE_TO: dict[str, str] = {"tinylm.train.runtime": "tinylm.train"}


# -- reading the graph ------------------------------------------------------------------


def module_files(src: Path) -> dict[str, Path]:
    """Dotted module name -> file, for every ``.py`` below ``src``."""
    modules = {}
    for path in sorted(src.rglob("*.py")):
        parts = list(path.relative_to(src).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts.pop()
        modules[".".join(parts)] = path
    return modules


def build_graph(src: Path) -> dict[str, set[str]]:
    """Module -> the modules (ours, dotted) and top-level packages (theirs) it imports."""
    files = module_files(src)
    return {
        name: imports_of(ast.parse(path.read_text(encoding="utf-8")), name, path, files)
        for name, path in files.items()
    }


def imports_of(tree: ast.AST, name: str, path: Path, known: Iterable[str]) -> set[str]:
    known = set(known)
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found: set[str] = set()
    for node in _executed_nodes(tree):
        if isinstance(node, ast.Import):
            found.update(_target(alias.name, known) for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - (node.level - 1)]
                base = ".".join([*anchor, *([base] if base else [])])
            for alias in node.names:
                child = f"{base}.{alias.name}"
                found.add(child if child in known else _target(base, known))
    return found


def _executed_nodes(tree: ast.AST) -> Iterable[ast.AST]:
    """Every node except the bodies of ``if TYPE_CHECKING:`` blocks."""
    todo = [tree]
    while todo:
        node = todo.pop()
        yield node
        for child in ast.iter_child_nodes(node):
            if isinstance(child, ast.If) and "TYPE_CHECKING" in ast.unparse(child.test):
                todo.extend(child.orelse)
            else:
                todo.append(child)


def _target(dotted: str, known: set[str]) -> str:
    """Our longest known module for ``dotted``; a foreign one is named by its top level."""
    parts = dotted.split(".")
    for end in range(len(parts), 0, -1):
        if ".".join(parts[:end]) in known:
            return ".".join(parts[:end])
    return parts[0]


# -- the rules ----------------------------------------------------------------------------


def within(name: str, prefix: str) -> bool:
    return name == prefix or name.startswith(prefix + ".")


def find_cycle(graph: Graph) -> list[str] | None:
    """One import cycle as a path ``[a, b, ..., a]``, or ``None``."""
    state: dict[str, int] = {}  # 1: on the current path, 2: done
    stack: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        stack.append(node)
        for nxt in sorted(graph.get(node, ())):
            if state.get(nxt) == 1:
                return stack[stack.index(nxt) :] + [nxt]
            if nxt in graph and nxt not in state and (cycle := visit(nxt)):
                return cycle
        stack.pop()
        state[node] = 2
        return None

    for start in sorted(graph):
        if start not in state and (cycle := visit(start)):
            return cycle
    return None


def runtime_edges(graph: Graph, node: str) -> set[str]:
    """What importing ``node``'s imports runs: each imported module and its parent packages."""
    reached = set()
    for target in graph.get(node, ()):
        parts = target.split(".")
        reached.update(".".join(parts[:end]) for end in range(1, len(parts) + 1))
    return {name for name in reached if name in graph or "." not in name}


def forbidden_paths(graph: Graph, rules: Mapping[str, tuple[str, ...]]) -> list[str]:
    """For each module of a ruled package, the first import chain to a forbidden name."""
    problems = []
    for package, banned in rules.items():
        for start in sorted(m for m in graph if within(m, package)):
            came_from: dict[str, str | None] = {start: None}
            queue = deque([start])
            while queue:
                node = queue.popleft()
                if any(within(node, ban) for ban in banned):
                    chain = [node]
                    while (prev := came_from[chain[-1]]) is not None:
                        chain.append(prev)
                    problems.append(" -> ".join(reversed(chain)))
                    break
                for nxt in sorted(runtime_edges(graph, node)):
                    if nxt not in came_from:
                        came_from[nxt] = node
                        queue.append(nxt)
    return problems


def non_stdlib_imports(graph: Graph, packages: tuple[str, ...]) -> list[str]:
    """Imports of ``packages``' modules that are neither the standard library nor their own."""
    problems = []
    for package in packages:
        for module in sorted(m for m in graph if within(m, package)):
            for target in sorted(graph[module]):
                ours = within(target, package)
                if not ours and target not in sys.stdlib_module_names:
                    problems.append(f"{module} imports {target}")
    return problems


def leaf_imports(graph: Graph, leaves: Mapping[str, tuple[str, ...]]) -> list[str]:
    """Imports of each leaf module beyond the standard library and its allowed modules."""
    return [
        f"{module} imports {target}"
        for module, allowed in leaves.items()
        for target in sorted(graph.get(module, ()))
        if target not in allowed and target not in sys.stdlib_module_names
    ]


def private_imports(graph: Graph, private: Mapping[str, str]) -> list[str]:
    """Direct imports of a private module from outside the package it belongs to."""
    return [
        f"{module} imports {target}"
        for module in sorted(graph)
        for target in sorted(graph[module])
        if target in private and not within(module, private[target])
    ]


def uncommented_lazy_imports(src: Path, unchecked: tuple[str, ...] = ()) -> list[str]:
    """``module:line`` of each in-function ``tinylm`` import with no comment saying why.

    The comment may sit on the import's own lines, or above it within (or just
    above) the group of consecutive imports it belongs to.
    """
    problems = []
    for name, path in module_files(src).items():
        if any(within(name, prefix) for prefix in unchecked):
            continue
        lines = path.read_text(encoding="utf-8").splitlines()
        functions = [
            node
            for node in ast.walk(ast.parse("\n".join(lines)))
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef))
        ]
        seen: set[int] = set()
        for function in functions:
            for body in _statement_lists(function):
                for i, node in enumerate(body):
                    if node.lineno in seen or not _imports_tinylm(node):
                        continue
                    seen.add(node.lineno)
                    first = i
                    while first and isinstance(body[first - 1], (ast.Import, ast.ImportFrom)):
                        first -= 1
                    own = lines[node.lineno - 1 : node.end_lineno]
                    group = lines[body[first].lineno - 2 : node.lineno - 1]
                    commented = any(line.strip().startswith("#") for line in group)
                    if not commented and not any("#" in line for line in own):
                        problems.append(f"{name}:{node.lineno}")
    return sorted(problems)


def _statement_lists(node: ast.AST) -> Iterable[list[ast.stmt]]:
    for child in ast.walk(node):
        for field in ("body", "orelse", "finalbody"):
            statements = getattr(child, field, None)
            if isinstance(statements, list) and statements and isinstance(statements[0], ast.stmt):
                yield statements
        for handler in getattr(child, "handlers", []):
            yield handler.body


def _imports_tinylm(node: ast.stmt) -> bool:
    if isinstance(node, ast.ImportFrom):
        return not node.level and (node.module or "").split(".")[0] == "tinylm"
    if isinstance(node, ast.Import):
        return any(alias.name.split(".")[0] == "tinylm" for alias in node.names)
    return False


# -- the real source ---------------------------------------------------------------------


@pytest.fixture(scope="module")
def graph() -> dict[str, set[str]]:
    return build_graph(SRC)


def test_the_graph_is_read_from_every_module(graph):
    assert "tinylm.tokenizers.bpe" in graph and "tinylm.data.batches" in graph
    assert "torch" in graph["tinylm.data.batches"]
    assert "tinylm.tokenizers.bpe_cache" in graph["tinylm.tokenizers.bpe"]


def test_no_import_cycles(graph):
    assert find_cycle(graph) is None


def test_dependencies_point_one_way(graph):
    assert forbidden_paths(graph, FORBIDDEN) == []


def test_scratch_imports_only_the_standard_library(graph):
    assert non_stdlib_imports(graph, STDLIB_ONLY) == []


def test_the_value_checks_and_file_readers_import_almost_nothing(graph):
    assert set(LEAVES) <= set(graph)
    assert leaf_imports(graph, LEAVES) == []


def test_a_planted_import_in_a_leaf_is_found():
    planted = {"tinylm.check_values": {"math", "tinylm.errors", "tinylm.model.config"}}
    assert leaf_imports(planted, LEAVES) == ["tinylm.check_values imports tinylm.model.config"]


def test_training_only_runtime_stays_in_training(graph):
    assert private_imports(graph, PRIVATE_TO) == []


def test_each_lazy_tinylm_import_says_why():
    assert uncommented_lazy_imports(SRC) == []


def test_tokenizers_import_no_torch_when_run():
    """The static rule, confirmed by running: the public tokenizer names leave torch unloaded."""
    code = (
        "import sys, tinylm, tinylm.tokenizers, tinylm.data.corpus\n"
        "from tinylm import BPETokenizer, CharTokenizer, load_tokenizer\n"
        "assert 'torch' not in sys.modules, 'torch was imported'\n"
    )
    env = {**os.environ, "PYTHONPATH": str(SRC)}
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env)
    assert result.returncode == 0, result.stderr


def test_listing_the_engines_imports_no_torch():
    """The CLI names the engines in ``--engine``'s choices when it starts: no torch for that."""
    code = (
        "import sys, tinylm.engines, tinylm.cli.train_cmds\n"
        "assert set(tinylm.engines.ENGINES) == {'pytorch', 'scratch'}\n"
        "assert 'torch' not in sys.modules, 'torch was imported'\n"
    )
    env = {**os.environ, "PYTHONPATH": str(SRC)}
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env)
    assert result.returncode == 0, result.stderr


def test_the_command_line_starts_without_torch_or_numpy():
    """Every command's module is imported to build the parser: none may load torch or numpy."""
    code = (
        "import sys\n"
        "from tinylm.cli.main import build_parser\n"
        "build_parser().parse_args(['tokenize', 'x'])\n"
        "heavy = sorted({'torch', 'numpy', 'matplotlib'} & set(sys.modules))\n"
        "assert not heavy, heavy\n"
    )
    env = {**os.environ, "PYTHONPATH": str(SRC)}
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env)
    assert result.returncode == 0, result.stderr


# -- each rule fails on a planted violation --------------------------------------------------


def test_a_planted_cycle_is_found():
    planted = {"a": {"b"}, "b": {"c", "numpy"}, "c": {"a"}, "d": {"a"}}
    assert find_cycle(planted) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b"}, "b": {"numpy"}}) is None


def test_a_planted_torch_import_in_the_tokenizers_is_found_through_a_chain():
    planted = {
        "tinylm": set(),
        "tinylm.tokenizers": set(),
        "tinylm.tokenizers.char": {"tinylm.text.documents"},
        "tinylm.text": {"tinylm.text.arrays"},  # runs whenever tinylm.text.documents is imported
        "tinylm.text.documents": {"os"},
        "tinylm.text.arrays": {"torch"},
    }
    assert forbidden_paths(planted, FORBIDDEN) == [
        "tinylm.tokenizers.char -> tinylm.text -> tinylm.text.arrays -> torch"
    ]


@pytest.mark.parametrize(
    ("module", "target"),
    [
        ("tinylm.model.gpt", "tinylm.train.optim"),
        ("tinylm.model.gpt", "tinylm.fileio"),
        ("tinylm.model.config", "tinylm.untrusted_files"),
        ("tinylm.model.gpt", "tinylm.progress"),
        ("tinylm.train.trainer", "tinylm.cli.main"),
        ("tinylm.tokenizers.bpe", "tinylm.model.config"),
        ("tinylm.tokenizers.char", "tinylm.data.corpus"),
        ("tinylm.tokenizers.formats", "tinylm.interop.hf_tokenizer"),
        ("tinylm.tokenizers.spec", "tinylm.run.data_cache"),
        ("tinylm.tokenizers.spec", "tinylm.inference.loading"),
        ("tinylm.data.batches", "tinylm.train.trainer"),
        ("tinylm.engines.scratch_trainer", "tinylm.run.lock"),
        ("tinylm.engines.pytorch", "tinylm.cli.errors"),
        ("tinylm.train.trainer", "tinylm.engines.base"),
        ("tinylm.device", "tinylm.train.config"),
        ("tinylm.serve.api", "tinylm.cli.main"),
    ],
)
def test_each_planted_wrong_way_import_is_found(module, target):
    planted = {"tinylm": set(), module: {target}, target: set()}
    assert forbidden_paths(planted, FORBIDDEN) == [f"{module} -> {target}"]


def test_the_run_layer_may_drive_the_engines_which_may_use_training():
    planted = {
        "tinylm": set(),
        "tinylm.run.start": {"tinylm.engines"},
        "tinylm.engines": {"tinylm.engines.pytorch"},
        "tinylm.engines.pytorch": {"tinylm.train.trainer"},
        "tinylm.train.trainer": {"torch"},
    }
    assert forbidden_paths(planted, FORBIDDEN) == []
    planted["tinylm.engines.pytorch"].add("tinylm.run.lock")  # and back up: refused
    planted["tinylm.run.lock"] = set()
    assert forbidden_paths(planted, FORBIDDEN) == [
        "tinylm.engines -> tinylm.engines.pytorch -> tinylm.run.lock",
        "tinylm.engines.pytorch -> tinylm.run.lock",
    ]


def test_a_planted_import_of_the_training_runtime_is_found():
    planted = {
        "tinylm.train.trainer": {"tinylm.train.runtime"},
        "tinylm.cli.serve_cmds": {"tinylm.train.runtime", "tinylm.device"},
        "tinylm.train.runtime": {"torch"},
    }
    assert private_imports(planted, PRIVATE_TO) == [
        "tinylm.cli.serve_cmds imports tinylm.train.runtime"
    ]


def test_a_planted_lazy_import_without_a_reason_is_found(tmp_path):
    (tmp_path / "tinylm").mkdir()
    (tmp_path / "tinylm" / "cmds.py").write_text(
        textwrap.dedent(
            """
            import os
            from tinylm.errors import TinylmError


            def commented_above():
                # torch-free start-up: every command imports this module
                from tinylm.model.gpt import GPT
                from tinylm.train import trainer


            def commented_on_the_line():
                import tinylm.model.gpt  # generate.py imports this module


            def silent():
                import json

                from tinylm.model.gpt import GPT
                if os:
                    from tinylm.train.trainer import Trainer
            """
        )
    )
    assert uncommented_lazy_imports(tmp_path) == ["tinylm.cmds:19", "tinylm.cmds:21"]
    assert uncommented_lazy_imports(tmp_path, ("tinylm.cmds",)) == []


def test_a_planted_non_stdlib_import_in_scratch_is_found():
    planted = {
        "tinylm.scratch.engine": {"math", "random", "tinylm.scratch.value", "numpy"},
        "tinylm.scratch.value": {"tinylm.errors"},
    }
    assert non_stdlib_imports(planted, STDLIB_ONLY) == [
        "tinylm.scratch.engine imports numpy",
        "tinylm.scratch.value imports tinylm.errors",
    ]


def test_the_parser_sees_relative_lazy_and_type_checking_imports(tmp_path):
    """A planted source tree: a cycle made of a relative import and a function-level one."""
    files = {
        "pkg/__init__.py": "",
        "pkg/a.py": "from . import b\n",
        "pkg/b.py": """
            from typing import TYPE_CHECKING
            if TYPE_CHECKING:
                from pkg.c import Thing  # never runs: no edge
            def later():
                from pkg.a import x  # runs when called: an edge
            """,
        "pkg/c.py": "import torch.nn\nfrom pkg import b\n",
    }
    for name, text in files.items():
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_text(textwrap.dedent(text))
    planted = build_graph(tmp_path)
    assert planted == {
        "pkg": set(),
        "pkg.a": {"pkg.b"},
        "pkg.b": {"typing", "pkg.a"},
        "pkg.c": {"torch", "pkg.b"},
    }
    assert find_cycle(planted) == ["pkg.a", "pkg.b", "pkg.a"]
