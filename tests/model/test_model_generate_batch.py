"""Batched generation: each row of a padded batch equals its own unbatched greedy generation."""

from __future__ import annotations

import pytest
import torch

from tinylm.errors import TinylmError
from tinylm.model import GPT
from tinylm.model.generate import generate_batch

PROMPTS = [[1, 2, 3], [5], [7, 8, 9, 10, 2, 3, 4], [4, 4, 6, 1, 0, 2, 9, 9, 9, 1]]


@pytest.mark.parametrize("position", ["learned", "rope", "sinusoidal", "none"])
@pytest.mark.parametrize("kernels", ["fused", "explicit"])
def test_each_row_equals_its_own_greedy_generation(tiny_config, position, kernels):
    # block_size 12 and 9 new tokens: the longest row outgrows the window and slides.
    model = GPT(tiny_config(position=position, kernels=kernels, n_kv_head=2)).eval()
    rows = generate_batch(model, PROMPTS, 9, temperature=0)
    assert rows == [list(model.generate(p, 9, temperature=0)) for p in PROMPTS]


def test_padding_does_not_leak_into_the_logits(tiny_config):
    """The first step's logits for a short row equal the model's on that row alone."""
    model = GPT(tiny_config(position="rope")).eval()
    from tinylm.model.generate import _left_pad, _padded_causal_mask

    idx, valid = _left_pad([[1, 2], [3, 4, 5, 6, 7]], torch.device("cpu"))
    positions = (valid.cumsum(1) - 1).clamp_min(0)
    with torch.no_grad():
        batched = model.next_token_logits(
            idx, positions=positions, attn_mask=_padded_causal_mask(valid)
        )
        alone = model.next_token_logits(torch.tensor([[1, 2]]))
    torch.testing.assert_close(batched[0], alone[0], atol=1e-5, rtol=0)
    assert not torch.isnan(batched).any()


def test_per_row_stop_tokens(tiny_config):
    model = GPT(tiny_config()).eval()
    free = [list(model.generate(p, 8, temperature=0)) for p in PROMPTS[:2]]
    stops = [{free[0][2]}, set()]  # row 0 stops at its third token, row 1 never
    rows = generate_batch(model, PROMPTS[:2], 8, temperature=0, stop_ids=stops)
    assert rows[0] == free[0][: free[0].index(free[0][2])]
    assert rows[1] == free[1]
    shared = generate_batch(model, PROMPTS[:2], 8, temperature=0, stop_ids=[free[1][0]])
    assert shared[1] == []


def test_sampled_batches_are_reproducible_and_stay_in_the_vocabulary(tiny_config):
    model = GPT(tiny_config()).eval()
    a = generate_batch(model, PROMPTS, 6, temperature=1.0, top_k=5, seed=3)
    b = generate_batch(model, PROMPTS, 6, temperature=1.0, top_k=5, seed=3)
    assert a == b and all(len(row) == 6 for row in a)
    assert all(0 <= t < model.config.vocab_size for row in a for t in row)


def test_bad_batches_are_refused(tiny_config):
    model = GPT(tiny_config())
    with pytest.raises(TinylmError, match="non-empty list"):
        generate_batch(model, [], 3)
    with pytest.raises(TinylmError, match="prompt_ids is empty"):
        generate_batch(model, [[1], []], 3)
    with pytest.raises(TinylmError, match="2 collections for 3 prompts"):
        generate_batch(model, [[1], [2], [3]], 3, stop_ids=[[1], [2]])
