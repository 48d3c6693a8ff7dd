"""A LoRA adapter exported for PEFT: the ``peft`` package, on the exported base, agrees with tinylm.

The reference is ``peft.PeftModel.from_pretrained`` over transformers' own
GPT2LMHeadModel / LlamaForCausalLM loaded from ``tinylm export --format hf``.
"""

from __future__ import annotations

import copy
import json

import pytest
import torch

from tinylm.interop.export import export_model
from tinylm.interop.peft_export import CONFIG_FILE, WEIGHTS_FILE, export_peft
from tinylm.model.lora import LoraConfig, add_lora, lora_parameters

from .conftest import VARIANTS, make_model

transformers = pytest.importorskip("transformers", reason="the test extra installs transformers")
peft = pytest.importorskip("peft", reason="the test extra installs peft")

pytestmark = [
    pytest.mark.slow,  # transformers and peft take seconds to import and load
    # peft 0.21 calls transformers 5's deprecated is_gradient_checkpointing: theirs, not ours
    pytest.mark.filterwarnings("ignore:`is_gradient_checkpointing` is deprecated:FutureWarning"),
]

TARGET_SETS = {
    "all": ("attn", "ffn"),
    "q-v": ("attn.w_q", "attn.w_v"),  # GPT-2: two of c_attn's three, a rank-2r c_attn adapter
    "k-o-ffn": ("attn.w_k", "attn.w_o", "ffn"),  # GPT-2: c_attn from k alone; Llama: k's rows
}


@pytest.mark.parametrize("targets", list(TARGET_SETS))
@pytest.mark.parametrize("variant", ["gpt2-tied-gelu", "llama-gqa-tied", "llama-mqa-bias"])
def test_peft_on_the_exported_base_gives_tinylm_logits(variant, targets, bpe, tmp_path):
    base = make_model(bpe.vocab_size, **VARIANTS[variant])
    export_model(base, bpe, tmp_path / "base", "hf")
    settings = LoraConfig(rank=3, alpha=5.0, dropout=0.1, targets=TARGET_SETS[targets])
    model = add_lora(copy.deepcopy(base), settings)
    torch.manual_seed(2)
    with torch.no_grad():  # B starts at zero: random A and B, so every block counts
        for p in lora_parameters(model):
            p.copy_(0.3 * torch.randn_like(p))
    model.eval()
    files = export_peft(model, settings, tmp_path / "adapter", str(tmp_path / "base"))
    assert {CONFIG_FILE, WEIGHTS_FILE} <= {f.name for f in files}

    hf = transformers.AutoModelForCausalLM.from_pretrained(tmp_path / "base", local_files_only=True)
    adapted = peft.PeftModel.from_pretrained(hf.eval(), tmp_path / "adapter").eval()
    idx = torch.randint(0, bpe.vocab_size, (3, 17), generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        ours = model(idx)[0]
        theirs = adapted(input_ids=idx).logits
        plain = base.eval()(idx)[0]
    assert (ours - plain).abs().max() > 1e-2  # the adapter changes the logits...
    torch.testing.assert_close(theirs, ours, atol=1e-4, rtol=0)  # ...and PEFT agrees


def test_the_config_names_what_peft_reads(bpe, tmp_path):
    base = make_model(bpe.vocab_size, **VARIANTS["gpt2-relu"])
    settings = LoraConfig(rank=2, alpha=4.0, targets=("attn.w_q", "attn.w_k", "attn.w_v"))
    export_peft(add_lora(base, settings), settings, tmp_path / "adapter")
    config = json.loads((tmp_path / "adapter" / CONFIG_FILE).read_text())
    assert config["peft_type"] == "LORA" and config["fan_in_fan_out"] is True
    assert (config["r"], config["lora_alpha"], config["target_modules"]) == (
        2,
        4.0,
        ["attn.c_attn"],
    )
    assert config["rank_pattern"] == {"attn.c_attn": 6}
    assert config["alpha_pattern"] == {"attn.c_attn": 12.0}
    # a second export replaces the first (the folder is recognised as one of ours)
    export_peft(base, settings, tmp_path / "adapter")
