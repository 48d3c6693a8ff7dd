"""The scalar microgpt against tinylm's PyTorch ``GPT`` (microgpt preset), in float64.

Both start from the same weights (the GPT's, copied as lists of floats) and see
the same documents; logits, loss and every parameter's gradient must agree to
1e-9, and so must the parameters after 10 steps of each engine's own optimiser
(``tinylm.scratch.train.Adam`` against ``tinylm.train.optim.AdamW``).
"""

from __future__ import annotations

import random

import pytest
import torch

from tinylm.engines.scratch_convert import scratch_from_gpt
from tinylm.model import GPT, ModelConfig
from tinylm.scratch.model import Config, MicroGPT, parameter_shapes
from tinylm.scratch.train import Adam, document_tokens, linear_decay, sample
from tinylm.train.optim import AdamW

TOLERANCE = 1e-9
BOS = 26


def _pair(seed: int = 0, **overrides) -> tuple[GPT, MicroGPT]:
    torch.manual_seed(seed)
    config = ModelConfig.from_preset("microgpt", init_std=0.3, **overrides)
    gpt = GPT(config).double()
    return gpt, scratch_from_gpt(gpt)  # the same weights, as lists of floats


def _documents(n: int, seed: int = 0, longest: int = 20) -> list[list[int]]:
    rng = random.Random(seed)
    return [[rng.randrange(26) for _ in range(rng.randint(1, longest))] for _ in range(n)]


def _max_diff(scratch_rows, tensor) -> float:
    return max(
        abs(a - b)
        for row, trow in zip(scratch_rows, tensor.tolist(), strict=True)
        for a, b in zip(row, trow, strict=True)
    )


def test_parameter_names_and_shapes_are_the_gpt_state_dict():
    gpt, scratch = _pair()
    assert {k: tuple(v.shape) for k, v in gpt.state_dict().items()} == parameter_shapes(
        scratch.config
    )


def test_documents_start_and_end_with_bos():
    # The closing BOS is the target that teaches a model to end a document (``sample``
    # stops on it); the cut keeps block_size + 1 tokens, the inputs and their targets.
    assert document_tokens([5, 6], bos=0, block_size=8) == [0, 5, 6, 0]
    assert document_tokens([], bos=9, block_size=4) == [9, 9]
    assert document_tokens([5, 6, 7, 8], bos=0, block_size=3) == [0, 5, 6, 7]
    assert document_tokens([5, 6, 7], bos=0, block_size=4) == [0, 5, 6, 7, 0]


@pytest.mark.parametrize(
    "overrides", [{}, pytest.param({"n_layer": 2, "n_head": 2}, marks=pytest.mark.slow)]
)
def test_logits_loss_and_gradients_match_gpt(overrides):
    gpt, scratch = _pair(**overrides)
    for document in _documents(2) + [list(range(20))]:  # the last one fills the context
        tokens = document_tokens(document, BOS, gpt.config.block_size)
        idx, targets = torch.tensor([tokens[:-1]]), torch.tensor([tokens[1:]])
        gpt.zero_grad()
        logits, loss = gpt(idx, targets)
        loss.backward()
        ours = scratch.loss(tokens)
        ours.backward()
        assert abs(ours.data - loss.item()) < TOLERANCE
        scratch_logits = [[v.data for v in row] for row in scratch.logits(tokens[:-1])]
        assert _max_diff([[v for v in row] for row in scratch_logits], logits[0]) < TOLERANCE
        for name, param in gpt.named_parameters():
            grads = [[v.grad for v in row] for row in scratch.params[name]]
            assert _max_diff(grads, param.grad) < TOLERANCE, name
        for v in scratch.parameters():
            v.grad = 0.0


@pytest.mark.slow
def test_ten_adam_steps_match_tinylm_adamw():
    gpt, scratch = _pair(seed=1)
    betas, eps, weight_decay, lr, steps = (0.85, 0.99), 1e-8, 0.1, 0.01, 10
    theirs = AdamW(gpt.parameters(), lr=lr, betas=betas, eps=eps, weight_decay=weight_decay)
    ours = Adam(scratch.parameters(), betas=betas, eps=eps, weight_decay=weight_decay)
    start = {name: t.clone() for name, t in gpt.state_dict().items()}
    for step, document in enumerate(_documents(steps, seed=1, longest=6)):
        tokens = document_tokens(document, BOS, gpt.config.block_size)
        rate = linear_decay(step, lr, steps)
        gpt.zero_grad()
        _, loss = gpt(torch.tensor([tokens[:-1]]), torch.tensor([tokens[1:]]))
        loss.backward()
        for group in theirs.param_groups:
            group["lr"] = rate
        theirs.step()
        scratch.loss(tokens).backward()
        ours.step(rate)
    trained = scratch.weights()
    assert all(_max_diff(trained[name], start[name]) > 1e-3 for name in start)  # it trained
    for name, param in gpt.named_parameters():
        assert _max_diff(trained[name], param.detach()) < TOLERANCE, name


def test_sample_stops_at_bos_and_is_reproducible():
    _, scratch = _pair()
    first = sample(scratch, BOS, temperature=0.7, rng=random.Random(3))
    again = sample(scratch, BOS, temperature=0.7, rng=random.Random(3))
    assert first == again
    assert BOS not in first and len(first) <= scratch.config.block_size
    with pytest.raises(ValueError):
        sample(scratch, BOS, temperature=0)


def test_textbook_engine_trains_bit_for_bit_the_same():
    # bench/scalar_baseline.py is an independent engine of the textbook design (recursive
    # sort, a Value per constant, chains of binary adds); same arithmetic in the same
    # order means the same losses and parameters, to the last bit, step after step.
    import sys
    from pathlib import Path

    sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "bench"))
    try:
        from scalar_baseline import BaselineAdam, BaselineGPT
    finally:
        sys.path.pop(0)
    ours = MicroGPT(Config(n_layer=2, block_size=8), seed=3)
    weights = ours.weights()
    theirs = BaselineGPT(weights, n_layer=2, n_head=4)
    ours_adam, theirs_adam = Adam(ours.parameters()), BaselineAdam(theirs.params)
    rng = random.Random(5)
    for step in range(3):
        tokens = document_tokens([rng.randrange(26) for _ in range(rng.randint(2, 9))], BOS, 8)
        ours_loss, theirs_loss = ours.loss(tokens), theirs.loss(tokens)
        assert ours_loss.data == theirs_loss.data, step
        ours_loss.backward()
        theirs_loss.backward()
        assert [p.grad for p in ours.parameters()] == [p.grad for p in theirs.params], step
        ours_adam.step(linear_decay(step, 0.01, 3))
        theirs_adam.step(linear_decay(step, 0.01, 3))
    assert [p.data for p in ours.parameters()] == [p.data for p in theirs.params]
