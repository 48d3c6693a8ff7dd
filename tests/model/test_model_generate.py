"""Generation: the KV cache against full recomputation, sampling controls, the window."""

from __future__ import annotations

import types
import warnings

import pytest
import torch

from tinylm.errors import TinylmError
from tinylm.model import GPT
from tinylm.model.config import POSITIONS
from tinylm.model.generate import filter_top_k, filter_top_p, sample_next_token

LAYOUTS = [None, 2, 1]  # MHA, GQA, MQA


def greedy_reference(model: GPT, prompt: list[int], n: int) -> list[int]:
    """Greedy decoding the slow, obvious way: full forward over the last block_size tokens."""
    tokens = list(prompt)
    out = []
    with torch.no_grad():
        for _ in range(n):
            window = tokens[-model.config.block_size :]
            logits, _ = model(torch.tensor([window]))
            token = int(logits[0, -1].argmax())
            tokens.append(token)
            out.append(token)
    return out


@pytest.fixture
def lively(tiny_config):
    """A model with large random weights, so greedy output is not one token repeated."""

    def make(**overrides) -> GPT:
        return GPT(tiny_config(init_std=0.5, **overrides)).eval()

    return make


@pytest.mark.parametrize("position", POSITIONS)
@pytest.mark.parametrize("n_kv_head", LAYOUTS)
@pytest.mark.parametrize("kernels", ["explicit", "fused"])
def test_cached_incremental_logits_equal_full_forward(lively, position, n_kv_head, kernels):
    model = lively(position=position, n_kv_head=n_kv_head, kernels=kernels)
    idx = torch.randint(0, 11, (2, 12))
    full, _ = model(idx)
    cache = model.new_kv_cache(batch_size=2)
    pieces = []
    for start, stop in [(0, 5), (5, 6), (6, 9), (9, 10), (10, 12)]:  # prefill, then chunks
        logits, _ = model(idx[:, start:stop], kv_cache=cache)
        pieces.append(logits)
        assert cache.length == stop
    torch.testing.assert_close(torch.cat(pieces, dim=1), full, atol=1e-5, rtol=1e-5)


def test_cache_is_sized_for_kv_heads(tiny_config):
    model = GPT(tiny_config(n_kv_head=1))
    cache = model.new_kv_cache(batch_size=3)
    assert cache.keys.shape == (2, 3, 1, 12, 4)  # layers, batch, kv heads, block, head_dim
    assert cache.values.shape == cache.keys.shape


def test_cache_length_can_be_less_than_block_size_and_never_more(tiny_config):
    model = GPT(tiny_config())
    assert model.new_kv_cache(2, max_len=5).keys.shape[3] == 5
    assert model.new_kv_cache(2, max_len=1000).keys.shape[3] == 12  # block_size


@pytest.mark.parametrize("batch", [1, 3])
def test_generation_sets_aside_only_the_cache_it_needs(lively, monkeypatch, batch):
    # A long-context model (imported Llamas have 128K) asked for a short answer: the
    # cache is prompt + new tokens long, not block_size, and the tokens are unchanged.
    from tinylm.model.generate import generate_batch

    model = lively(position="rope", block_size=4096)
    lengths = []
    make_cache = GPT.new_kv_cache

    def spy(self, batch_size=1, max_len=None):
        cache = make_cache(self, batch_size, max_len)
        lengths.append(cache.max_len)
        return cache

    monkeypatch.setattr(GPT, "new_kv_cache", spy)
    prompts = [[3, 1, 4, 1, 5], [2, 7], [1, 8, 2]][:batch]
    if batch == 1:
        out = [list(model.generate(prompts[0], 6, temperature=0))]
    else:
        out = generate_batch(model, prompts, 6, temperature=0)
    assert lengths == [max(map(len, prompts)) + 6]
    assert out == [greedy_reference(model, prompt, 6) for prompt in prompts]


def test_cache_overflow_is_an_error(tiny_config):
    model = GPT(tiny_config())
    cache = model.new_kv_cache()
    model(torch.zeros(1, 10, dtype=torch.long), kv_cache=cache)
    with pytest.raises(TinylmError, match="exceeds block_size 12"):
        model(torch.zeros(1, 3, dtype=torch.long), kv_cache=cache)


@pytest.mark.parametrize("position", POSITIONS)
@pytest.mark.parametrize("n_kv_head", LAYOUTS)
def test_greedy_with_and_without_cache_identical(lively, position, n_kv_head):
    model = lively(position=position, n_kv_head=n_kv_head)
    prompt = [3, 1, 4, 1, 5]
    n = 20  # 5 + 20 > block_size 12: the window slides past the cache's end
    cached = list(model.generate(prompt, n, temperature=0, use_cache=True))
    uncached = list(model.generate(prompt, n, temperature=0, use_cache=False))
    assert cached == uncached == greedy_reference(model, prompt, n)


def test_generate_is_a_lazy_iterator_of_ints(lively):
    model = lively()
    it = model.generate([1, 2], 3, temperature=0)
    assert isinstance(it, types.GeneratorType)
    first = next(it)
    assert isinstance(first, int) and 0 <= first < 11
    assert len([first, *it]) == 3
    assert list(model.generate([1, 2], 0)) == []


def test_prompt_tensor_is_accepted(lively):
    model = lively()
    from_list = list(model.generate([1, 2, 3], 4, temperature=0))
    assert list(model.generate(torch.tensor([1, 2, 3]), 4, temperature=0)) == from_list


def test_temperature_zero_is_greedy(lively):
    model = lively(position="rope")
    prompt = [2, 7]
    assert list(model.generate(prompt, 8, temperature=0)) == greedy_reference(model, prompt, 8)
    assert list(model.generate(prompt, 8, top_k=1, seed=0)) == greedy_reference(model, prompt, 8)


def test_seed_makes_sampling_reproducible_without_touching_global_rng(lively):
    model = lively()
    state = torch.get_rng_state()
    a = list(model.generate([1], 30, temperature=1.5, seed=123))
    b = list(model.generate([1], 30, temperature=1.5, seed=123))
    c = list(model.generate([1], 30, temperature=1.5, seed=124))
    assert torch.equal(torch.get_rng_state(), state)
    assert a == b
    assert a != c
    # With use_cache=False the same seed gives the same tokens (same logits, same draws).
    assert list(model.generate([1], 30, temperature=1.5, seed=123, use_cache=False)) == a


def test_unseeded_sampling_follows_torch_manual_seed(lively):
    model = lively()
    torch.manual_seed(5)
    a = list(model.generate([1], 15, temperature=2.0))
    torch.manual_seed(5)
    assert list(model.generate([1], 15, temperature=2.0)) == a


def test_top_k_restricts_support():
    logits = torch.tensor([1.0, 3.0, 0.5, 2.5, -1.0, 2.0])
    filtered = filter_top_k(logits, 3)
    assert torch.isfinite(filtered).nonzero().flatten().tolist() == [1, 3, 5]
    gen = torch.Generator().manual_seed(0)
    seen = {sample_next_token(logits, 5.0, top_k=3, generator=gen) for _ in range(300)}
    assert seen == {1, 3, 5}  # every allowed token appears, nothing else does
    assert torch.equal(filter_top_k(logits, 100), logits)  # k above vocab: no-op


def test_top_p_restricts_support():
    probs = torch.tensor([0.05, 0.5, 0.15, 0.3])
    logits = probs.log()
    kept = lambda p: torch.isfinite(filter_top_p(logits, p)).nonzero().flatten().tolist()  # noqa: E731
    assert kept(0.4) == [1]  # 0.5 alone reaches 0.4
    assert kept(0.7) == [1, 3]  # 0.5 + 0.3
    assert kept(0.9) == [1, 2, 3]  # 0.5 + 0.3 + 0.15
    assert kept(1.0) == [0, 1, 2, 3]
    gen = torch.Generator().manual_seed(0)
    seen = {sample_next_token(logits, 1.0, top_p=0.7, generator=gen) for _ in range(300)}
    assert seen == {1, 3}


def test_top_p_tiny_is_greedy(lively):
    model = lively()
    assert list(model.generate([4], 6, top_p=1e-6, seed=1)) == greedy_reference(model, [4], 6)


def test_model_level_top_k_stays_in_support(lively):
    """Every sampled token is among the top-k of the logits at its step."""
    model = lively()
    prompt = [1, 2]
    out = list(model.generate(prompt, 9, temperature=3.0, top_k=2, seed=7))
    tokens = prompt + out
    with torch.no_grad():
        for i, token in enumerate(out):
            context = tokens[: len(prompt) + i][-12:]
            logits = model(torch.tensor([context]))[0][0, -1]
            assert token in logits.topk(2).indices.tolist()


def test_stop_ids_end_generation_without_yielding_the_stop(lively):
    model = lively()
    full = list(model.generate([1, 2], 10, temperature=0))
    stop = full[3]
    expected = full[: full.index(stop)]
    assert list(model.generate([1, 2], 10, temperature=0, stop_ids=[stop])) == expected


def test_prompt_longer_than_context_is_cropped_with_a_warning(lively):
    model = lively()
    prompt = list(range(11)) * 2  # 22 tokens, block_size 12
    with pytest.warns(UserWarning, match="only the last 12 are used"):
        out = list(model.generate(prompt, 5, temperature=0))
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no warning for a prompt that fits
        assert list(model.generate(prompt[-12:], 5, temperature=0)) == out


def test_generate_restores_training_mode_and_disables_dropout(tiny_config):
    model = GPT(tiny_config(dropout=0.5, init_std=0.5))
    model.train()
    a = list(model.generate([1, 2], 8, temperature=0))
    assert model.training
    b = list(model.generate([1, 2], 8, temperature=0, use_cache=False))
    assert a == b == greedy_reference(model.eval(), [1, 2], 8)


def test_no_grad_does_not_leak_out_of_the_iterator(lively):
    model = lively()
    it = model.generate([1], 2, temperature=0)
    next(it)
    assert torch.is_grad_enabled()  # no_grad does not leak out of the iterator


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"prompt_ids": []}, "prompt_ids is empty"),
        ({"prompt_ids": [1, 11]}, "prompt token id 11 is outside the vocabulary"),
        ({"prompt_ids": torch.zeros(1, 3, dtype=torch.long)}, "must be 1-D"),
        ({"temperature": -0.5}, "temperature must be >= 0"),
        ({"top_k": 0}, "top_k must be a positive integer"),
        ({"top_p": 0.0}, "top_p must be in (0, 1]"),
        ({"top_p": 1.5}, "top_p must be in (0, 1]"),
        ({"max_new_tokens": -1}, "max_new_tokens must be >= 0"),
        # issue 13, defect 8: nan and inf were a traceback and uniform noise; a seed
        # too big for a torch.Generator a ValueError traceback
        ({"temperature": float("nan")}, "temperature must be >= 0 and finite"),
        ({"temperature": float("inf")}, "temperature must be >= 0 and finite"),
        ({"seed": 999999999999999999999999}, "seed must be an integer from 0 to 2**64 - 1"),
        ({"seed": -1}, "seed must be an integer from 0 to 2**64 - 1"),
        ({"top_p": float("nan")}, "top_p must be in (0, 1]"),
    ],
)
def test_bad_generation_arguments_fail_at_call_time(lively, kwargs, message):
    model = lively()
    args = {"prompt_ids": [1], "max_new_tokens": 3, **kwargs}
    with pytest.raises(TinylmError) as excinfo:
        model.generate(**args)  # raised before any next()
    assert message in str(excinfo.value)


def test_cache_works_under_bfloat16_autocast(lively):
    """Under autocast the new keys are bfloat16 while the cache is float32."""
    model = lively()
    idx = torch.randint(0, 11, (1, 8))
    with torch.autocast("cpu", dtype=torch.bfloat16):
        full, _ = model(idx)
        cache = model.new_kv_cache()
        first, _ = model(idx[:, :5], kv_cache=cache)
        rest, _ = model(idx[:, 5:], kv_cache=cache)
        tokens = list(model.generate([1, 2], 4, temperature=0))
    torch.testing.assert_close(
        torch.cat([first, rest], 1).float(), full.float(), atol=0.1, rtol=0.1
    )
    assert len(tokens) == 4
