"""``tinylm quantize``: a run saved as int8 or bfloat16, read back by sample, eval and the
engine, its new fields checked like any untrusted file, and training from it refused."""

from __future__ import annotations

import json
import re

import pytest
import torch
from safetensors import safe_open
from safetensors.torch import load_file, save_file

from tinylm.checkpoint import save_checkpoint
from tinylm.cli.main import main
from tinylm.errors import TinylmError
from tinylm.inference.engine import DecodeEngine
from tinylm.inference.loading import load_engine, load_model
from tinylm.inference.quantized_run import SCALE_SUFFIX, packed_names
from tinylm.inference.weight_formats import dequantize_int8, quantize_int8
from tinylm.model import GPT, ModelConfig
from tinylm.run.start import init_from
from tinylm.tokenizers.char import CharTokenizer

TEXT = "the quick brown fox jumps over the lazy dog; pack my box with five dozen jugs\n"

SHAPES = {
    "gpt2_tied": dict(position="learned", norm="layernorm", activation="gelu"),
    "llama_gqa_untied": dict(
        position="rope",
        norm="rmsnorm",
        activation="swiglu",
        n_kv_head=2,
        bias=False,
        tie_embeddings=False,
        multiple_of=16,
    ),
}


def make_run(tmp_path, shape: str = "gpt2_tied"):
    """A float run folder (one checkpoint) with a wide init, so greedy argmaxes are clear."""
    tokenizer = CharTokenizer.train(TEXT)
    torch.manual_seed(3)
    config = ModelConfig(
        vocab_size=tokenizer.vocab_size,
        block_size=48,
        n_layer=2,
        n_embd=32,
        n_head=4,
        init_std=0.2,
        **SHAPES[shape],
    )
    run = tmp_path / f"run-{shape}"
    model = GPT(config)
    save_checkpoint(run / "ckpt-000007", model, None, 7, tokenizer=tokenizer)
    (tmp_path / "text.txt").write_text(TEXT * 30)
    return run, model


def quantize(run, out, to="int8") -> None:
    assert main(["quantize", str(run), "--to", to, "--out", str(out)]) == 0


@pytest.mark.parametrize("shape", list(SHAPES))
def test_an_int8_run_samples_exactly_the_tokens_of_int8_on_the_float_run(tmp_path, shape):
    run, model = make_run(tmp_path, shape)
    quantize(run, tmp_path / "q8")
    engine, _, tokenizer, meta = load_engine(tmp_path / "q8")
    assert engine.weights == "int8" and meta.weights == "int8"  # the run's own format
    reference = DecodeEngine(model, "int8")
    prompts = [tokenizer.encode(p) for p in ("the ", "pack my", "jugs", "o")]
    ours = engine.generate_batch(prompts, 30, temperature=0)
    assert ours == reference.generate_batch(prompts, 30, temperature=0)
    # and the stored weights are exactly what the engine quantises on the float run
    name = "blocks.1.attn.w_k.weight"
    q, scale = quantize_int8(model.state_dict()[name])
    with safe_open(str(tmp_path / "q8" / "model.safetensors"), "pt") as handle:
        assert torch.equal(handle.get_tensor(name), q)
        assert torch.equal(handle.get_tensor(name + SCALE_SUFFIX), scale)
        # the engine decodes with the stored scales, never requantising q * scale
        # (whose scale can be one bit off: (127 s) / 127 rounds twice)
        stored = handle.get_tensor("blocks.1.attn.w_o.weight" + SCALE_SUFFIX)
    assert torch.equal(engine.layers[1].w_o.scale, stored)


def test_sample_on_the_int8_run_prints_what_sample_weights_int8_prints(tmp_path, capsys):
    run, _ = make_run(tmp_path)
    quantize(run, tmp_path / "q8")
    capsys.readouterr()
    common = ["--prompt", "the ", "--max-tokens", "40", "--temperature", "0.9", "--seed", "4"]
    assert main(["sample", str(run), "--weights", "int8", *common]) == 0
    on_float = capsys.readouterr().out
    assert main(["sample", str(tmp_path / "q8"), *common]) == 0
    assert capsys.readouterr().out == on_float
    assert main(["sample", str(run), *common]) == 0  # float32: the check can tell them apart
    assert len(on_float) > 20


def test_the_int8_file_holds_int8_matrices_float_scales_and_float_rest(tmp_path):
    run, model = make_run(tmp_path, "llama_gqa_untied")
    quantize(run, tmp_path / "q8")
    tensors = load_file(tmp_path / "q8" / "model.safetensors")
    packed = set(packed_names(model))
    for name, tensor in model.state_dict().items():
        if name in packed:
            assert tensors[name].dtype == torch.int8
            assert tensors[name + SCALE_SUFFIX].dtype == torch.float32
            assert tensors[name + SCALE_SUFFIX].shape == tensor.shape[:1]
            error = (dequantize_int8(tensors[name], tensors[name + SCALE_SUFFIX]) - tensor).abs()
            assert bool((error <= tensors[name + SCALE_SUFFIX][:, None] / 2 + 1e-7).all())
        else:
            assert torch.equal(tensors[name], tensor)  # norms stay float32, unchanged
    state = json.loads((tmp_path / "q8" / "state.json").read_text())
    assert state["weights"] == "int8" and state["step"] == 7
    # under a third of the float32 file's bytes, scales, norms and header included
    float_bytes = (run / "ckpt-000007" / "model.safetensors").stat().st_size
    assert (tmp_path / "q8" / "model.safetensors").stat().st_size < 0.33 * float_bytes


def test_a_bfloat16_run_loads_and_decodes_as_bfloat16_on_the_float_run(tmp_path):
    run, model = make_run(tmp_path)
    quantize(run, tmp_path / "bf16", "bfloat16")
    engine, loaded, tokenizer, _ = load_engine(tmp_path / "bf16")
    assert engine.weights == "bfloat16"
    assert torch.equal(loaded.lm_head.weight, model.lm_head.weight.to(torch.bfloat16).float())
    prompts = [tokenizer.encode("the "), tokenizer.encode("box")]
    expected = DecodeEngine(model, "bfloat16").generate_batch(prompts, 25, temperature=0)
    assert engine.generate_batch(prompts, 25, temperature=0) == expected


def test_eval_reads_an_int8_run_dequantised(tmp_path, capsys):
    run, model = make_run(tmp_path)
    quantize(run, tmp_path / "q8")
    loaded, _, meta = load_model(tmp_path / "q8")
    q, scale = quantize_int8(model.blocks[0].ffn.w1.weight)
    assert torch.equal(loaded.blocks[0].ffn.w1.weight, dequantize_int8(q, scale))
    assert meta.weights == "int8"
    data = str(tmp_path / "text.txt")
    for folder in (run, tmp_path / "q8"):
        assert main(["eval", str(folder), "--data", data, "--max-batches", "2"]) == 0
    lines = capsys.readouterr().out.splitlines()
    losses = [float(line.split("loss ")[1].split(",")[0]) for line in lines if "loss " in line]
    assert len(losses) == 2 and losses[0] != losses[1]
    assert abs(losses[1] - losses[0]) / losses[0] < 0.05  # close, and not the same number


def test_training_from_a_quantized_run_is_refused_in_one_line(tmp_path):
    run, _ = make_run(tmp_path)
    quantize(run, tmp_path / "q8")
    with pytest.raises(TinylmError, match="made by tinylm quantize") as exc:
        init_from(tmp_path / "q8", str(tmp_path / "text.txt"), out_dir=tmp_path / "ft")
    assert "\n" not in str(exc.value)


def test_quantizing_a_quantized_run_is_refused(tmp_path, capsys):
    run, _ = make_run(tmp_path)
    quantize(run, tmp_path / "q8")
    capsys.readouterr()
    assert main(["quantize", str(tmp_path / "q8"), "--to", "int8", "--out", "x"]) == 2
    assert "already holds int8 weights" in capsys.readouterr().err


# -- mutated files: one line each --------------------------------------------------------------


def _edit_state(folder, **fields):
    path = folder / "state.json"
    state = json.loads(path.read_text())
    state.update(fields)
    path.write_text(json.dumps(state))


def _edit_tensors(folder, edit):
    path = folder / "model.safetensors"
    with safe_open(str(path), "pt") as handle:
        metadata = handle.metadata()
    tensors = load_file(path)
    edit(tensors)
    save_file(tensors, path, metadata=metadata)


def _scale_nan(t):
    t["blocks.0.attn.w_q.weight" + SCALE_SUFFIX][3] = float("nan")


def _scale_zero(t):
    t["blocks.0.attn.w_q.weight" + SCALE_SUFFIX][0] = 0.0


def _minus_128(t):
    t["blocks.1.ffn.w2.weight"][0, 0] = -128


def _scale_dropped(t):
    del t["blocks.0.attn.w_o.weight" + SCALE_SUFFIX]


def _scale_wrong_length(t):
    t["blocks.0.attn.w_o.weight" + SCALE_SUFFIX] = torch.ones(5)


def _scale_as_float16(t):
    name = "blocks.0.attn.w_o.weight" + SCALE_SUFFIX
    t[name] = t[name].half()


def _matrix_as_float(t):
    t["blocks.0.attn.w_v.weight"] = t["blocks.0.attn.w_v.weight"].float()


def _stray_scale(t):
    t["blocks.0.norm1.weight" + SCALE_SUFFIX] = torch.ones(32)


def _norm_as_int8(t):
    t["blocks.0.norm1.weight"] = t["blocks.0.norm1.weight"].to(torch.int8)


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        (_scale_nan, "finite positive"),
        (_scale_zero, "finite positive"),
        (_minus_128, "-128"),
        (_scale_dropped, "missing"),
        (_scale_wrong_length, "is \\[5\\], expected \\[32\\]"),
        (_scale_as_float16, "as F16, expected F32"),
        (_matrix_as_float, "as F32, expected I8"),
        (_stray_scale, "unexpected"),
        (_norm_as_int8, "as I8, expected"),
    ],
)
def test_a_mutated_int8_file_is_one_line(tmp_path, capsys, edit, message):
    run, _ = make_run(tmp_path)
    quantize(run, tmp_path / "q8")
    # the tied head is stored once, so an edit of its table is the head's too
    _edit_tensors(tmp_path / "q8", edit)
    capsys.readouterr()
    assert main(["sample", str(tmp_path / "q8"), "--max-tokens", "3"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("tinylm: error: ") and err.count("\n") == 1
    assert re.search(message, err), err


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ("int4", "one of float32, bfloat16, int8"),
        (8, "expected a string"),
        ("float32", "unexpected 'blocks"),
    ],
)
def test_a_mutated_weights_field_is_one_line(tmp_path, capsys, value, message):
    run, _ = make_run(tmp_path)
    quantize(run, tmp_path / "q8")
    _edit_state(tmp_path / "q8", weights=value)
    capsys.readouterr()
    assert main(["eval", str(tmp_path / "q8"), "--data", str(tmp_path / "text.txt")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("tinylm: error: ") and err.count("\n") == 1
    assert message in err, err


def test_a_float_run_claiming_int8_is_one_line(tmp_path, capsys):
    run, _ = make_run(tmp_path)
    _edit_state(run / "ckpt-000007", weights="int8")
    capsys.readouterr()
    assert main(["sample", str(run), "--max-tokens", "3"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "missing 'blocks" in err, err
