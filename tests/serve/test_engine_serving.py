"""The server generates on one decode engine per run, built at load in the format asked
(``tinylm serve --weights``, by default the run's own), never per request."""

from __future__ import annotations

import pytest
import torch

from tinylm.cli.main import main
from tinylm.inference import engine as engine_module
from tinylm.inference.engine import DecodeEngine
from tinylm.inference.sampling import prompt_ids, sampleable_ids
from tinylm.serve.api import Api
from tinylm.serve.served import load_runs

from .conftest import LIMITS


def generated(api: Api, run: str, **body) -> list[dict]:
    events = list(api.generate(api.start_generation({"run": run, "text": "the", **body})))
    return events[:-1]


def expected_tokens(engine: DecodeEngine, api: Api, run: str, n: int, **sampling) -> list[int]:
    """What the stream shows of ``engine``'s tokens for the prompt "the"."""
    tokenizer = api.runs[run].tokenizer
    allowed = sampleable_ids(api.runs[run].loaded.model, tokenizer)
    tokens = list(engine.generate(prompt_ids(tokenizer, "the"), n, allowed_ids=allowed, **sampling))
    shown: list[int] = []
    for token in tokens:  # leading ends of document are context; a later one ends the stream
        if token == tokenizer.eos_id:
            if shown:
                break
            continue
        shown.append(token)
    return shown


def test_int8_serving_streams_the_int8_engines_tokens_and_probabilities(runs_root):
    api = Api(load_runs([runs_root / "alpha"], weights="int8"), limits=LIMITS)
    served = api.runs["alpha"]
    assert served.engine.weights == "int8"
    events = generated(api, "alpha", max_tokens=20, temperature=0.7, seed=11)
    reference = DecodeEngine(served.loaded.model, "int8")
    shown = expected_tokens(reference, api, "alpha", 20, temperature=0.7, seed=11)
    assert [e["id"] for e in events] == shown and len(shown) >= 2
    # each probability is the int8 engine's own, at temperature 1, after what came before
    tokenizer = served.tokenizer
    allowed = sampleable_ids(served.loaded.model, tokenizer)
    prompt = prompt_ids(tokenizer, "the")
    every = list(reference.generate(prompt, 20, allowed_ids=allowed, temperature=0.7, seed=11))
    first = every.index(events[0]["id"])  # after the leading ends of document
    for i, event in enumerate(events):
        context = prompt + every[: first + i]
        logits = reference.logits(torch.tensor([context]))[0, -1]
        probability = float(torch.softmax(logits.double(), -1)[event["id"]])
        assert event["prob"] == pytest.approx(probability, abs=1e-5)


def test_the_engine_is_built_once_per_run_not_per_request(runs_root, monkeypatch):
    api = Api(load_runs([runs_root / "beta"]), limits=LIMITS)
    engine = api.runs["beta"].engine
    assert isinstance(engine, DecodeEngine) and engine.weights == "float32"
    built = []
    original = engine_module.DecodeEngine.__init__
    monkeypatch.setattr(
        engine_module.DecodeEngine,
        "__init__",
        lambda self, *a, **k: built.append(1) or original(self, *a, **k),
    )
    for seed in (1, 2):
        assert generated(api, "beta", max_tokens=5, seed=seed)
    assert built == [] and api.runs["beta"].engine is engine


def test_a_quantized_run_is_served_in_its_own_format(runs_root, tmp_path):
    out = tmp_path / "alpha-int8"
    assert main(["quantize", str(runs_root / "alpha"), "--to", "int8", "--out", str(out)]) == 0
    float_api = Api(load_runs([runs_root / "alpha"]), limits=LIMITS)
    api = Api(load_runs([out]), limits=LIMITS)
    (name,) = api.runs
    assert api.runs[name].engine.weights == "int8"
    int8_on_float = DecodeEngine(float_api.runs["alpha"].loaded.model, "int8")
    events = generated(api, name, max_tokens=15, temperature=0.7, seed=11)
    shown = expected_tokens(int8_on_float, api, name, 15, temperature=0.7, seed=11)
    assert [e["id"] for e in events] == shown and len(shown) >= 2
