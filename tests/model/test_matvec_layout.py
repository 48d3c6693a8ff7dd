"""One-token steps compute with weights laid out for matrix-vector products; between steps,
and after, every weight is the model's own again."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from tinylm.model import GPT, decode_layout
from tinylm.model.decode_layout import MatvecLayout

#: The threshold as shipped, before the fixture below lowers it.
SHIPPED_MIN_STEPS = decode_layout.MIN_ONE_TOKEN_STEPS


@pytest.fixture(autouse=True)
def _layout_for_short_generations(monkeypatch):
    """The tiny models here decode a few tokens each: take the layout for every one, and
    copy in pieces of 3 rows, so that every weight's copy has several pieces."""
    monkeypatch.setattr(decode_layout, "MIN_ONE_TOKEN_STEPS", 1)
    monkeypatch.setattr(decode_layout, "ROWS_PER_COPY", 3)


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


def watch_steps(model: GPT) -> list[dict]:
    """What each forward of the model computes with, recorded as its head runs."""
    seen: list[dict] = []

    def record(module, args) -> None:
        seen.append(
            {
                "strides": {name: w.stride() for name, w in linear_weights(model).items()},
                "values": {name: w.detach().clone() for name, w in linear_weights(model).items()},
                "joined": [block.attn.joined_qkv for block in model.blocks],
                "head": model.lm_head.weight.data_ptr(),
            }
        )

    model.lm_head.register_forward_pre_hook(record)
    return seen


def column_major(stride: tuple[int, ...], shape: torch.Size) -> bool:
    return stride == (1, shape[0])


def test_one_token_steps_compute_with_column_major_widening_weights(model):
    before = snapshot(model)
    values = {name: weight.detach().clone() for name, weight in linear_weights(model).items()}
    seen = watch_steps(model)
    assert len(list(model.generate([1, 2, 3], 4, temperature=0))) == 4
    prompt_step, *one_token_steps = seen
    # the prompt's step is a matrix-matrix product: the weights as they are
    assert all(prompt_step["strides"][name] == values[name].stride() for name in values)
    assert all(joined is None for joined in prompt_step["joined"])
    assert len(one_token_steps) == 3
    for step in one_token_steps:
        widening = 0
        for name, stride in step["strides"].items():
            assert torch.equal(step["values"][name], values[name]), name  # same values
            shape = values[name].shape
            if shape[0] > shape[1]:
                widening += 1
                assert column_major(stride, shape), name
            elif ".w_o" in name:
                assert stride == values[name].stride(), name
        # per layer the feed-forward's expansion, plus the head
        assert widening == model.config.n_layer + 1
    assert model.lm_head.weight is model.tok_emb.weight  # still tied
    assert_given_back(model, before)


@pytest.mark.parametrize("n_kv_head", [None, 1])
@pytest.mark.parametrize("bias", [True, False])
def test_query_key_value_weights_are_rows_of_one_matrix_in_one_token_steps(
    tiny_config, n_kv_head, bias
):
    model = GPT(tiny_config(init_std=0.5, n_kv_head=n_kv_head, bias=bias)).eval()
    before = snapshot(model)
    alone = list(model.generate([1, 2, 3], 6, temperature=0, use_cache=False))
    seen = watch_steps(model)
    assert list(model.generate([1, 2, 3], 6, temperature=0)) == alone
    for step in seen[1:]:
        for attention, (weight, joined_bias) in zip(
            (block.attn for block in model.blocks), step["joined"], strict=True
        ):
            projections = (attention.w_q, attention.w_k, attention.w_v)
            assert column_major(weight.stride(), weight.shape)
            assert torch.equal(weight, torch.cat([p.weight for p in projections]))
            if bias:
                assert torch.equal(joined_bias, torch.cat([p.bias for p in projections]))
            else:
                assert joined_bias is None
    assert all(block.attn.joined_qkv is None for block in model.blocks)
    assert_given_back(model, before)


@pytest.mark.parametrize("bias", [True, False])
def test_the_joined_product_serves_forwards_without_gradients_only(tiny_config, bias):
    model = GPT(tiny_config(init_std=0.5, n_kv_head=2, bias=bias)).eval()
    x = torch.randn(2, 1, model.config.n_embd)
    with MatvecLayout(model).applied():
        for block in model.blocks:
            attention = block.attn
            weight, _ = attention.joined_qkv
            # the parameters are views into the joined matrix, not copies beside it
            assert weight.untyped_storage().data_ptr() == (
                attention.w_q.weight.untyped_storage().data_ptr()
            )
            calls: list[int] = []
            hook = attention.w_q.register_forward_hook(lambda *_, calls=calls: calls.append(1))
            with torch.no_grad():
                joined = attention.project_qkv(x)
            assert calls == []  # one product with the joined matrix, not W_q's own
            separate = attention.project_qkv(x)  # with gradients: the parameters' own
            assert calls == [1]
            hook.remove()
            for a, b in zip(joined, separate, strict=True):
                torch.testing.assert_close(a, b, atol=1e-6, rtol=1e-6)
    assert all(block.attn.joined_qkv is None for block in model.blocks)


def test_between_two_tokens_the_model_computes_as_with_no_generation_in_flight(tiny_config):
    """The inspector server answers other requests between the tokens of a generation:
    they must get, bit for bit, what they get when nothing is generating."""
    model = GPT(tiny_config(n_embd=64, n_head=4, vocab_size=300, block_size=48)).eval()
    before = snapshot(model)
    x = torch.randint(0, 300, (1, 20))
    with torch.no_grad():
        expected, _ = model(x)
    tokens = model.generate([1, 2, 3], 10, temperature=0)
    past_the_prompt(tokens)
    assert_given_back(model, before)
    assert all(block.attn.joined_qkv is None for block in model.blocks)
    with torch.no_grad():
        between, _ = model(x)
    assert torch.equal(between, expected)
    next(tokens)
    with torch.inference_mode():
        between, _ = model(x)
    assert torch.equal(between, expected)
    tokens.close()


def test_weights_come_back_and_copies_go_when_the_iterator_is_closed_early(model):
    before = snapshot(model)
    tokens = model.generate([1, 2], 6, temperature=0)
    past_the_prompt(tokens)
    assert id(model) in decode_layout._shared
    tokens.close()
    assert_given_back(model, before)
    assert id(model) not in decode_layout._shared  # the copies are freed with it


def test_weights_come_back_when_a_stop_token_ends_decoding(model):
    before = snapshot(model)
    first = next(model.generate([1, 2], 1, temperature=0))
    assert list(model.generate([1, 2], 6, temperature=0, stop_ids=[first])) == []
    assert_given_back(model, before)
    assert id(model) not in decode_layout._shared


def test_a_write_between_two_tokens_reaches_the_next_step_and_is_kept(model):
    """A training step between two tokens: the next step computes with the new weight,
    and it is not undone when decoding ends."""
    expand = model.blocks[0].ffn.w1.weight
    expected = expand.detach() + 0.25
    seen = watch_steps(model)
    tokens = model.generate([1, 2], 4, temperature=0)
    past_the_prompt(tokens)
    with torch.no_grad():
        expand.add_(0.25)
    next(tokens)
    assert torch.equal(seen[-1]["values"]["blocks.0.ffn.w1"], expected)
    assert column_major(seen[-1]["strides"]["blocks.0.ffn.w1"], expand.shape)
    list(tokens)
    assert expand.is_contiguous()
    assert torch.equal(expand, expected)


def test_a_write_during_a_step_is_kept(model):
    expand = model.blocks[0].ffn.w1.weight
    expected = expand.detach() + 0.5

    def write_once(module, args) -> None:
        if not expand.is_contiguous():  # in a one-token step, on the copy
            with torch.no_grad():
                expand.add_(0.5)
            handle.remove()

    handle = model.lm_head.register_forward_pre_hook(write_once)
    list(model.generate([1, 2], 4, temperature=0))
    assert expand.is_contiguous()
    assert torch.equal(expand, expected)


def test_the_model_still_trains_between_two_tokens(model):
    tokens = model.generate([1, 2], 4, temperature=0)
    past_the_prompt(tokens)
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
        assert torch.equal(param.grad, grads[name]), name


def test_greedy_output_matches_the_row_major_layout(model):
    """The layout changes where values sit, not what is computed (beyond rounding)."""
    with_layout = list(model.generate([1, 2, 3], 9, temperature=0))
    without = list(model.generate([1, 2, 3], 9, temperature=0, use_cache=False))
    assert with_layout == without


def test_nothing_moves_without_a_cache_or_off_the_float32_cpu(model):
    before = snapshot(model)
    seen = watch_steps(model)
    list(model.generate([1, 2], 3, temperature=0, use_cache=False))
    assert len(seen) == 3
    for step in seen:
        for name, stride in step["strides"].items():
            assert stride == (step["values"][name].shape[1], 1), name  # row-major
        assert all(joined is None for joined in step["joined"])
    model.double()
    with MatvecLayout(model).applied():
        for weight in linear_weights(model).values():
            assert weight.is_contiguous()
        assert all(block.attn.joined_qkv is None for block in model.blocks)
    model.float()
    assert all(torch.equal(p, before[n][1]) for n, p in model.named_parameters())


def test_interleaved_generations_share_one_set_of_copies(model):
    """The server runs requests token by token, in turns: one layout serves them all."""
    before = snapshot(model)
    alone = [list(model.generate(p, 5, temperature=0)) for p in ([1, 2], [3])]
    seen = watch_steps(model)
    first, second = model.generate([1, 2], 5, temperature=0), model.generate([3], 5, temperature=0)
    outputs: list[list[int]] = [[], []]
    for _ in range(5):
        outputs[0].append(next(first))
        outputs[1].append(next(second))
        assert_given_back(model, before)  # between turns, the model's own weights
    assert outputs == alone
    one_token_steps = seen[2:]  # after both prompts' steps
    assert len(one_token_steps) == 8
    assert len({step["head"] for step in one_token_steps}) == 1  # one copy of the head
    assert one_token_steps[0]["head"] != before["tok_emb.weight"][0]
    first.close()
    assert id(model) in decode_layout._shared  # the second still holds it
    second.close()
    assert id(model) not in decode_layout._shared
    assert_given_back(model, before)


def test_a_sliding_window_computes_with_the_weights_as_they_are(model):
    """Once the window slides, every step re-reads it all: row-major again."""
    before = snapshot(model)
    block_size = model.config.block_size
    prompt = [1, 2, 3] * 3  # 9 of 12: the window slides for the fifth new token
    alone = list(model.generate(prompt, 8, temperature=0, use_cache=False))
    seen = watch_steps(model)
    tokens = model.generate(prompt, 8, temperature=0)
    decoded = [next(tokens) for _ in range(block_size - len(prompt) + 1)]
    assert id(model) in decode_layout._shared
    decoded.append(next(tokens))  # the first step over a window that slid
    assert len(decoded) == 5
    assert id(model) not in decode_layout._shared  # dropped at once, not at the end
    assert [column_major(s["strides"]["lm_head"], (11, 8)) for s in seen] == [False] + [
        True
    ] * 3 + [False]
    decoded += list(tokens)
    assert decoded == alone
    assert all(not column_major(s["strides"]["lm_head"], (11, 8)) for s in seen[5:])
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
    seen = watch_steps(model)
    tokens = model.generate([1] * prompt_length, new_tokens, temperature=0)
    past_the_prompt(tokens)
    assert (seen[1]["joined"][0] is not None) is moved
    w1 = model.blocks[0].ffn.w1.weight
    assert column_major(seen[1]["strides"]["blocks.0.ffn.w1"], w1.shape) is moved
    tokens.close()


@pytest.mark.parametrize("rows", [1, 3, 7, 10, 11, 128])
@pytest.mark.parametrize("to_column_major", [True, False])
def test_a_copy_by_rows_equals_one_copy(monkeypatch, rows, to_column_major):
    monkeypatch.setattr(decode_layout, "ROWS_PER_COPY", rows)
    row_major = torch.randn(10, 7)
    column_major = torch.randn(7, 10).t()
    source, into = (row_major, column_major) if to_column_major else (column_major, row_major)
    expected = source.clone()
    strides = into.stride()
    decode_layout.copy_by_rows(into, source)
    assert torch.equal(into, expected)
    assert into.stride() == strides
