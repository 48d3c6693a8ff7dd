"""Temperature changes the shape of the sampled distribution, by dividing the logits.

Two logits whose probabilities are known in closed form: logits ``[0, ln 3]``
give ``P(1) = 3^(1/T) / (1 + 3^(1/T))`` at temperature ``T`` (0.75 at T=1, about
0.634 at T=2, 0.9 at T=0.5). A sampler that multiplied by ``T`` would give 0.9 at
T=2 and 0.634 at T=0.5, so the test tells the two apart by a wide margin.
"""

from __future__ import annotations

import math

import pytest
import torch

from tinylm.model import GPT

DRAWS = 2000


def p_one(temperature: float) -> float:
    """P(token 1) for logits [0, ln 3] at ``temperature``, worked out by hand."""
    weight = 3 ** (1 / temperature)
    return weight / (1 + weight)


@pytest.mark.parametrize("temperature", [0.5, 2.0])
def test_sampled_frequencies_match_softmax_of_logits_over_temperature(
    tiny_config, temperature, monkeypatch
):
    model = GPT(tiny_config(vocab_size=2))
    logits = torch.tensor([[0.0, math.log(3.0)]])
    monkeypatch.setattr(model, "next_token_logits", lambda idx, cache=None: logits.clone())
    tokens = list(model.generate([0], DRAWS, temperature=temperature, seed=7))
    assert len(tokens) == DRAWS
    expected = p_one(temperature)
    observed = sum(tokens) / DRAWS
    spread = math.sqrt(expected * (1 - expected) / DRAWS)
    assert abs(observed - expected) < 5 * spread, (observed, expected)
    if temperature != 1.0:  # and far from what multiplying by T would give
        assert abs(observed - p_one(1 / temperature)) > 20 * spread
