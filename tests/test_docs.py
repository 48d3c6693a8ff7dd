"""The documentation against the things it describes, so neither can drift.

* ``README.md`` is a front page: at most 200 lines, and it keeps the quickstart
  block that ``.ci/run`` and DEVELOPERS.md name as "the README's test command";
* every relative link in ``README.md`` and ``docs/*.md`` names a file that exists;
* the rules table of ``docs/architecture.md`` says what ``tests/test_architecture.py``
  enforces (``FORBIDDEN`` and ``STDLIB_ONLY``), row for row.

Each reader is also run on a small planted page, to show it can fail.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from conftest import REPO
from test_architecture import FORBIDDEN, STDLIB_ONLY

README = REPO / "README.md"
DOCS = REPO / "docs"
MAX_README_LINES = 200
QUICKSTART = (
    "```bash\n"
    "python -m pip install -e . && tinylm train                  "
    "# main job: train a model, print samples\n"
    'python -m pip install -e ".[test]" && python -m pytest -q   # the test suite\n'
    "```\n"
)
#: the second cell of a rules-table row for a package confined to the standard library
STDLIB_CELL = "anything outside the standard library"


# -- reading markdown -------------------------------------------------------------------

_FENCE = re.compile(r"^(```|~~~).*?^\1[ \t]*$", re.MULTILINE | re.DOTALL)
_INLINE_CODE = re.compile(r"`[^`\n]*`")
_LINK = re.compile(r"!?\[[^\]\n]*\]\(\s*<?([^)\s>]+)>?(?:\s+(?:\"[^\"]*\"|'[^']*'))?\s*\)")


def link_targets(markdown: str) -> list[str]:
    """The target of every inline link and image, code blocks and code spans left out."""
    prose = _INLINE_CODE.sub("", _FENCE.sub("", markdown))
    return _LINK.findall(prose)


def broken_links(page: Path) -> list[str]:
    """Relative links of ``page`` whose file does not exist (anchors and URLs are not checked)."""
    broken = []
    for target in link_targets(page.read_text(encoding="utf-8")):
        if re.match(r"[a-z][a-z0-9+.-]*:", target) or target.startswith("#"):
            continue  # http:, https:, mailto: ...; an anchor on the same page
        path = target.split("#", 1)[0]
        if not (page.parent / path).exists():
            broken.append(f"{page.name}: {target}")
    return broken


def rules_table(markdown: str) -> tuple[dict[str, set[str]], set[str]]:
    """The rules table under ``## The rules``: package -> names it must never reach, and
    the packages confined to the standard library."""
    assert "\n## The rules\n" in markdown, "docs/architecture.md lost its '## The rules' section"
    section = markdown.split("\n## The rules\n", 1)[1].split("\n## ", 1)[0]
    forbidden: dict[str, set[str]] = {}
    stdlib_only: set[str] = set()
    for line in section.splitlines():
        cells = [cell.strip() for cell in line.strip().strip("|").split("|")]
        if not line.startswith("|") or not re.fullmatch(r"`tinylm[\w.]*`", cells[0]):
            continue  # prose, the header row, the separator row
        package = cells[0].strip("`")
        if package in forbidden or package in stdlib_only:
            raise AssertionError(f"{package} has two rows")
        if cells[1] == STDLIB_CELL:
            stdlib_only.add(package)
        else:
            forbidden[package] = set(re.findall(r"`([^`]+)`", cells[1]))
    return forbidden, stdlib_only


def table_disagreements(
    markdown: str, forbidden: dict[str, tuple[str, ...]], stdlib_only: tuple[str, ...]
) -> list[str]:
    """One line per package whose row in the page differs from the enforced rules."""
    page_forbidden, page_stdlib = rules_table(markdown)
    enforced = {package: set(names) for package, names in forbidden.items()}
    problems = []
    for package in sorted(enforced.keys() | page_forbidden.keys()):
        page, test = page_forbidden.get(package), enforced.get(package)
        if page != test:
            said, enforces = (", ".join(sorted(names or ())) or "no row" for names in (page, test))
            problems.append(f"{package}: the page says {said}; the test enforces {enforces}")
    for package in sorted(page_stdlib ^ set(stdlib_only)):
        where = "the page" if package in page_stdlib else "the test"
        problems.append(f"{package}: standard library only in {where} alone")
    return problems


# -- the real pages -----------------------------------------------------------------------


def test_the_readme_is_a_front_page_of_at_most_200_lines():
    lines = README.read_text(encoding="utf-8").splitlines()
    assert len(lines) <= MAX_README_LINES, (
        f"README.md has {len(lines)} lines: move reference material to a page in docs/"
    )


def test_the_readme_keeps_the_quickstart_commands_byte_for_byte():
    """``.ci/run`` runs "the README's test command, exactly"; a newcomer copies both lines."""
    assert QUICKSTART in README.read_text(encoding="utf-8")
    ci = (REPO / ".ci" / "run").read_text(encoding="utf-8")
    assert 'python -m pip install -e ".[test]" && python -m pytest -q\n' in ci


def test_the_readme_maps_every_page_in_docs():
    targets = set(link_targets(README.read_text(encoding="utf-8")))
    pages = {f"docs/{page.name}" for page in DOCS.glob("*.md")}
    assert pages - targets == set(), "add a line for each page to the README's Documentation"


@pytest.mark.parametrize("page", [README, *sorted(DOCS.glob("*.md"))], ids=lambda p: p.name)
def test_every_relative_link_names_a_file_that_exists(page):
    assert broken_links(page) == []


def architecture_page() -> str:
    return (DOCS / "architecture.md").read_text(encoding="utf-8")


def test_the_architecture_rules_table_matches_the_enforced_rules():
    assert table_disagreements(architecture_page(), FORBIDDEN, STDLIB_ONLY) == []
    assert len(rules_table(architecture_page())[0]) == len(FORBIDDEN)  # every row was read


# -- each reader fails on a planted page ---------------------------------------------------


def test_a_planted_broken_link_is_found_and_code_is_not_read_as_links(tmp_path):
    (tmp_path / "there.md").write_text("x")
    page = tmp_path / "page.md"
    page.write_text(
        "[ok](there.md) ![pic](there.md#top) [web](https://example.com) [anchor](#a)\n"
        "[gone](missing.md) and ![gone too](img/none.png 'title')\n"
        "`[not](a-link.md)`\n"
        "```python\nx = f[0](missing-in-code.md)\n```\n"
    )
    assert broken_links(page) == ["page.md: missing.md", "page.md: img/none.png"]


PLANTED_RULES = """\
# Architecture

## The rules

| package | must never reach | why |
|---|---|---|
| `tinylm.model` | `tinylm.train`, `torch` | a reason, with `code` in it |
| `tinylm.scratch` | anything outside the standard library | plain Python |

## Layout

| `tinylm.elsewhere` | `tinylm.cli` | not in the rules section |
"""


def test_the_rules_table_is_read_row_by_row():
    forbidden, stdlib_only = rules_table(PLANTED_RULES)
    assert forbidden == {"tinylm.model": {"tinylm.train", "torch"}}
    assert stdlib_only == {"tinylm.scratch"}


def test_a_drifted_rules_table_is_named_row_by_row():
    """A name dropped from a row, a rule only the test has, a rule only the page has."""
    page = architecture_page().replace(", `tinylm.progress` |", " |", 1)
    enforced = {**FORBIDDEN, "tinylm.planted": ("tinylm.cli",)}
    stdlib_only = ("tinylm.scratch", "tinylm.run_layout", "tinylm.new")
    assert table_disagreements(page, enforced, stdlib_only) == [
        "tinylm.model: the page says tinylm.cli, tinylm.fileio, tinylm.train, "
        "tinylm.untrusted_files; the test enforces tinylm.cli, tinylm.fileio, tinylm.progress, "
        "tinylm.train, tinylm.untrusted_files",
        "tinylm.planted: the page says no row; the test enforces tinylm.cli",
        "tinylm.new: standard library only in the test alone",
    ]
    assert table_disagreements(page, FORBIDDEN, ()) == [
        "tinylm.model: the page says tinylm.cli, tinylm.fileio, tinylm.train, "
        "tinylm.untrusted_files; the test enforces tinylm.cli, tinylm.fileio, tinylm.progress, "
        "tinylm.train, tinylm.untrusted_files",
        "tinylm.run_layout: standard library only in the page alone",
        "tinylm.scratch: standard library only in the page alone",
    ]


def test_a_package_with_two_rows_is_refused():
    doubled = PLANTED_RULES.replace(
        "| `tinylm.scratch`", "| `tinylm.model` | `x` | y |\n| `tinylm.scratch`"
    )
    with pytest.raises(AssertionError, match="tinylm.model has two rows"):
        rules_table(doubled)
