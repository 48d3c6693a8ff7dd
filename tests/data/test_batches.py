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
