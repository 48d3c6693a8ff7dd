"""Two tiny runs on disk and an inspector server over them, started in this process.

The models are random (no training needed to check that the page shows what the
library computes), with a large ``init_std`` so their distributions and attention
are far from uniform and a wrong number cannot pass by accident.
"""

from __future__ import annotations

import contextlib
import json
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
import torch

from tinylm.checkpoint import CheckpointManager
from tinylm.model import GPT, ModelConfig
from tinylm.serve.api import Api, Limits
from tinylm.serve.served import load_runs
from tinylm.serve.server import InspectorServer
from tinylm.tokenizers.base import Tokenizer
from tinylm.tokenizers.char import CharTokenizer

TEXT = "The with statement. the quick brown fox jumps over the lazy dog, 0123456789!\n"
LIMITS = Limits(max_prompt_chars=200, max_new_tokens=40, max_attention_values=20_000)


def make_run(
    folder: Path, n_layer: int, seed: int, losses: list[float], tokenizer: Tokenizer | None = None
) -> Path:
    """A run folder as ``tinylm train`` leaves it: a checkpoint, run.json, metrics.jsonl."""
    tokenizer = tokenizer or CharTokenizer.train(TEXT)
    torch.manual_seed(seed)
    config = ModelConfig(
        vocab_size=tokenizer.vocab_size,
        block_size=48,
        n_layer=n_layer,
        n_head=2,
        n_embd=16,
        init_std=0.4,
        position="rope" if seed else "learned",
    )
    model = GPT(config)
    CheckpointManager(folder).save(len(losses) * 10, model, None, tokenizer=tokenizer)
    info = {"preset": None, "model": config.to_dict(), "train": {"lr": 1e-3 * (seed + 1)}}
    info["prepared"] = "data/0123"  # where tinylm train would have cached its data
    (folder / "run.json").write_text(json.dumps(info), encoding="utf-8")
    lines = []
    for n, loss in enumerate(losses):
        lines.append({"step": n * 10, "loss": loss, "lr": 1e-3})
        if n % 2 == 1:
            lines.append({"step": n * 10, "val_loss": loss + 0.1, "val_ppl": 2.0})
    text = "".join(json.dumps(line) + "\n" for line in lines)
    (folder / "metrics.jsonl").write_text(text + '{"step": 99, "loss', encoding="utf-8")
    return folder


@pytest.fixture(scope="session")
def runs_root(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("runs")
    make_run(root / "alpha", n_layer=2, seed=0, losses=[4.0, 3.1, 2.6, 2.3, 2.1, 2.0])
    make_run(root / "beta", n_layer=1, seed=1, losses=[4.1, 3.5, 3.0, 2.8])
    return root


@pytest.fixture(scope="session")
def api(runs_root) -> Api:
    runs = load_runs([runs_root])
    compare = {"char": CharTokenizer.train(TEXT + "xyz")}
    return Api(runs, compare, LIMITS)


@contextlib.contextmanager
def serving(api: Api, **options) -> Iterator[InspectorServer]:
    """``api`` on an ephemeral port of 127.0.0.1, answering on a background thread."""
    srv = InspectorServer(api, "127.0.0.1", 0, **options)
    thread = threading.Thread(target=srv.serve_forever, daemon=True)
    thread.start()
    try:
        yield srv
    finally:
        srv.shutdown()
        srv.server_close()
        thread.join(timeout=5)


@pytest.fixture(scope="session")
def server(api) -> Iterator[InspectorServer]:
    """The shared runs' server (see :func:`serving`)."""
    with serving(api, max_requests=8) as srv:
        yield srv


@pytest.fixture(scope="session")
def chat_root(tmp_path_factory) -> Path:
    """A folder holding the tiny chat model of tests/inference/chat_model.py (it knows
    its replies to :data:`TURNS`), saved as chat fine-tuning saves it."""
    from conftest import one_torch_thread
    from inference.chat_model import save_chat_model, train_chat_model

    root = tmp_path_factory.mktemp("chat-runs")
    with one_torch_thread():
        model, tokenizer = train_chat_model()
    save_chat_model(root / "chat", model, tokenizer)
    return root


@pytest.fixture(scope="session")
def chat_api(chat_root, runs_root) -> Api:
    """The chat model first (the page's first run), then alpha, which has no chat template."""
    runs = load_runs([chat_root / "chat", runs_root / "alpha"])
    return Api(runs, {}, LIMITS)


@pytest.fixture(scope="session")
def chat_server(chat_api) -> Iterator[InspectorServer]:
    with serving(chat_api, max_requests=8) as srv:
        yield srv
