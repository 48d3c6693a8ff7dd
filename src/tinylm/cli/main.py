"""Entry point of the ``tinylm`` command.

Each subcommand lives in a module of this package that registers its parser and a
``run(args)`` function calling the library. This module only parses, dispatches,
and turns user mistakes (:class:`~tinylm.errors.TinylmError`) into one line on
stderr, in the command line's words (``tinylm.cli.errors``), and exit status 2 —
never a traceback.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence

from tinylm import __version__
from tinylm.cli.errors import cli_message
from tinylm.errors import TinylmError

# Modules that each define ``register(subparsers)``. They import torch only inside
# their ``run`` functions, so ``tinylm tokenize`` never pays for it.
COMMAND_MODULES = ("tinylm.cli.tokenizer_cmds", "tinylm.cli.data_cmds", "tinylm.cli.train_cmds")
COMMAND_MODULES += ("tinylm.cli.inspect_cmds",)
COMMAND_MODULES += ("tinylm.cli.interop_cmds",)
COMMAND_MODULES += ("tinylm.cli.compare_cmds",)
COMMAND_MODULES += ("tinylm.cli.serve_cmds",)


class Parser(argparse.ArgumentParser):
    """argparse, but usage mistakes are one line and exit 2 like every other error."""

    def error(self, message: str) -> None:  # type: ignore[override]
        self.exit(2, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


def build_parser() -> argparse.ArgumentParser:
    from importlib import import_module

    parser = Parser(
        prog="tinylm",
        description="Build, train, inspect and sample a GPT-style language model from scratch.",
    )
    parser.add_argument("--version", action="version", version=f"tinylm {__version__}")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=Parser)
    subparsers.required = True
    for name in COMMAND_MODULES:
        import_module(name).register(subparsers)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        result = args.run(args)
    except TinylmError as exc:
        if os.environ.get("RANK", "0") == "0":  # under torchrun, say it once, not per process
            print(f"tinylm: error: {cli_message(exc)}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("tinylm: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:
        return 0
    return int(result or 0)


if __name__ == "__main__":
    sys.exit(main())
