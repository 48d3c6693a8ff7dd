"""``tinylm export --format gguf --quant q8_0``: read back with the gguf package's own reader
and dequantiser, every weight matrix within Q8_0's bound, every other tensor unchanged."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from tinylm.checkpoint import save_checkpoint
from tinylm.cli.main import main
from tinylm.interop.export import export_model
from tinylm.interop.gguf_export import gguf_tensors
from tinylm.interop.gguf_q8_0 import dequantize_q8_0, quantize_q8_0

from .conftest import VARIANTS, make_model

gguf = pytest.importorskip("gguf", reason="the test extra installs gguf")


def q8_0_bound(weight: np.ndarray) -> np.ndarray:
    """Per element: half a step of its block's d, plus d's float16 rounding times 127."""
    blocks = weight.astype(np.float32).reshape(-1, 32)
    d = np.abs(blocks).max(axis=1) / 127
    d16 = d.astype(np.float16).astype(np.float32)
    bound = d / 2 + 127 * np.abs(d - d16) + 1e-7
    return np.repeat(bound, 32).reshape(weight.shape)


@pytest.mark.parametrize("variant", ["llama-gqa-tied", "llama-mqa-bias"])
def test_q8_0_matrices_dequantise_within_the_bound_and_the_rest_is_unchanged(
    variant, bpe, tmp_path
):
    model = make_model(bpe.vocab_size, seed=5, **VARIANTS[variant])
    with torch.no_grad():  # one row of zeros: a block with d = 0 must read back as zeros
        model.blocks[0].attn.w_q.weight[3].zero_()
    export_model(model, bpe, tmp_path / "g", "gguf", quant="q8_0")
    reader = gguf.GGUFReader(tmp_path / "g" / "model.gguf")
    file_type = reader.fields["general.file_type"]
    assert file_type.parts[file_type.data[0]][0] == gguf.LlamaFileType.MOSTLY_Q8_0

    expected = {
        n: t.float().numpy() for n, t in gguf_tensors(model.state_dict(), model.config).items()
    }
    read = {t.name: t for t in reader.tensors}
    assert set(read) == set(expected)
    quantised = 0
    for name, weight in expected.items():
        tensor = read[name]
        if weight.ndim == 2 and weight.shape[1] % 32 == 0:
            assert tensor.tensor_type == gguf.GGMLQuantizationType.Q8_0, name
            back = gguf.quants.dequantize(np.asarray(tensor.data), tensor.tensor_type)
            back = back.reshape(weight.shape)
            error = np.abs(back - weight)
            assert (error <= q8_0_bound(weight)).all(), name
            assert error.max() > 0  # it was rounded: not a float tensor read back
            quantised += 1
        else:  # norms, biases, and ffn_down (rows of 48: no whole blocks) stay float32
            assert tensor.tensor_type == gguf.GGMLQuantizationType.F32, name
            np.testing.assert_array_equal(np.asarray(tensor.data).reshape(weight.shape), weight)
    # token_embd and q, k, v, o, gate, up per layer (+ output when untied)
    assert quantised == 1 + 6 * model.config.n_layer + (0 if model.config.tie_embeddings else 1)
    zero_row = gguf.quants.dequantize(
        np.asarray(read["blk.0.attn_q.weight"].data), gguf.GGMLQuantizationType.Q8_0
    )
    assert (zero_row.reshape(expected["blk.0.attn_q.weight"].shape)[3] == 0).all()


def test_our_block_layout_reads_back_as_gguf_reads_it():
    rng = np.random.default_rng(0)
    weight = (rng.standard_normal((6, 96)) * np.linspace(0.01, 3, 96)).astype(np.float32)
    packed = quantize_q8_0(weight)
    assert packed.shape == (6, 3 * 34) and packed.dtype == np.uint8
    theirs = gguf.quants.dequantize(packed, gguf.GGMLQuantizationType.Q8_0).reshape(6, 96)
    np.testing.assert_array_equal(dequantize_q8_0(packed, 96), theirs)
    # by hand: block 0 of row 0 is its float16 d, then round(x / d)
    block = weight[0, :32]
    d = np.abs(block).max() / 127
    assert packed[0, :2].view("<f2")[0] == np.float16(d)
    np.testing.assert_array_equal(packed[0, 2:34].view(np.int8), np.rint(block / d))


def test_the_cli_writes_q8_0_and_refuses_quant_for_other_formats(bpe, tmp_path, capsys):
    model = make_model(bpe.vocab_size, **VARIANTS["llama-gqa-tied"])
    save_checkpoint(tmp_path / "run" / "ckpt-000001", model, None, 1, tokenizer=bpe)
    run = str(tmp_path / "run")
    out = str(tmp_path / "g8")
    assert main(["export", run, "--format", "gguf", "--quant", "q8_0", "--out", out]) == 0
    assert "as gguf q8_0" in capsys.readouterr().out
    assert main(["export", run, "--format", "gguf", "--out", str(tmp_path / "g32")]) == 0
    q8, f32 = (tmp_path / "g8" / "model.gguf"), (tmp_path / "g32" / "model.gguf")
    assert q8.stat().st_size < 0.5 * f32.stat().st_size  # 8.5 bits a number against 32
    assert main(["export", run, "--format", "hf", "--quant", "q8_0", "--out", "x"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "for the gguf format" in err
    assert not (tmp_path / "x").exists()
