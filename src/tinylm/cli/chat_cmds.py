"""``tinylm chat``: a conversation with a chat model, in the terminal or from a script.

The model is a tinylm run or checkpoint fine-tuned on conversations (it has a
``chat_template.json``), or a Hugging Face chat model folder (its own Jinja
``chat_template``). The conversation itself is a
:class:`~tinylm.inference.chat_session.ChatSession`; this module only reads lines,
runs the commands and prints the replies as they are written.

* At a terminal: a ``> `` prompt, replies streamed, notes on stderr. Ctrl-C while
  a reply is written stops that reply (what was written stays in the
  conversation); Ctrl-C or Ctrl-D at the prompt ends the chat.
* From a pipe (stdin is not a terminal): no prompt; each line is a user turn and
  each reply is printed as one line (its newlines shown as ``\\n``), so a script
  can pair them. A bad command or message ends the chat with exit status 2.

Lines starting with ``/`` are commands (``/help`` lists them); ``//`` sends a
message that starts with ``/``. Every text printed goes through
:func:`tinylm.terminal.printable`.
"""

from __future__ import annotations

import argparse
import contextlib
import sys
from typing import Any

from tinylm.cli.errors import cli_message
from tinylm.cli.output import note_decode_kernels
from tinylm.errors import TinylmError
from tinylm.terminal import printable

HELP = """commands:
  /temperature X   sample with temperature X (0 is greedy; also /temp X)
  /system TEXT     a new system prompt (/system alone removes it)
  /reset           forget the conversation (the system prompt stays)
  /help            this list
  /quit            end the chat (also /exit, Ctrl-D, or Ctrl-C at the prompt)
Ctrl-C while a reply is written stops the reply. Start a message with // to send one
that begins with /."""


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "chat",
        help="talk to a chat model (a run fine-tuned on conversations, or a Hugging Face folder)",
        description="A conversation with a chat model. Lines from a pipe are user turns, one "
        "reply printed per line. Commands: /temperature X, /system TEXT, /reset, /help, /quit.",
    )
    p.add_argument(
        "run_path",
        metavar="RUN",
        help="a chat run or checkpoint folder, or a Hugging Face chat model folder",
    )
    p.add_argument("--system", default=None, metavar="TEXT", help="a system prompt")
    p.add_argument("--temperature", type=float, default=0.7, help="0 is greedy (default: 0.7)")
    p.add_argument("--top-k", type=int, default=None)
    p.add_argument("--top-p", type=float, default=None)
    p.add_argument("--max-tokens", type=int, default=256, help="most tokens per reply")
    p.add_argument(
        "--weights",
        default=None,
        help="the weights generation reads: float32, bfloat16 or int8 (default: the run's "
        "own: float32, or what tinylm quantize stored)",
    )
    p.add_argument("--seed", type=int, default=None, help="for reproducible replies")
    p.add_argument("--device", default="auto", help="auto, cpu, cuda or mps")
    p.add_argument("--best", action="store_true", help="use the best checkpoint, not the latest")
    p.set_defaults(run=run_chat)


def run_chat(args: argparse.Namespace) -> int:
    # torch-free start-up: every tinylm command imports this module
    from tinylm.inference.chat_session import ChatSettings

    settings = ChatSettings(  # checked before anything is loaded
        temperature=args.temperature,
        top_k=args.top_k,
        top_p=args.top_p,
        max_tokens=args.max_tokens,
        seed=args.seed,
    )
    session = open_session(args, settings)
    interactive = sys.stdin.isatty()
    if interactive:
        context = session.engine.config.block_size
        note(
            f"chatting with {args.run_path} ({context:,} tokens of context); "
            "/help lists the commands, /quit or Ctrl-D ends"
        )
    converse(session, interactive)
    return 0


def open_session(args: argparse.Namespace, settings: Any) -> Any:
    """The session for ``args.run_path``: a tinylm chat run, or a Hugging Face chat folder."""
    # torch-free start-up: every tinylm command imports this module
    from tinylm.device import resolve_device
    from tinylm.inference.chat_session import ChatSession
    from tinylm.inference.engine import DecodeEngine
    from tinylm.inference.loading import NoChatTemplate, load_chat_model
    from tinylm.interop.hf_chat import is_hf_folder, read_hf_chat_model

    device = str(resolve_device(args.device))
    if is_hf_folder(args.run_path):
        if args.best:
            raise TinylmError("--best picks a tinylm run's best checkpoint; drop it for a folder")
        model, tokenizer, template = read_hf_chat_model(args.run_path, device)
        engine = DecodeEngine(model, args.weights or "float32")  # packed copies, once
        if template is None:
            raise TinylmError(
                f"{args.run_path} has no chat_template (in tokenizer_config.json or "
                "chat_template.jinja), so its conversations have no layout; chat with a chat "
                "model's folder, or import it (tinylm import DIR --out RUN) and fine-tune it: "
                "tinylm train --init-from RUN --data chat:builtin --out DIR"
            )
    else:
        which = "best" if args.best else "latest"
        try:
            engine, tokenizer, template = load_chat_model(
                args.run_path, device, which, args.weights
            )
        except NoChatTemplate as exc:
            raise TinylmError(
                f"{exc.path} has no chat template: it continues text but was not fine-tuned on "
                "conversations; fine-tune it with chat data first: "
                f"tinylm train --init-from {exc.path} --data chat:builtin --out DIR"
            ) from None
    note_decode_kernels(engine.weights, device)
    return ChatSession(engine, tokenizer, template, system=args.system, settings=settings)


# -- the conversation -------------------------------------------------------------------


def converse(session: Any, interactive: bool) -> None:
    """Read turns and commands until /quit, end of input, or Ctrl-C at the prompt."""
    while (line := read_line(interactive)) is not None:
        if not line.strip():
            continue
        try:
            if line.startswith("/") and not line.startswith("//"):
                if not run_command(session, line):
                    return
                continue
            reply = session.send(line[1:] if line.startswith("//") else line)
        except TinylmError as exc:
            if not interactive:  # a script's mistake ends the script
                raise
            note(f"error: {cli_message(exc)}")
            continue
        for notice in reply.notices:
            note(notice)
        show_reply(reply, session, one_line=not interactive)


def read_line(interactive: bool) -> str | None:
    """The next line without its newline; ``None`` at the end of input or Ctrl-C at the prompt."""
    try:
        if interactive:
            with contextlib.suppress(ImportError):
                import readline  # noqa: F401  (line editing and history for input())
            return input("> ")
        line = sys.stdin.readline()
    except EOFError:
        return None
    except KeyboardInterrupt:  # at the prompt: the user wants to leave
        sys.stdout.write("\n")
        return None
    except UnicodeDecodeError:
        raise TinylmError("the input is not UTF-8 text; give the chat UTF-8 lines") from None
    return None if not line else line.rstrip("\r\n")


def show_reply(reply: Any, session: Any, one_line: bool) -> None:
    """Print the reply as it is written; Ctrl-C stops it (what was written stays)."""
    try:
        for piece in reply:
            sys.stdout.write(printable(piece, one_line=one_line))
            sys.stdout.flush()
    except KeyboardInterrupt:
        reply.close()
        sys.stdout.write("\n")
        note("reply stopped; what was written stays in the conversation")
        return
    sys.stdout.write("\n")
    sys.stdout.flush()
    if reply.finish_reason == "length":
        note(
            f"the reply reached the {session.settings.max_tokens:,}-token limit "
            "(--max-tokens) and was cut there"
        )


def run_command(session: Any, line: str) -> bool:
    """Carry out a ``/command``; ``False`` when the chat should end."""
    name, _, rest = line.partition(" ")
    rest = rest.strip()
    if name in ("/quit", "/exit"):
        return False
    if name == "/help":
        note(HELP)
    elif name == "/reset":
        session.reset()
        note("the conversation is forgotten (the system prompt stays)")
    elif name in ("/temperature", "/temp"):
        session.update(temperature=_number(rest, name, session.settings.temperature))
        note(f"temperature {session.settings.temperature:g}")
    elif name == "/system":
        session.set_system(rest)
        note(f"system prompt: {rest}" if rest else "no system prompt")
    else:
        raise TinylmError(
            f"unknown command {name}; /help lists them (start a message with // to send one "
            "that begins with /)"
        )
    return True


def _number(text: str, command: str, now: float) -> float:
    try:
        return float(text)
    except ValueError:
        raise TinylmError(
            f"{command} needs a number >= 0 (0 is greedy), e.g. {command} 0.7; "
            f"it is {now:g} now, got {text!r}"
        ) from None


def note(text: str) -> None:
    """A line for the user beside the replies: on stderr, so stdout holds replies only."""
    print(printable(text), file=sys.stderr, flush=True)
