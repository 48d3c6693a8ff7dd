"""A Llama-style model as one GGUF file, llama.cpp's format, with its tokenizer inside.

GGUF is a header of typed key/value metadata (``llama.block_count``,
``tokenizer.ggml.tokens``, ...) followed by named tensors. It is written with the
``gguf`` package (``pip install 'tinylm[interop]'``), which llama.cpp maintains.

Tensor layout. llama.cpp's ``llama`` architecture applies RoPE to neighbouring
pairs, ``(2i, 2i + 1)``: the original Meta layout, which is tinylm's own
(``model/rope.py``). So, unlike the Hugging Face export (``hf_weights``), no
query/key rows are permuted; tensors are written as tinylm holds them, float32,
or with ``quant="q8_0"`` the weight matrices as Q8_0 blocks (``gguf_q8_0``).

Tokenizer. A byte-level BPE is stored as llama.cpp's ``gpt2`` tokenizer model:
one string per id in GPT-2's byte alphabet, the merge list (every split of every
mergeable token, as in ``hf_tokenizer``), token types (normal, control for
special tokens, unused for ids no token has), BOS/EOS, and the name of the
pre-tokenizer regex (llama.cpp knows regexes by name: tinylm's ``gpt2``,
``cl100k`` and ``o200k`` patterns are its ``gpt-2``, ``llama-bpe`` and ``gpt-4o``).
"""

from __future__ import annotations

import os
from typing import Any

from torch import Tensor

from tinylm.errors import SettingError, TinylmError
from tinylm.interop.gguf_q8_0 import q8_0_fits, quantize_q8_0
from tinylm.interop.hf_config import hf_architecture
from tinylm.interop.hf_tokenizer import all_splits
from tinylm.model.config import ModelConfig
from tinylm.tokenizers.base import Tokenizer
from tinylm.tokenizers.bpe import BPETokenizer
from tinylm.tokenizers.byte_alphabet import gpt2_byte_alphabet
from tinylm.tokenizers.pretokenize import CL100K_PATTERN, GPT2_PATTERN, O200K_PATTERN

GGUF_FILE = "model.gguf"
#: tinylm's pre-tokenizer regexes by the names llama.cpp gives them.
LLAMA_CPP_PRE_TOKENIZERS = {
    GPT2_PATTERN: "gpt-2",
    CL100K_PATTERN: "llama-bpe",
    O200K_PATTERN: "gpt-4o",
}
#: The GGUF quantisations ``write_gguf`` can write (``None``: every tensor float32).
GGUF_QUANTS = ("q8_0",)


def import_gguf() -> Any:
    """The ``gguf`` package, or a one-line error saying how to install it."""
    try:
        import gguf
    except ImportError:
        raise TinylmError(
            "GGUF export needs the gguf package; install it with pip install 'tinylm[interop]'"
        ) from None
    return gguf


def gguf_tensors(state: dict[str, Tensor], config: ModelConfig) -> dict[str, Tensor]:
    """llama.cpp tensor name -> tinylm tensor; a tied output matrix is stored once."""
    names = {"tok_emb.weight": "token_embd.weight", "final_norm.weight": "output_norm.weight"}
    if not config.tie_embeddings:
        names["lm_head.weight"] = "output.weight"
    per_layer = {
        "norm1": "attn_norm",
        "norm2": "ffn_norm",
        "attn.w_q": "attn_q",
        "attn.w_k": "attn_k",
        "attn.w_v": "attn_v",
        "attn.w_o": "attn_output",
        "ffn.w": "ffn_gate",
        "ffn.v": "ffn_up",
        "ffn.w2": "ffn_down",
    }
    for i in range(config.n_layer):
        for ours, theirs in per_layer.items():
            for kind in ("weight", "bias"):
                if f"blocks.{i}.{ours}.{kind}" in state:
                    names[f"blocks.{i}.{ours}.{kind}"] = f"blk.{i}.{theirs}.{kind}"
    return {theirs: state[ours] for ours, theirs in names.items()}


def write_gguf(
    path: str | os.PathLike,
    state: dict[str, Tensor],
    config: ModelConfig,
    tokenizer: Tokenizer,
    quant: str | None = None,
) -> None:
    """Write ``model.gguf`` for a Llama-style model and its BPE tokenizer at ``path``.

    ``quant="q8_0"`` stores the weight matrices that split into 32-number blocks as
    Q8_0; the rest (norms, biases, other matrices) stays float32.
    """
    pre = check_gguf(config, tokenizer, quant)
    gguf = import_gguf()
    writer = gguf.GGUFWriter(str(path), "llama")
    _write_metadata(writer, gguf, config, quant)
    _write_tokenizer(writer, gguf, tokenizer, config.vocab_size, pre)
    for name, tensor in gguf_tensors(state, config).items():
        array = tensor.detach().float().contiguous().numpy()
        if quant == "q8_0" and q8_0_fits(array):
            q8_0 = gguf.GGMLQuantizationType.Q8_0
            writer.add_tensor(name, quantize_q8_0(array), raw_dtype=q8_0)
        else:
            writer.add_tensor(name, array)
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()


def check_gguf(config: ModelConfig, tokenizer: Tokenizer, quant: str | None = None) -> str:
    """Refuse what GGUF cannot hold; return llama.cpp's name of the pre-tokenizer."""
    if quant is not None and quant not in GGUF_QUANTS:
        raise SettingError(
            f"unknown GGUF quantisation {quant!r}; choose one of {', '.join(GGUF_QUANTS)}",
            setting="quant",
        )
    family = hf_architecture(config)
    if family != "llama":
        raise SettingError(
            "GGUF export covers Llama-style models (position=rope, rmsnorm, swiglu); "
            "this one is GPT-2-style, export it in the hf format",
            setting="format",
            value="hf",
        )
    if not isinstance(tokenizer, BPETokenizer):
        raise SettingError(
            f"GGUF embeds byte-level BPE tokenizers; this model uses a {tokenizer.kind} "
            "tokenizer (retrain it with a bpe:N tokenizer, or export it in the hf format)",
            setting="format",
            value="hf",
        )
    pre = LLAMA_CPP_PRE_TOKENIZERS.get(tokenizer.pattern)
    if pre is None:
        raise TinylmError(
            "this tokenizer splits text with a custom regex, which llama.cpp cannot take; "
            "GGUF export needs the gpt2, cl100k or o200k pattern"
        )
    if tokenizer.vocab_size > config.vocab_size:
        raise TinylmError(
            f"the tokenizer has {tokenizer.vocab_size} ids but the model only "
            f"{config.vocab_size}; they do not belong together"
        )
    import_gguf()
    return pre


def _write_metadata(writer: Any, gguf: Any, config: ModelConfig, quant: str | None) -> None:
    writer.add_name("tinylm")
    writer.add_context_length(config.block_size)
    writer.add_embedding_length(config.n_embd)
    writer.add_block_count(config.n_layer)
    writer.add_feed_forward_length(config.ffn_hidden)
    writer.add_head_count(config.n_head)
    writer.add_head_count_kv(config.kv_heads)
    writer.add_rope_dimension_count(config.head_dim)
    writer.add_rope_freq_base(float(config.rope_theta))
    writer.add_layer_norm_rms_eps(float(config.norm_eps))
    writer.add_vocab_size(config.vocab_size)
    file_type = gguf.LlamaFileType.MOSTLY_Q8_0 if quant == "q8_0" else gguf.LlamaFileType.ALL_F32
    writer.add_file_type(file_type)


def _write_tokenizer(
    writer: Any, gguf: Any, tokenizer: BPETokenizer, vocab_size: int, pre: str
) -> None:
    alphabet = gpt2_byte_alphabet()

    def spell(token: bytes) -> str:
        return "".join(alphabet[b] for b in token)

    encoder: dict[bytes, int] = {}
    tokens, types = [], []
    specials = {i: name for name, i in tokenizer.special_tokens.items()}
    for i in range(vocab_size):
        if i in tokenizer.vocab and tokenizer.vocab[i] not in encoder:
            encoder[tokenizer.vocab[i]] = i
            tokens.append(spell(tokenizer.vocab[i]))
            types.append(gguf.TokenType.NORMAL)
        elif i in specials:
            tokens.append(specials[i])
            types.append(gguf.TokenType.CONTROL)
        else:  # a gap in the ids, or rows the model has beyond the tokenizer
            tokens.append(f"[PAD{i}]")
            types.append(gguf.TokenType.UNUSED)
    merges = [f"{spell(a)} {spell(b)}" for a, b in all_splits(tokenizer, encoder)]
    writer.add_tokenizer_model("gpt2")
    writer.add_tokenizer_pre(pre)
    writer.add_token_list(tokens)
    writer.add_token_types(types)
    writer.add_token_merges(merges)
    if tokenizer.bos_id is not None:
        writer.add_bos_token_id(tokenizer.bos_id)
    if tokenizer.eos_id is not None:
        writer.add_eos_token_id(tokenizer.eos_id)
    if tokenizer.pad_id is not None:
        writer.add_pad_token_id(tokenizer.pad_id)
    writer.add_add_bos_token(tokenizer.bos_id is not None)  # tinylm starts prompts with BOS
