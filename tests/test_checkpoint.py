"""Checkpoints: exact round trips, tied weights, no pickle, atomic writes, exact resume."""

from __future__ import annotations

import json
import math
import random
import stat
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from tinylm.checkpoint import (
    CheckpointManager,
    load_checkpoint,
    read_checkpoint_meta,
    resolve_checkpoint,
    save_checkpoint,
)
from tinylm.data.batches import get_batch
from tinylm.errors import TinylmError
from tinylm.tokenizers.char import CharTokenizer

VOCAB = 16


class TinyLM(nn.Module):
    """Embedding -> dropout -> linear head tied to the embedding: small, but it has a tie."""

    def __init__(self, dim: int = 8, dropout: float = 0.1) -> None:
        super().__init__()
        self.emb = nn.Embedding(VOCAB, dim)
        self.mix = nn.Linear(dim, dim)
        self.drop = nn.Dropout(dropout)
        self.head = nn.Linear(dim, VOCAB, bias=False)
        self.head.weight = self.emb.weight
        self.config = {"dim": dim, "dropout": dropout}

    def forward(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        h = self.drop(torch.tanh(self.mix(self.emb(x))))
        return nn.functional.cross_entropy(self.head(h).flatten(0, 1), y.flatten())


class Counting(torch.optim.Optimizer):
    """A custom optimizer whose state mixes tensors, ints, floats, tuples, dicts and strings.

    (No strings in per-parameter state: torch's own ``load_state_dict`` mangles them.)
    """

    def __init__(self, params, lr: float = 0.1) -> None:
        defaults = {"lr": lr, "betas": (0.9, 0.99), "tag": None, "name": "c", "cap": math.inf}
        super().__init__(params, defaults)

    @torch.no_grad()
    def step(self, closure=None):
        for group in self.param_groups:
            for p in group["params"]:
                state = self.state[p]
                if not state:
                    state.update(count=0, scale=1.0, buf=torch.zeros_like(p))
                    state["history"] = (0, 0.5)
                    state["nested"] = {"a": [1, 2.5, None], 3: {"__tensor__": True}}
                state["count"] += 1
                state["scale"] *= 0.5
                state["buf"].add_(p.grad)
                state["history"] = (state["count"], state["scale"])
                p.add_(state["buf"], alpha=-group["lr"])


def train_steps(model, optimizer, generator, data, steps: int) -> list[torch.Tensor]:
    losses = []
    for _ in range(steps):
        x, y = get_batch(data, 4, 8, generator=generator)
        loss = model(x, y)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        losses.append(loss.detach().clone())
    return losses


def assert_same_state(a, b) -> None:
    """Deep equality that tells a tuple from a list and an int from a float."""
    assert type(a) is type(b), (a, b)
    if isinstance(a, torch.Tensor):
        assert a.dtype == b.dtype and a.shape == b.shape and torch.equal(a, b)
    elif isinstance(a, dict):
        assert list(a) == list(b)
        for key in a:
            assert_same_state(a[key], b[key])
    elif isinstance(a, (list, tuple)):
        assert len(a) == len(b)
        for x, y in zip(a, b, strict=True):
            assert_same_state(x, y)
    elif isinstance(a, float) and math.isnan(a):
        assert math.isnan(b)
    else:
        assert a == b


DATA = np.random.default_rng(0).integers(0, VOCAB, 400).astype(np.uint16)


def trained(optimizer_cls=torch.optim.AdamW, steps: int = 3):
    torch.manual_seed(0)
    model = TinyLM()
    optimizer = optimizer_cls(model.parameters(), lr=0.01)
    train_steps(model, optimizer, torch.Generator().manual_seed(1), DATA, steps)
    return model, optimizer


# -- round trips ---------------------------------------------------------------------


def test_weights_step_config_and_tokenizer_round_trip(tmp_path):
    model, optimizer = trained()
    tok = CharTokenizer(list("abc"))
    save_checkpoint(
        tmp_path / "c", model, optimizer, 3, tokenizer=tok, train_config={"lr": 0.01},
        extra={"tokens_seen": 96}, metrics={"val_loss": torch.tensor(2.5)},
    )  # fmt: skip
    torch.manual_seed(5)
    fresh = TinyLM()
    assert load_checkpoint(tmp_path / "c", fresh) == 3
    for (name, a), b in zip(model.state_dict().items(), fresh.state_dict().values(), strict=True):
        assert torch.equal(a, b), name
    meta = read_checkpoint_meta(tmp_path / "c")
    assert meta.step == 3 and meta.model_config == {"dim": 8, "dropout": 0.1}
    assert meta.train_config == {"lr": 0.01} and meta.extra == {"tokens_seen": 96}
    assert meta.metrics == {"val_loss": 2.5}
    assert CharTokenizer.from_dict(json.loads(meta.tokenizer_file.read_text())).chars == tok.chars


def test_only_safetensors_and_json_are_written_and_loading_never_unpickles(tmp_path, monkeypatch):
    model, optimizer = trained()
    save_checkpoint(tmp_path / "c", model, optimizer, 3, tokenizer=CharTokenizer(list("ab")))
    names = sorted(p.name for p in (tmp_path / "c").iterdir())
    assert names == [
        "config.json", "model.safetensors", "optimizer.json", "optimizer.safetensors",
        "rng.safetensors", "state.json", "tokenizer.json",
    ]  # fmt: skip

    def no_pickle(*args, **kwargs):
        raise AssertionError("a checkpoint must load without pickle")

    monkeypatch.setattr(torch, "load", no_pickle)
    monkeypatch.setattr("pickle.loads", no_pickle)
    monkeypatch.setattr("pickle.load", no_pickle)
    fresh = TinyLM()
    load_checkpoint(tmp_path / "c", fresh, torch.optim.AdamW(fresh.parameters()))


def test_tied_weights_are_stored_once_and_stay_tied(tmp_path):
    from safetensors import safe_open

    model, _ = trained()
    save_checkpoint(tmp_path / "c", model, None, 0)
    with safe_open(str(tmp_path / "c" / "model.safetensors"), framework="pt") as f:
        assert sorted(f.keys()) == ["emb.weight", "mix.bias", "mix.weight"]
        assert json.loads(f.metadata()["aliases"]) == {"head.weight": "emb.weight"}
    fresh = TinyLM()
    load_checkpoint(tmp_path / "c", fresh)
    assert fresh.head.weight is fresh.emb.weight
    assert torch.equal(fresh.head.weight, model.emb.weight)


def test_overlapping_views_are_saved_as_copies(tmp_path):
    class Views(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.register_buffer("whole", torch.arange(6.0))
            self.register_buffer("part", self.whole[2:4])  # same storage, another view

    save_checkpoint(tmp_path / "c", Views(), None, 0)
    fresh = Views()
    fresh.whole.zero_()
    load_checkpoint(tmp_path / "c", fresh)
    assert fresh.part.tolist() == [2.0, 3.0]


@pytest.mark.parametrize("optimizer_cls", [torch.optim.AdamW, torch.optim.SGD, Counting])
def test_optimizer_state_dict_round_trips_exactly(tmp_path, optimizer_cls):
    model, optimizer = trained(optimizer_cls)
    if optimizer_cls is torch.optim.SGD:
        optimizer = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9, nesterov=True)
        train_steps(model, optimizer, torch.Generator().manual_seed(2), DATA, 2)
    save_checkpoint(tmp_path / "c", model, optimizer, 3)
    fresh_model = TinyLM()
    fresh = optimizer_cls(fresh_model.parameters(), lr=0.5)
    load_checkpoint(tmp_path / "c", fresh_model, fresh)
    assert_same_state(optimizer.state_dict(), fresh.state_dict())


def test_tinylm_optimizers_round_trip_if_available(tmp_path):
    optim = pytest.importorskip("tinylm.train.optim", reason="tinylm optimizers not written yet")
    model = nn.Sequential(nn.Linear(6, 6, bias=False), nn.Linear(6, 6, bias=False))
    for make in (lambda p: optim.AdamW(p, lr=0.01), lambda p: optim.Muon(p, lr=0.02)):
        optimizer = make(list(model.parameters()))
        for _ in range(2):
            model(torch.randn(3, 6)).square().sum().backward()
            optimizer.step()
        save_checkpoint(tmp_path / "c", model, optimizer, 2)
        fresh = make(list(model.parameters()))
        load_checkpoint(tmp_path / "c", model, fresh)
        assert_same_state(optimizer.state_dict(), fresh.state_dict())


def test_global_rngs_and_named_generators_are_restored(tmp_path):
    model, optimizer = trained()
    gen = torch.Generator().manual_seed(3)
    torch.manual_seed(11), np.random.seed(12), random.seed(13)
    save_checkpoint(tmp_path / "c", model, optimizer, 3, generators={"batches": gen})
    expected = (torch.rand(3), np.random.rand(3), random.random(), torch.rand(2, generator=gen))
    torch.manual_seed(0), np.random.seed(0), random.seed(0)
    other = torch.Generator().manual_seed(99)
    load_checkpoint(tmp_path / "c", model, optimizer, generators={"batches": other})
    got = (torch.rand(3), np.random.rand(3), random.random(), torch.rand(2, generator=other))
    assert torch.equal(expected[0], got[0]) and np.array_equal(expected[1], got[1])
    assert expected[2] == got[2] and torch.equal(expected[3], got[3])


def test_loading_weights_alone_leaves_the_global_rng_alone(tmp_path):
    model, _ = trained()
    save_checkpoint(tmp_path / "c", model, None, 0)
    torch.manual_seed(42)
    expected = torch.rand(3)
    torch.manual_seed(42)
    load_checkpoint(tmp_path / "c", model)
    assert torch.equal(torch.rand(3), expected)


def test_an_unknown_generator_name_is_an_error(tmp_path):
    model, _ = trained()
    save_checkpoint(tmp_path / "c", model, None, 0, generators={"batches": torch.Generator()})
    with pytest.raises(TinylmError, match="no state for generator 'data'.*batches"):
        load_checkpoint(tmp_path / "c", model, generators={"data": torch.Generator()})


# -- exact resume ----------------------------------------------------------------------------


def test_resume_continues_bit_for_bit(tmp_path):
    def fresh(seed: int):
        torch.manual_seed(seed)
        model = TinyLM(dropout=0.2)  # dropout draws from the global torch RNG
        return model, torch.optim.AdamW(model.parameters(), lr=0.02), torch.Generator()

    model, optimizer, gen = fresh(0)
    gen.manual_seed(1234)
    uninterrupted = train_steps(model, optimizer, gen, DATA, 10)
    final = {k: v.clone() for k, v in model.state_dict().items()}

    model, optimizer, gen = fresh(0)
    gen.manual_seed(1234)
    first_half = train_steps(model, optimizer, gen, DATA, 5)
    manager = CheckpointManager(tmp_path / "run")
    manager.save(5, model, optimizer, generators={"batches": gen})
    train_steps(model, optimizer, gen, DATA, 2)  # the crashed run went on a little

    model, optimizer, gen = fresh(99)  # a new process: other weights, other RNG states
    np.random.seed(7), random.seed(7)
    step = load_checkpoint(manager.latest(), model, optimizer, generators={"batches": gen})
    second_half = train_steps(model, optimizer, gen, DATA, 10 - step)

    assert torch.equal(torch.stack(first_half + second_half), torch.stack(uninterrupted))
    for name, value in model.state_dict().items():
        assert torch.equal(value, final[name]), name


def test_gpt_round_trip_if_available(tmp_path):
    model_pkg = pytest.importorskip("tinylm.model", reason="model not written yet")
    config = model_pkg.ModelConfig(
        vocab_size=32, block_size=16, n_layer=1, n_embd=16, n_head=2, tie_embeddings=True
    )
    torch.manual_seed(0)
    gpt = model_pkg.GPT(config)
    save_checkpoint(tmp_path / "c", gpt, None, 7)
    meta = read_checkpoint_meta(tmp_path / "c")
    rebuilt = model_pkg.GPT(model_pkg.ModelConfig.from_dict(meta.model_config))
    load_checkpoint(tmp_path / "c", rebuilt)
    assert rebuilt.lm_head.weight is rebuilt.tok_emb.weight
    idx = torch.randint(0, 32, (2, 8))
    gpt.eval(), rebuilt.eval()
    with torch.no_grad():
        assert torch.equal(gpt(idx)[0], rebuilt(idx)[0])


# -- atomic writes ----------------------------------------------------------------------------


def test_a_failed_save_keeps_the_previous_checkpoint_and_no_temp_files(tmp_path):
    model, optimizer = trained()
    save_checkpoint(tmp_path / "c", model, optimizer, 3)
    before = {p.name: p.read_bytes() for p in (tmp_path / "c").iterdir()}
    with pytest.raises(TinylmError, match="JSON"):
        save_checkpoint(tmp_path / "c", model, optimizer, 4, extra={"bad": object()})
    assert {p.name: p.read_bytes() for p in (tmp_path / "c").iterdir()} == before
    assert [p.name for p in tmp_path.iterdir()] == ["c"]


def test_saving_over_a_checkpoint_replaces_it_and_cleans_up(tmp_path):
    model, optimizer = trained()
    save_checkpoint(tmp_path / "c", model, optimizer, 3)
    save_checkpoint(tmp_path / "c", model, None, 4)
    assert read_checkpoint_meta(tmp_path / "c").step == 4
    assert not (tmp_path / "c" / "optimizer.json").exists()
    assert [p.name for p in tmp_path.iterdir()] == ["c"]


def test_a_foreign_directory_is_never_overwritten(tmp_path):
    (tmp_path / "c").mkdir()
    (tmp_path / "c" / "notes.txt").write_text("mine")
    with pytest.raises(TinylmError, match="not a tinylm checkpoint"):
        save_checkpoint(tmp_path / "c", TinyLM(), None, 0)
    assert (tmp_path / "c" / "notes.txt").read_text() == "mine"


# -- errors -------------------------------------------------------------------------------------


def test_missing_foreign_and_truncated_checkpoints_are_named(tmp_path):
    with pytest.raises(TinylmError, match="does not exist"):
        load_checkpoint(tmp_path / "nope", TinyLM())
    (tmp_path / "empty").mkdir()
    with pytest.raises(
        TinylmError,
        match=r"is not a tinylm checkpoint \(missing model.safetensors\); point at a run's",
    ):
        load_checkpoint(tmp_path / "empty", TinyLM())

    model, _ = trained()
    save_checkpoint(tmp_path / "c", model, None, 1)
    weights = tmp_path / "c" / "model.safetensors"
    intact = weights.read_bytes()
    weights.write_bytes(intact[: len(intact) // 2])
    with pytest.raises(TinylmError, match="truncated or corrupt"):
        load_checkpoint(tmp_path / "c", TinyLM())
    weights.write_bytes(intact)
    (tmp_path / "c" / "state.json").write_text('{"format": "something-else"}')
    with pytest.raises(TinylmError, match="not a tinylm checkpoint"):
        read_checkpoint_meta(tmp_path / "c")


def test_a_mismatched_model_or_missing_optimizer_state_is_a_user_error(tmp_path):
    model, _ = trained()
    save_checkpoint(tmp_path / "c", model, None, 1)
    with pytest.raises(TinylmError, match="does not fit this model"):
        load_checkpoint(tmp_path / "c", TinyLM(dim=4))
    with pytest.raises(TinylmError, match="no optimizer state"):
        load_checkpoint(tmp_path / "c", model, torch.optim.AdamW(model.parameters()))


def test_an_interrupted_swap_points_at_the_surviving_copy(tmp_path):
    model, _ = trained()
    save_checkpoint(tmp_path / "c", model, None, 1)
    (tmp_path / "c").rename(tmp_path / ".c.old-1234abcd")  # crash between the two renames
    with pytest.raises(TinylmError, match=r"predecessor at .*\.c\.old-1234abcd"):
        load_checkpoint(tmp_path / "c", TinyLM())


# -- the run's checkpoints ---------------------------------------------------------------------


def test_manager_keeps_the_last_k_and_the_best(tmp_path):
    model, optimizer = trained()
    manager = CheckpointManager(tmp_path / "run", keep_last=2)
    for step, val_loss in zip(range(1, 6), [3.0, 1.0, 2.0, float("nan"), 2.2], strict=True):
        manager.save(step, model, optimizer, val_loss=val_loss)
    assert [p.name for p in manager.checkpoints()] == ["ckpt-000004", "ckpt-000005"]
    assert manager.latest() == tmp_path / "run" / "ckpt-000005"
    assert manager.best() == tmp_path / "run" / "best"
    assert manager.best_val_loss() == 1.0
    assert load_checkpoint(manager.best(), TinyLM()) == 2  # survives pruning of ckpt-000002
    assert resolve_checkpoint(tmp_path / "run") == manager.latest()  # a run dir means latest
    assert sorted(p.name for p in (tmp_path / "run").iterdir()) == [
        "best", "ckpt-000004", "ckpt-000005",
    ]  # fmt: skip


def test_manager_picks_up_an_existing_run(tmp_path):
    model, _ = trained()
    CheckpointManager(tmp_path / "run").save(10, model, None, val_loss=2.0)
    again = CheckpointManager(tmp_path / "run")
    assert again.latest().name == "ckpt-000010" and again.best_val_loss() == 2.0
    again.save(20, model, None, val_loss=2.5)
    assert read_checkpoint_meta(again.best()).step == 10
    with pytest.raises(TinylmError, match="keep_last"):
        CheckpointManager(tmp_path / "run", keep_last=0)
    assert CheckpointManager(Path(tmp_path / "none")).latest() is None


def test_checkpoint_files_get_the_permissions_a_plain_open_gives(tmp_path):
    model = nn.Linear(3, 2)
    optimizer = torch.optim.AdamW(model.parameters())
    model(torch.ones(1, 3)).sum().backward()
    optimizer.step()
    path = save_checkpoint(tmp_path / "ckpt", model, optimizer, step=1)
    reference = tmp_path / "plain"
    reference.write_bytes(b"")  # what open() gives under this process's umask
    expected = stat.S_IMODE(reference.stat().st_mode)
    for file in Path(path).iterdir():
        assert stat.S_IMODE(file.stat().st_mode) == expected, file.name
