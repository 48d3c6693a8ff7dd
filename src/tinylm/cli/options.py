"""Options that several commands share, defined once so they read and behave the same."""

from __future__ import annotations

import argparse
import math
from typing import Any

from tinylm.check_values import shown
from tinylm.errors import TinylmError


def add_doc_sep(parser: argparse.ArgumentParser) -> None:
    """``--doc-sep``: how text files are cut into documents (the unit BOS/EOS wrap)."""
    parser.add_argument(
        "--doc-sep",
        default="eot",
        metavar="SEP",
        help="document separator in text files: eot (<|endoftext|>, the default), line, "
        "blank (a blank line), file (one document per file), or any literal string",
    )


def add_overrides(parser: argparse.ArgumentParser, help: str) -> None:
    """``--set KEY=VALUE`` (repeatable): model and train config fields, the last settings layer."""
    parser.add_argument(
        "--set", action="append", default=[], metavar="KEY=VALUE", dest="overrides", help=help
    )


def parse_value(text: str) -> Any:
    """A ``--set`` value: bool, none, int, float, a comma list of those, or a string.

    The config classes then check the type, so ``--set lr=fast`` fails with the
    field's own message. A number no float can hold (``1e400``, or an integer of
    more digits than Python converts) is refused here, in one line: ``float``
    would quietly read it as ``inf``.
    """
    lowered = text.strip().lower()
    if lowered in ("true", "false"):
        return lowered == "true"
    if lowered in ("none", "null"):
        return None
    for convert in (int, float):
        try:
            value = convert(text)
        except ValueError:
            continue
        if isinstance(value, float) and math.isinf(value) and "inf" not in lowered:
            raise TinylmError(
                f"the number {shown(text)} is too large (a float holds up to about 1.8e308); "
                "give a smaller one"
            )
        return value
    if "," in text:
        return [parse_value(part) for part in text.split(",")]
    return text


def parse_overrides(items: list[str]) -> dict[str, Any]:
    """``["n_layer=2", "lr=3e-4"]`` → ``{"n_layer": 2, "lr": 0.0003}``."""
    pairs: dict[str, Any] = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise TinylmError(f"--set wants KEY=VALUE, got {item!r}; e.g. --set n_layer=2")
        pairs[key.strip()] = parse_value(value.strip())
    return pairs
