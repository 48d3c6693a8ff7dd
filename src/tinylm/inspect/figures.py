"""What every inspection picture shares: an Agg figure, token tick labels, PNG output.

Plots are drawn on a ``matplotlib.figure.Figure`` with the Agg canvas (no display,
no pyplot state), so they work the same in a script, a notebook (a Figure shows
itself) and a web server (:func:`png_bytes`). Files are written atomically.
"""

from __future__ import annotations

import io
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from tinylm.fileio import atomic_open
from tinylm.inspect.tokens import visible

#: Longest token label on an axis before it is shortened with an ellipsis.
MAX_LABEL = 14


def new_figure(width: float, height: float) -> Any:
    """A blank figure (inches) on the Agg canvas."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(width, height), dpi=100, layout="constrained")
    FigureCanvasAgg(fig)
    return fig


def token_label(piece: str) -> str:
    """A token as a tick label: whitespace visible (``␣``, ``\\n``), long ones shortened."""
    shown = visible(piece, spaces=True)
    return shown if len(shown) <= MAX_LABEL else shown[: MAX_LABEL - 1] + "…"


def token_labels(pieces: Sequence[str]) -> list[str]:
    return [token_label(p) for p in pieces]


def quoted(text: str, limit: int = 40) -> str:
    """Text for a title: whitespace visible, the tail kept when it is long."""
    shown = visible(text)
    return f"“{shown}”" if len(shown) <= limit else f"“…{shown[-(limit - 1) :]}”"


def png_bytes(fig: Any) -> bytes:
    """The figure as PNG bytes (for a web page or a notebook cell)."""
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png")
    return buffer.getvalue()


def save_png(fig: Any, path: str | os.PathLike) -> Path:
    """Write the figure to ``path`` as a PNG, atomically; returns the path."""
    path = Path(path)
    with atomic_open(path, "wb") as handle:
        handle.write(png_bytes(fig))
    return path
