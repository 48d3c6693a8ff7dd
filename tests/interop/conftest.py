"""Fixtures for the interop tests: a small BPE tokenizer and tiny models of every variant.

The models are random (no hub access here): transformers' own classes, built
from the exported config.json, are the independent reference they are held to.
"""

from __future__ import annotations

import pytest
import torch

from tinylm.data.corpus import corpus_from_specs
from tinylm.model import GPT, ModelConfig
from tinylm.tokenizers.bpe import BPETokenizer

SPECIALS = ["<|endoftext|>", "<|pad|>"]

GPT2_STYLE = {"position": "learned", "norm": "layernorm", "bias": True}
LLAMA_STYLE = {"position": "rope", "norm": "rmsnorm", "activation": "swiglu"}

#: Every family and variant the exports cover: name -> ModelConfig overrides.
VARIANTS = {
    "gpt2-tied-gelu": {**GPT2_STYLE, "activation": "gelu"},
    "gpt2-untied-gelu_tanh": {**GPT2_STYLE, "activation": "gelu_tanh", "tie_embeddings": False},
    "gpt2-relu": {**GPT2_STYLE, "activation": "relu"},
    "llama-mha-untied": {**LLAMA_STYLE, "bias": False, "tie_embeddings": False},
    "llama-gqa-tied": {**LLAMA_STYLE, "bias": False, "n_kv_head": 2},
    "llama-mqa-bias": {**LLAMA_STYLE, "bias": True, "n_kv_head": 1, "tie_embeddings": False},
}


def corpus_text(chars: int = 60_000) -> str:
    """The first ``chars`` characters of the built-in corpus (Python's docs, always present)."""
    text = ""
    for doc in corpus_from_specs([]):
        text += doc + "\n"
        if len(text) >= chars:
            break
    return text[:chars]


@pytest.fixture(scope="session")
def bpe() -> BPETokenizer:
    return BPETokenizer.train(corpus_text(), 400, special_tokens=SPECIALS, progress=False)


def make_model(vocab_size: int, seed: int = 0, **overrides) -> GPT:
    """A tiny random model whose norms and biases are not at their trivial init.

    Gains of exactly 1 and biases of exactly 0 would hide a mapping that drops or
    swaps them, so every one of them is perturbed.
    """
    torch.manual_seed(seed)
    fields = {"block_size": 96, "n_layer": 2, "n_embd": 32, "n_head": 4, "d_ff": 48}
    config = ModelConfig(vocab_size=vocab_size, **{**fields, **overrides})
    model = GPT(config).eval()
    with torch.no_grad():
        for name, param in model.named_parameters():
            if "norm" in name or name.endswith("bias"):
                param.add_(0.2 * torch.randn_like(param))
    return model
