"""What the model expects next: the probability of each token after a prompt.

The model's last position gives one logit per vocabulary entry; sampling turns
them into probabilities with a softmax of ``logits / T``. The temperature ``T``
reshapes that distribution without reordering it: ``T < 1`` sharpens it towards
the most likely token (``T → 0`` is greedy decoding), ``T > 1`` flattens it
towards uniform. :func:`next_token_distribution` returns both the ``T = 1``
probabilities and those at the chosen ``T``, so a plot can put them side by side.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from tinylm.errors import TinylmError
from tinylm.inspect.figures import new_figure, quoted, token_labels
from tinylm.inspect.loaded import LoadedModel
from tinylm.inspect.tables import bar, format_table
from tinylm.inspect.tokens import visible


@dataclass(frozen=True)
class NextTokenDistribution:
    """The top ``k`` next tokens after a prompt, most likely first.

    ``probs`` are at ``temperature``, ``probs_t1`` at ``T = 1``, both for the
    tokens in ``ids``; ``full_probs`` (at ``temperature``) and ``logits`` cover
    the whole vocabulary.
    """

    text: str
    prompt_ids: list[int]
    temperature: float
    ids: np.ndarray
    pieces: list[str]
    probs: np.ndarray
    probs_t1: np.ndarray
    full_probs: np.ndarray
    logits: np.ndarray
    label: str

    @property
    def rest(self) -> float:
        """Probability left for every token outside the top ``k`` (at ``temperature``)."""
        return max(0.0, 1.0 - float(self.probs.sum()))


def softmax_with_temperature(logits: np.ndarray, temperature: float) -> np.ndarray:
    """``softmax(logits / T)`` over the last axis, in float64; ``T = 0`` is the argmax.

    At ``T = 0`` sampling is greedy, so the distribution is all on the highest
    logit (the first, on a tie), as ``GPT.generate`` picks it.
    """
    check_temperature(temperature)
    logits = np.asarray(logits, dtype=np.float64)
    if temperature == 0:
        out = np.zeros_like(logits)
        np.put_along_axis(out, logits.argmax(axis=-1)[..., None], 1.0, axis=-1)
        return out
    scaled = logits / temperature
    scaled -= scaled.max(axis=-1, keepdims=True)  # exp of the largest is 1: no overflow
    weights = np.exp(scaled)
    return weights / weights.sum(axis=-1, keepdims=True)


def check_temperature(temperature: float) -> None:
    if not np.isfinite(temperature) or temperature < 0:
        raise TinylmError(
            f"temperature must be a finite number >= 0 (0 is greedy), got {temperature}"
        )


def next_token_distribution(
    loaded: LoadedModel, text: str, k: int = 10, temperature: float = 1.0
) -> NextTokenDistribution:
    """The ``k`` most likely tokens to follow ``text``, with their probabilities."""
    if k < 1:
        raise TinylmError(f"k (how many tokens to show) must be at least 1, got {k}")
    check_temperature(temperature)
    ids = loaded.encode(text)
    with torch.no_grad():
        logits = loaded.model.next_token_logits(loaded.as_batch(ids))[0]
    logits = logits.float().cpu().numpy()
    if not np.isfinite(logits).all():  # a table of nan probabilities tells the user nothing
        raise TinylmError(
            "the model's output is NaN or infinite for this prompt, so it has no next-token "
            "distribution; its weights are damaged or diverged: use an earlier checkpoint"
        )
    k = min(k, logits.size)
    # Stable sort on the negated logits: ties keep id order, as argmax does.
    top = np.argsort(-logits, kind="stable")[:k]
    full = softmax_with_temperature(logits, temperature)
    return NextTokenDistribution(
        text=text,
        prompt_ids=ids,
        temperature=float(temperature),
        ids=top,
        pieces=loaded.pieces(top),
        probs=full[top],
        probs_t1=softmax_with_temperature(logits, 1.0)[top],
        full_probs=full,
        logits=logits,
        label=loaded.label,
    )


def format_next_token_table(dist: NextTokenDistribution) -> str:
    """One row per token: rank, token, id, probability (at T = 1 and at T) and a bar."""
    scaled = dist.temperature != 1.0
    headers = ["#", "token", "id", "p (T=1)"] + ([f"p (T={dist.temperature:g})"] if scaled else [])
    rows = []
    for rank, (i, piece, p1, p) in enumerate(
        zip(dist.ids, dist.pieces, dist.probs_t1, dist.probs, strict=True), start=1
    ):
        cells = [str(rank), visible(piece, spaces=True), str(int(i)), f"{p1:.4f}"]
        rows.append([*cells, *([f"{p:.4f}"] if scaled else []), bar(float(p))])
    rest_t1 = max(0.0, 1.0 - float(dist.probs_t1.sum()))
    rest = [f"{dist.rest:.4f}"] if scaled else []
    rows.append(["", "(all others)", "", f"{rest_t1:.4f}", *rest, bar(dist.rest)])
    return format_table([*headers, ""], rows, right="rlrr" + ("r" if scaled else ""))


def plot_next_token(dist: NextTokenDistribution):
    """A horizontal bar chart of the top tokens; at ``T != 1``, bars for both temperatures."""
    k = len(dist.ids)
    scaled = dist.temperature != 1.0
    fig = new_figure(7.5, 1.6 + 0.42 * k * (1.5 if scaled else 1.0))
    ax = fig.add_subplot(1, 1, 1)
    rows = np.arange(k)
    series = [("T = 1", dist.probs_t1, "tab:gray" if scaled else "tab:blue")]
    if scaled:
        series.append((f"T = {dist.temperature:g}", dist.probs, "tab:orange"))
    height = 0.8 / len(series)
    for n, (name, probs, colour) in enumerate(series):
        offsets = rows - 0.4 + height * (n + 0.5)
        bars = ax.barh(offsets, probs, height=height, color=colour, label=name)
        ax.bar_label(bars, labels=[f"{p:.3f}" for p in probs], padding=3, fontsize=8)
    ax.set_yticks(rows, token_labels(dist.pieces), fontfamily="monospace")
    ax.invert_yaxis()  # most likely at the top
    ax.set_xlim(0, min(1.0, float(max(dist.probs.max(), dist.probs_t1.max())) * 1.18 + 0.02))
    ax.set_xlabel("probability of being the next token")
    ax.set_ylabel("next token (␣ is a space)")
    ax.grid(True, axis="x", alpha=0.3)
    if scaled:
        ax.legend(loc="lower right", title="temperature")
    ax.set_title(f"Top {k} next tokens after {quoted(dist.text)}\n{dist.label}", fontsize=11)
    return fig
