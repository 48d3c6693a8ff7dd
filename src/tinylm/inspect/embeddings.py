"""What the embedding table learned: neighbours, analogies, and a 2-D map.

Each token's embedding is a row of the ``vocab_size x n_embd`` table. Tokens that
occur in similar contexts get pushed towards similar rows (the distributional
hypothesis), so after training the nearest rows of a token by cosine similarity
tend to be tokens used like it: digits near digits, vowels near vowels, in BPE
" the" near " a". Analogies ask whether differences are shared too:
``a − b + c`` lands near ``d`` when ``a`` is to ``b`` as ``d`` is to ``c``
(with a character model, "A" − "a" + "e" near "E").

``source="input"`` is the token embedding; ``source="output"`` the output
projection's rows (the same matrix when the model ties them).

A 2-D picture of a ``n_embd``-dimensional table needs a projection: PCA keeps
the two directions along which the chosen embeddings vary most, computed from
the SVD of the centred matrix.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from tinylm.errors import TinylmError
from tinylm.inspect.figures import new_figure, token_label
from tinylm.inspect.loaded import LoadedModel
from tinylm.inspect.tables import format_table
from tinylm.inspect.tokens import visible

SOURCES = ("input", "output")


@dataclass(frozen=True)
class Neighbour:
    """A token and its cosine similarity to the query vector."""

    id: int
    piece: str
    similarity: float


@dataclass(frozen=True)
class EmbeddingProjection:
    """Embeddings of ``ids`` projected on their two principal components.

    ``coords`` is ``(n, 2)``; ``explained`` the fraction of the chosen rows'
    variance each component holds; ``counts`` how often each token occurs in the
    training data (None when the run's data was not found, and then ``ids`` are
    the first ids of the vocabulary instead of the most frequent).
    """

    ids: np.ndarray
    pieces: list[str]
    coords: np.ndarray
    explained: np.ndarray
    counts: np.ndarray | None
    source: str
    label: str


# -- the computations, on plain matrices ------------------------------------------------


def embedding_matrix(loaded: LoadedModel, source: str = "input") -> np.ndarray:
    """The ``(vocab_size, n_embd)`` table as float64 numpy (read-only).

    Copied out of the model once per ``LoadedModel`` and kept: an inspector that
    asks for many neighbours would otherwise copy a large table every time.
    """
    if source not in SOURCES:
        raise TinylmError(f"source must be one of {', '.join(SOURCES)}, got {source!r}")

    def copy_out() -> np.ndarray:
        model = loaded.model
        weight = model.tok_emb.weight if source == "input" else model.lm_head.weight
        table = weight.detach().float().cpu().numpy().astype(np.float64)
        if not np.isfinite(table).all():  # the PCA's SVD would not converge
            raise TinylmError(
                f"the {source} embedding table holds NaN or infinite values; the weights are "
                "damaged or diverged: use an earlier checkpoint"
            )
        return table

    return loaded.cached(f"embeddings:{source}", copy_out)


def cosine_similarities(matrix: np.ndarray, vector: np.ndarray) -> np.ndarray:
    """Cosine similarity of each row of ``matrix`` with ``vector`` (0 for a zero row)."""
    norms = np.linalg.norm(matrix, axis=1) * np.linalg.norm(vector)
    dots = matrix @ vector
    return np.divide(dots, norms, out=np.zeros_like(dots), where=norms > 0)


def top_similar(
    matrix: np.ndarray, vector: np.ndarray, k: int, exclude: tuple[int, ...] = ()
) -> list[tuple[int, float]]:
    """The ``k`` rows most similar to ``vector``: ``(row, similarity)``, best first."""
    sims = cosine_similarities(matrix, vector)
    sims[list(exclude)] = -np.inf
    order = np.argsort(-sims, kind="stable")[: min(k, len(sims) - len(set(exclude)))]
    return [(int(i), float(sims[i])) for i in order]


def pca_2d(matrix: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``(coords (n, 2), explained variance ratio (2,))`` of the rows of ``matrix``.

    Rows are centred; the components are the top right-singular vectors. Each
    component's sign is fixed so that its largest coordinate is positive, which
    makes the picture the same from run to run (an SVD may flip any sign).
    """
    centred = matrix - matrix.mean(axis=0)
    _, s, vt = np.linalg.svd(centred, full_matrices=False)
    coords = centred @ vt[:2].T
    if coords.shape[1] < 2:  # a one-dimensional embedding: pad the second axis
        coords = np.pad(coords, ((0, 0), (0, 2 - coords.shape[1])))
    for c in range(2):
        column = coords[:, c]
        if column.size and column[np.argmax(np.abs(column))] < 0:
            coords[:, c] = -column
    variance = s**2
    total = variance.sum()
    explained = np.zeros(2)
    explained[: min(2, len(s))] = (variance[:2] / total) if total > 0 else 0.0
    return coords, explained


# -- the views, on a loaded model -------------------------------------------------------


def nearest_neighbours(
    loaded: LoadedModel, token: str | int, k: int = 10, source: str = "input"
) -> list[Neighbour]:
    """The ``k`` tokens whose embeddings are closest to ``token``'s (itself excluded)."""
    _check_k(k)
    i = loaded.token_id(token)
    matrix = embedding_matrix(loaded, source)
    return _neighbours(loaded, top_similar(matrix, matrix[i], k, exclude=(i,)))


def analogy(
    loaded: LoadedModel,
    a: str | int,
    b: str | int,
    c: str | int,
    k: int = 10,
    source: str = "input",
) -> list[Neighbour]:
    """Tokens nearest to ``a − b + c`` (the three themselves excluded, as is usual)."""
    _check_k(k)
    ia, ib, ic = (loaded.token_id(t) for t in (a, b, c))
    matrix = embedding_matrix(loaded, source)
    vector = matrix[ia] - matrix[ib] + matrix[ic]
    return _neighbours(loaded, top_similar(matrix, vector, k, exclude=(ia, ib, ic)))


def frequent_tokens(loaded: LoadedModel, n: int) -> tuple[np.ndarray, np.ndarray | None]:
    """``(ids, counts)`` of the ``n`` most frequent training tokens, most frequent first.

    Without the run's training data, the first ``n`` ids and ``None``.
    """
    counts = loaded.token_frequencies()
    n = min(n, loaded.config.vocab_size)
    if counts is None:
        return np.arange(n), None
    seen = np.flatnonzero(counts)
    order = seen[np.argsort(-counts[seen], kind="stable")][:n]
    return order, counts[order]


def project_embeddings(
    loaded: LoadedModel, n: int = 80, ids: np.ndarray | None = None, source: str = "input"
) -> EmbeddingProjection:
    """PCA of the embeddings of ``ids`` (default: the ``n`` most frequent tokens)."""
    counts = None
    if ids is None:
        if n < 2:
            raise TinylmError(f"a projection needs at least 2 tokens, got n={n}")
        ids, counts = frequent_tokens(loaded, n)
    ids = np.asarray(ids, dtype=np.int64)
    if len(ids) < 2:
        raise TinylmError("a projection needs at least 2 tokens")
    coords, explained = pca_2d(embedding_matrix(loaded, source)[ids])
    return EmbeddingProjection(
        ids, loaded.pieces(ids), coords, explained, counts, source, loaded.label
    )


def _neighbours(loaded: LoadedModel, found: list[tuple[int, float]]) -> list[Neighbour]:
    pieces = loaded.pieces([i for i, _ in found])
    return [Neighbour(i, p, s) for (i, s), p in zip(found, pieces, strict=True)]


def _check_k(k: int) -> None:
    if k < 1:
        raise TinylmError(f"k (how many neighbours) must be at least 1, got {k}")


# -- tables and the picture ---------------------------------------------------------------


def format_neighbours(neighbours: list[Neighbour]) -> str:
    """Rank, token, id and cosine similarity, one row per neighbour."""
    rows = [
        [str(r), visible(n.piece, spaces=True), str(n.id), f"{n.similarity:+.3f}"]
        for r, n in enumerate(neighbours, start=1)
    ]
    return format_table(["#", "token", "id", "cosine"], rows, right="rlrr")


def plot_embeddings(projection: EmbeddingProjection):
    """A labelled scatter of the projected tokens; marker size shows frequency."""
    fig = new_figure(9.0, 7.5)
    ax = fig.add_subplot(1, 1, 1)
    x, y = projection.coords[:, 0], projection.coords[:, 1]
    if projection.counts is not None:
        share = projection.counts / max(1, projection.counts.max())
        sizes = 12 + 120 * np.sqrt(share)
    else:
        sizes = np.full(len(x), 20.0)
    ax.scatter(x, y, s=sizes, alpha=0.45, color="tab:blue", edgecolors="none")
    for xi, yi, piece in zip(x, y, projection.pieces, strict=True):
        ax.annotate(
            token_label(piece),
            (xi, yi),
            xytext=(3, 2),
            textcoords="offset points",
            fontsize=8,
            fontfamily="monospace",
        )
    ev = projection.explained
    ax.set_xlabel(f"principal component 1 ({ev[0]:.0%} of variance)")
    ax.set_ylabel(f"principal component 2 ({ev[1]:.0%} of variance)")
    ax.grid(True, alpha=0.3)
    ax.axhline(0, color="0.7", linewidth=0.6)
    ax.axvline(0, color="0.7", linewidth=0.6)
    which = (
        f"the {len(projection.ids)} most frequent tokens (marker area: frequency)"
        if projection.counts is not None
        else f"the first {len(projection.ids)} token ids (the run's data was not found)"
    )
    ax.set_title(
        f"{projection.source.capitalize()} embeddings of {which}, PCA to 2-D\n"
        f"{projection.label} (␣ is a space)",
        fontsize=11,
    )
    return fig
