"""The whole GPT: shapes and gradients across the config space, causality, the loss,
tying, attention maps, parameter counts and a numeric gradient check."""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch.func import functional_call

from tinylm.errors import TinylmError
from tinylm.model import GPT, ModelConfig
from tinylm.model.config import ACTIVATIONS, NORM_PLACEMENTS, NORMS, POSITIONS

HEAD_LAYOUTS = {"mha": None, "gqa": 2, "mqa": 1}

SWEEP = list(itertools.product(POSITIONS, ACTIVATIONS, NORMS, NORM_PLACEMENTS, HEAD_LAYOUTS))


@pytest.mark.parametrize(("position", "activation", "norm", "placement", "layout"), SWEEP)
def test_shapes_and_gradients_for_every_combination(
    tiny_config, position, activation, norm, placement, layout
):
    config = tiny_config(
        position=position,
        activation=activation,
        norm=norm,
        norm_placement=placement,
        n_kv_head=HEAD_LAYOUTS[layout],
        multiple_of=8,
    )
    model = GPT(config)
    idx = torch.randint(0, 11, (2, 9))
    logits, loss = model(idx, torch.randint(0, 11, (2, 9)))
    assert logits.shape == (2, 9, 11)
    assert loss.shape == () and torch.isfinite(loss)
    assert loss.item() == pytest.approx(math.log(11), abs=0.3)  # near-uniform at init
    loss.backward()
    for name, param in model.named_parameters():
        assert param.grad is not None, name
        assert torch.isfinite(param.grad).all(), name
        assert param.grad.abs().sum() > 0, name
    logits_only, no_loss = model(idx)
    assert no_loss is None and logits_only.shape == (2, 9, 11)


@pytest.mark.parametrize(("position", "activation", "norm", "placement", "layout"), SWEEP)
def test_explicit_and_fused_kernels_agree_in_forward_and_gradients(
    tiny_config, position, activation, norm, placement, layout
):
    """The written-out formulas (the reference) and torch's fused kernels, same weights."""
    kwargs = {
        "position": position,
        "activation": activation,
        "norm": norm,
        "norm_placement": placement,
        "n_kv_head": HEAD_LAYOUTS[layout],
        "multiple_of": 8,
        "init_std": 0.2,
    }
    explicit = GPT(tiny_config(kernels="explicit", **kwargs))
    fused = GPT(tiny_config(kernels="fused", **kwargs))
    fused.load_state_dict(explicit.state_dict())
    idx, targets = torch.randint(0, 11, (3, 12)), torch.randint(0, 11, (3, 12))
    logits_e, loss_e = explicit(idx, targets)
    logits_f, loss_f = fused(idx, targets)
    torch.testing.assert_close(logits_f, logits_e, atol=1e-5, rtol=1e-5)
    loss_e.backward()
    loss_f.backward()
    for (name, pe), (_, pf) in zip(
        explicit.named_parameters(), fused.named_parameters(), strict=True
    ):
        torch.testing.assert_close(pf.grad, pe.grad, atol=1e-5, rtol=1e-4, msg=name)


@pytest.mark.parametrize(
    "overrides",
    [
        {"norm_gain": False},
        {"bias": False},
        {"norm": "rmsnorm", "norm_gain": False, "embedding_norm": True},
    ],
)
def test_fused_kernels_agree_without_gains_or_biases(tiny_config, overrides):
    explicit = GPT(tiny_config(kernels="explicit", init_std=0.2, **overrides))
    fused = GPT(tiny_config(kernels="fused", init_std=0.2, **overrides))
    fused.load_state_dict(explicit.state_dict())
    idx = torch.randint(0, 11, (2, 12))
    torch.testing.assert_close(fused(idx)[0], explicit(idx)[0], atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("position", POSITIONS)
@pytest.mark.parametrize("kernels", ["explicit", "fused"])
@pytest.mark.parametrize("placement", NORM_PLACEMENTS)
def test_causality_future_tokens_never_change_the_past(tiny_config, position, kernels, placement):
    model = GPT(tiny_config(position=position, kernels=kernels, norm_placement=placement))
    idx = torch.randint(0, 11, (1, 12))
    base, _ = model(idx)
    for t in range(11):
        changed = idx.clone()
        changed[0, t + 1] = (changed[0, t + 1] + 1) % 11
        logits, _ = model(changed)
        torch.testing.assert_close(logits[:, : t + 1], base[:, : t + 1], atol=0, rtol=0)
        assert not torch.allclose(logits[:, t + 1], base[:, t + 1])  # the change is seen


@pytest.mark.parametrize("position", POSITIONS)
@pytest.mark.parametrize("layout", HEAD_LAYOUTS)
def test_explicit_path_equals_fused_path(tiny_config, position, layout):
    kwargs = {"position": position, "n_kv_head": HEAD_LAYOUTS[layout], "init_std": 0.2}
    explicit = GPT(tiny_config(kernels="explicit", **kwargs))
    fused = GPT(tiny_config(kernels="fused", **kwargs))
    fused.load_state_dict(explicit.state_dict())
    idx = torch.randint(0, 11, (3, 12))
    torch.testing.assert_close(explicit(idx)[0], fused(idx)[0], atol=1e-5, rtol=1e-5)


def test_loss_is_cross_entropy_and_ignores_padding(tiny_config):
    model = GPT(tiny_config())
    idx = torch.randint(0, 11, (2, 8))
    targets = torch.randint(0, 11, (2, 8))
    logits, loss = model(idx, targets)
    torch.testing.assert_close(loss, F.cross_entropy(logits.reshape(-1, 11), targets.reshape(-1)))

    padded = targets.clone()
    padded[0, 5:] = -100
    padded[1, :2] = -100
    _, masked_loss = model(idx, padded)
    keep = padded != -100
    manual = -F.log_softmax(logits, -1)[keep].gather(-1, targets[keep][:, None]).mean()
    torch.testing.assert_close(masked_loss, manual)

    custom = torch.where(keep, targets, 7)  # a PAD id of 7, say
    _, custom_loss = model(idx, custom, ignore_index=7)
    manual7 = F.cross_entropy(logits.reshape(-1, 11), custom.reshape(-1), ignore_index=7)
    torch.testing.assert_close(custom_loss, manual7)


def test_padded_positions_get_no_gradient_signal(tiny_config):
    model = GPT(tiny_config())
    idx = torch.randint(0, 11, (2, 8))
    targets = torch.randint(0, 11, (2, 8))
    targets[0, 4:] = -100
    logits, loss = model(idx, targets)
    logits.retain_grad()
    loss.backward()
    ignored = targets == -100
    assert torch.all(logits.grad[ignored] == 0)
    assert torch.all(logits.grad[~ignored].abs().sum(-1) > 0)


def test_tied_weights_share_one_tensor(tiny_config):
    tied = GPT(tiny_config(tie_embeddings=True))
    assert tied.lm_head.weight is tied.tok_emb.weight
    names = [n for n, _ in tied.named_parameters()]
    assert "lm_head.weight" not in names and "tok_emb.weight" in names

    # The tied gradient is the sum of both uses: compare with an untied copy.
    untied = GPT(tiny_config(tie_embeddings=False))
    state = tied.state_dict()
    untied.load_state_dict(state)
    assert untied.lm_head.weight.data_ptr() != untied.tok_emb.weight.data_ptr()
    idx, targets = torch.randint(0, 11, (2, 8)), torch.randint(0, 11, (2, 8))
    tied(idx, targets)[1].backward()
    untied(idx, targets)[1].backward()
    expected = untied.tok_emb.weight.grad + untied.lm_head.weight.grad
    torch.testing.assert_close(tied.tok_emb.weight.grad, expected)

    untied_fresh = GPT(tiny_config(tie_embeddings=False))
    assert untied_fresh.lm_head.weight is not untied_fresh.tok_emb.weight


def test_attention_maps(tiny_config):
    model = GPT(tiny_config(kernels="fused", n_kv_head=2))
    idx = torch.randint(0, 11, (2, 7))
    maps = model.attention_maps(idx)
    assert len(maps) == 2 and all(m.shape == (2, 4, 7, 7) for m in maps)
    for m in maps:
        torch.testing.assert_close(m.sum(-1), torch.ones(2, 4, 7))
        assert torch.all(m.triu(diagonal=1) == 0)
    # The maps come from the same computation as the fused forward pass.
    first = model.blocks[0]
    h = model.tok_emb(idx) + model.pos_emb(torch.arange(7))
    _, weights = first.attn(first.norm1(h), torch.arange(7), need_weights=True)
    torch.testing.assert_close(maps[0], weights)


def test_input_validation(tiny_config):
    model = GPT(tiny_config())
    with pytest.raises(TinylmError, match="exceeds block_size 12"):
        model(torch.zeros(1, 13, dtype=torch.long))
    with pytest.raises(TinylmError, match="token id 11 is outside the vocabulary"):
        model.check_token_ids(torch.full((1, 3), 11))
    with pytest.raises(TinylmError, match="token id -1 is outside the vocabulary"):
        model.check_token_ids(np.array([3, -1, 4]))
    model.check_token_ids(np.arange(11, dtype=np.uint16))  # every id in range: fine
    with pytest.raises(TinylmError, match="batch, time"):
        model(torch.zeros(5, dtype=torch.long))
    with pytest.raises(TinylmError, match="integer token ids"):
        model(torch.zeros(1, 5))
    with pytest.raises(TinylmError, match="targets shape"):
        model(torch.zeros(1, 5, dtype=torch.long), torch.zeros(1, 4, dtype=torch.long))
    with pytest.raises(TinylmError, match="needs a ModelConfig"):
        GPT({"n_layer": 2})


def test_forward_does_not_read_token_values_back(tiny_config, monkeypatch):
    """The range check lives where data enters; the hot path never syncs on idx."""
    model = GPT(tiny_config())
    idx = torch.randint(0, 11, (2, 5))

    def no_reads(*args, **kwargs):
        raise AssertionError("forward read token values back")

    monkeypatch.setattr(torch.Tensor, "min", no_reads)
    monkeypatch.setattr(torch.Tensor, "max", no_reads)
    monkeypatch.setattr(torch.Tensor, "item", no_reads)
    model(idx, idx)


def test_initialisation_std(tiny_config):
    config = tiny_config(n_layer=8, n_embd=64, init_std=0.02)
    model = GPT(config)
    block = model.blocks[0]
    assert block.attn.w_q.weight.std().item() == pytest.approx(0.02, rel=0.1)
    scaled = 0.02 / math.sqrt(2 * 8)
    assert block.attn.w_o.weight.std().item() == pytest.approx(scaled, rel=0.1)
    assert block.ffn.w2.weight.std().item() == pytest.approx(scaled, rel=0.1)
    assert torch.all(block.attn.w_q.bias == 0) and torch.all(block.norm1.weight == 1)
    plain = GPT(tiny_config(n_layer=8, n_embd=64, scaled_residual_init=False))
    assert plain.blocks[0].attn.w_o.weight.std().item() == pytest.approx(0.02, rel=0.1)


# -- parameter counts ----------------------------------------------------------------


def expected_params(c: ModelConfig) -> int:
    """Count parameters from the architecture description, independently of the module."""
    E, V, hidden = c.n_embd, c.vocab_size, c.ffn_hidden
    kv = c.kv_heads * c.head_dim
    bias = c.bias
    linear = lambda n_in, n_out: n_in * n_out + (n_out if bias else 0)  # noqa: E731
    norm = (E if c.norm_gain else 0) + (E if c.norm == "layernorm" and bias else 0)
    attention = linear(E, E) + 2 * linear(E, kv) + linear(E, E)
    n_mats = 3 if c.activation == "swiglu" else 2
    ffn = (n_mats - 1) * linear(E, hidden) + linear(hidden, E)
    total = V * E + (c.block_size * E if c.position == "learned" else 0)
    total += c.n_layer * (attention + ffn + 2 * norm)
    total += norm * (int(c.final_norm) + int(c.embedding_norm))
    total += 0 if c.tie_embeddings else V * E
    return total


def test_microgpt_parameter_count():
    model = GPT(ModelConfig.from_preset("microgpt", vocab_size=27))
    counts = model.param_counts()
    assert counts["token_embedding"] == 27 * 16 == 432
    assert counts["position_embedding"] == 16 * 16 == 256
    assert counts["embedding"] == 688
    assert counts["total"] == model.num_params() == 4192
    assert counts["non_embedding"] == model.num_params(non_embedding=True) == 4192 - 688
    assert counts["lm_head"] == 432 and counts["norm"] == 0


def test_gpt2_parameter_counts():
    # Built on the meta device: real module structure, shapes only, no 0.5 GB of RAM.
    with torch.device("meta"):
        tied = GPT(ModelConfig.from_preset("gpt2"))
        untied = GPT(ModelConfig.from_preset("gpt2", tie_embeddings=False))
    counts = tied.param_counts()
    assert counts["token_embedding"] == 50257 * 768 == 38_597_376
    assert counts["total"] == 124_439_808
    assert untied.param_counts()["total"] == 163_037_184
    assert counts["tying_saves"] == 163_037_184 - 124_439_808
    parts = ("embedding", "lm_head", "attention", "feedforward", "norm")
    assert sum(counts[p] for p in parts) == counts["total"]


@pytest.mark.parametrize("preset", ["microgpt", "gpt2", "llama", "small"])
def test_param_counts_match_analytic_formula(preset):
    config = ModelConfig.from_preset(preset)
    with torch.device("meta"):
        model = GPT(config)
    assert model.num_params() == expected_params(config)


@pytest.mark.parametrize(
    "overrides",
    [
        {"activation": "swiglu", "n_kv_head": 2, "bias": False, "position": "rope"},
        {"norm": "rmsnorm", "tie_embeddings": False, "position": "sinusoidal"},
        {"norm": "layernorm", "norm_gain": False, "bias": True, "embedding_norm": True},
        {"n_kv_head": 1, "final_norm": False, "d_ff": 24},
    ],
)
def test_param_counts_match_formula_for_variants(tiny_config, overrides):
    config = tiny_config(**overrides)
    model = GPT(config)
    counts = model.param_counts()
    assert counts["total"] == expected_params(config)
    parts = ("embedding", "lm_head", "attention", "feedforward", "norm")
    assert sum(counts[p] for p in parts) == counts["total"]


# -- numeric gradient check ------------------------------------------------------------


@pytest.mark.parametrize(
    "overrides",
    [
        {"position": "learned", "activation": "gelu", "norm": "layernorm", "bias": True},
        {
            "position": "rope",
            "activation": "swiglu",
            "norm": "rmsnorm",
            "n_kv_head": 1,
            "bias": False,
            "norm_placement": "post",
            "tie_embeddings": False,
        },
    ],
)
def test_float64_gradcheck_on_tiny_model(overrides):
    config = ModelConfig(
        vocab_size=5,
        block_size=4,
        n_layer=1,
        n_embd=4,
        n_head=2,
        d_ff=4,
        kernels="explicit",
        init_std=0.5,
        **overrides,
    )
    model = GPT(config).double()
    names = [n for n, _ in model.named_parameters()]
    params = tuple(p.detach().clone().requires_grad_() for p in model.parameters())
    idx = torch.tensor([[1, 4, 0, 2]])
    targets = torch.tensor([[4, 0, 2, 3]])

    def loss_of(*flat):
        return functional_call(model, dict(zip(names, flat, strict=True)), (idx, targets))[1]

    assert torch.autograd.gradcheck(loss_of, params, eps=1e-6, atol=1e-5)
