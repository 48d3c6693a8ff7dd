"""Fixtures for the model tests: a tiny config factory and a fixed torch seed."""

from __future__ import annotations

import pytest
import torch

from tinylm.model import ModelConfig

TINY = {
    "vocab_size": 11,
    "block_size": 12,
    "n_layer": 2,
    "n_embd": 16,
    "n_head": 4,
    "dropout": 0.0,
}


@pytest.fixture(autouse=True)
def _seed_torch_single_thread():
    """Same global RNG state in every test; one intra-op thread while it runs.

    The tensors here are tiny, so a second thread only adds synchronisation, and on
    a shared, busy machine that costs several times the work itself.
    """
    torch.manual_seed(0)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture
def tiny_config():
    """``tiny_config(**overrides)`` -> a small ModelConfig that runs in milliseconds."""

    def make(**overrides) -> ModelConfig:
        return ModelConfig(**{**TINY, **overrides})

    return make
