"""Checkpoint files edited, damaged, or left half-written: each is one line, or recovered.

Every case here is an edit a person (or a crash) could make to a real checkpoint
folder; the loader must answer with a one-line ``TinylmError`` naming the file,
never a traceback, and never load garbage silently.
"""

from __future__ import annotations

import errno
import json
import os
import re
import struct
from pathlib import Path

import pytest
import torch

from conftest import damage_json
from tinylm.checkpoint import (
    CheckpointManager,
    load_checkpoint,
    read_checkpoint_meta,
    save_checkpoint,
)
from tinylm.errors import TinylmError
from tinylm.inference.loading import load_model, resolve_model_checkpoint
from tinylm.model import GPT, ModelConfig
from tinylm.tokenizers.char import CharTokenizer

CONFIG = {"vocab_size": 12, "block_size": 8, "n_layer": 1, "n_embd": 8, "n_head": 2}


def tiny_gpt(seed: int = 0) -> GPT:
    torch.manual_seed(seed)
    return GPT(ModelConfig.from_preset("small", **CONFIG))


@pytest.fixture
def ckpt(tmp_path) -> Path:
    """A complete checkpoint of a tiny GPT, with optimizer, RNG and a tokenizer."""
    model = tiny_gpt()
    optimizer = torch.optim.AdamW(model.parameters())
    model(torch.zeros(1, 4, dtype=torch.long), torch.zeros(1, 4, dtype=torch.long))[1].backward()
    optimizer.step()
    tokenizer = CharTokenizer.train("abcdefghij")
    generator = torch.Generator().manual_seed(1)
    return save_checkpoint(
        tmp_path / "ckpt-000003",
        model,
        optimizer,
        3,
        tokenizer=tokenizer,
        generators={"batches": generator},
        metrics={"val_loss": 2.5},
    )


def one_line(exc: pytest.ExceptionInfo) -> str:
    message = str(exc.value)
    assert "\n" not in message
    return message


def edit_json(path: Path, change) -> None:
    data = json.loads(path.read_text())
    data = change(data)
    path.write_text(json.dumps(data))


def load_all(folder: Path) -> None:
    """Everything a resume reads: meta, weights, optimizer, generators, global RNGs."""
    model = tiny_gpt(1)
    read_checkpoint_meta(folder)
    load_checkpoint(
        folder,
        model,
        torch.optim.AdamW(model.parameters()),
        generators={"batches": torch.Generator()},
    )


# -- state.json and config.json -------------------------------------------------------------


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (lambda d: {k: v for k, v in d.items() if k != "step"}, "field 'step' is missing"),
        (lambda d: {**d, "step": "abc"}, "field 'step' is a string ('abc'), expected an integer"),
        (lambda d: {**d, "step": -4}, "field 'step' is the number -4"),
        (lambda d: {**d, "step": True}, "field 'step' is a boolean"),
        (lambda d: {**d, "metrics": {"val_loss": "low"}}, "field 'metrics.val_loss'"),
        (lambda d: {**d, "extra": [1, 2]}, "field 'extra' is a list, expected an object"),
    ],
)
def test_edited_state_json_is_one_line(ckpt, change, message):
    edit_json(ckpt / "state.json", change)
    with pytest.raises(TinylmError) as exc:
        load_all(ckpt)
    assert message in one_line(exc) and "state.json" in str(exc.value)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("[1, 2, 3]", "holds a list, not a JSON object"),
        ('{"model": [1], "train": null}', "field 'model' is a list"),
        ('{"model": {"vocab_size": "x"', "not valid JSON"),
    ],
)
def test_edited_config_json_is_one_line(ckpt, text, message):
    (ckpt / "config.json").write_text(text)
    with pytest.raises(TinylmError) as exc:
        load_model(ckpt)
    assert message in one_line(exc)


def test_a_huge_vocab_size_in_config_json_is_refused_before_allocating(ckpt):
    edit_json(ckpt / "config.json", lambda d: {**d, "model": {**d["model"], "vocab_size": 10**12}})
    with pytest.raises(TinylmError) as exc:
        load_model(ckpt)  # would try to allocate 32 TB of embeddings
    # refused as a config (no vocabulary is that big) before any shape is compared
    assert "vocab_size 1,000,000,000,000 is larger than any real vocabulary" in one_line(exc)


@pytest.mark.parametrize(
    ("field", "value", "position"),
    [
        # No weight tensor bounds the context of a RoPE model: its rotation table (and a
        # KV cache) would be allocated from this number, 8 GB of it here.
        ("block_size", 10**9, "rope"),
        ("n_embd", 2**63, "learned"),  # overflowed torch's shape arithmetic: a traceback
        ("n_layer", 2**40, "learned"),  # built 10^12 modules on the meta device: a hang
        ("d_ff", 10**7, "learned"),
    ],
)
def test_sizes_beyond_any_real_model_in_config_json_are_refused_first(ckpt, field, value, position):
    edit_json(
        ckpt / "config.json",
        lambda d: {**d, "model": {**d["model"], "position": position, field: value}},
    )
    with pytest.raises(TinylmError) as exc:
        load_model(ckpt)
    assert f"{field} {value:,} is larger than any real model's" in one_line(exc)


# -- safetensors headers ------------------------------------------------------------------------


def rewrite_safetensors(path: Path, change_header, dtype_bytes=None) -> None:
    """Rewrite a safetensors file's JSON header (and optionally the tensor bytes)."""
    raw = path.read_bytes()
    (length,) = struct.unpack("<Q", raw[:8])
    header = json.loads(raw[8 : 8 + length])
    body = raw[8 + length :]
    header, body = change_header(header, body)
    encoded = json.dumps(header).encode()
    path.write_bytes(struct.pack("<Q", len(encoded)) + encoded + body)


def set_aliases(value: str):
    def change(header, body):
        header["__metadata__"]["aliases"] = value
        return header, body

    return change


@pytest.mark.parametrize(
    ("aliases", "message"),
    [
        ("not json", "metadata 'aliases'"),
        ('{"lm_head.weight": "nowhere"}', "must map new names to stored tensors"),
        ('["lm_head.weight"]', "must map new names to stored tensors"),
        ('{"tok_emb.weight": "tok_emb.weight"}', "must map new names to stored tensors"),
    ],
)
def test_bad_or_dangling_aliases_are_one_line(ckpt, aliases, message):
    rewrite_safetensors(ckpt / "model.safetensors", set_aliases(aliases))
    with pytest.raises(TinylmError) as exc:
        load_checkpoint(ckpt, tiny_gpt(1))
    assert message in one_line(exc) and "model.safetensors" in str(exc.value)


@pytest.mark.parametrize(("dtype", "size"), [("I32", 4), ("BOOL", 1), ("I64", 8)])
def test_weights_of_a_dtype_that_cannot_hold_weights_are_refused(ckpt, dtype, size):
    def retype(header, body):
        # Every tensor becomes `dtype` of the same shape: a file of the right shapes whose
        # numbers would be cast silently on load.
        out, position = {"__metadata__": header["__metadata__"]}, 0
        for name, entry in header.items():
            if name == "__metadata__":
                continue
            nbytes = size * max(1, int(torch.tensor(entry["shape"]).prod()))
            out[name] = {**entry, "dtype": dtype, "data_offsets": [position, position + nbytes]}
            position += nbytes
        return out, bytes(position)

    rewrite_safetensors(ckpt / "model.safetensors", retype)
    with pytest.raises(TinylmError) as exc:
        load_checkpoint(ckpt, tiny_gpt(1))
    assert f"as {dtype}, which cannot hold weights" in one_line(exc)


def test_a_header_that_does_not_describe_the_bytes_is_refused(ckpt):
    def grow(header, body):
        name = next(k for k in header if k != "__metadata__")
        header[name]["shape"] = [dim * 2 for dim in header[name]["shape"]]
        return header, body

    rewrite_safetensors(ckpt / "model.safetensors", grow)
    with pytest.raises(TinylmError) as exc:
        load_checkpoint(ckpt, tiny_gpt(1))
    assert "does not match its" in one_line(exc)


# -- rng.safetensors ------------------------------------------------------------------------------


def test_rng_file_without_metadata_is_one_line(ckpt):
    def strip(header, body):
        header["__metadata__"] = {}
        return header, body

    rewrite_safetensors(ckpt / "rng.safetensors", strip)
    with pytest.raises(TinylmError) as exc:
        load_all(ckpt)
    assert "metadata 'numpy' is missing" in one_line(exc)


@pytest.mark.parametrize("name", ["torch", "python", "numpy", "generator.batches"])
def test_rng_state_of_the_wrong_size_is_one_line(ckpt, name):
    def shrink(header, body):
        begin, end = header[name]["data_offsets"]
        header[name]["shape"] = [header[name]["shape"][0] - 1]
        width = (end - begin) // (header[name]["shape"][0] + 1)
        cut = end - width
        for entry in header.values():
            if "data_offsets" in entry and entry["data_offsets"][0] >= end:
                entry["data_offsets"] = [o - width for o in entry["data_offsets"]]
        header[name]["data_offsets"] = [begin, cut]
        return header, body[:cut] + body[end:]

    rewrite_safetensors(ckpt / "rng.safetensors", shrink)
    with pytest.raises(TinylmError) as exc:
        load_all(ckpt)
    assert f"RNG state {name!r} is" in one_line(exc)


# -- leftovers of a killed save, and the best checkpoint's identity --------------------------------


def run_with_best(tmp_path: Path) -> tuple[CheckpointManager, GPT]:
    model = tiny_gpt()
    manager = CheckpointManager(tmp_path / "run", keep_last=2)
    for step, val_loss in ((1, 3.0), (2, 1.0), (3, 2.0), (4, 2.5)):
        manager.save(step, model, None, val_loss=val_loss)
    return manager, model


def test_a_lost_best_folder_is_never_silently_the_latest(tmp_path):
    manager, _ = run_with_best(tmp_path)
    run = manager.run_dir
    os.rename(run / "best", run / ".best.old-p999999999-abcd")  # killed between the renames
    (run / ".best.old-p999999999-abcd").rename(tmp_path / "gone")  # ...and the copy lost too
    with pytest.raises(TinylmError) as exc:
        resolve_model_checkpoint(run, "best")
    assert "best checkpoint of" in one_line(exc) and "(step 2, val loss 1.0000)" in str(exc.value)
    # The next save must not publish a worse checkpoint as best: the run state knows step 2.
    manager.save(5, tiny_gpt(), None, val_loss=1.5)
    assert not (run / "best").exists()
    assert manager.best_val_loss() == 1.0


def test_best_is_found_in_its_own_step_folder_when_best_is_missing(tmp_path):
    manager = CheckpointManager(tmp_path / "run", keep_last=5)
    for step, val_loss in ((1, 3.0), (2, 1.0), (3, 2.0)):
        manager.save(step, tiny_gpt(), None, val_loss=val_loss)
    (manager.run_dir / "best").rename(tmp_path / "gone")
    assert resolve_model_checkpoint(manager.run_dir, "best") == manager.run_dir / "ckpt-000002"
    assert manager.recover() == [f"restored {manager.run_dir / 'best'} from ckpt-000002"]
    assert read_checkpoint_meta(manager.run_dir / "best").step == 2


def test_a_run_without_an_evaluation_has_no_best_and_says_so(tmp_path):
    manager = CheckpointManager(tmp_path / "run")
    manager.save(1, tiny_gpt(), None)
    with pytest.raises(TinylmError, match="has no best checkpoint"):
        resolve_model_checkpoint(manager.run_dir, "best")


def test_leftovers_of_a_killed_save_are_cleaned_and_best_is_put_back(tmp_path):
    manager, _ = run_with_best(tmp_path)
    run = manager.run_dir
    dead = "p999999999-"  # no such process
    os.rename(run / "best", run / f".best.old-{dead}1a2b3c4d")  # killed between the renames
    (run / f".best.tmp-{dead}00aa").mkdir()
    (run / f".ckpt-000005.tmp-{dead}11bb").mkdir()
    (run / f".ckpt-000005.tmp-{dead}11bb" / "model.safetensors").write_bytes(b"x" * 100)
    (run / f".metrics.jsonl.{dead}ab_cd123.tmp").write_text("half")
    (run / ".ckpt-000004.tmp-0123456789ab").mkdir()  # named before names carried a pid
    live = run / f".ckpt-000006.tmp-p{os.getppid()}-22cc"  # a running writer's: kept
    live.mkdir()
    done = manager.recover()
    assert f"restored {run / 'best'} from .best.old-{dead}1a2b3c4d" in done
    assert sorted(p.name for p in run.iterdir()) == sorted(
        ["best", "ckpt-000003", "ckpt-000004", live.name]
    )
    assert read_checkpoint_meta(run / "best").step == 2


def test_prepare_leftovers_are_cleaned_by_the_next_write_of_that_folder(tmp_path):
    from tinylm.fileio import atomic_directory

    stale = tmp_path / ".data.tmp-p999999999-0011aabbccdd"
    stale.mkdir()
    (stale / "train.bin").write_bytes(b"\0" * 1000)
    with atomic_directory(tmp_path / "data", "meta.json", "dataset") as tmp:
        (tmp / "meta.json").write_text("{}")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["data"]


# -- a full disk --------------------------------------------------------------------------------


def fill_disk_at_fsync(monkeypatch) -> None:
    """Make flushing any file fail as a full disk does (the data never reached the disk)."""

    def full(fd):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(os, "fsync", full)


def test_a_full_disk_during_a_checkpoint_save_is_one_line_and_keeps_the_old_one(ckpt, monkeypatch):
    before = {p.name: p.read_bytes() for p in ckpt.iterdir()}
    model = tiny_gpt()
    fill_disk_at_fsync(monkeypatch)
    with pytest.raises(TinylmError) as exc:
        save_checkpoint(ckpt, model, torch.optim.AdamW(model.parameters()), 4)
    message = one_line(exc)
    assert message.startswith(f"cannot write {ckpt}: no space left on the device (")
    needed = int(re.search(r"\(([\d,]+) bytes needed", message).group(1).replace(",", ""))
    stored = ckpt / "model.safetensors"  # the same weights, saved before the disk filled
    (length,) = struct.unpack("<Q", stored.read_bytes()[:8])
    assert needed >= stored.stat().st_size - 8 - length  # at least the weights themselves
    assert {p.name: p.read_bytes() for p in ckpt.iterdir()} == before
    assert sorted(p.name for p in ckpt.parent.iterdir()) == [ckpt.name]


def test_a_full_disk_during_a_tokenizer_save_names_the_file_and_its_size(tmp_path, monkeypatch):
    tokenizer = CharTokenizer.train("hello world")
    size = len(tokenizer.to_json().encode())
    fill_disk_at_fsync(monkeypatch)
    with pytest.raises(TinylmError) as exc:
        tokenizer.save(tmp_path / "tok.json")
    assert one_line(exc).startswith(
        f"cannot write {tmp_path / 'tok.json'}: no space left on the device ({size:,} bytes needed"
    )
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        ({"best_val_loss": "abc", "world_size": 1}, "field 'best_val_loss' is a string"),
        ({"world_size": "two"}, "field 'world_size' is a string"),
        ({"world_size": 0}, "field 'world_size' is the number 0"),
    ],
)
def test_edited_trainer_state_is_one_line_on_resume(tmp_path, extra, message):
    import numpy as np

    from tinylm.train.config import TrainConfig
    from tinylm.train.trainer import Trainer

    ids = np.arange(200, dtype=np.uint16) % CONFIG["vocab_size"]
    config = TrainConfig.from_dict(
        {"steps": 5, "batch_size": 2, "out_dir": None, "progress": False}
    )
    trainer = Trainer(tiny_gpt(1), ids, ids, None, config)
    generators = {"batches": trainer.batch_generator}
    folder = save_checkpoint(
        tmp_path / "c", trainer.model, trainer.optimizer, 2, generators=generators, extra=extra
    )
    with pytest.raises(TinylmError) as exc:
        trainer.resume(folder)
    assert message in one_line(exc)


def stepped_muon_checkpoint(tmp_path: Path):
    """A checkpoint of a Muon run one step in (so every parameter has optimiser state),
    and a function that builds a fresh trainer of the same run to resume it."""
    import numpy as np

    from tinylm.train.config import TrainConfig
    from tinylm.train.trainer import Trainer

    ids = np.arange(200, dtype=np.uint16) % CONFIG["vocab_size"]
    config = TrainConfig.from_dict(
        {"steps": 5, "batch_size": 2, "out_dir": None, "progress": False, "optimizer": "muon"}
    )

    def new_trainer() -> Trainer:
        return Trainer(tiny_gpt(1), ids, ids, None, config)

    trainer = new_trainer()
    trainer.train_step()
    generators = {"batches": trainer.batch_generator}
    folder = save_checkpoint(
        tmp_path / "c", trainer.model, trainer.optimizer, 1, generators=generators
    )
    return folder, new_trainer


def _edit_groups(index, key, value):
    def change(d):
        group = d["state"]["param_groups"][index]
        if value is KeyError:
            del group[key]
        else:
            group[key] = value
        return d

    return change


def _edit_state(kind, key, value):
    """Set ``key`` of the first parameter state holding ``kind`` (a state key) to ``value``."""

    def change(d):
        for _, state in d["state"]["state"]["__dict__"]:
            if kind in state:
                state[key] = value
                return d
        raise AssertionError(f"no parameter state holds {kind}")

    return change


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (_edit_groups(-1, "eps", KeyError), "eps must be a finite number, got None"),
        (_edit_groups(-1, "betas", {"__tuple__": ["x", 0.95]}), "betas must be two numbers"),
        (_edit_groups(0, "weight_decay", ""), "weight_decay must be a finite number"),
        (_edit_groups(0, "lr", float("nan")), "learning rate must be a finite number"),
        (_edit_groups(0, "nesterov", 1), "nesterov must be true or false"),
        (_edit_groups(0, "use_muon", "yes"), "use_muon must be true or false"),
        (_edit_state("m", "step", -3), "step must be an integer >= 0, got -3"),
        (_edit_state("m", "v", None), "v is NoneType, not a tensor of the parameter's shape"),
        (_edit_state("momentum_buffer", "m", None), "this optimiser keeps ['momentum_buffer']"),
    ],
)
def test_edited_optimizer_state_is_one_line_on_resume(tmp_path, change, message):
    # torch's load_state_dict copies whatever the file holds: these edits used to fail
    # (KeyError, TypeError) inside the first optimizer step after the resume.
    folder, new_trainer = stepped_muon_checkpoint(tmp_path)
    edit_json(folder / "optimizer.json", change)
    fresh = new_trainer()
    with pytest.raises(TinylmError) as exc:
        fresh.resume(folder)
    assert message in one_line(exc) and "optimizer state in" in str(exc.value)


@pytest.mark.parametrize("seed", range(3))
def test_randomly_damaged_optimizer_json_resumes_and_steps_or_is_one_line(tmp_path, seed):
    import copy
    import random

    folder, new_trainer = stepped_muon_checkpoint(tmp_path)
    original = json.loads((folder / "optimizer.json").read_text())
    rng = random.Random(seed)
    refused = 0
    for _ in range(60):
        damaged = damage_json(copy.deepcopy(original), rng)
        (folder / "optimizer.json").write_text(json.dumps(damaged))
        fresh = new_trainer()
        try:
            fresh.resume(folder)
        except TinylmError as exc:
            assert "\n" not in str(exc)
            refused += 1
            continue
        fresh.train_step()  # what loaded must also step
    assert refused > 0
