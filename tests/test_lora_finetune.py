"""LoRA fine-tuning through the run layer: ``tinylm train --init-from RUN --set lora_rank=R``.

A tiny base run is fine-tuned with adapters on plain text and on conversations.
Only the adapters move (and, when the vocabulary grew for the chat tokens, the
token table: the rule of ``tinylm.train.lora_run``); every other weight of the
base stays bit-identical; the checkpoint's merged weights equal the adapted model
(read back as an adapter by ``load_adapted``); a resume repeats the uninterrupted
run bit for bit; ``tinylm sample`` reads the run; bad settings are one line.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file, save_file

from conftest import fails_with, metric_records, tensors_digest
from tinylm.checkpoint.adapter import read_adapter_meta
from tinylm.cli.main import main
from tinylm.inference.adapters import load_adapted
from tinylm.inference.loading import load_model
from tinylm.model.lora import LoraConfig, lora_layers
from tinylm.run.start import init_from, start_run
from tinylm.train.config import TrainConfig
from tinylm.train.lora_run import trainable_names

pytestmark = pytest.mark.slow  # a handful of tiny training runs

QA = [
    ("what is a cat?", "a cat is an animal."),
    ("where is the cat?", "the cat sat on the mat."),
    ("is the mat red?", "no, the mat is tan."),
]
TINY = {"n_layer": 2, "n_embd": 16, "n_head": 2, "block_size": 64, "batch_size": 4}
FINE = {"batch_size": 3, "eval_every": 2, "eval_batches": 2, "sample_tokens": 8, "lr": 3e-2}
LORA = {"lora_rank": 4, "lora_alpha": 8, "lora_targets": ["attn.w_q", "attn.w_v", "ffn"]}


def records(run: Path) -> list[dict]:
    return metric_records(run, ("step", "loss", "val_loss", "grad_norm"))


def digests(run: Path) -> dict[str, str]:
    """A digest of the tensors of every checkpoint's weights, adapter and optimizer state."""
    paths = sorted(run.glob("ckpt-*/*.safetensors"))
    return {f"{p.parent.name}/{p.name}": tensors_digest(p) for p in paths}


@pytest.fixture(scope="module")
def corpus(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("text") / "corpus.txt"
    text = " ".join(f"{q} {a}" for q, a in QA) + " be brief.\n"
    path.write_text(text * 40, encoding="utf-8")
    return path


@pytest.fixture(scope="module")
def chat_file(tmp_path_factory) -> Path:
    lines = []
    for i in range(12):
        question, answer = QA[i % len(QA)]
        messages = [{"role": "user", "content": question}, {"role": "assistant", "content": answer}]
        lines.append(json.dumps({"messages": messages}))
    path = tmp_path_factory.mktemp("chat") / "chat.jsonl"
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


@pytest.fixture(scope="module")
def base(tmp_path_factory, corpus) -> Path:
    """A 3-step base run (untied head, so the head's rule is seen too)."""
    folder = tmp_path_factory.mktemp("base") / "run"
    overrides = {**TINY, "steps": 3, "tie_embeddings": False}
    start_run(corpus, overrides=overrides, out_dir=folder, progress=False).fit()
    return folder


def base_weights(base: Path) -> dict[str, torch.Tensor]:
    return load_file(base / "ckpt-000003" / "model.safetensors")


def test_on_plain_text_only_the_adapters_train_and_the_checkpoint_is_the_merged_model(
    tmp_path, base, corpus, capsys
):
    trainer = init_from(
        base, corpus, overrides={**FINE, **LORA, "steps": 3}, out_dir=tmp_path / "ft"
    )
    names = trainable_names(trainer.model)
    assert names and all(n.endswith((".lora_a", ".lora_b")) for n in names)
    adapted = {n.rsplit(".", 1)[0] for n in names}
    assert adapted == {
        f"blocks.{i}.{p}" for i in (0, 1) for p in ("attn.w_q", "attn.w_v", "ffn.w1", "ffn.w2")
    }
    optimized = {id(p) for group in trainer.optimizer.param_groups for p in group["params"]}
    assert optimized == {id(p) for p in trainer.model.parameters() if p.requires_grad}
    trainer.fit()
    trainable = sum(p.numel() for p in trainer.model.parameters() if p.requires_grad)
    assert (
        f"training {trainable:,} of 0.01M parameters (the rest frozen)" in capsys.readouterr().err
    )

    # the frozen base under the adapters is bit-identical to the base run's weights
    before = base_weights(base)
    live = {k.replace(".base.", "."): v for k, v in trainer.model.state_dict().items()}
    for name, tensor in before.items():
        assert torch.equal(live[name], tensor), name
    assert any(bool(layer.lora_b.abs().sum() > 0) for layer in _lora_layers(trainer.model))

    # the checkpoint: merged weights (adapted ones moved, the rest exactly the base's) ...
    ckpt = tmp_path / "ft" / "ckpt-000003"
    merged = load_file(ckpt / "model.safetensors")
    assert set(merged) == set(before)
    for name, tensor in before.items():
        moved = name.endswith(".weight") and name.rsplit(".", 1)[0] in adapted  # not biases
        assert torch.equal(merged[name], tensor) != moved, name
    # ... which compute what base + adapter compute, and the folder is an adapter too
    meta = read_adapter_meta(ckpt)
    assert meta.lora == LoraConfig(4, 8.0, 0.0, ("attn.w_q", "attn.w_v", "ffn"))
    assert meta.step == 3 and meta.base.path == (base / "ckpt-000003").resolve()
    adapted_model, _, _, _ = load_adapted(ckpt)
    full, _, _ = load_model(tmp_path / "ft")
    ids = torch.randint(
        0, full.config.vocab_size, (2, 20), generator=torch.Generator().manual_seed(5)
    )
    with torch.no_grad():
        torch.testing.assert_close(full(ids)[0], adapted_model(ids)[0], rtol=0, atol=1e-6)
    # tinylm lora merge of the checkpoint writes the very same merged weights
    assert main(["lora", "merge", str(ckpt), "--out", str(tmp_path / "merged")]) == 0
    again = load_file(next((tmp_path / "merged").glob("ckpt-*/model.safetensors")))
    assert all(torch.equal(again[name], merged[name]) for name in merged)
    adapter_bytes = (ckpt / "adapter.safetensors").stat().st_size
    assert adapter_bytes < (ckpt / "model.safetensors").stat().st_size / 4


def _lora_layers(model):
    return [layer for _, layer in lora_layers(model)]


def test_a_chat_lora_run_trains_the_new_token_rows_and_resumes_exactly(
    tmp_path, base, chat_file, capsys
):
    whole = tmp_path / "whole"
    trainer = init_from(
        base, f"chat:{chat_file}", overrides={**FINE, **LORA, "steps": 4}, out_dir=whole
    )
    names = trainable_names(trainer.model)
    assert {"tok_emb.weight", "lm_head.weight"} <= set(names)  # grown: the tables train
    assert all(n in ("tok_emb.weight", "lm_head.weight") or ".lora_" in n for n in names)
    trainer.fit()
    before = base_weights(base)
    merged = load_file(whole / "ckpt-000004" / "model.safetensors")
    old = before["tok_emb.weight"].shape[0]
    assert merged["tok_emb.weight"].shape[0] > old  # the chat tokens' rows
    start = before["tok_emb.weight"].double().mean(0).float()  # grow_vocab's mean rows
    for token in ("<|user|>", "<|assistant|>", "<|end|>"):  # the turns the data has moved
        row = merged["tok_emb.weight"][trainer.tokenizer.special_tokens[token]]
        assert not torch.equal(row, start), token
    for name in ("blocks.0.attn.w_k.weight", "blocks.1.attn.w_o.bias", "final_norm.weight"):
        assert torch.equal(merged[name], before[name]), name  # not adapted: untouched
    assert torch.equal(merged["pos_emb.weight"], before["pos_emb.weight"])

    # resume from the step-2 checkpoint: the same records and the same files, bit for bit
    shutil.copytree(whole, tmp_path / "cut")
    shutil.rmtree(tmp_path / "cut" / "ckpt-000004")
    assert main(["train", "--resume", "--out", str(tmp_path / "cut"), "--quiet"]) == 0
    assert records(tmp_path / "cut") == records(whole)
    assert digests(tmp_path / "cut") == digests(whole)
    assert "ckpt-000004/adapter.safetensors" in digests(whole)

    # its adapter alone would lack the trained token table: merging it is refused
    capsys.readouterr()
    fails_with(
        capsys,
        ["lora", "merge", str(whole / "ckpt-000004"), "--out", str(tmp_path / "m")],
        "use the checkpoint itself",
    )

    # the run is an ordinary chat model to sample from
    assert main(["sample", str(whole), "--max-tokens", "5", "--seed", "3"]) == 0
    assert capsys.readouterr().out.strip()

    # a resume keeps the adapters' settings
    argv = ["train", "--resume", "--out", str(whole), "--steps", "6", "--quiet"]
    fails_with(capsys, [*argv, "--set", "lora_rank=8"], "lora_rank=4")
    fails_with(capsys, [*argv, "--set", "lora_targets=attn"], "lora_targets")


def test_a_resume_needs_the_exact_base(tmp_path, corpus, capsys):
    base = tmp_path / "base"
    start_run(corpus, overrides={**TINY, "steps": 2}, out_dir=base, progress=False).fit()
    run = tmp_path / "ft"
    init_from(base, corpus, overrides={**FINE, **LORA, "steps": 2}, out_dir=run).fit()
    weights = base / "ckpt-000002" / "model.safetensors"
    tensors = load_file(weights)
    tensors["final_norm.weight"] = tensors["final_norm.weight"] + 1
    save_file(tensors, weights, metadata={"format": "pt"})
    capsys.readouterr()
    argv = ["train", "--resume", "--out", str(run), "--steps", "4", "--quiet"]
    fails_with(capsys, argv, "holds other weights")
    shutil.rmtree(base)
    fails_with(capsys, argv, "is gone")


def test_bad_lora_settings_are_one_line_and_exit_2(tmp_path, base, corpus, capsys):
    argv = ["train", "--init-from", str(base), "--data", str(corpus), "--quiet"]
    argv += ["--out", str(tmp_path / "out")]
    fails_with(capsys, [*argv, "--set", "lora_rank=-1"], "lora_rank must be")
    fails_with(capsys, [*argv, "--set", "lora_rank=4", "--set", "lora_alpha=0"], "lora_alpha")
    fails_with(capsys, [*argv, "--set", "lora_dropout=1"], "lora_dropout must be in [0, 1)")
    fails_with(capsys, [*argv, "--set", "lora_targets=attn.w_z"], "'attn.w_z' is not a projection")
    plain = ["train", "--data", str(corpus), "--set", "lora_rank=4", "--quiet"]
    fails_with(capsys, [*plain, "--out", str(tmp_path / "out")], "give init_from")
    assert not (tmp_path / "out").exists()


def test_lora_settings_round_trip_and_default_off():
    assert TrainConfig().lora is None
    config = TrainConfig(lora_rank=2, lora_targets="attn")
    assert config.lora == LoraConfig(2, 16.0, 0.0, ("attn",))
    assert TrainConfig.from_dict(json.loads(json.dumps(config.to_dict()))) == config


def test_compare_fine_tunes_every_variant_from_the_same_base(tmp_path, base, chat_file, capsys):
    out = tmp_path / "cmp"
    argv = ["compare", "--init-from", str(base), "--data", f"chat:{chat_file}"]
    argv += ["--vary", "lora_rank=0,2", "--out", str(out), "--quiet"]
    argv += ["--set", "steps=2", "--set", "batch_size=3", "--set", "eval_batches=2"]
    assert main(argv) == 0
    runs = sorted(p for p in (out / "runs").iterdir() if p.is_dir())
    assert len(runs) == 2
    for run in runs:
        info = json.loads((run / "run.json").read_text())
        assert info["init_from"] == str((base / "ckpt-000003").resolve())
        assert info["data"] == [f"chat:{chat_file}"] and "chat" in info
    lora = [run for run in runs if (run / "ckpt-000002" / "adapter.json").is_file()]
    assert len(lora) == 1 and json.loads((lora[0] / "run.json").read_text())["train"]["lora_rank"]
    table = capsys.readouterr().out
    assert "| lora_rank=0 |" in table and "| lora_rank=2 |" in table
    # the plan keeps the base: the same folder under another base is another comparison
    assert json.loads((out / "plan.json").read_text())["init_from"] == str(base.resolve())
    other = [a if a != str(base) else str(base / "ckpt-000003") for a in argv]
    fails_with(capsys, other, "init_from")
