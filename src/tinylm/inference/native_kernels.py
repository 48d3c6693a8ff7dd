"""Matrix products that read int8 and bfloat16 weights as they are stored, in C.

Decoding one token reads every weight once, so a weight format only pays off if
the product reads its bytes directly. torch has no such CPU product for float32
activations on every CPU: without one, ``Int8Linear`` widens its whole matrix to
float32 on every call, which reads and writes more bytes than float32 itself.
``native_kernels.c`` (next to this file) has the loops; this module compiles it
once per machine with the C compiler already there, loads it with ``ctypes`` and
checks it against torch before trusting it.

* **Where the library goes:** ``$TINYLM_KERNEL_CACHE``, else
  ``$XDG_CACHE_HOME/tinylm/kernels``, else ``~/.cache/tinylm/kernels``. Its name
  holds a hash of the source, the compiler, its flags and the CPU, so an edited
  source or another machine sharing the folder compiles its own.
* **When there is no kernel** (no compiler, a failed build, a wrong result, a tensor
  not float32 on the CPU), the formats fall back to torch's products: the same
  numbers up to rounding, more slowly. ``TINYLM_NATIVE=0`` turns the kernels off,
  which is how ``bench/bench_generate.py`` measures what they bring.
"""

from __future__ import annotations

import ctypes
import hashlib
import os
import platform
import shutil
import subprocess
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import Tensor

SOURCE = Path(__file__).with_name("native_kernels.c")

#: Tried in order; the first set the compiler accepts is used. ``-march=native``
#: lets it use the CPU's vector units (AVX2 and FMA on x86); OpenMP splits the rows
#: over torch's threads.
FLAG_SETS = (
    ("-O3", "-march=native", "-fopenmp"),
    ("-O3", "-march=native"),
    ("-O3",),
)


#: Up to this many rows of ``x`` the kernels beat widening the weight and calling torch's
#: BLAS; above it (a prefill, a teacher-forced evaluation) they lose, since their sums are
#: plain multiply-adds and BLAS blocks for its caches. Measured on GPT-2 small's
#: (3072, 768) at 1 and 2 threads: int8 at 64 rows 12.6 ms against 13.6 ms widened, at
#: 256 rows 49.7 ms against 37.7 ms.
MAX_ROWS = 64


@dataclass(frozen=True)
class KernelStatus:
    """Whether the kernels are in use, and why not if they are not."""

    library: ctypes.CDLL | None
    reason: str  # what was built ("AVX2, OpenMP") or why nothing was

    @property
    def available(self) -> bool:
        return self.library is not None


_STATUS: KernelStatus | None = None


def kernel_status() -> KernelStatus:
    """Build (or find) and load the kernels on first use; later calls reuse the answer."""
    global _STATUS
    if _STATUS is None:
        _STATUS = _load()
    return _STATUS


def int8_matmul(x: Tensor, q: Tensor, scale: Tensor) -> Tensor | None:
    """``x (q * scale)^T`` for ``x`` ``(..., in)``, or ``None`` where the kernel cannot run."""
    if q.dtype is not torch.int8 or scale.dtype is not torch.float32 or not scale.is_contiguous():
        return None
    return _matmul("tinylm_int8_matmul", x, q, scale)


def bfloat16_matmul(x: Tensor, weight: Tensor) -> Tensor | None:
    """``x W^T`` with ``W`` bfloat16 widened exactly, or ``None`` where the kernel cannot run."""
    if weight.dtype is not torch.bfloat16:
        return None
    return _matmul("tinylm_bf16_matmul", x, weight, None)


def _matmul(name: str, x: Tensor, weight: Tensor, scale: Tensor | None) -> Tensor | None:
    # Called for every product of every decoding step, so each check is the cheapest
    # form of itself: a small layer's product takes only a few microseconds.
    library = (_STATUS or kernel_status()).library
    if (
        library is None
        or x.dtype is not torch.float32
        or not (x.is_cpu and weight.is_cpu)
        or x.requires_grad
        or not weight.is_contiguous()
    ):
        return None
    flat = x if x.dim() == 2 else x.reshape(-1, x.shape[-1])
    if flat.shape[0] > MAX_ROWS:  # a long prefill: BLAS on the widened matrix is faster
        return None
    if not flat.is_contiguous():
        flat = flat.contiguous()
    out = torch.empty(flat.shape[0], weight.shape[0], dtype=torch.float32)
    call_kernel(getattr(library, name), flat, weight, scale, out)
    return out if x.dim() == 2 else out.view(*x.shape[:-1], weight.shape[0])


def call_kernel(
    function: Callable[..., None], x: Tensor, weight: Tensor, scale: Tensor | None, out: Tensor
) -> None:
    """``out = x W^T`` (times ``scale``) by ``function``, on torch's intra-op threads.

    A small step of its own so a profiler can wrap it (``bench/bench_generate.py``
    does): torch's profiler does not see inside a C call, and wrapping every call
    in ``record_function`` would cost more than a small product itself.
    """
    function(
        x.data_ptr(),
        x.shape[0],
        x.shape[1],
        weight.data_ptr(),
        None if scale is None else scale.data_ptr(),
        weight.shape[0],
        out.data_ptr(),
        torch.get_num_threads(),
    )


# -- building and loading ---------------------------------------------------------------


def _load() -> KernelStatus:
    if os.environ.get("TINYLM_NATIVE", "1") == "0":
        return KernelStatus(None, "turned off by TINYLM_NATIVE=0")
    compiler = find_compiler()
    if compiler is None or shutil.which(compiler) is None:
        return KernelStatus(None, "no C compiler found (set CC to one)")
    source = SOURCE.read_bytes()
    errors = []
    for flags in FLAG_SETS:
        try:
            library = _bind(_open(_build(compiler, flags, source), compiler, flags, source))
        except (OSError, subprocess.SubprocessError) as error:
            errors.append(str(error).strip().splitlines()[-1:] or [""])
            continue
        if not _agrees_with_torch(library):
            return KernelStatus(None, f"the kernels built with {compiler} gave wrong results")
        return KernelStatus(library, _describe(library, compiler))
    return KernelStatus(None, f"{compiler} could not build the kernels: {errors[-1][0]}")


def find_compiler() -> str | None:
    """``$CC``, else the first of ``cc``, ``gcc``, ``clang`` on the PATH (None: none there)."""
    return os.environ.get("CC") or next(
        (c for c in ("cc", "gcc", "clang") if shutil.which(c)), None
    )


def _cache_dir() -> Path:
    if "TINYLM_KERNEL_CACHE" in os.environ:
        return Path(os.environ["TINYLM_KERNEL_CACHE"])
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "tinylm" / "kernels"


def _cpu_signature() -> str:
    """What ``-march=native`` depends on: the machine and, on Linux, the CPU's flags."""
    signature = f"{platform.system()} {platform.machine()} {platform.processor()}"
    try:
        with open("/proc/cpuinfo", encoding="utf-8", errors="replace") as info:
            flags = next((line for line in info if line.startswith(("flags", "Features"))), "")
    except OSError:
        flags = ""
    return signature + flags


def library_path(compiler: str, flags: tuple[str, ...], source: bytes) -> Path:
    """Where the library built from ``source`` by ``compiler`` with ``flags`` is cached."""
    parts = [source, shutil.which(compiler) or compiler, " ".join(flags), _cpu_signature()]
    key = hashlib.sha256(b"\0".join(p if isinstance(p, bytes) else p.encode() for p in parts))
    return _cache_dir() / f"native_kernels-{key.hexdigest()[:16]}.so"


def _build(compiler: str, flags: tuple[str, ...], source: bytes) -> Path:
    """The shared library for these flags: from the cache, else compiled into it."""
    path = library_path(compiler, flags, source)
    folder = path.parent
    if path.is_file():
        return path
    folder.mkdir(parents=True, exist_ok=True)
    # compile beside the target, then rename: a second process never loads half a file
    handle, partial = tempfile.mkstemp(dir=folder, suffix=".so.partial")
    os.close(handle)
    try:
        command = [compiler, *flags, "-fPIC", "-shared", str(SOURCE), "-o", partial]
        result = subprocess.run(command, capture_output=True, text=True, timeout=120)
        if result.returncode != 0:
            raise subprocess.SubprocessError(result.stderr or f"{compiler} failed")
        os.replace(partial, path)
    finally:
        if os.path.exists(partial):
            os.unlink(partial)
    return path


def _open(path: Path, compiler: str, flags: tuple[str, ...], source: bytes) -> ctypes.CDLL:
    """Load the library; one the cache holds damaged is deleted and built again, once."""
    try:
        return ctypes.CDLL(str(path))
    except OSError:
        path.unlink(missing_ok=True)
        return ctypes.CDLL(str(_build(compiler, flags, source)))


def _bind(library: ctypes.CDLL) -> ctypes.CDLL:
    pointer, size = ctypes.c_void_p, ctypes.c_int64
    for name in ("tinylm_int8_matmul", "tinylm_bf16_matmul"):
        function = getattr(library, name)
        function.argtypes = [pointer, size, size, pointer, pointer, size, pointer, ctypes.c_int]
        function.restype = None
    library.tinylm_kernel_features.restype = ctypes.c_int
    return library


def _describe(library: ctypes.CDLL, compiler: str) -> str:
    features = library.tinylm_kernel_features()
    vector = "AVX2+FMA" if features & 1 else "plain C"
    threads = "OpenMP" if features & 2 else "one thread"
    return f"built with {compiler}: {vector}, {threads}"


def _agrees_with_torch(library: ctypes.CDLL) -> bool:
    """Both kernels on odd shapes (vector tails, leftover rows, 1 and 5 rows of x)."""
    generator = torch.Generator().manual_seed(0)
    weight = torch.randn(37, 83, generator=generator)
    q = torch.clamp(torch.round(weight * 40), -127, 127).to(torch.int8)
    scale = torch.rand(37, generator=generator) + 0.5
    w16 = weight.to(torch.bfloat16)
    for rows in (1, 5):
        x = torch.randn(rows, 83, generator=generator)
        checks = [
            (
                library.tinylm_int8_matmul,
                q,
                scale,
                (x.double() @ q.double().t()) * scale.double(),
                1e-3,
            ),
            (library.tinylm_bf16_matmul, w16, None, x.double() @ w16.double().t(), 1e-4),
        ]
        for function, stored, row_scale, want, atol in checks:
            got = torch.empty(rows, 37, dtype=torch.float32)
            call_kernel(function, x, stored, row_scale, got)
            if not torch.allclose(got.double(), want, rtol=1e-4, atol=atol):
                return False
    return True
