"""tinylm's C kernels for int8 and bfloat16 weights, against float64 products in torch.

The shapes are chosen to reach every branch of ``native_kernels.c``: widths that are
not a multiple of the vector steps (8 and 16), output counts that are not a multiple
of the row blocks (2 and 4), batches below and above the four-row tile, one to three
threads, and both builds (AVX2 vectors and plain C).
"""

from __future__ import annotations

import pytest
import torch

from tinylm.inference import native_kernels
from tinylm.inference.weight_formats import BFloat16Linear, Int8Linear, quantize_int8

SHAPES = [(1, 5, 3), (1, 67, 13), (2, 16, 4), (3, 100, 9), (4, 8, 2), (5, 771, 37), (9, 33, 7)]


@pytest.fixture
def fresh_status(monkeypatch, tmp_path):
    """Forget the loaded kernels, build into an empty folder, and restore afterwards."""
    monkeypatch.setattr(native_kernels, "_STATUS", None)
    monkeypatch.setenv("TINYLM_KERNEL_CACHE", str(tmp_path))
    monkeypatch.delenv("TINYLM_NATIVE", raising=False)
    return tmp_path


@pytest.fixture
def kernels():
    if native_kernels.find_compiler() is None:
        pytest.skip("no C compiler on this machine: the kernels cannot be built")
    status = native_kernels.kernel_status()
    assert status.available, status.reason
    return status


def _check_products(threads: int) -> None:
    generator = torch.Generator().manual_seed(threads)
    torch.set_num_threads(threads)
    for rows, width, outputs in SHAPES:
        x = torch.randn(rows, width, generator=generator) * 3
        weight = torch.randn(outputs, width, generator=generator)
        q, scale = quantize_int8(weight)
        got = native_kernels.int8_matmul(x, q, scale)
        want = (x.double() @ q.double().t()) * scale.double()
        torch.testing.assert_close(got.double(), want, rtol=1e-5, atol=1e-4)
        w16 = weight.to(torch.bfloat16)
        got = native_kernels.bfloat16_matmul(x, w16)
        torch.testing.assert_close(
            got.double(), x.double() @ w16.double().t(), rtol=1e-5, atol=1e-4
        )


@pytest.mark.parametrize("threads", [1, 2, 3])
def test_the_kernels_equal_float64_products(kernels, threads):
    _check_products(threads)


def test_the_plain_c_build_equals_float64_products_too(kernels, fresh_status, monkeypatch):
    monkeypatch.setattr(native_kernels, "FLAG_SETS", (("-O0",),))  # no vector units
    status = native_kernels.kernel_status()
    assert status.available and "plain C" in status.reason, status.reason
    _check_products(2)


def test_batched_leading_dimensions_and_a_non_contiguous_input(kernels):
    generator = torch.Generator().manual_seed(7)
    q, scale = quantize_int8(torch.randn(11, 24, generator=generator))
    x = torch.randn(2, 3, 48, generator=generator)[..., ::2]  # (2, 3, 24), strided
    got = native_kernels.int8_matmul(x, q, scale)
    assert got.shape == (2, 3, 11)
    want = (x.double() @ q.double().t()) * scale.double()
    torch.testing.assert_close(got.double(), want, rtol=1e-5, atol=1e-5)


def test_the_weight_formats_use_the_kernels_and_fall_back_to_the_same_numbers(kernels, monkeypatch):
    generator = torch.Generator().manual_seed(8)
    weight, bias = torch.randn(30, 40, generator=generator), torch.randn(30, generator=generator)
    x = torch.randn(4, 40, generator=generator)
    int8, bf16 = Int8Linear(weight, bias), BFloat16Linear(weight, bias)
    native_int8 = int8(x)
    assert torch.equal(native_int8, native_kernels.int8_matmul(x, int8.q, int8.scale) + bias)
    native_bf16 = bf16(x)
    monkeypatch.setattr(native_kernels, "_STATUS", native_kernels.KernelStatus(None, "off"))
    torch.testing.assert_close(int8(x), native_int8, rtol=1e-5, atol=1e-5)
    # torch's bfloat16 product also rounds x to bfloat16: close, not equal
    torch.testing.assert_close(bf16(x), native_bf16, rtol=2e-2, atol=5e-2)


def test_inputs_the_kernels_do_not_take_are_left_to_torch(kernels):
    q, scale = quantize_int8(torch.randn(5, 8))
    rows = native_kernels.MAX_ROWS
    assert native_kernels.int8_matmul(torch.randn(rows, 8), q, scale) is not None
    assert native_kernels.int8_matmul(torch.randn(rows + 1, 8), q, scale) is None  # BLAS wins
    assert native_kernels.int8_matmul(torch.randn(2, 8, dtype=torch.float64), q, scale) is None
    assert native_kernels.int8_matmul(torch.randn(2, 8, requires_grad=True), q, scale) is None
    x = torch.randn(2, 8)
    assert native_kernels.int8_matmul(x, q.float(), scale) is None  # not the stored types
    assert native_kernels.int8_matmul(x, q, scale.double()) is None
    assert native_kernels.int8_matmul(x, q, torch.randn(10)[::2]) is None  # strided scale
    assert native_kernels.bfloat16_matmul(x, q.float()) is None


def test_the_library_is_built_once(kernels, fresh_status):
    assert native_kernels.kernel_status().available
    (built,) = fresh_status.glob("*.so")
    first = built.stat().st_mtime_ns
    native_kernels._STATUS = None
    assert native_kernels.kernel_status().available
    assert built.stat().st_mtime_ns == first  # reused, not compiled again
    assert not list(fresh_status.glob("*.partial"))  # nothing half-written left behind


def test_a_damaged_library_in_the_cache_is_built_again(kernels, fresh_status):
    flags = native_kernels.FLAG_SETS[0]
    path = native_kernels.library_path(
        native_kernels.find_compiler(), flags, native_kernels.SOURCE.read_bytes()
    )
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"not a shared library")
    status = native_kernels.kernel_status()
    assert status.available, status.reason
    assert path.read_bytes()[:4] == b"\x7fELF" or path.stat().st_size > 1000


def test_without_a_compiler_the_formats_still_work(fresh_status, monkeypatch):
    monkeypatch.setenv("CC", str(fresh_status / "no-such-compiler"))
    status = native_kernels.kernel_status()
    assert not status.available and "no C compiler" in status.reason
    layer = Int8Linear(torch.randn(6, 10), None)
    x = torch.randn(1, 10)
    want = (x.double() @ layer.q.double().t()) * layer.scale.double()
    torch.testing.assert_close(layer(x).double(), want, rtol=1e-5, atol=1e-5)


def test_turned_off_by_the_environment(fresh_status, monkeypatch):
    monkeypatch.setenv("TINYLM_NATIVE", "0")
    assert native_kernels.kernel_status().reason == "turned off by TINYLM_NATIVE=0"
