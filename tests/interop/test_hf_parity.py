"""Export to and import from transformers: same logits, same greedy text, same weights.

The reference is transformers itself: ``AutoModelForCausalLM`` loads the exported
folder offline and runs its own GPT2LMHeadModel / LlamaForCausalLM code.
"""

from __future__ import annotations

import pytest
import torch

from tinylm.interop.export import export_model
from tinylm.interop.hf_import import read_hf_checkpoint

from .conftest import VARIANTS, make_model

transformers = pytest.importorskip("transformers", reason="the test extra installs transformers")

pytestmark = pytest.mark.slow  # transformers takes seconds to import and load


def load_hf(folder):
    model = transformers.AutoModelForCausalLM.from_pretrained(folder, local_files_only=True)
    return model.eval()


def hf_greedy(model, prompt: list[int], n: int) -> list[int]:
    idx = torch.tensor([prompt])
    out = model.generate(
        idx, attention_mask=torch.ones_like(idx), max_new_tokens=n, min_new_tokens=n,
        do_sample=False, pad_token_id=0,
    )  # fmt: skip
    return out[0, len(prompt) :].tolist()


@pytest.mark.parametrize("variant", list(VARIANTS))
def test_export_matches_transformers(variant, bpe, tmp_path):
    model = make_model(bpe.vocab_size, **VARIANTS[variant])
    export_model(model, bpe, tmp_path / "hf", "hf")
    hf = load_hf(tmp_path / "hf")
    expected_class = "GPT2LMHeadModel" if variant.startswith("gpt2") else "LlamaForCausalLM"
    assert type(hf).__name__ == expected_class

    generator = torch.Generator().manual_seed(1)
    for batch, length in ((1, 1), (3, 17), (2, 96)):
        idx = torch.randint(0, bpe.vocab_size, (batch, length), generator=generator)
        with torch.no_grad():
            ours, _ = model(idx)
            theirs = hf(idx).logits
        torch.testing.assert_close(ours, theirs, atol=1e-4, rtol=0)

    prompt = torch.randint(0, bpe.vocab_size, (7,), generator=generator).tolist()
    ours = list(model.generate(prompt, 50, temperature=0))
    assert ours == hf_greedy(hf, prompt, 50)

    # And back: tinylm -> HF -> tinylm is bit-identical.
    back, tokenizer, info = read_hf_checkpoint(tmp_path / "hf")
    assert back.config == model.config
    assert info["family"] == variant.split("-")[0]
    for name, tensor in model.state_dict().items():
        assert torch.equal(back.state_dict()[name], tensor), name
    text = "def f(x):\n    return x <|endoftext|>"
    assert tokenizer.encode(text, allowed_special="all") == bpe.encode(text, allowed_special="all")


def hf_checkpoint(variant: str, vocab_size: int, folder, **save_kwargs):
    """A randomly initialised transformers model of the variant's shape, saved to ``folder``."""
    torch.manual_seed(3)
    o = VARIANTS[variant]
    if variant.startswith("gpt2"):
        activation = {"gelu": "gelu", "gelu_tanh": "gelu_new", "relu": "relu"}[o["activation"]]
        config = transformers.GPT2Config(
            vocab_size=vocab_size, n_positions=64, n_embd=32, n_layer=2, n_head=4, n_inner=48,
            activation_function=activation, tie_word_embeddings=o.get("tie_embeddings", True),
        )  # fmt: skip
        model = transformers.GPT2LMHeadModel(config)
    else:
        config = transformers.LlamaConfig(
            vocab_size=vocab_size, max_position_embeddings=64, hidden_size=32,
            intermediate_size=48, num_hidden_layers=2, num_attention_heads=4,
            num_key_value_heads=o.get("n_kv_head", 4), rms_norm_eps=1e-5,
            attention_bias=o["bias"], mlp_bias=o["bias"], rope_theta=500.0,
            tie_word_embeddings=o.get("tie_embeddings", True),
        )  # fmt: skip
        model = transformers.LlamaForCausalLM(config)
    with torch.no_grad():  # transformers initialises norms to 1 and biases to 0
        for name, param in model.named_parameters():
            if "norm" in name or "ln_" in name or name.endswith("bias"):
                param.add_(0.2 * torch.randn_like(param))
    model.eval().save_pretrained(folder, **save_kwargs)
    return model


@pytest.mark.parametrize("variant", list(VARIANTS))
def test_import_matches_transformers(variant, tmp_path):
    hf = hf_checkpoint(variant, 300, tmp_path / "hf")
    model, tokenizer, _ = read_hf_checkpoint(tmp_path / "hf")
    assert tokenizer is None  # the folder has no tokenizer files
    generator = torch.Generator().manual_seed(2)
    idx = torch.randint(0, 300, (3, 64), generator=generator)
    with torch.no_grad():
        torch.testing.assert_close(model(idx)[0], hf(idx).logits, atol=1e-4, rtol=0)
    prompt = idx[0, :5].tolist()
    assert list(model.generate(prompt, 50, temperature=0)) == hf_greedy(hf, prompt, 50)

    # tinylm -> HF -> tinylm again: the re-exported tensors are the original ones.
    export_model(model, _tiny_char(), tmp_path / "again", "hf")
    again, _, _ = read_hf_checkpoint(tmp_path / "again")
    for name, tensor in model.state_dict().items():
        assert torch.equal(again.state_dict()[name], tensor), name


def _tiny_char():
    from tinylm.tokenizers.char import CharTokenizer

    return CharTokenizer(list("abc"))


def test_sharded_checkpoint_imports(tmp_path):
    hf = hf_checkpoint("llama-gqa-tied", 300, tmp_path / "hf", max_shard_size="20KB")
    assert (tmp_path / "hf" / "model.safetensors.index.json").is_file()
    assert len(list((tmp_path / "hf").glob("model-*.safetensors"))) > 1
    model, _, _ = read_hf_checkpoint(tmp_path / "hf")
    idx = torch.randint(0, 300, (2, 30))
    with torch.no_grad():
        torch.testing.assert_close(model(idx)[0], hf(idx).logits, atol=1e-4, rtol=0)


def test_autotokenizer_loads_the_export(bpe, tmp_path):
    model = make_model(bpe.vocab_size, **VARIANTS["gpt2-tied-gelu"])
    export_model(model, bpe, tmp_path / "hf", "hf")
    tok = transformers.AutoTokenizer.from_pretrained(tmp_path / "hf", local_files_only=True)
    text = "Hello, wörld! 12345 <|endoftext|> tabs\tand\nnewlines  "
    ids = bpe.encode(text, allowed_special="all")
    assert tok(text, add_special_tokens=False)["input_ids"] == ids
    assert tok(text)["input_ids"] == [bpe.bos_id, *ids]  # as tinylm sample starts a prompt
    assert tok.decode(ids) == text
    assert tok.eos_token == "<|endoftext|>" and tok.pad_token == "<|pad|>"
