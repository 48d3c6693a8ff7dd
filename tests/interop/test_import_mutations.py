"""``tinylm import`` on damaged folders: every file it reads mutated at random.

A Hugging Face folder comes from someone else, so each mutation of the files
import reads (``config.json``, ``model.safetensors``, ``tokenizer.json``) must end
one of two ways: a run that loads and runs, or exit status 2 with a one-line
error and no output folder. Never a traceback, never a half-written run.
"""

from __future__ import annotations

import json
import random
import shutil
import struct

import pytest
import torch

from conftest import damage_json
from tinylm.checkpoint import save_checkpoint
from tinylm.cli.main import main
from tinylm.inference.loading import load_model

from .conftest import VARIANTS, make_model

FAMILIES = ("gpt2-tied-gelu", "llama-gqa-tied")


@pytest.fixture(scope="module")
def exported(bpe, tmp_path_factory):
    """One exported HF folder per family, to be copied and damaged."""
    root = tmp_path_factory.mktemp("exports")
    folders = {}
    for name in FAMILIES:
        model = make_model(bpe.vocab_size, **VARIANTS[name])
        save_checkpoint(root / name / "ckpt-000010", model, None, 10, tokenizer=bpe)
        folders[name] = root / f"hf-{name}"
        assert (
            main(["export", str(root / name), "--format", "hf", "--out", str(folders[name])]) == 0
        )
    return folders


def mutate_safetensors(data: bytes, rng: random.Random) -> bytes:
    """Truncated, a header field changed, or bytes overwritten."""
    kind = rng.randrange(3)
    if kind == 0:
        return data[: rng.randrange(len(data))]
    if kind == 1:
        (size,) = struct.unpack("<Q", data[:8])
        header = damage_json(json.loads(data[8 : 8 + size]), rng)
        text = json.dumps(header).encode()
        text += b" " * (-len(text) % 8)
        return struct.pack("<Q", len(text)) + text + data[8 + size :]
    damaged = bytearray(data)
    for _ in range(rng.randint(1, 6)):
        damaged[rng.randrange(len(damaged))] = rng.randrange(256)
    return bytes(damaged)


def damage(folder, rng: random.Random) -> str:
    name = rng.choice(["config.json", "model.safetensors", "tokenizer.json"])
    path = folder / name
    if name.endswith(".json") and rng.random() < 0.8:
        path.write_text(json.dumps(damage_json(json.loads(path.read_text()), rng)))
    elif name.endswith(".json"):
        path.write_bytes(path.read_bytes()[: rng.randrange(path.stat().st_size)])
    else:
        path.write_bytes(mutate_safetensors(path.read_bytes(), rng))
    return name


@pytest.mark.parametrize("seed", range(4))
def test_damaged_folders_import_cleanly_or_are_refused_in_one_line(
    exported, tmp_path, capsys, seed
):
    rng = random.Random(seed)
    outcomes = []
    for trial in range(12):
        family = FAMILIES[trial % 2]
        folder = tmp_path / f"hf-{trial}"
        shutil.copytree(exported[family], folder)
        damaged = damage(folder, rng)
        out = tmp_path / f"run-{trial}"
        capsys.readouterr()
        status = main(["import", str(folder), "--out", str(out)])
        err = capsys.readouterr().err
        context = (seed, trial, family, damaged, err)
        assert status in (0, 2), context
        if status == 2:
            assert err.startswith("tinylm: error: ") and err.count("\n") == 1, context
            assert not out.exists(), context
        else:
            model, _, _ = load_model(out, "cpu", "latest")
            logits, _ = model(torch.tensor([[1, 2, 3]]))
            assert logits.shape == (1, 3, model.config.vocab_size), context
        outcomes.append(status)
    assert 2 in outcomes  # the mutations do reach the validation


def test_damaged_tokenizer_keeps_the_weights_and_says_what_to_do(exported, tmp_path, capsys):
    folder = tmp_path / "hf"
    shutil.copytree(exported["llama-gqa-tied"], folder)
    text = (folder / "tokenizer.json").read_text()
    (folder / "tokenizer.json").write_text(text[: len(text) // 2])
    assert main(["import", str(folder), "--out", str(tmp_path / "run")]) == 0
    printed = capsys.readouterr().out
    assert "no tokenizer came along" in printed and "is not valid JSON" in printed
    assert "import it again" in printed and "next: tinylm sample" not in printed
    assert main(["sample", str(tmp_path / "run"), "--max-tokens", "3"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "has no tokenizer.json" in err


@pytest.mark.parametrize(
    ("replace", "message"),
    [
        (lambda t: t.to(torch.int64), "holds int64 values, not floating-point weights"),
        (lambda t: t > 0, "holds bool values, not floating-point weights"),
        (lambda t: (t * 100).to(torch.uint8), "holds uint8 values, not floating-point weights"),
        (lambda t: t.index_fill(0, torch.tensor([0]), float("nan")), "NaN or infinite"),
        (lambda t: t.index_fill(0, torch.tensor([1]), float("inf")), "NaN or infinite"),
    ],
)
def test_weights_that_are_not_finite_floats_are_refused(
    exported, tmp_path, capsys, replace, message
):
    # An int, bool or uint8 tensor used to be converted to float32, and the run then
    # sampled text from numbers that were never trained.
    from safetensors.torch import load_file, save_file

    folder = tmp_path / "hf"
    shutil.copytree(exported["llama-gqa-tied"], folder)
    tensors = load_file(folder / "model.safetensors")
    name = "model.layers.0.mlp.up_proj.weight"
    tensors[name] = replace(tensors[name]).contiguous()
    save_file(tensors, folder / "model.safetensors", metadata={"format": "pt"})
    out = tmp_path / "run"
    assert main(["import", str(folder), "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and name in err and message in err, err
    assert not out.exists()
