"""A LoRA adapter on disk: saved alone, loaded back exactly, tied to its base, merged into a run."""

from __future__ import annotations

import json
import struct

import pytest
import torch

from tinylm.chat.template import add_chat_tokens, load_chat_template, template_record
from tinylm.checkpoint import save_checkpoint
from tinylm.checkpoint.adapter import read_adapter_meta, save_adapter
from tinylm.cli.main import main
from tinylm.errors import TinylmError
from tinylm.inference.adapters import load_adapted, merge_adapter_into_run
from tinylm.inference.loading import load_model
from tinylm.model import GPT, ModelConfig
from tinylm.model.lora import LoraConfig, add_lora, lora_parameters
from tinylm.run_layout import ADAPTER_FILE, ADAPTER_JSON
from tinylm.tokenizers.char import CharTokenizer

SETTINGS = LoraConfig(rank=3, alpha=6.0, dropout=0.1, targets=("attn.w_q", "attn.w_v", "ffn"))
Q_A = "blocks.0.attn.w_q.lora_a"
IDS = torch.tensor([[1, 4, 2, 7, 3, 0, 5], [6, 6, 1, 2, 3, 4, 5]])


@pytest.fixture
def trained(tmp_path):
    """``(adapter folder, base checkpoint, the adapted model in memory)``."""
    torch.manual_seed(0)
    tokenizer = CharTokenizer.train("abcdefgh ")
    config = ModelConfig(
        vocab_size=tokenizer.vocab_size, block_size=16, n_layer=2, n_embd=16, n_head=4,
        position="rope", norm="rmsnorm", activation="swiglu", n_kv_head=2, bias=False,
    )  # fmt: skip
    base = save_checkpoint(
        tmp_path / "base" / "ckpt-000007", GPT(config), None, 7, tokenizer=tokenizer
    )
    model, _, _ = load_model(base)
    add_lora(model, SETTINGS)
    with torch.no_grad():
        for p in lora_parameters(model):
            p.add_(0.05 * torch.randn_like(p))
    adapter = save_adapter(tmp_path / "adapter", model, SETTINGS, base, step=12)
    return adapter, base, model.eval()


def test_an_adapter_saves_alone_and_loads_back_exactly(trained):
    adapter, base, model = trained
    assert sorted(p.name for p in adapter.iterdir()) == [ADAPTER_JSON, ADAPTER_FILE]
    base_bytes = (base / "model.safetensors").stat().st_size
    assert (adapter / ADAPTER_FILE).stat().st_size < base_bytes / 2
    meta = read_adapter_meta(adapter)
    assert (meta.lora, meta.step, meta.base.step) == (SETTINGS, 12, 7)
    assert meta.base.path == base.resolve() and meta.base.model_bytes == base_bytes
    loaded, tokenizer, base_meta, _ = load_adapted(adapter)
    assert torch.equal(loaded(IDS)[0], model(IDS)[0])
    assert tokenizer is not None and base_meta.step == 7


def test_a_wrong_base_is_refused_in_one_line(trained, tmp_path):
    adapter, base, _ = trained
    torch.manual_seed(5)
    other_model = GPT(ModelConfig.from_dict(load_model(base)[0].config.to_dict()))
    other = save_checkpoint(tmp_path / "other" / "ckpt-000007", other_model, None, 7)
    with pytest.raises(TinylmError) as info:
        load_adapted(adapter, other)
    message = str(info.value)
    assert "holds other weights; point at the base it was trained on" in message
    assert "\n" not in message


def test_a_moved_base_is_found_by_its_bytes(trained, tmp_path):
    adapter, base, model = trained
    moved = tmp_path / "moved" / "ckpt-000007"
    moved.parent.mkdir()
    base.rename(moved)
    with pytest.raises(TinylmError, match="is gone; give the base checkpoint's new location"):
        load_adapted(adapter)
    loaded, _, _, _ = load_adapted(adapter, moved.parent)  # a run folder means its latest
    assert torch.equal(loaded(IDS)[0], model(IDS)[0])


def test_merging_writes_a_run_that_loads_like_any_other(trained, tmp_path):
    adapter, _, model = trained
    checkpoint = merge_adapter_into_run(adapter, tmp_path / "merged")
    assert checkpoint.name == "ckpt-000007"
    merged, tokenizer, meta = load_model(tmp_path / "merged")
    assert tokenizer is not None and meta.step == 7
    assert (merged(IDS)[0] - model(IDS)[0]).abs().max().item() <= 1e-6
    with pytest.raises(TinylmError, match="already holds a run"):
        merge_adapter_into_run(adapter, tmp_path / "merged")


# -- damaged or edited files ------------------------------------------------------------------


def edit_json(adapter, change):
    path = adapter / ADAPTER_JSON
    data = json.loads(path.read_text())
    change(data)
    path.write_text(json.dumps(data))


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (lambda d: d.update(format="tinylm-checkpoint"), "is not a tinylm adapter"),
        (lambda d: d.update(version=2), "tinylm adapter format version 2"),
        (lambda d: d["lora"].update(rank="3"), "lora rank must be a positive integer"),
        (lambda d: d["lora"].update(rank=4), "tensor 'blocks.0.attn.w_q.lora_a' is [3, 16]"),
        (lambda d: d["lora"].update(targets=["attn"]), "lacks tensor 'blocks.0.attn.w_k.lora_a'"),
        (lambda d: d["lora"].update(targets=["ffn"]), "unexpected tensor 'blocks.0.attn.w_q"),
        (lambda d: d["lora"].pop("alpha"), "lora setting 'alpha' is missing"),
        (lambda d: d["base"].update(model_sha256="00" * 32), "holds other weights"),
        (lambda d: d["base"].update(model_sha256="xyz"), "expected 64 hexadecimal digits"),
        (lambda d: d["base"].pop("step"), "field 'step' is missing"),
        (lambda d: d.update(step=-1), "field 'step' is the number -1"),
        (lambda d: d.update(lora=[]), "field 'lora' is a list, expected an object"),
    ],
)
def test_an_edited_adapter_json_is_one_line(trained, change, message):
    adapter, _, _ = trained
    edit_json(adapter, change)
    with pytest.raises(TinylmError) as info:
        load_adapted(adapter)
    assert message in str(info.value) and "\n" not in str(info.value)


def rewrite_tensors(adapter, change):
    """Re-save adapter.safetensors after ``change(tensors)``, the JSON left as it was."""
    from safetensors.torch import load_file, save_file

    path = adapter / ADAPTER_FILE
    tensors = load_file(path)
    change(tensors)
    save_file(tensors, path)


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (lambda t: t.update({Q_A: t[Q_A].int()}), "is I32, not weights"),
        (lambda t: t["blocks.1.ffn.w2.lora_b"].fill_(float("nan")), "holds NaN or infinite"),
        (lambda t: t.pop("blocks.1.ffn.v.lora_b"), "lacks tensor 'blocks.1.ffn.v.lora_b'"),
        (lambda t: t.update(extra=torch.zeros(2)), "unexpected tensor 'extra'"),
        (lambda t: t.update({"blocks.0.ffn.w.lora_a": torch.zeros(3, 15)}), "is [3, 15]"),
    ],
)  # fmt: skip
def test_edited_adapter_tensors_are_one_line(trained, change, message):
    adapter, _, _ = trained
    rewrite_tensors(adapter, change)
    with pytest.raises(TinylmError) as info:
        load_adapted(adapter)
    assert message in str(info.value) and "\n" not in str(info.value)


def test_a_truncated_or_missing_adapter_is_one_line(trained, tmp_path):
    adapter, _, _ = trained
    data = (adapter / ADAPTER_FILE).read_bytes()
    (adapter / ADAPTER_FILE).write_bytes(data[:-10])
    with pytest.raises(TinylmError, match="truncated or corrupt"):
        load_adapted(adapter)
    (adapter / ADAPTER_FILE).write_bytes(struct.pack("<Q", 10**12) + b"{}")
    with pytest.raises(TinylmError, match="not a safetensors file"):
        load_adapted(adapter)
    with pytest.raises(TinylmError, match="is not a tinylm adapter"):
        load_adapted(tmp_path)
    (adapter / ADAPTER_JSON).write_text("{not json")
    with pytest.raises(TinylmError, match="is not valid JSON"):
        load_adapted(adapter)


# -- the CLI ----------------------------------------------------------------------------------


def test_lora_merge_and_export_from_the_command_line(trained, tmp_path, capsys):
    adapter, base, model = trained
    assert main(["lora", "merge", str(adapter), "--out", str(tmp_path / "merged")]) == 0
    assert "next: tinylm sample" in capsys.readouterr().out
    merged, _, _ = load_model(tmp_path / "merged")
    assert (merged(IDS)[0] - model(IDS)[0]).abs().max().item() <= 1e-6
    argv = ["lora", "export", str(adapter), "--out", str(tmp_path / "peft"), "--base-hf", "hf"]
    assert main(argv) == 0
    out = capsys.readouterr().out
    assert "adapter_config.json" in out and "adapter_model.safetensors" in out
    config = json.loads((tmp_path / "peft" / "adapter_config.json").read_text())
    assert (config["r"], config["lora_alpha"], config["base_model_name_or_path"]) == (3, 6.0, "hf")


def test_lora_commands_refuse_in_one_line(trained, tmp_path, capsys):
    adapter, base, _ = trained
    torch.manual_seed(9)
    other = save_checkpoint(
        tmp_path / "other" / "ckpt-000001", GPT(load_model(base)[0].config), None, 1
    )
    for argv in (
        ["lora", "merge", str(adapter), "--base", str(other), "--out", str(tmp_path / "m")],
        ["lora", "export", str(tmp_path), "--out", str(tmp_path / "p")],
    ):
        assert main(argv) == 2
        err = capsys.readouterr().err
        assert err.startswith("tinylm: error: ") and err.count("\n") == 1, err
    assert not (tmp_path / "m").exists() and not (tmp_path / "p").exists()


def test_a_chat_models_template_is_carried_into_the_merged_run(tmp_path):
    tokenizer = add_chat_tokens(CharTokenizer.train("abcdefgh "))
    config = ModelConfig(
        vocab_size=tokenizer.vocab_size, block_size=8, n_layer=1, n_embd=8, n_head=2
    )
    base = save_checkpoint(
        tmp_path / "base" / "ckpt-000003", GPT(config), None, 3, tokenizer=tokenizer,
        chat_template=template_record(),
    )  # fmt: skip
    model, _, _ = load_model(base)
    settings = LoraConfig(rank=2, targets=("attn.w_o",))
    adapter = save_adapter(tmp_path / "adapter", add_lora(model, settings), settings, base)
    merge_adapter_into_run(adapter, tmp_path / "merged")
    _, tokenizer_back, meta = load_model(tmp_path / "merged")
    assert meta.chat_template_file is not None
    assert load_chat_template(meta.chat_template_file, tokenizer_back) is not None
