"""Entry point of the ``tinylm`` command.

Each subcommand lives in a module of this package that registers its parser and a
``run(args)`` function calling the library. This module only parses, dispatches,
and turns what can go wrong into one line on stderr, never a traceback:

* a user mistake (:class:`~tinylm.errors.TinylmError`, or a bad flag): ``tinylm:
  error: ...`` in the command line's words (``tinylm.cli.errors``), exit status 2;
* standard output that cannot take the output (a full disk, ``> /dev/full``):
  one line, exit 2; a closed pipe (``| head``) is a normal end, exit 0;
* Ctrl-C: exit 130, also when a second Ctrl-C arrives while the first is handled;
* a library warning (an over-long prompt): ``tinylm: warning: ...``, one line.
"""

from __future__ import annotations

import argparse
import contextlib
import errno
import functools
import os
import signal
import sys
import warnings
from collections.abc import Sequence

from tinylm import __version__
from tinylm.cli.errors import cli_message
from tinylm.errors import TinylmError
from tinylm.terminal import printable

# Modules that each define ``register(subparsers)``. They import torch only inside
# their ``run`` functions, so ``tinylm tokenize`` never pays for it.
COMMAND_MODULES = ("tinylm.cli.tokenizer_cmds", "tinylm.cli.data_cmds", "tinylm.cli.train_cmds")
COMMAND_MODULES += ("tinylm.cli.inspect_cmds",)
COMMAND_MODULES += ("tinylm.cli.interop_cmds",)
COMMAND_MODULES += ("tinylm.cli.serve_cmds",)
COMMAND_MODULES += ("tinylm.cli.compare_cmds",)
COMMAND_MODULES += ("tinylm.cli.lora_cmds",)
COMMAND_MODULES += ("tinylm.cli.chat_cmds",)
COMMAND_MODULES += ("tinylm.cli.dpo_cmds",)

INTERRUPTED = 130  # the shell's status for a program ended by SIGINT


class Parser(argparse.ArgumentParser):
    """argparse, but usage mistakes are one line and exit 2 like every other error."""

    def error(self, message: str) -> None:  # type: ignore[override]
        self.exit(
            2, f"tinylm: error: {printable(message, one_line=True)} (see {self.prog} --help)\n"
        )


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
    handler = signal.getsignal(signal.SIGINT)
    try:
        return _main(argv)
    except KeyboardInterrupt:  # a second Ctrl-C while the first was being handled
        return INTERRUPTED
    finally:  # called from a notebook or a test, leave Ctrl-C as it was
        with contextlib.suppress(ValueError, TypeError):
            signal.signal(signal.SIGINT, handler)


def _main(argv: Sequence[str] | None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        with warnings.catch_warnings():
            warnings.showwarning = functools.partial(_show_warning, seen=set())
            result = args.run(args)
        sys.stdout.flush()  # a full stdout fails here, while we can still say so
    except TinylmError as exc:
        _say(f"tinylm: error: {cli_message(exc)}")
        return 2
    except KeyboardInterrupt:
        _ignore_sigint()  # the run is already stopping; a second Ctrl-C changes nothing
        _say("tinylm: interrupted")
        return INTERRUPTED
    except BrokenPipeError:
        _silence_stdout()  # the reader (| head) has all it wanted
        return 0
    except OSError as exc:
        if not _output_failed(exc):
            raise
        _silence_stdout()
        reason = "no space left on the device" if exc.errno == errno.ENOSPC else exc.strerror
        _say(f"tinylm: error: cannot write the output: {reason}; write it somewhere else")
        return 2
    return int(result or 0)


def _is_quiet_rank() -> bool:
    """Under torchrun every process fails alike; only rank 0 says so.

    Only when both variables say this is one of several processes: a stray
    ``RANK=1`` without ``WORLD_SIZE`` must not swallow the message.
    """
    rank, world = os.environ.get("RANK"), os.environ.get("WORLD_SIZE")
    try:
        return rank is not None and world is not None and int(world) > 1 and int(rank) != 0
    except ValueError:
        return False


def _say(line: str) -> None:
    if not _is_quiet_rank():
        with contextlib.suppress(OSError):
            print(printable(line, one_line=True), file=sys.stderr, flush=True)


def _show_warning(message, category, filename, lineno, file=None, line=None, *, seen) -> None:
    """A warning as one line, without the source line Python would print under it.

    Each text once per command (``seen``): a run reads its config more than once, and
    torch's own ``catch_warnings`` blocks reset Python's record of what was shown.
    """
    if str(message) in seen:
        return
    seen.add(str(message))
    _say(f"tinylm: warning: {message}")


def _output_failed(exc: OSError) -> bool:
    """Whether ``exc`` is a failed write to standard output.

    Files tinylm writes go through ``tinylm.fileio``, which reports its own
    errors, and errors opening a file carry its name; a write error with no
    file name that reaches here is the output stream's.
    """
    return exc.filename is None and exc.errno in (
        errno.ENOSPC,
        errno.EDQUOT,
        errno.EFBIG,
        errno.EIO,
        errno.EROFS,
    )


def _silence_stdout() -> None:
    """Point stdout at /dev/null so the interpreter's final flush cannot fail again."""
    with contextlib.suppress(OSError, ValueError, AttributeError):
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        os.close(devnull)


def _ignore_sigint() -> None:
    with contextlib.suppress(ValueError):  # only the main thread may set handlers
        signal.signal(signal.SIGINT, signal.SIG_IGN)


if __name__ == "__main__":
    sys.exit(main())
