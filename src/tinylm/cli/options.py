"""Options that several commands share, defined once so they read and behave the same."""

from __future__ import annotations

import argparse


def add_doc_sep(parser: argparse.ArgumentParser) -> None:
    """``--doc-sep``: how text files are cut into documents (the unit BOS/EOS wrap)."""
    parser.add_argument(
        "--doc-sep",
        default="eot",
        metavar="SEP",
        help="document separator in text files: eot (<|endoftext|>, the default), line, "
        "blank (a blank line), file (one document per file), or any literal string",
    )
