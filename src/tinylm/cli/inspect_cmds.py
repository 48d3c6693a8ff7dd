"""``tinylm inspect next|attention|embeddings|lens``: look inside a trained run.

Each subcommand loads the run, calls one view of ``tinylm.inspect``, prints its
table and writes its picture (and, for attention, the raw weights) to ``--out``,
by default the run folder's ``inspect/``. Torch and matplotlib are imported
inside the ``run_*`` functions, so other commands never pay for them.
"""

from __future__ import annotations

import argparse
import re
from pathlib import Path
from typing import Any

from tinylm.cli.output import say
from tinylm.errors import TinylmError
from tinylm.inspect.figures import save_png
from tinylm.inspect.tables import format_table
from tinylm.inspect.tokens import visible
from tinylm.run_layout import INSPECT_DIR
from tinylm.terminal import printable


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "inspect",
        help="look inside a trained run: next-token probabilities, attention, embeddings, "
        "logit lens",
        description="Look inside a trained run. Each view prints a table and writes a PNG "
        "to --out (default: RUN/inspect/).",
    )
    views = parser.add_subparsers(dest="view", metavar="VIEW", parser_class=type(parser))
    views.required = True

    p = _add_view(views, "next", "top-k next-token probabilities after TEXT (table + bar chart)")
    p.add_argument("text", metavar="TEXT", help="the prompt")
    p.add_argument(
        "-k", "--top-k", type=int, default=10, metavar="K", help="tokens to show (default: 10)"
    )
    p.add_argument(
        "--temperature",
        type=float,
        default=1.0,
        help="also show the distribution at this temperature, beside T=1 (0 is greedy)",
    )
    p.set_defaults(run=run_next)

    p = _add_view(views, "attention", "attention-weight heatmaps for TEXT (PNG + raw .npy)")
    p.add_argument("text", metavar="TEXT", help="the text to attend over")
    p.add_argument("--layer", type=int, default=None, help="only this layer (from 0)")
    p.add_argument("--head", type=int, default=None, help="only this head (from 0)")
    p.set_defaults(run=run_attention)

    p = _add_view(
        views,
        "embeddings",
        "nearest neighbours, analogies and a 2-D PCA map of the token embeddings",
    )
    p.add_argument(
        "--token",
        action="append",
        default=[],
        metavar="TOK",
        help="show the nearest neighbours of this token (repeatable; ␣ stands for a space; "
        "default: the 5 most frequent tokens)",
    )
    p.add_argument(
        "--analogy",
        nargs=3,
        action="append",
        default=[],
        metavar=("A", "B", "C"),
        help="tokens nearest to A - B + C (repeatable)",
    )
    p.add_argument(
        "-k", "--top-k", type=int, default=8, metavar="K", help="neighbours to list (default: 8)"
    )
    p.add_argument(
        "--plot-tokens",
        type=int,
        default=80,
        metavar="N",
        help="most frequent tokens in the map (default: 80)",
    )
    p.add_argument(
        "--source",
        choices=("input", "output"),
        default="input",
        help="the token embedding (input) or the output projection's rows (output)",
    )
    p.set_defaults(run=run_embeddings)

    p = _add_view(views, "lens", "logit lens: the top next-token guess after each layer")
    p.add_argument("text", metavar="TEXT", help="the prompt")
    p.add_argument(
        "-k",
        "--top-k",
        type=int,
        default=3,
        metavar="K",
        help="guesses per layer for the last token",
    )
    p.add_argument(
        "--last",
        type=int,
        default=8,
        metavar="N",
        help="positions (the last N tokens) in the table (default 8)",
    )
    p.set_defaults(run=run_lens)


def _add_view(views: argparse._SubParsersAction, name: str, help_text: str):
    p = views.add_parser(name, help=help_text, description=help_text[0].upper() + help_text[1:])
    p.add_argument("run_path", metavar="RUN", help="a run folder or a checkpoint folder")
    p.add_argument("--out", type=Path, metavar="DIR", help="where to write (default: RUN/inspect/)")
    p.add_argument("--best", action="store_true", help="use the best checkpoint, not the latest")
    p.add_argument("--device", default="cpu", help="cpu (default), cuda, mps or auto")
    return p


# -- shared steps ------------------------------------------------------------------------


def _positive(value: int, flag: str) -> int:
    if value < 1:
        raise TinylmError(f"{flag} must be at least 1, got {value}")
    return value


def _load(args: argparse.Namespace) -> Any:
    # torch-free start-up: every tinylm command imports this module
    from tinylm.device import resolve_device
    from tinylm.inspect.loaded import LoadedModel

    device = resolve_device(args.device)
    return LoadedModel.from_run(args.run_path, str(device), "best" if args.best else "latest")


def _out_dir(args: argparse.Namespace, loaded: Any) -> Path:
    if args.out is not None:
        return args.out
    return loaded.run_dir / INSPECT_DIR


def slug(text: str, limit: int = 32) -> str:
    """A file-name-safe stem from the text: ``The with statement`` -> ``the-with-statement``."""
    words = re.sub(r"[^0-9a-z]+", "-", text.lower()).strip("-")
    return words[:limit].rstrip("-") or "text"


def _written(*paths: Path) -> None:
    for path in paths:
        say(f"wrote {path}")


# -- the views ---------------------------------------------------------------------------


def run_next(args: argparse.Namespace) -> int:
    # torch-free start-up: every tinylm command imports this module
    from tinylm.inspect.next_token import (
        check_temperature,
        format_next_token_table,
        next_token_distribution,
        plot_next_token,
    )

    k = _positive(args.top_k, "--top-k")
    check_temperature(args.temperature)
    loaded = _load(args)
    dist = next_token_distribution(loaded, args.text, k=k, temperature=args.temperature)
    fig = plot_next_token(dist)
    suffix = "" if args.temperature == 1.0 else f"-T{args.temperature:g}"
    path = save_png(fig, _out_dir(args, loaded) / f"next-{slug(args.text)}{suffix}.png")
    print(f"next token after {args.text!r} ({printable(loaded.label, one_line=True)}):")
    print(format_next_token_table(dist))
    _written(path)
    return 0


def run_attention(args: argparse.Namespace) -> int:
    # torch-free start-up: every tinylm command imports this module
    from tinylm.inspect.attention import attention_maps, plot_attention, save_attention_arrays

    loaded = _load(args)
    maps = attention_maps(loaded, args.text, layer=args.layer, head=args.head)
    fig = plot_attention(maps)
    out = _out_dir(args, loaded)
    stem = f"attention-{slug(args.text)}"
    if args.layer is not None:
        stem += f"-L{args.layer}"
    if args.head is not None:
        stem += f"-H{args.head}"
    png = save_png(fig, out / f"{stem}.png")
    npy = save_attention_arrays(maps, out / f"{stem}.npy")
    _print_attention_summary(maps)
    _written(png, npy, npy.with_suffix(".json"))
    return 0


def _print_attention_summary(maps: Any) -> None:
    """Per layer and head: the token the last token attends to most, and how much."""
    last = len(maps.ids) - 1
    print(
        f"attention over {len(maps.ids)} tokens ({maps.label}); "
        f"where the last token '{visible(maps.pieces[last], spaces=True)}' looks most:"
    )
    rows = []
    for li, layer in enumerate(maps.layers):
        for hi, head in enumerate(maps.heads):
            row = maps.weights[li, hi, last]
            j = int(row.argmax())
            rows.append(
                [
                    str(layer),
                    str(head),
                    visible(maps.pieces[j], spaces=True),
                    str(j),
                    f"{row[j]:.3f}",
                ]
            )
    print(format_table(["layer", "head", "most attended", "position", "weight"], rows, "rrlrr"))
    print("weights array: [layer, head, query, key], rows sum to 1")


def run_embeddings(args: argparse.Namespace) -> int:
    # torch-free start-up: every tinylm command imports this module
    from tinylm.inspect.embeddings import (
        analogy,
        format_neighbours,
        frequent_tokens,
        nearest_neighbours,
        plot_embeddings,
        project_embeddings,
    )

    k = _positive(args.top_k, "--top-k")
    n_plot = args.plot_tokens
    if n_plot < 2:
        raise TinylmError(f"--plot-tokens must be at least 2, got {n_plot}")
    loaded = _load(args)
    queries: list[Any] = list(args.token)
    if not queries and not args.analogy:
        ids, _ = frequent_tokens(loaded, 5)
        queries = [int(i) for i in ids]
    # Compute everything before printing, so a bad token fails before any output.
    sections = []
    for token in queries:
        found = nearest_neighbours(loaded, token, k=k, source=args.source)
        shown = visible(loaded.pieces([loaded.token_id(token)])[0], spaces=True)
        sections.append((f"nearest neighbours of '{shown}' (cosine similarity)", found))
    for a, b, c in args.analogy:
        found = analogy(loaded, a, b, c, k=k, source=args.source)
        sections.append((f"{a!r} - {b!r} + {c!r} is nearest to", found))
    projection = project_embeddings(loaded, n=n_plot, source=args.source)
    path = save_png(plot_embeddings(projection), _out_dir(args, loaded) / "embeddings-pca.png")
    print(f"{args.source} embeddings of {printable(loaded.label, one_line=True)}")
    for title, found in sections:
        print(f"\n{title}:\n{format_neighbours(found)}")
    ev = projection.explained
    print(f"\nPCA of {len(projection.ids)} tokens: components hold {ev[0]:.0%} and {ev[1]:.0%}")
    _written(path)
    return 0


def run_lens(args: argparse.Namespace) -> int:
    # torch-free start-up: every tinylm command imports this module
    from tinylm.inspect.lens import format_lens_last, format_lens_table, logit_lens, plot_logit_lens

    k = _positive(args.top_k, "--top-k")
    last = _positive(args.last, "--last")
    loaded = _load(args)
    lens = logit_lens(loaded, args.text, k=k)
    path = save_png(plot_logit_lens(lens), _out_dir(args, loaded) / f"lens-{slug(args.text)}.png")
    label = printable(loaded.label, one_line=True)
    print(f"logit lens for {args.text!r} ({label}): top guess and its probability")
    print(format_lens_table(lens, last=last))
    print("\nafter the last token, each layer's top guesses:")
    print(format_lens_last(lens))
    _written(path)
    return 0
