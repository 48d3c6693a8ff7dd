"""Library code names settings, never command-line flags (issue 7's rule, kept by a test).

A message written in a library module is read by notebook users too, for whom
``--text-field`` means nothing; the library raises
``SettingError(message, setting="text_field")`` and ``tinylm.cli.errors`` adds the
flag. This test parses every module outside ``tinylm/cli`` and fails on a string
literal (docstrings aside: they may show a command line as an example) that holds
something shaped like a flag.
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

SRC = Path(__file__).resolve().parents[1] / "src" / "tinylm"
FLAG = re.compile(r"(?<![\w-])--[a-z][a-z0-9-]*")

#: (module path relative to src/tinylm, flag): why the literal is allowed.
ALLOWED: dict[tuple[str, str], str] = {}


def docstring_nodes(tree: ast.AST) -> set[int]:
    """The ids of the nodes that are docstrings (module, class, function)."""
    found = set()
    for node in ast.walk(tree):
        if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)):
            body = node.body
            if body and isinstance(body[0], ast.Expr) and isinstance(body[0].value, ast.Constant):
                found.add(id(body[0].value))
    return found


def flag_literals(path: Path) -> list[tuple[int, str]]:
    tree = ast.parse(path.read_text(encoding="utf-8"))
    docstrings = docstring_nodes(tree)
    hits = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Constant) and isinstance(node.value, str):
            if id(node) in docstrings:
                continue
            hits += [(node.lineno, flag) for flag in FLAG.findall(node.value)]
    return hits


def test_library_strings_name_no_cli_flags():
    problems = []
    for path in sorted(SRC.rglob("*.py")):
        relative = path.relative_to(SRC).as_posix()
        if relative.startswith("cli/"):
            continue
        for line, flag in flag_literals(path):
            if (relative, flag) not in ALLOWED:
                problems.append(f"{relative}:{line}: {flag}")
    assert problems == [], "library code names CLI flags: " + "; ".join(problems)


def test_the_check_finds_a_planted_flag(tmp_path):
    planted = tmp_path / "planted.py"
    planted.write_text(
        '"""Run ``tinylm train --out DIR``: a docstring may show a command."""\n'
        'def f():\n    raise ValueError(f"bad value; pass --text-field NAME")\n',
        encoding="utf-8",
    )
    assert flag_literals(planted) == [(3, "--text-field")]
