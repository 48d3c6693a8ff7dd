"""The optimisers: AdamW equals torch's, Muon orthogonalises, param groups, resume."""

from __future__ import annotations

import copy
import io

import pytest
import torch
from torch import nn

from tinylm.errors import TinylmError
from tinylm.model.roles import ParamRoles, split_by_shape
from tinylm.train.optim import (
    OPTIMIZERS,
    AdamW,
    Muon,
    build_optimizer,
    hidden_matrices,
    newton_schulz,
    param_groups,
    scale_lr,
)

VOCAB, DIM, SEQ = 20, 8, 6


class TinyLM(nn.Module):
    """Embedding, a hidden matrix with bias, a norm-like gain, an output head."""

    def __init__(self, tied: bool = False, head_name: str = "lm_head") -> None:
        super().__init__()
        self.emb = nn.Embedding(VOCAB, DIM)
        self.hidden = nn.Linear(DIM, 2 * DIM)
        self.proj = nn.Linear(2 * DIM, DIM)
        self.gain = nn.Parameter(torch.ones(DIM))
        head = nn.Linear(DIM, VOCAB, bias=False)
        if tied:
            head.weight = self.emb.weight
        self.head_name = head_name
        setattr(self, head_name, head)

    def param_roles(self) -> ParamRoles:
        """The model says which tensor is what (no guessing from names or shapes)."""
        head = getattr(self, self.head_name).weight
        return split_by_shape(list(self.parameters()), [self.emb.weight], [head])

    def forward(self, idx: torch.Tensor) -> torch.Tensor:
        x = self.emb(idx)
        x = x + self.proj(torch.tanh(self.hidden(x)))
        x = x / x.pow(2).mean(-1, keepdim=True).add(1e-5).sqrt() * self.gain
        return getattr(self, self.head_name)(x)


def make_data(seed: int = 0, steps: int = 100) -> list[tuple[torch.Tensor, torch.Tensor]]:
    g = torch.Generator().manual_seed(seed)
    return [
        (
            torch.randint(0, VOCAB, (4, SEQ), generator=g),
            torch.randint(0, VOCAB, (4, SEQ), generator=g),
        )
        for _ in range(steps)
    ]


def train(model: nn.Module, opt: torch.optim.Optimizer, data) -> None:
    for x, y in data:
        logits = model(x)
        loss = nn.functional.cross_entropy(logits.flatten(0, 1), y.flatten())
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()


def make_model(tied: bool = False, seed: int = 0) -> TinyLM:
    torch.manual_seed(seed)
    return TinyLM(tied=tied)


def tiny_gpt():
    """A tiny tinylm GPT, or skip when the model package is not importable."""
    try:
        from tinylm.model import GPT, ModelConfig
    except Exception as exc:  # the model package may be mid-rewrite
        pytest.skip(f"tinylm.model not importable: {exc}")
    torch.manual_seed(0)
    config = ModelConfig(vocab_size=VOCAB, block_size=SEQ, n_layer=1, n_embd=DIM, n_head=2)
    return GPT(config)


def assert_params_close(a: nn.Module, b: nn.Module, atol: float) -> None:
    for (name, pa), (_, pb) in zip(a.named_parameters(), b.named_parameters(), strict=True):
        diff = (pa - pb).abs().max().item()
        assert diff <= atol, f"{name} differs by {diff}"


# -- AdamW ------------------------------------------------------------------------------


@pytest.mark.parametrize("tied", [False, True])
def test_adamw_matches_torch_over_100_steps(tied):
    ours_model, ref_model = make_model(tied), make_model(tied)
    hyper = {"lr": 1e-2, "betas": (0.9, 0.95), "eps": 1e-8}
    ours = AdamW(param_groups(ours_model, weight_decay=0.1), **hyper)
    ref = torch.optim.AdamW(param_groups(ref_model, weight_decay=0.1), **hyper)
    assert {g["weight_decay"] for g in ours.param_groups} == {0.1, 0.0}  # decay on some only
    data = make_data()
    train(ours_model, ours, data)
    train(ref_model, ref, data)
    assert_params_close(ours_model, ref_model, atol=1e-6)
    # and it actually trained: the weights moved well beyond the tolerance
    assert (ours_model.hidden.weight - make_model(tied).hidden.weight).abs().max() > 1e-2


@pytest.mark.parametrize(
    ("fused", "torch_kernel", "dtype"),
    [
        (False, {"foreach": False}, torch.float32),
        (False, {"foreach": True}, torch.float32),
        (True, {"fused": True}, torch.float32),
        (True, {"fused": True}, torch.float64),
    ],
)
def test_adamw_is_bit_identical_to_torch(fused, torch_kernel, dtype):
    """Written out (_foreach), tinylm does torch's arithmetic in torch's order; fused, it
    runs the kernel ``torch.optim.AdamW(fused=True)`` runs. Equal bits either way."""
    ours_model, ref_model = make_model().to(dtype), make_model().to(dtype)
    hyper = {"lr": 1e-2, "betas": (0.9, 0.95), "eps": 1e-8}
    ours = AdamW(param_groups(ours_model, weight_decay=0.1), fused=fused, **hyper)
    ref = torch.optim.AdamW(param_groups(ref_model, weight_decay=0.1), **torch_kernel, **hyper)
    data = make_data(steps=30)
    train(ours_model, ours, data)
    train(ref_model, ref, data)
    for (name, a), (_, b) in zip(
        ours_model.named_parameters(), ref_model.named_parameters(), strict=True
    ):
        assert torch.equal(a, b), name
    # and it trained: the weights moved far beyond rounding
    assert (ours_model.hidden.weight - make_model().hidden.weight.to(dtype)).abs().max() > 1e-2


def test_fused_and_written_out_adamw_agree_to_rounding():
    fused_model, written_model = make_model(), make_model()
    fused = AdamW(param_groups(fused_model, weight_decay=0.1), lr=1e-2, fused=True)
    written = AdamW(param_groups(written_model, weight_decay=0.1), lr=1e-2)
    data = make_data(steps=50)
    train(fused_model, fused, data)
    train(written_model, written, data)
    assert_params_close(fused_model, written_model, atol=1e-5)
    assert fused.state_dict()["state"].keys() == written.state_dict()["state"].keys()
    for a, b in zip(fused.state.values(), written.state.values(), strict=True):
        assert a.keys() == b.keys() and a["step"] == b["step"] == 50


def test_fused_adamw_falls_back_to_the_written_out_update_for_mixed_dtypes():
    """The kernel takes one dtype per call; a mixed group takes the written-out path."""
    torch.manual_seed(0)
    params = [torch.randn(4, 3), torch.randn(5, dtype=torch.float64)]
    fused = [p.clone().requires_grad_() for p in params]
    written = [p.clone().requires_grad_() for p in params]
    opts = AdamW(fused, lr=1e-2, fused=True), AdamW(written, lr=1e-2)
    for _ in range(5):
        grads = [torch.randn_like(p) for p in params]
        for tensors, opt in zip((fused, written), opts, strict=True):
            for t, g in zip(tensors, grads, strict=True):
                t.grad = g.clone()
            opt.step()
    for a, b in zip(fused, written, strict=True):
        assert torch.equal(a, b)


def test_batched_newton_schulz_equals_one_matrix_at_a_time():
    g = torch.Generator().manual_seed(0)
    stack = torch.randn(3, 16, 48, generator=g)
    batched = newton_schulz(stack)
    for i in range(3):
        torch.testing.assert_close(batched[i], newton_schulz(stack[i]), atol=1e-5, rtol=1e-5)
    tall = torch.randn(2, 48, 16, generator=g)
    torch.testing.assert_close(newton_schulz(tall)[1], newton_schulz(tall[1]), atol=1e-5, rtol=1e-5)


def test_adamw_without_weight_decay_is_adam():
    ours_model, ref_model = make_model(), make_model()
    ours = AdamW(ours_model.parameters(), lr=1e-2, weight_decay=0.0)
    ref = torch.optim.Adam(ref_model.parameters(), lr=1e-2)
    data = make_data(steps=50)
    train(ours_model, ours, data)
    train(ref_model, ref, data)
    assert_params_close(ours_model, ref_model, atol=1e-6)


def test_adamw_matches_torch_on_a_tiny_gpt():
    ours_model = tiny_gpt()
    ref_model = copy.deepcopy(ours_model)
    ours = AdamW(param_groups(ours_model, 0.1), lr=3e-3, betas=(0.9, 0.95))
    ref = torch.optim.AdamW(param_groups(ref_model, 0.1), lr=3e-3, betas=(0.9, 0.95))
    for x, y in make_data(steps=30):
        for model, opt in ((ours_model, ours), (ref_model, ref)):
            _, loss = model(x, y)
            opt.zero_grad()
            loss.backward()
            opt.step()
    assert_params_close(ours_model, ref_model, atol=1e-6)


def test_adamw_skips_params_without_grad_and_rejects_bad_hyperparameters():
    p, unused = nn.Parameter(torch.ones(3)), nn.Parameter(torch.ones(3))
    opt = AdamW([p, unused], lr=0.1)
    p.grad = torch.ones(3)
    opt.step()
    assert torch.equal(unused, torch.ones(3)) and not opt.state[unused]
    # first step: m_hat = g, v_hat = g^2, so the step is lr * g / |g| (minus the decay)
    assert torch.allclose(p, torch.full((3,), 1 - 0.1 * 0.01 - 0.1), atol=1e-6)
    for bad in ({"lr": -1.0}, {"betas": (1.0, 0.9)}, {"eps": -1.0}, {"weight_decay": -0.1}):
        with pytest.raises(TinylmError):
            AdamW([p], **bad)


def roundtrip(obj):
    buffer = io.BytesIO()
    torch.save(obj, buffer)
    buffer.seek(0)
    return torch.load(buffer, weights_only=True)


@pytest.mark.parametrize("fused", [False, True])
@pytest.mark.parametrize("name", OPTIMIZERS)
def test_state_dict_round_trip_resumes_exactly(name, fused):
    data = make_data(steps=20)
    model = make_model()
    opt = build_optimizer(model, name, lr=1e-2, fused=fused)
    train(model, opt, data[:10])
    saved = roundtrip({"model": model.state_dict(), "opt": opt.state_dict()})
    train(model, opt, data[10:])  # the uninterrupted run

    resumed = make_model(seed=123)  # different init: everything must come from the save
    resumed.load_state_dict(saved["model"])
    resumed_opt = build_optimizer(resumed, name, lr=1e-2, fused=fused)
    resumed_opt.load_state_dict(saved["opt"])
    train(resumed, resumed_opt, data[10:])
    for (n, a), (_, b) in zip(model.named_parameters(), resumed.named_parameters(), strict=True):
        assert torch.equal(a, b), n
    assert resumed_opt.state_dict()["param_groups"] == opt.state_dict()["param_groups"]


# -- param_groups -------------------------------------------------------------------------


def group_names(model: nn.Module, groups) -> list[set[str]]:
    name_of = {id(p): n for n, p in model.named_parameters()}
    return [{name_of[id(p)] for p in g["params"]} for g in groups]


def test_param_groups_rule():
    model = make_model()
    decay, no_decay = group_names(model, param_groups(model, 0.1))
    assert decay == {"hidden.weight", "proj.weight", "lm_head.weight"}
    assert no_decay == {"emb.weight", "hidden.bias", "proj.bias", "gain"}
    decay, no_decay = group_names(model, param_groups(model, 0.1, decay_embeddings=True))
    assert "emb.weight" in decay and "emb.weight" not in no_decay


@pytest.mark.parametrize("decay_embeddings", [False, True])
def test_tied_tensor_is_in_exactly_one_group(decay_embeddings):
    model = make_model(tied=True)
    groups = param_groups(model, 0.1, decay_embeddings)
    listed = [p for g in groups for p in g["params"]]
    assert sum(p is model.emb.weight for p in listed) == 1
    assert len({id(p) for p in listed}) == len(listed) == len(list(model.parameters()))
    torch.optim.SGD(groups, lr=0.1)  # usable by any torch optimiser (it rejects duplicates)


def test_param_groups_on_a_tiny_gpt_cover_every_tensor_once():
    model = tiny_gpt()
    groups = param_groups(model, 0.1)
    listed = [p for g in groups for p in g["params"]]
    assert len({id(p) for p in listed}) == len(listed) == len(list(model.parameters()))
    decay, no_decay = group_names(model, groups)
    tables = {"tok_emb.weight", "pos_emb.weight"}  # declared by GPT.param_roles()
    assert tables <= no_decay
    assert all(model.get_parameter(n).dim() == 2 for n in decay)
    assert all(model.get_parameter(n).dim() == 1 for n in no_decay - tables)


# -- Muon ----------------------------------------------------------------------------------


@pytest.mark.parametrize("shape", [(32, 64), (64, 32), (16, 128), (48, 48)])
def test_newton_schulz_singular_values_near_one(shape):
    G = torch.randn(*shape, generator=torch.Generator().manual_seed(0))
    X = newton_schulz(G, steps=5)
    assert X.shape == G.shape and X.dtype == G.dtype
    s = torch.linalg.svdvals(X)
    # The quintic coefficients trade exactness for speed: after 5 steps the singular
    # values oscillate in about [0.68, 1.13] instead of converging to 1.
    assert s.min() > 0.65 and s.max() < 1.2, (s.min().item(), s.max().item())
    # and the singular vectors are G's: X is close to U V^T
    U, _, Vh = torch.linalg.svd(G, full_matrices=False)
    assert torch.nn.functional.cosine_similarity(X.flatten(), (U @ Vh).flatten(), dim=0) > 0.95


@pytest.mark.parametrize("shape", [(8, 32), (32, 8)])
def test_muon_update_shape_and_size(shape):
    p = nn.Parameter(torch.zeros(*shape))
    opt = Muon([p], lr=1.0, momentum=0.0, nesterov=False)
    p.grad = torch.randn(*shape, generator=torch.Generator().manual_seed(1))
    opt.step()
    rows, cols = shape
    assert p.shape == shape
    s = torch.linalg.svdvals(-p.detach()) / max(1.0, rows / cols) ** 0.5
    assert s.min() > 0.65 and s.max() < 1.2  # orthogonalised, then scaled by shape


def _muon_reference(weights, steps_of_grads, lr, momentum, nesterov, weight_decay):
    """Muon written out from its formula, one matrix at a time, in float64.

    buf <- momentum * buf + (1 - momentum) * g
    u   <- (1 - momentum) * g + momentum * buf   (Nesterov: look ahead) or buf
    o   <- Newton-Schulz(u): scale to Frobenius norm 1, then 5 times
           X <- a X + (b A + c A A) X with A = X X^T, on the wide orientation
    p   <- p * (1 - lr * wd) - lr * sqrt(max(1, rows / cols)) * o
    """
    a, b, c = 3.4445, -4.7750, 2.0315  # the quintic's coefficients the docstring gives
    params = [w.detach().double().clone() for w in weights]
    bufs = [torch.zeros_like(p) for p in params]
    for grads in steps_of_grads:
        for i, (p, g) in enumerate(zip(params, grads, strict=True)):
            g = g.double()
            bufs[i] = momentum * bufs[i] + (1 - momentum) * g
            u = (1 - momentum) * g + momentum * bufs[i] if nesterov else bufs[i]
            rows, cols = u.shape
            X = u.T if rows > cols else u
            X = X / (torch.linalg.norm(X) + 1e-7)
            for _ in range(5):
                A = X @ X.T
                X = a * X + (b * A + c * A @ A) @ X
            o = X.T if rows > cols else X
            params[i] = p * (1 - lr * weight_decay) - lr * max(1.0, rows / cols) ** 0.5 * o
    return params


@pytest.mark.parametrize("nesterov", [True, False])
def test_muon_matches_its_written_out_formula_over_several_steps(nesterov):
    # Step 1 alone cannot tell momentum rules apart: the buffer is a multiple of the
    # gradient, and Newton-Schulz forgets the scale. From step 2 on the mix matters.
    g = torch.Generator().manual_seed(4)
    shapes = [(8, 16), (8, 16), (24, 8), (12, 12)]  # wide twice (stacked), tall, square
    params = [nn.Parameter(torch.randn(*shape, generator=g)) for shape in shapes]
    steps = [[torch.randn(*shape, generator=g) for shape in shapes] for _ in range(4)]
    settings = {"lr": 0.05, "momentum": 0.95, "nesterov": nesterov, "weight_decay": 0.1}
    expected = _muon_reference(params, steps, **settings)
    other = _muon_reference(params, steps, **{**settings, "nesterov": not nesterov})
    opt = Muon(params, **settings)
    for grads in steps:
        for p, grad in zip(params, grads, strict=True):
            p.grad = grad.clone()
        opt.step()
    for p, want, unwanted in zip(params, expected, other, strict=True):
        torch.testing.assert_close(p.detach().double(), want, rtol=0, atol=2e-6)
        assert (want - unwanted).abs().max() > 1e-3  # the two Nesterov settings differ


def test_muon_reduces_loss_on_toy_regression():
    g = torch.Generator().manual_seed(0)
    X = torch.randn(256, 32, generator=g)
    W_true = torch.randn(16, 32, generator=g) / 32**0.5
    Y = X @ W_true.T
    W = nn.Parameter(torch.zeros(16, 32))
    opt = Muon([W], lr=0.02)
    losses = []
    for _ in range(60):
        loss = (X @ W.T - Y).pow(2).mean()
        losses.append(loss.item())
        opt.zero_grad()
        loss.backward()
        opt.step()
    assert losses[-1] < 0.05 * losses[0]


@pytest.mark.parametrize("fused", [False, True])
def test_muon_non_matrix_params_follow_exact_adamw(fused):
    """Muon's AdamW groups step as torch's AdamW does (the fused kernel: to the bit)."""
    model = make_model()
    opt = build_optimizer(model, "muon", lr=1e-2, weight_decay=0.1, muon_lr=0.02, fused=fused)
    assert opt.fused is fused
    adam_groups = [g for g in opt.param_groups if not g["use_muon"]]
    # A shadow copy of the AdamW-side tensors, stepped by torch.optim.AdamW with the
    # very gradients Muon's AdamW groups receive.
    shadow = {id(p): p.detach().clone().requires_grad_() for g in adam_groups for p in g["params"]}
    ref = torch.optim.AdamW(
        [{"params": [shadow[id(p)] for p in g["params"]], "weight_decay": g["weight_decay"]}
         for g in adam_groups],
        lr=1e-2, betas=(0.9, 0.95), eps=1e-8, fused=fused,
    )  # fmt: skip
    for x, y in make_data(steps=100):
        loss = nn.functional.cross_entropy(model(x).flatten(0, 1), y.flatten())
        opt.zero_grad()
        loss.backward()
        for g in adam_groups:
            for p in g["params"]:
                shadow[id(p)].grad = p.grad.clone()
        opt.step()
        ref.step()
    for g in adam_groups:
        for p in g["params"]:
            assert (p - shadow[id(p)]).abs().max() <= 1e-6
            assert torch.equal(p, shadow[id(p)]) or not fused


def test_muon_rejects_non_matrix_in_muon_group():
    with pytest.raises(TinylmError, match="use_muon=False"):
        Muon([nn.Parameter(torch.ones(4))])
    opt = Muon([{"params": [nn.Parameter(torch.ones(4))], "use_muon": False}], adamw_lr=1e-3)
    assert opt.param_groups[0]["lr"] == 1e-3  # Adam groups do not inherit Muon's rate


# -- build_optimizer -------------------------------------------------------------------------


def test_build_optimizer_adamw():
    model = make_model()
    opt = build_optimizer(model, "adamw", lr=1e-3, weight_decay=0.1)
    assert isinstance(opt, AdamW)
    assert [g["weight_decay"] for g in opt.param_groups] == [0.1, 0.0]
    assert opt.param_groups[0]["betas"] == (0.9, 0.95)


def test_build_optimizer_muon_picks_hidden_matrices():
    model = make_model()
    opt = build_optimizer(model, "muon")
    assert isinstance(opt, Muon)
    muon, adam_decay, adam_no_decay = group_names(model, opt.param_groups)
    assert muon == {"hidden.weight", "proj.weight"}
    assert adam_decay == {"lm_head.weight"}  # the untied head: AdamW, decayed
    assert adam_no_decay == {"emb.weight", "hidden.bias", "proj.bias", "gain"}
    assert [g["lr"] for g in opt.param_groups] == [0.02, 6e-4, 6e-4]


def test_the_declared_head_stays_off_muon_whatever_its_name():
    torch.manual_seed(0)
    model = TinyLM(head_name="out")
    names = group_names(model, [{"params": hidden_matrices(model)}])[0]
    assert names == {"hidden.weight", "proj.weight"}


class Undeclared(nn.Module):
    """A model that does not say which tensor is its head."""

    def __init__(self) -> None:
        super().__init__()
        self.emb = nn.Embedding(VOCAB, DIM)
        self.hidden = nn.Linear(DIM, DIM)
        self.out = nn.Linear(DIM, VOCAB, bias=False)


def test_a_model_without_param_roles_gets_weight_decay_groups_but_not_muon():
    model = Undeclared()
    decay, no_decay = group_names(model, param_groups(model, 0.1))
    assert decay == {"hidden.weight", "out.weight"}  # nn.Embedding is a table by type
    assert no_decay == {"emb.weight", "hidden.bias"}
    with pytest.raises(TinylmError, match="param_roles"):
        build_optimizer(model, "muon")


def test_gpt_param_roles_cover_every_tensor_once():
    model = tiny_gpt()
    roles = model.param_roles()
    listed = roles.all()
    assert len({id(p) for p in listed}) == len(listed) == len(list(model.parameters()))
    name_of = {id(p): n for n, p in model.named_parameters()}
    assert {name_of[id(p)] for p in roles.embeddings} == {"tok_emb.weight", "pos_emb.weight"}
    assert roles.head == []  # tied: the head is the token table
    assert all(".attn.w_" in name_of[id(p)] or ".ffn.w" in name_of[id(p)] for p in roles.matrices)


def test_build_optimizer_muon_on_a_tiny_gpt():
    model = tiny_gpt()
    opt = build_optimizer(model, "muon")
    muon = group_names(model, opt.param_groups)[0]
    assert muon and all(".attn.w_" in n or ".ffn.w" in n for n in muon)
    assert model.lm_head.weight is model.tok_emb.weight  # tied: on AdamW with the embedding


def test_build_optimizer_unknown_name():
    with pytest.raises(TinylmError, match="adamw, muon"):
        build_optimizer(make_model(), "sgd")


def test_scale_lr_keeps_each_groups_ratio():
    opt = build_optimizer(make_model(), "muon", lr=1e-3, muon_lr=0.02)
    scale_lr(opt, 0.5)
    assert [g["lr"] for g in opt.param_groups] == [0.01, 5e-4, 5e-4]
    scale_lr(opt, 1.0)
    assert [g["lr"] for g in opt.param_groups] == [0.02, 1e-3, 1e-3]
