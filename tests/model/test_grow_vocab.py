"""Growing the vocabulary: old logits unchanged bit for bit, new rows the documented mean."""

from __future__ import annotations

import pytest
import torch

from tinylm.errors import TinylmError
from tinylm.model import GPT
from tinylm.model.grow_vocab import grow_vocab


def head_input_and_logits(model: GPT, idx: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """The hidden states that enter ``lm_head`` (caught by a hook) and the logits."""
    seen = []
    hook = model.lm_head.register_forward_hook(lambda m, args, out: seen.append(args[0]))
    try:
        logits = model(idx)[0]
    finally:
        hook.remove()
    return seen[0].detach().clone(), logits.detach().clone()


def trained_like(config) -> GPT:
    """A model whose rows are not all alike (a random init would be, in distribution)."""
    model = GPT(config).eval()
    with torch.no_grad():
        for p in model.parameters():
            p.add_(torch.randn_like(p) * 0.3)
    return model


@pytest.mark.parametrize("tied", [True, False])
def test_the_grown_model_gives_the_same_logits_for_old_ids_and_mean_rows(tiny_config, tied):
    model = trained_like(tiny_config(tie_embeddings=tied, vocab_size=11))
    idx = torch.randint(0, 11, (3, 9))
    hidden_before, before = head_input_and_logits(model, idx)
    old_emb = model.tok_emb.weight.detach().clone()
    old_head = model.lm_head.weight.detach().clone()

    grow_vocab(model, 15)

    hidden_after, after = head_input_and_logits(model, idx)
    assert after.shape == (3, 9, 15) and model.config.vocab_size == 15
    assert torch.equal(hidden_after, hidden_before)  # the whole trunk: bit for bit
    # the head's old rows are unchanged (below), so the old logits are the same dot
    # products; the BLAS may block a wider matrix product differently, which can move
    # the last bit, so the logits themselves are compared to float32 rounding
    torch.testing.assert_close(after[..., :11], before, rtol=2e-6, atol=2e-6)
    assert torch.equal(model.tok_emb.weight[:11], old_emb)
    # the documented init, computed independently: the mean of the old rows, in float64
    expected_emb = old_emb.double().mean(0).float()
    assert torch.equal(model.tok_emb.weight[11:], expected_emb.expand(4, -1))
    expected_head = old_head.double().mean(0).float()
    assert torch.equal(model.lm_head.weight[11:], expected_head.expand(4, -1))
    assert (model.lm_head.weight is model.tok_emb.weight) == tied
    # a new row's logit is the mean of the old logits at each position (head rows are means)
    torch.testing.assert_close(after[..., 11], before.mean(-1), rtol=1e-5, atol=1e-5)


def test_the_new_ids_are_read_and_trained(tiny_config):
    model = trained_like(tiny_config(tie_embeddings=False, vocab_size=11))
    grow_vocab(model, 13).train()
    idx = torch.tensor([[12, 3, 11, 5]])
    _, loss = model(idx, torch.tensor([[3, 11, 5, 12]]))
    loss.backward()
    assert model.tok_emb.weight.grad[11:].abs().sum() > 0
    assert model.lm_head.weight.grad[11:].abs().sum() > 0
    assert model.param_counts() == GPT(model.config).param_counts()


def test_growing_to_the_same_size_changes_nothing_and_shrinking_is_refused(tiny_config):
    model = GPT(tiny_config(vocab_size=11))
    weight = model.tok_emb.weight
    assert grow_vocab(model, 11) is model and model.tok_emb.weight is weight
    with pytest.raises(TinylmError, match="cannot shrink the vocabulary from 11 to 10"):
        grow_vocab(model, 10)
