"""Batches: shifted windows, reproducible draws, document batches, and what training uses."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from tinylm.data.batches import get_batch, get_document_batch
from tinylm.errors import TinylmError


def test_batches_are_shifted_windows_of_the_data():
    data = np.arange(100, dtype=np.uint16)
    x, y = get_batch(data, 4, 8, generator=torch.Generator().manual_seed(0))
    assert x.shape == y.shape == (4, 8) and x.dtype == y.dtype == torch.int64
    assert torch.equal(y, x + 1)  # consecutive ids: each window is a slice of the data
    assert int(x.min()) >= 0 and int(y.max()) <= 99


def test_batches_are_reproducible_and_resume_from_the_generator_state():
    data = np.random.default_rng(0).integers(0, 50, 500).astype(np.uint16)
    gen = torch.Generator().manual_seed(7)
    first = [get_batch(data, 2, 16, generator=gen)[0] for _ in range(3)]
    state = gen.get_state()
    later = get_batch(data, 2, 16, generator=gen)[0]
    again = torch.Generator().manual_seed(7)
    assert all(torch.equal(a, get_batch(data, 2, 16, generator=again)[0]) for a in first)
    resumed = torch.Generator()
    resumed.set_state(state)
    assert torch.equal(later, get_batch(data, 2, 16, generator=resumed)[0])


def test_every_window_start_is_reachable_including_the_last():
    data = np.arange(10, dtype=np.uint16)
    x, _ = get_batch(data, 500, 8, generator=torch.Generator().manual_seed(0))
    assert set(x[:, 0].tolist()) == {0, 1}


def test_too_little_data_says_how_much_is_needed():
    with pytest.raises(TinylmError, match=r"block_size \+ 1 = 9 tokens.*has 8"):
        get_batch(np.arange(8), 2, 8)


def test_document_batches_cut_long_documents_to_the_block():
    data = np.array([9, 1, 2, 3, 4, 5, 6, 9], dtype=np.uint16)
    x, y = get_document_batch(data, np.array([[0, 8]]), 2, 4, pad_id=0)
    assert x.tolist() == [[9, 1, 2, 3]] * 2 and y.tolist() == [[1, 2, 3, 4]] * 2


# -- the batches training and evaluation actually use --------------------------------------


def _expected_targets(data: np.ndarray, x: torch.Tensor) -> np.ndarray:
    """Targets computed from the token array alone: find each input row in the data,
    and take the tokens one position later. The data is random over a large vocabulary,
    so every window occurs exactly once and the search cannot pick a wrong one."""
    block = x.shape[1]
    windows = np.lib.stride_tricks.sliding_window_view(data.astype(np.int64), block)
    expected = []
    for row in x.numpy():
        (starts,) = np.nonzero((windows[:-1] == row).all(axis=1))  # room for one more token
        assert len(starts) == 1, "every input row must be a window of the data"
        expected.append(data[starts[0] + 1 : starts[0] + 1 + block])
    return np.stack(expected).astype(np.int64)


def test_trainer_and_evaluation_batches_are_next_token_pairs_of_the_data(monkeypatch):
    from tinylm.inference import evaluation
    from tinylm.model import GPT, ModelConfig
    from tinylm.train.config import TrainConfig
    from tinylm.train.trainer import Trainer

    rng = np.random.default_rng(0)
    vocab = 5000
    train, val = (rng.integers(0, vocab, n).astype(np.uint16) for n in (3000, 600))
    torch.manual_seed(0)
    model = GPT(
        ModelConfig.from_preset(
            "small", vocab_size=vocab, n_layer=1, n_embd=16, n_head=2, block_size=12
        )
    )
    config = TrainConfig(
        steps=2, batch_size=3, grad_accum=2, warmup_steps=1, eval_every=2, eval_batches=2,
        sample_tokens=0, out_dir=None, progress=False,
    )  # fmt: skip
    trainer = Trainer(model, train, val, None, config)
    seen: list[tuple[torch.Tensor, torch.Tensor]] = []

    def record(module, args, kwargs):  # training hands the model its targets
        idx, targets = (list(args) + [kwargs.get("idx"), kwargs.get("targets")])[:2]
        if targets is not None:
            seen.append((idx.detach().cpu(), targets.detach().cpu()))

    scored = evaluation.token_losses  # evaluation scores the logits itself (bits per byte)

    def record_scored(model, x, y):
        seen.append((x.detach().cpu(), y.detach().cpu()))
        return scored(model, x, y)

    model.register_forward_pre_hook(record, with_kwargs=True)
    monkeypatch.setattr(evaluation, "token_losses", record_scored)
    trainer.train_step()
    train_batches, seen[:] = list(seen), []
    trainer.evaluate()
    val_batches = list(seen)

    assert len(train_batches) == 2 and len(val_batches) == 2  # grad_accum, eval_batches
    for data, batches in ((train, train_batches), (val, val_batches)):
        for x, y in batches:
            assert x.shape == y.shape == (3, 12) and y.dtype == torch.int64
            assert np.array_equal(y.numpy(), _expected_targets(data, x))


def test_full_pass_batches_are_the_split_in_order_shifted_by_one():
    from tinylm.data.batches import sequential_batches

    data = np.random.default_rng(1).integers(0, 1000, 103).astype(np.uint16)
    block, batch = 10, 4
    rows = [
        (x, y)
        for xs, ys in sequential_batches(data, block, batch, "cpu")
        for x, y in zip(xs, ys, strict=True)
    ]
    # Non-overlapping windows from the start, as many as leave a next token for the last one.
    assert len(rows) == (len(data) - 1) // block
    for k, (x, y) in enumerate(rows):
        assert x.tolist() == data[k * block : (k + 1) * block].tolist()
        assert y.tolist() == data[k * block + 1 : (k + 1) * block + 1].tolist()
