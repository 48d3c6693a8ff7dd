"""GGUF export, checked by reading the file back with the gguf package's own reader."""

from __future__ import annotations

import numpy as np
import pytest

from tinylm.errors import TinylmError
from tinylm.interop.export import export_model
from tinylm.interop.hf_tokenizer import all_splits
from tinylm.tokenizers.byte_alphabet import gpt2_byte_alphabet
from tinylm.tokenizers.char import CharTokenizer

from .conftest import VARIANTS, make_model

gguf = pytest.importorskip("gguf", reason="the test extra installs gguf")


def field(reader, key):
    """A metadata value: a scalar, a string, or a list of them."""
    f = reader.fields[key]
    values = [f.parts[i] for i in f.data]
    if f.types[0] == gguf.GGUFValueType.STRING:
        strings = [bytes(v).decode("utf-8") for v in values]
        return strings if f.types[0] == gguf.GGUFValueType.ARRAY else strings[0]
    if f.types[0] == gguf.GGUFValueType.ARRAY:
        if f.types[-1] == gguf.GGUFValueType.STRING:
            return [bytes(v).decode("utf-8") for v in values]
        return [v.item() for v in values]
    return values[0].item()


@pytest.mark.parametrize("variant", ["llama-gqa-tied", "llama-mqa-bias"])
def test_gguf_holds_every_tensor_and_the_tokenizer(variant, bpe, tmp_path):
    model = make_model(bpe.vocab_size + 3, **VARIANTS[variant])  # 3 rows beyond the tokenizer
    export_model(model, bpe, tmp_path / "g", "gguf")
    reader = gguf.GGUFReader(tmp_path / "g" / "model.gguf")
    c = model.config

    assert field(reader, "general.architecture") == "llama"
    expected = {
        "llama.block_count": c.n_layer,
        "llama.context_length": c.block_size,
        "llama.embedding_length": c.n_embd,
        "llama.feed_forward_length": c.ffn_hidden,
        "llama.attention.head_count": c.n_head,
        "llama.attention.head_count_kv": c.kv_heads,
        "llama.rope.dimension_count": c.head_dim,
        "tokenizer.ggml.bos_token_id": bpe.bos_id,
        "tokenizer.ggml.eos_token_id": bpe.eos_id,
    }
    for key, value in expected.items():
        assert field(reader, key) == value, key
    assert field(reader, "llama.rope.freq_base") == pytest.approx(c.rope_theta)
    assert field(reader, "llama.attention.layer_norm_rms_epsilon") == pytest.approx(c.norm_eps)
    assert field(reader, "tokenizer.ggml.model") == "gpt2"
    assert field(reader, "tokenizer.ggml.pre") == "gpt-2"

    # Tokens: each id spelled in GPT-2's byte alphabet, specials by name, the rest unused.
    alphabet = gpt2_byte_alphabet()
    tokens = field(reader, "tokenizer.ggml.tokens")
    types = field(reader, "tokenizer.ggml.token_type")
    assert len(tokens) == len(types) == c.vocab_size
    for i, token in bpe.vocab.items():
        assert tokens[i] == "".join(alphabet[b] for b in token)
        assert types[i] == gguf.TokenType.NORMAL
    for name, i in bpe.special_tokens.items():
        assert tokens[i] == name and types[i] == gguf.TokenType.CONTROL
    assert types[-3:] == [gguf.TokenType.UNUSED] * 3
    merges = field(reader, "tokenizer.ggml.merges")
    assert merges[: len(bpe.merges)] != [] and len(merges) >= len(bpe.merges)
    spelled = {" ".join("".join(alphabet[b] for b in t) for t in pair) for pair in bpe.merges}
    assert spelled <= set(merges)
    encoder = {t: i for i, t in sorted(bpe.vocab.items(), reverse=True)}
    assert len(merges) == len(all_splits(bpe, encoder))

    # Tensors: tinylm's own layout (llama.cpp rotates neighbouring pairs, as tinylm does).
    state = model.state_dict()
    by_name = {t.name: np.asarray(t.data) for t in reader.tensors}
    pairs = {"token_embd.weight": "tok_emb.weight", "output_norm.weight": "final_norm.weight"}
    for i in range(c.n_layer):
        pairs[f"blk.{i}.attn_q.weight"] = f"blocks.{i}.attn.w_q.weight"
        pairs[f"blk.{i}.attn_k.weight"] = f"blocks.{i}.attn.w_k.weight"
        pairs[f"blk.{i}.ffn_gate.weight"] = f"blocks.{i}.ffn.w.weight"
        pairs[f"blk.{i}.ffn_down.weight"] = f"blocks.{i}.ffn.w2.weight"
        pairs[f"blk.{i}.attn_norm.weight"] = f"blocks.{i}.norm1.weight"
        if c.bias:
            pairs[f"blk.{i}.attn_q.bias"] = f"blocks.{i}.attn.w_q.bias"
    if not c.tie_embeddings:
        pairs["output.weight"] = "lm_head.weight"
    for theirs, ours in pairs.items():
        np.testing.assert_array_equal(by_name[theirs], state[ours].numpy(), err_msg=theirs)
    n_layer_tensors = 9 + (7 if c.bias else 0)
    assert len(by_name) == 2 + c.n_layer * n_layer_tensors + (0 if c.tie_embeddings else 1)
    assert ("output.weight" in by_name) == (not c.tie_embeddings)


def test_gguf_refuses_what_llama_cpp_cannot_hold(bpe, tmp_path):
    gpt2 = make_model(bpe.vocab_size, **VARIANTS["gpt2-tied-gelu"])
    with pytest.raises(TinylmError, match="GGUF export covers Llama-style models"):
        export_model(gpt2, bpe, tmp_path / "a", "gguf")
    char = CharTokenizer(list("abc"))
    llama = make_model(char.vocab_size, **VARIANTS["llama-gqa-tied"])
    with pytest.raises(TinylmError, match="GGUF embeds byte-level BPE tokenizers"):
        export_model(llama, char, tmp_path / "b", "gguf")
    assert not (tmp_path / "a").exists() and not (tmp_path / "b").exists()
