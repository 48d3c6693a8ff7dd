"""Next-token probabilities: softmax(logits / T) of the model's own forward pass."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from tinylm.errors import TinylmError
from tinylm.inspect.figures import save_png
from tinylm.inspect.next_token import (
    format_next_token_table,
    next_token_distribution,
    plot_next_token,
    softmax_with_temperature,
)

TEXT = "the cat sat on"


def reference_logits(loaded, text: str) -> torch.Tensor:
    """The last position's logits from a full forward pass, BOS first, as sampling does."""
    ids = [loaded.tokenizer.bos_id] + [loaded.tokenizer.stoi[ch] for ch in text]
    with torch.no_grad():
        logits, _ = loaded.model(torch.tensor([ids]))
    return logits[0, -1].double()


@pytest.mark.parametrize("temperature", [1.0, 0.5, 2.0])
def test_probabilities_are_the_softmax_of_the_models_logits(loaded, temperature):
    logits = reference_logits(loaded, TEXT)
    expected = torch.softmax(logits / temperature, dim=-1).numpy()
    dist = next_token_distribution(loaded, TEXT, k=5, temperature=temperature)
    np.testing.assert_allclose(dist.full_probs, expected, rtol=1e-5, atol=1e-7)
    assert dist.full_probs.sum() == pytest.approx(1.0, abs=1e-9)
    top = torch.topk(logits, 5).indices.numpy()
    np.testing.assert_array_equal(dist.ids, top)
    np.testing.assert_allclose(dist.probs, expected[top], rtol=1e-5)
    np.testing.assert_allclose(dist.probs_t1, torch.softmax(logits, -1).numpy()[top], rtol=1e-5)
    assert dist.rest == pytest.approx(1.0 - expected[top].sum(), abs=1e-6)
    assert dist.pieces == [loaded.tokenizer.chars[i] for i in top]


def test_temperature_on_two_logits_gives_the_known_probabilities():
    logits = np.array([0.0, math.log(3.0)])  # odds 1 : 3
    np.testing.assert_allclose(softmax_with_temperature(logits, 1.0), [0.25, 0.75])
    np.testing.assert_allclose(softmax_with_temperature(logits, 0.5), [0.1, 0.9])  # odds 1 : 9
    root3 = math.sqrt(3.0)
    np.testing.assert_allclose(
        softmax_with_temperature(logits, 2.0), [1 / (1 + root3), root3 / (1 + root3)]
    )
    np.testing.assert_allclose(softmax_with_temperature(logits, 1e6), [0.5, 0.5], atol=1e-6)
    np.testing.assert_array_equal(softmax_with_temperature(logits, 0.0), [0.0, 1.0])
    # Huge logits do not overflow.
    np.testing.assert_allclose(softmax_with_temperature(np.array([1000.0, 1000.0]), 0.1), 0.5)


def test_lower_temperature_sharpens_and_higher_flattens(loaded):
    def entropy(p):
        p = p[p > 0]
        return float(-(p * np.log(p)).sum())

    cold, base, hot = (
        next_token_distribution(loaded, TEXT, k=3, temperature=t).full_probs
        for t in (0.5, 1.0, 2.0)
    )
    assert entropy(cold) < entropy(base) < entropy(hot)
    assert cold.max() > base.max() > hot.max()
    assert np.argmax(cold) == np.argmax(base) == np.argmax(hot)  # order is kept
    greedy = next_token_distribution(loaded, TEXT, k=3, temperature=0.0)
    assert greedy.probs[0] == 1.0 and greedy.full_probs.sum() == 1.0


@pytest.mark.parametrize("temperature", [-0.1, float("nan"), float("inf")])
def test_bad_temperature_is_refused(loaded, temperature):
    with pytest.raises(TinylmError, match="temperature"):
        next_token_distribution(loaded, TEXT, temperature=temperature)


def test_bad_k_and_text_are_refused(loaded):
    with pytest.raises(TinylmError, match="at least 1"):
        next_token_distribution(loaded, TEXT, k=0)
    with pytest.raises(TinylmError, match="empty"):
        next_token_distribution(loaded, "")
    with pytest.raises(TinylmError, match="block_size of 24"):
        next_token_distribution(loaded, "the cat " * 3)  # 24 characters + BOS


def test_table_and_plot(loaded, tmp_path, assert_png):
    dist = next_token_distribution(loaded, "the cat sat", k=4, temperature=0.7)
    table = format_next_token_table(dist).splitlines()
    assert "p (T=1)" in table[0] and "p (T=0.7)" in table[0]
    assert len(table) == 2 + 4 + 1  # header, rule, k tokens, the rest
    first = table[2].split()
    assert first[:3] == ["1", dist.pieces[0].replace(" ", "␣"), str(dist.ids[0])]
    assert float(first[4]) == pytest.approx(dist.probs[0], abs=1e-4)
    fig = plot_next_token(dist)
    assert "Top 4 next tokens" in fig.axes[0].get_title()
    assert [t.get_text() for t in fig.axes[0].get_yticklabels()] == [
        p.replace(" ", "␣") for p in dist.pieces
    ]
    assert_png(save_png(fig, tmp_path / "next.png"))
