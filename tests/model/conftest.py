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
def _seed_torch():
    """The same global RNG state in every test (the root conftest sets one thread)."""
    torch.manual_seed(0)


@pytest.fixture
def tiny_config():
    """``tiny_config(**overrides)`` -> a small ModelConfig that runs in milliseconds."""

    def make(**overrides) -> ModelConfig:
        return ModelConfig(**{**TINY, **overrides})

    return make
