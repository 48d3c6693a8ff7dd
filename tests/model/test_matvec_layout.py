"""Decoding lays weights out for matrix-vector products, and gives every weight back."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from tinylm.model import GPT, decode_layout
from tinylm.model.decode_layout import matvec_layout

#: The threshold as shipped, before the fixture below lowers it.
SHIPPED_MIN_STEPS = decode_layout.MIN_ONE_TOKEN_STEPS


@pytest.fixture(autouse=True)
def _layout_for_short_generations(monkeypatch):
    """The tiny models here decode a few tokens each: take the layout for every one."""
    monkeypatch.setattr(decode_layout, "MIN_ONE_TOKEN_STEPS", 1)


@pytest.fixture
def model(tiny_config) -> GPT:
    """Vocabulary wider than the model, so the tied head widens too (11 tokens, 8 wide)."""
    return GPT(tiny_config(n_embd=8, n_head=2, init_std=0.5, tie_embeddings=True)).eval()


def linear_weights(model: GPT) -> dict[str, nn.Parameter]:
    return {
        name: module.weight
        for name, module in model.named_modules()
        if isinstance(module, nn.Linear)
    }


def snapshot(model: GPT) -> dict[str, tuple[int, torch.Tensor]]:
    """Each parameter's storage address and a copy of its values."""
    return {name: (p.data_ptr(), p.detach().clone()) for name, p in model.named_parameters()}


def assert_given_back(model: GPT, before: dict[str, tuple[int, torch.Tensor]]) -> None:
    for name, param in model.named_parameters():
        address, values = before[name]
        assert param.data_ptr() == address, name  # its own tensor, not a copy of it
        assert param.is_contiguous(), name
        assert torch.equal(param, values), name


def past_the_prompt(tokens) -> list[int]:
    """The first two tokens: the prompt's step, then the first one-token step."""
    return [next(tokens), next(tokens)]


def test_widening_weights_are_column_major_while_decoding(model):
    before = snapshot(model)
    values = {name: weight.detach().clone() for name, weight in linear_weights(model).items()}
    tokens = model.generate([1, 2, 3], 4, temperature=0)
    past_the_prompt(tokens)
    widening = 0
    for name, weight in linear_weights(model).items():
        out_features, in_features = weight.shape
        assert torch.equal(weight, values[name]), name  # same values throughout
        if out_features > in_features:
            widening += 1
            assert weight.stride() == (1, out_features), name
        elif ".w_o" in name:
            assert weight.is_contiguous(), name
    # per layer the feed-forward's expansion, plus the head
    assert widening == model.config.n_layer + 1
    assert model.lm_head.weight is model.tok_emb.weight  # still tied
    list(tokens)
    assert_given_back(model, before)


@pytest.mark.parametrize("n_kv_head", [None, 1])
@pytest.mark.parametrize("bias", [True, False])
def test_query_key_value_weights_are_rows_of_one_matrix_while_decoding(
    tiny_config, n_kv_head, bias
):
    model = GPT(tiny_config(init_std=0.5, n_kv_head=n_kv_head, bias=bias)).eval()
    before = snapshot(model)
    alone = list(model.generate([1, 2, 3], 6, temperature=0, use_cache=False))
    tokens = model.generate([1, 2, 3], 6, temperature=0)
    decoded = past_the_prompt(tokens)
    for block in model.blocks:
        attention = block.attn
        weight, joined_bias = attention.joined_qkv
        projections = (attention.w_q, attention.w_k, attention.w_v)
        assert weight.stride() == (1, weight.shape[0])  # column-major
        assert torch.equal(weight, torch.cat([p.weight for p in projections]))
        assert (
            weight.untyped_storage().data_ptr() == attention.w_q.weight.untyped_storage().data_ptr()
        )
        if bias:
            assert torch.equal(joined_bias, torch.cat([p.bias for p in projections]))
        else:
            assert joined_bias is None
        x = torch.randn(2, 1, model.config.n_embd)
        calls: list[int] = []
        hook = attention.w_q.register_forward_hook(lambda *_, calls=calls: calls.append(1))
        with torch.no_grad():  # the joined product serves forwards without gradients
            outputs = attention.project_qkv(x)
        assert calls == []  # one product with the joined matrix, not W_q's own
        attention.project_qkv(x)  # with gradients: the parameters' own products
        assert calls == [1]
        hook.remove()
        for joined, separate in zip(outputs, projections, strict=True):
            torch.testing.assert_close(joined, separate(x), atol=1e-6, rtol=1e-6)
    decoded += list(tokens)
    assert decoded == alone
    assert all(block.attn.joined_qkv is None for block in model.blocks)
    assert_given_back(model, before)


def test_weights_come_back_when_the_iterator_is_closed_early(model):
    before = snapshot(model)
    tokens = model.generate([1, 2], 6, temperature=0)
    past_the_prompt(tokens)
    tokens.close()
    assert_given_back(model, before)


def test_weights_come_back_when_a_stop_token_ends_decoding(model):
    before = snapshot(model)
    first = next(model.generate([1, 2], 1, temperature=0))
    assert list(model.generate([1, 2], 6, temperature=0, stop_ids=[first])) == []
    assert_given_back(model, before)


def test_a_write_between_two_tokens_is_kept(model):
    """A training step between two tokens must not be undone when decoding ends."""
    expand = model.blocks[0].ffn.w1.weight
    expected = expand.detach() + 0.25
    tokens = model.generate([1, 2], 4, temperature=0)
    past_the_prompt(tokens)
    with torch.no_grad():
        expand.add_(0.25)
    list(tokens)
    assert expand.is_contiguous()
    assert torch.equal(expand, expected)


def test_the_model_still_trains_between_two_tokens(model):
    tokens = model.generate([1, 2], 4, temperature=0)
    past_the_prompt(tokens)
    assert model.blocks[0].attn.joined_qkv is not None
    _, loss = model(torch.tensor([[1, 2, 3]]), targets=torch.tensor([[2, 3, 4]]))
    loss.backward()
    for name, param in model.named_parameters():  # every weight gets its gradient
        assert param.grad is not None, name
        assert torch.isfinite(param.grad).all(), name
    grads = {name: param.grad.clone() for name, param in model.named_parameters()}
    list(tokens)
    model.zero_grad()
    _, loss = model(torch.tensor([[1, 2, 3]]), targets=torch.tensor([[2, 3, 4]]))
    loss.backward()
    for name, param in model.named_parameters():  # the same gradients as without a layout
        torch.testing.assert_close(param.grad, grads[name], atol=1e-6, rtol=1e-5, msg=name)


def test_greedy_output_matches_the_row_major_layout(model):
    """The layout changes where values sit, not what is computed (beyond rounding)."""
    with_layout = list(model.generate([1, 2, 3], 9, temperature=0))
    without = list(model.generate([1, 2, 3], 9, temperature=0, use_cache=False))
    assert with_layout == without


def test_nothing_moves_without_a_cache_or_off_the_float32_cpu(model):
    before = snapshot(model)
    tokens = model.generate([1, 2], 3, temperature=0, use_cache=False)
    next(tokens)
    for weight in linear_weights(model).values():
        assert weight.is_contiguous()
    list(tokens)
    model.double()
    with matvec_layout(model):
        for weight in linear_weights(model).values():
            assert weight.is_contiguous()
    model.float()
    assert all(torch.equal(p, before[n][1]) for n, p in model.named_parameters())


def test_interleaved_generations_give_the_weights_back(model):
    """The server runs requests token by token, in turns: the first to start restores."""
    before = snapshot(model)
    alone = [list(model.generate(p, 5, temperature=0)) for p in ([1, 2], [3])]
    first, second = model.generate([1, 2], 5, temperature=0), model.generate([3], 5, temperature=0)
    outputs: list[list[int]] = [[], []]
    for _ in range(5):
        outputs[0].append(next(first))
        outputs[1].append(next(second))
    assert list(first) == []  # the first ends, and gives the weights back ...
    assert_given_back(model, before)
    assert list(second) == []  # ... and the second, which moved nothing, leaves them so
    assert_given_back(model, before)
    assert outputs == alone


def test_the_prompt_is_read_with_the_weights_as_they_are(model):
    """The prompt's step is a matrix-matrix product: the layout starts after it."""
    tokens = model.generate([1, 2, 3, 4, 5], 4, temperature=0)
    next(tokens)
    assert all(p.is_contiguous() for p in model.parameters())
    assert all(block.attn.joined_qkv is None for block in model.blocks)
    next(tokens)
    assert not model.lm_head.weight.is_contiguous()
    tokens.close()


def test_a_sliding_window_gives_the_weights_back_at_once(model):
    """Once the window slides, every step re-reads it all: row-major again."""
    before = snapshot(model)
    block_size = model.config.block_size
    prompt = [1, 2, 3] * 3  # 9 of 12: the window slides for the fifth new token
    alone = list(model.generate(prompt, 8, temperature=0, use_cache=False))
    tokens = model.generate(prompt, 8, temperature=0)
    decoded = past_the_prompt(tokens)
    assert not model.lm_head.weight.is_contiguous()
    while len(prompt) + len(decoded) <= block_size:
        decoded.append(next(tokens))
    decoded.append(next(tokens))  # the first step over a window that slid
    assert len(decoded) == 5
    assert_given_back(model, before)  # during generation, not only after
    decoded += list(tokens)
    assert decoded == alone
    assert_given_back(model, before)


@pytest.mark.parametrize(
    ("prompt_length", "new_tokens", "moved"),
    [
        (2, SHIPPED_MIN_STEPS + 1, True),  # exactly enough one-token steps
        (2, SHIPPED_MIN_STEPS, False),  # one too few: the copies would not pay
        (64 - SHIPPED_MIN_STEPS + 1, 100, False),  # the window slides too soon
        (64 - SHIPPED_MIN_STEPS, 100, True),
    ],
)
def test_the_layout_is_taken_only_when_enough_one_token_steps_lie_ahead(
    monkeypatch, tiny_config, prompt_length, new_tokens, moved
):
    monkeypatch.setattr(decode_layout, "MIN_ONE_TOKEN_STEPS", SHIPPED_MIN_STEPS)
    model = GPT(tiny_config(block_size=64, init_std=0.5)).eval()
    tokens = model.generate([1] * prompt_length, new_tokens, temperature=0)
    past_the_prompt(tokens)
    assert (model.blocks[0].attn.joined_qkv is not None) is moved
    assert model.blocks[0].ffn.w1.weight.is_contiguous() is not moved
    tokens.close()
