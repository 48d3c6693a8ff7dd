"""Tiny runs to inspect: a random model saved as a run, with prepared training data.

The weights are drawn with a large ``init_std`` so that attention and next-token
distributions are far from uniform: the views then have something to show, and a
wrong index or a missing softmax would change the numbers visibly.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from PIL import Image

from tinylm.checkpoint import CheckpointManager
from tinylm.data.prepare import prepare
from tinylm.inspect.loaded import LoadedModel
from tinylm.model import GPT, ModelConfig
from tinylm.tokenizers.char import CharTokenizer

DOCUMENT = "the cat sat on the mat. the dog sat on the log. a cat and a dog!\n"
CORPUS = [DOCUMENT * 3, "Then THE END.\n"] * 20

TINY = {"block_size": 24, "n_layer": 2, "n_embd": 16, "n_head": 4, "dropout": 0.0}


def make_model(tokenizer: CharTokenizer, seed: int = 0, **overrides) -> GPT:
    torch.manual_seed(seed)
    config = ModelConfig(vocab_size=tokenizer.vocab_size, init_std=0.4, **{**TINY, **overrides})
    return GPT(config).eval()


def save_run(run_dir: Path, model: GPT, tokenizer: CharTokenizer, with_data: bool) -> Path:
    """A run folder as ``tinylm train`` leaves it: a checkpoint and, optionally, its data."""
    CheckpointManager(run_dir).save(7, model, None, tokenizer=tokenizer)
    if with_data:
        prepare(CORPUS, tokenizer, run_dir / "data" / "corpus", progress=False, val_fraction=0.1)
        info = {"prepared": "data/corpus", "model": model.config.to_dict(), "train": {}}
        (run_dir / "run.json").write_text(json.dumps(info), encoding="utf-8")
    return run_dir


@pytest.fixture(scope="session")
def tokenizer() -> CharTokenizer:
    return CharTokenizer.train("".join(CORPUS))


@pytest.fixture(scope="session")
def tiny_run(tmp_path_factory, tokenizer) -> Path:
    """A run folder holding a random tiny model and its prepared training data."""
    run = tmp_path_factory.mktemp("runs") / "tiny"
    return save_run(run, make_model(tokenizer), tokenizer, with_data=True)


@pytest.fixture(scope="session")
def loaded(tiny_run) -> LoadedModel:
    return LoadedModel.from_run(tiny_run)


def _assert_png(path: Path, min_size: int = 200) -> None:
    """``path`` is a complete PNG of a readable size."""
    assert path.is_file(), path
    with Image.open(path) as image:
        assert image.format == "PNG"
        assert min(image.size) >= min_size, image.size
        image.load()  # decodes every byte: a truncated file fails here


@pytest.fixture
def assert_png():
    """``assert_png(path)``: the file is a complete PNG of a readable size."""
    return _assert_png


@pytest.fixture
def build_run(tmp_path, tokenizer):
    """``build_run(name, with_data=False, **model_overrides)`` -> a fresh run folder."""

    def build(name: str, with_data: bool = False, seed: int = 0, **overrides) -> Path:
        return save_run(
            tmp_path / name, make_model(tokenizer, seed, **overrides), tokenizer, with_data
        )

    return build
