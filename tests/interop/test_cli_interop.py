"""``tinylm export`` / ``tinylm import`` as a user runs them, and every refusal they make."""

from __future__ import annotations

import builtins
import errno
import json
import pathlib

import pytest
import torch

from tinylm.checkpoint import save_checkpoint
from tinylm.cli.main import main
from tinylm.errors import TinylmError
from tinylm.interop.hf_config import from_hf_config, hf_architecture
from tinylm.model import ModelConfig

from .conftest import VARIANTS, make_model


def make_run(folder, tokenizer, **overrides):
    model = make_model(tokenizer.vocab_size, **overrides)
    save_checkpoint(folder / "ckpt-000010", model, None, 10, tokenizer=tokenizer)
    return model


def fails(capsys, argv, message):
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err.startswith("tinylm: error: ") and err.count("\n") == 1, err
    assert message in err, err
    return err


@pytest.mark.parametrize(
    ("overrides", "blocking"),
    [
        ({"norm_placement": "post"}, "norm_placement='post'"),
        ({"position": "sinusoidal"}, "position='sinusoidal'"),
        ({"position": "none"}, "position='none'"),
        ({"position": "learned", "norm": "rmsnorm"}, "norm='rmsnorm'"),
        ({"position": "learned", "activation": "swiglu"}, "activation='swiglu'"),
        ({"position": "learned", "n_kv_head": 2}, "n_kv_head=2"),
        ({"position": "learned", "bias": False}, "bias=False"),
        ({"position": "rope", "norm": "layernorm", "activation": "swiglu"}, "norm='layernorm'"),
        ({"position": "rope", "norm": "rmsnorm", "activation": "gelu"}, "activation='gelu'"),
        ({"embedding_norm": True}, "embedding_norm=True"),
        ({"final_norm": False}, "final_norm=False"),
        ({"norm_gain": False}, "norm_gain=False"),
    ],
)
def test_configurations_without_an_equivalent_are_refused_by_name(overrides, blocking):
    config = ModelConfig(**overrides)
    with pytest.raises(TinylmError, match="no Hugging Face equivalent") as info:
        hf_architecture(config)
    assert str(info.value).startswith(blocking)


@pytest.mark.slow
def test_cli_export_import_sample_eval(bpe, tmp_path, capsys):
    model = make_run(tmp_path / "run", bpe, **VARIANTS["llama-gqa-tied"])
    assert (
        main(["export", str(tmp_path / "run"), "--format", "hf", "--out", str(tmp_path / "hf")])
        == 0
    )
    out = capsys.readouterr().out
    for name in ("config.json", "model.safetensors", "generation_config.json", "tokenizer.json"):
        assert name in out and (tmp_path / "hf" / name).is_file()
    assert json.loads((tmp_path / "hf" / "config.json").read_text())["architectures"] == [
        "LlamaForCausalLM"
    ]
    assert main(["import", str(tmp_path / "hf"), "--out", str(tmp_path / "back")]) == 0
    assert "imported a llama model" in capsys.readouterr().out

    from tinylm.inference.loading import load_model

    back, tokenizer, _ = load_model(tmp_path / "back")
    for name, tensor in model.state_dict().items():
        assert torch.equal(back.state_dict()[name], tensor)
    assert tokenizer.encode("x = 1<|endoftext|>", allowed_special="all") == bpe.encode(
        "x = 1<|endoftext|>", allowed_special="all"
    )
    argv = ["sample", str(tmp_path / "back"), "--prompt", "def", "--max-tokens", "5"]
    assert main([*argv, "--temperature", "0"]) == 0
    assert capsys.readouterr().out.startswith("def")
    (tmp_path / "text.txt").write_text("def main():\n    return 0\n" * 40)
    assert main(["eval", str(tmp_path / "back"), "--data", str(tmp_path / "text.txt")]) == 0
    assert "perplexity" in capsys.readouterr().out

    for fmt, marker in (("tiktoken", "tokenizer.tiktoken"), ("gguf", "model.gguf")):
        pytest.importorskip("gguf")
        assert (
            main(["export", str(tmp_path / "back"), "--format", fmt, "--out", str(tmp_path / fmt)])
            == 0
        )
        assert (tmp_path / fmt / marker).is_file()


def test_cli_refusals_write_nothing(bpe, tmp_path, capsys):
    make_run(tmp_path / "run", bpe, position="sinusoidal")
    out = tmp_path / "hf"
    fails(capsys, ["export", str(tmp_path / "run"), "--out", str(out)], "position='sinusoidal'")
    assert not out.exists()
    fails(capsys, ["import", str(tmp_path / "nowhere"), "--out", str(out)], "is not a folder")
    (tmp_path / "empty").mkdir()
    fails(capsys, ["import", str(tmp_path / "empty"), "--out", str(out)], "has no config.json")
    assert not out.exists()


def test_pickle_only_weights_are_refused_unopened(tmp_path, capsys):
    folder = tmp_path / "hf"
    folder.mkdir()
    config = {"model_type": "gpt2", "vocab_size": 10, "n_positions": 8, "n_embd": 8,
              "n_layer": 1, "n_head": 2}  # fmt: skip
    (folder / "config.json").write_text(json.dumps(config))
    (folder / "pytorch_model.bin").write_bytes(b"\x80\x04 not even a real pickle")
    fails(capsys, ["import", str(folder), "--out", str(tmp_path / "run")], "pickle")
    assert not (tmp_path / "run").exists()


def test_hostile_shard_index_is_refused(tmp_path, capsys):
    folder = tmp_path / "hf"
    folder.mkdir()
    config = {"model_type": "gpt2", "vocab_size": 10, "n_positions": 8, "n_embd": 8,
              "n_layer": 1, "n_head": 2}  # fmt: skip
    (folder / "config.json").write_text(json.dumps(config))
    index = {"weight_map": {"transformer.wte.weight": "../../etc/passwd"}}
    (folder / "model.safetensors.index.json").write_text(json.dumps(index))
    fails(
        capsys, ["import", str(folder), "--out", str(tmp_path / "run")], "not a .safetensors file"
    )


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"model_type": "bert"}, "tinylm imports model_type 'gpt2' and 'llama'"),
        ({"activation_function": "quick_gelu"}, "activation_function='quick_gelu'"),
        ({"scale_attn_by_inverse_layer_idx": True}, "scale_attn_by_inverse_layer_idx=True"),
        ({"n_embd": "wide"}, "n_embd must be a positive integer"),
        ({"n_head": 3}, "n_embd 8 is not divisible by n_head 3"),
        ({"layer_norm_epsilon": -1}, "layer_norm_epsilon must be a positive number"),
    ],
)
def test_hf_config_fields_are_validated(change, message):
    config = {"model_type": "gpt2", "vocab_size": 10, "n_positions": 8, "n_embd": 8,
              "n_layer": 1, "n_head": 2, **change}  # fmt: skip
    with pytest.raises(TinylmError) as info:
        from_hf_config(config, "config.json")
    assert message in str(info.value)


def test_llama_config_with_scaled_rope_is_refused():
    config = {"model_type": "llama", "vocab_size": 10, "max_position_embeddings": 8,
              "hidden_size": 8, "intermediate_size": 16, "num_hidden_layers": 1,
              "num_attention_heads": 2,
              "rope_parameters": {"rope_type": "yarn", "factor": 4.0}}  # fmt: skip
    with pytest.raises(TinylmError, match="rope_type='yarn' has no tinylm equivalent"):
        from_hf_config(config, "config.json")


def _tree(folder):
    return {
        str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()
    }


@pytest.mark.parametrize("target", ["checkpoint", "hf_download", "gguf_folder"])
def test_an_export_never_replaces_a_folder_that_is_not_a_tinylm_export(
    bpe, tmp_path, capsys, target
):
    # `export --out OTHER_RUN/ckpt-000030` replaced the checkpoint (it has a config.json), and
    # someone's Hugging Face folder lost its README.md and pytorch_model.bin.
    make_run(tmp_path / "run", bpe, **VARIANTS["llama-gqa-tied"])
    victim = tmp_path / target
    if target == "checkpoint":
        make_run(tmp_path / "other", bpe, **VARIANTS["llama-gqa-tied"])
        victim = tmp_path / "other" / "ckpt-000010"
    else:
        victim.mkdir()
        (victim / "config.json").write_text('{"model_type": "gpt2"}')
        (victim / "model.gguf").write_bytes(b"GGUF")
        (victim / "README.md").write_text("mine")
        (victim / "pytorch_model.bin").write_bytes(b"\x80\x02weights")
    before = _tree(victim)
    for fmt in ("hf", "gguf", "tiktoken"):
        argv = ["export", str(tmp_path / "run"), "--format", fmt, "--out", str(victim)]
        fails(capsys, argv, "is not a tinylm export")
        assert _tree(victim) == before


@pytest.mark.slow
def test_a_tinylm_export_is_replaced_by_the_next_one(bpe, tmp_path, capsys):
    make_run(tmp_path / "run", bpe, **VARIANTS["llama-gqa-tied"])
    out = tmp_path / "hf"
    for _ in range(2):
        assert main(["export", str(tmp_path / "run"), "--format", "hf", "--out", str(out)]) == 0
    assert json.loads((out / "tinylm-export.json").read_text())["format"] == "hf"
    tiktoken = ["export", str(tmp_path / "run"), "--format", "tiktoken", "--out", str(out)]
    assert main(tiktoken) == 0  # an export of another format replaces it whole
    assert not (out / "config.json").exists() and (out / "tokenizer.tiktoken").is_file()


PAYLOADS = ("model.safetensors", "model.gguf", "tokenizer.tiktoken")


class _FullDisk:
    """A file whose writes fail as a full disk's do (ENOSPC), past a few bytes."""

    def __init__(self, handle):
        self.handle = handle

    def write(self, data):
        if len(data) > 64:
            raise OSError(errno.ENOSPC, "No space left on device")
        return self.handle.write(data)

    def __getattr__(self, name):
        return getattr(self.handle, name)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return self.handle.__exit__(*exc)


@pytest.mark.parametrize("fmt", ["hf", "gguf", "tiktoken"])
def test_a_full_disk_during_an_export_is_one_line_and_leaves_nothing(
    bpe, tmp_path, capsys, monkeypatch, fmt
):
    # `tinylm export` on a full disk gave a SafetensorError traceback: safetensors wrote
    # the file itself. Every file an export writes now goes through Python's open().
    make_run(tmp_path / "run", bpe, **VARIANTS["llama-gqa-tied"])
    real_open = builtins.open

    def opening(file, mode="r", *args, **kwargs):
        handle = real_open(file, mode, *args, **kwargs)
        # the disk fills while the export's main file is written
        payload = ".out.tmp-" in str(file) and str(file).endswith(PAYLOADS)
        return _FullDisk(handle) if payload and ("w" in mode or "a" in mode) else handle

    monkeypatch.setattr(builtins, "open", opening)
    monkeypatch.setattr(pathlib.Path, "write_text", _path_write_text)
    out = tmp_path / "out"
    err = fails(capsys, ["export", str(tmp_path / "run"), "--format", fmt, "--out", str(out)], "")
    assert "no space left on the device" in err
    assert not out.exists() and [p.name for p in tmp_path.iterdir()] == ["run"]


def _path_write_text(self, data, encoding=None, errors=None, newline=None):
    """``Path.write_text`` through ``builtins.open``, so the full disk reaches it too."""
    with builtins.open(self, "w", encoding=encoding, errors=errors, newline=newline) as f:
        return f.write(data)
