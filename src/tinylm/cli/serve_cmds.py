"""``tinylm serve``: the inspector, a local web page over one or more trained runs."""

from __future__ import annotations

import argparse
import signal
import sys
from typing import TYPE_CHECKING

from tinylm.cli.output import note_decode_kernels
from tinylm.cli.tokenizer_cmds import spec_label
from tinylm.data.corpus import corpus_from_specs
from tinylm.errors import TinylmError
from tinylm.terminal import printable
from tinylm.tokenizers.spec import parse_tokenizer_spec, tokenizer_from_spec
from tinylm.workers import default_workers

if TYPE_CHECKING:
    from tinylm.serve.server import InspectorServer

DEFAULT_PORT = 8765
DEFAULT_COMPARE = ("char",)


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "serve",
        help="a local web page to look inside trained runs (tokens, attention, sampling)",
        description="Serve the inspector: type a prompt and see its tokens, the next-token "
        "distribution, attention and a streamed generation; compare runs' training curves.",
    )
    p.add_argument(
        "runs",
        nargs="*",
        metavar="RUN",
        help="run or checkpoint folders, or a folder of runs (default: every run in runs/)",
    )
    p.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1)")
    p.add_argument(
        "--port", type=int, default=DEFAULT_PORT, help=f"default {DEFAULT_PORT}; 0 picks a free one"
    )
    p.add_argument(
        "--tokenizer",
        "-t",
        action="append",
        metavar="SPEC",
        help="a tokenizer to compare with on the page: a file (tinylm .json, .tiktoken, "
        "encoder.json), 'char' or 'bpe:N' (repeatable; default: char)",
    )
    p.add_argument("--best", action="store_true", help="use each run's best checkpoint")
    p.add_argument("--device", default="cpu", help="cpu (default), auto, cuda or mps")
    p.add_argument(
        "--weights",
        default=None,
        help="the weights the Generate and Chat views read: float32, bfloat16 or int8 "
        "(default: each run's own: float32, or what tinylm quantize stored)",
    )
    p.add_argument(
        "--max-new-tokens", type=int, default=500, help="most tokens one generation may ask for"
    )
    p.add_argument(
        "--threads",
        type=int,
        default=None,
        help="torch threads per computation on a CPU (default: half the CPUs this process "
        "may use, at least 1)",
    )
    p.add_argument("--log", action="store_true", help="print each request")
    p.set_defaults(run=run_serve)


def run_serve(args: argparse.Namespace) -> int:
    from dataclasses import replace

    # torch-free start-up: every tinylm command imports this module
    from tinylm.device import resolve_device
    from tinylm.inference.weight_formats import WEIGHT_FORMATS
    from tinylm.serve.api import Api, Limits
    from tinylm.serve.served import load_runs
    from tinylm.serve.server import LOOPBACK, InspectorServer

    if not 0 <= args.port <= 65535:
        raise TinylmError(f"--port must be between 0 and 65535, got {args.port}")
    if args.max_new_tokens < 1:
        raise TinylmError(f"--max-new-tokens must be at least 1, got {args.max_new_tokens}")
    if args.threads is not None and args.threads < 1:
        raise TinylmError(f"--threads must be at least 1, got {args.threads}")
    if args.weights is not None and args.weights not in WEIGHT_FORMATS:
        raise TinylmError(
            f"unknown --weights {args.weights!r}; choose one of {', '.join(WEIGHT_FORMATS)}"
        )
    specs = args.tokenizer or list(DEFAULT_COMPARE)
    for spec in specs:  # a bad tokenizer fails in a moment, not after the runs load
        parse_tokenizer_spec(spec)
    device = str(resolve_device(args.device))
    which = "best" if args.best else "latest"
    runs = load_runs(args.runs, device=device, which=which, weights=args.weights)
    for name, run in runs.items():  # only once every run loaded: an error is one line
        where = printable(str(run.meta.path), one_line=True)
        print(f"loaded {printable(name, one_line=True)} from {where}", file=sys.stderr)
        note_decode_kernels(run.engine.weights, device)
    if device == "cpu":
        _set_threads(args.threads or default_threads())
    corpus = corpus_from_specs([])  # for 'char' and 'bpe:N': the built-in corpus
    # A viewer shows every character: a char tokenizer's unseen ones appear as <UNK>.
    tokenizers = {
        spec_label(spec): tokenizer_from_spec(spec, corpus, unknown="reserve") for spec in specs
    }
    if len(runs) > 1:
        tokenizers.update({f"{name} (run)": run.tokenizer for name, run in runs.items()})
    limits = replace(Limits(), max_new_tokens=args.max_new_tokens)
    api = Api(runs, tokenizers, limits)
    try:
        server = InspectorServer(api, args.host, args.port, log=_log if args.log else None)
    except OSError as exc:
        raise TinylmError(
            f"cannot listen on {args.host}:{args.port} ({exc.strerror or exc}); "
            "pick another --port (0 picks a free one)"
        ) from None
    if args.host not in LOOPBACK:
        print(
            f"warning: listening on {printable(args.host, one_line=True)}: anyone who can reach "
            "this "
            "machine can use the inspector and run the model (there is no login); the "
            "default, 127.0.0.1, keeps it to this machine",
            file=sys.stderr,
        )
    names = printable(", ".join(runs), one_line=True)
    print(f"tinylm inspector: {server.url}  ({names}; Ctrl-C stops it)", flush=True)
    try:
        _serve_until_interrupted(server)
    finally:
        server.server_close()
    print("stopped", file=sys.stderr)
    return 0


def _serve_until_interrupted(server: InspectorServer) -> None:
    """Serve until Ctrl-C (SIGINT), which raises a flag rather than an exception.

    An interrupt the shell told this process to ignore (a background job) stays ignored.
    """
    interrupted: list[int] = []
    previous = signal.getsignal(signal.SIGINT)
    if previous is not signal.SIG_IGN:
        signal.signal(signal.SIGINT, lambda signum, frame: interrupted.append(signum))
    try:
        server.serve_until(lambda: bool(interrupted))
    finally:
        signal.signal(signal.SIGINT, previous)


def default_threads() -> int:
    """Torch threads for the server: half the CPUs this process may use, at least one.

    Torch's default is every core, for one computation at a time. The server runs
    several side by side (requests to different runs, a generation between other
    requests), and on a machine shared with other work each operation waits for its
    slowest thread: two threads on a busy two-core machine made one generation
    several times slower than one thread (docs/serve.md).
    """
    return max(1, default_workers() // 2)


def _set_threads(threads: int) -> None:
    import torch

    torch.set_num_threads(threads)


def _log(line: str) -> None:
    print(printable(line, one_line=True), file=sys.stderr, flush=True)
