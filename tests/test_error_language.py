"""The library names settings; only the CLI spells flags.

The flags are read from the CLI's own parser (every option of every command), so a
new flag is covered without editing this test; the source is read as text, so
docstrings and comments count too.
"""

from __future__ import annotations

import argparse
import re
from pathlib import Path

import pytest

from tinylm.cli.errors import cli_message
from tinylm.cli.main import build_parser
from tinylm.errors import SettingError, TinylmError

SRC = Path(__file__).resolve().parents[1] / "src" / "tinylm"


def cli_flags() -> set[str]:
    """Every long option of every ``tinylm`` command (``--version`` and ``--help`` aside)."""
    flags: set[str] = set()
    parsers = [build_parser()]
    while parsers:
        parser = parsers.pop()
        for action in parser._actions:
            if isinstance(action, argparse._SubParsersAction):
                parsers.extend(action.choices.values())
            flags.update(o for o in action.option_strings if o.startswith("--"))
    return flags - {"--help", "--version"}


def flags_in(text: str, flags: set[str]) -> list[str]:
    """The flags ``text`` spells (as whole words: ``--outline`` is not ``--out``)."""
    return sorted(f for f in flags if re.search(rf"(?<![\w-]){re.escape(f)}(?![\w-])", text))


def library_files() -> list[Path]:
    return [p for p in sorted(SRC.rglob("*.py")) if "cli" not in p.relative_to(SRC).parts]


def test_the_parser_has_the_flags_this_test_looks_for():
    flags = cli_flags()
    assert {"--out", "--set", "--prompt", "--resume", "--init-from", "--tokenizer"} <= flags


def test_the_scan_finds_a_planted_flag_and_only_whole_ones():
    flags = {"--out", "--set"}
    assert flags_in('raise TinylmError("choose another with --out")', flags) == ["--out"]
    assert flags_in("lower it (--set block_size=N)", flags) == ["--set"]
    assert flags_in("--outline and --settings are other words", flags) == []


def test_no_cli_flag_appears_outside_the_cli():
    flags = cli_flags()
    found = {
        str(path.relative_to(SRC)): hits
        for path in library_files()
        if (hits := flags_in(path.read_text(encoding="utf-8"), flags))
    }
    assert found == {}


@pytest.mark.parametrize(
    ("error", "expected"),
    [
        (SettingError("choose another out_dir", setting="out_dir"), "(--out DIR)"),
        (SettingError("or lower block_size", setting="block_size"), "(--set block_size=N)"),
        (SettingError("give a prompt", setting="prompt"), "(--prompt)"),
        (SettingError("export as hf", setting="format", value="hf"), "(--format hf)"),
    ],
)
def test_the_cli_adds_the_flag_for_the_setting_an_error_names(error, expected):
    message = cli_message(error)
    assert message.startswith(str(error)) and message.endswith(expected)


def test_an_error_that_names_no_setting_is_printed_as_it_is():
    assert cli_message(TinylmError("corpus x.txt is empty")) == "corpus x.txt is empty"


def test_a_library_error_names_the_setting_and_the_cli_the_flag(tmp_path):
    from tinylm.train.trainer import check_writable

    blocker = tmp_path / "file"
    blocker.write_text("", encoding="utf-8")
    with pytest.raises(SettingError) as caught:
        check_writable(blocker / "run")
    assert caught.value.setting == "out_dir" and "out_dir" in str(caught.value)
    assert "--" not in str(caught.value)
    assert cli_message(caught.value).endswith("choose another out_dir (--out DIR)")


def test_a_setting_error_survives_pickling_from_a_worker_process():
    import pickle

    error = SettingError("m", setting="unknown", reason="r", value="reserve")
    copy = pickle.loads(pickle.dumps(error))
    assert type(copy) is SettingError and str(copy) == "m"
    assert (copy.setting, copy.reason, copy.details) == ("unknown", "r", {"value": "reserve"})
