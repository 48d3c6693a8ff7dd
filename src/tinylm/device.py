"""Which device and number format a model runs in: what every command needs.

Training, sampling, inspecting and serving all turn a setting (``auto``, ``cuda``,
``bfloat16``...) into a concrete torch device and autocast dtype, so the rules
live here, outside ``tinylm.train``, where any command can import them without
pulling in the training loop.

* device ``auto`` picks CUDA, then Apple's MPS, then the CPU.
* dtype ``auto`` runs in bfloat16 autocast on a GPU that supports it (the matrix
  multiplies run in bf16, the weights and optimiser stay float32) and in plain
  float32 elsewhere. On CPU, torch does support bf16 autocast, but even on a CPU
  with AVX512-BF16 it measured no faster for the baby model and slower for the
  ``small`` preset (docs/training.md): at these sizes the casts cost what the
  narrower matmuls save, and bf16 adds rounding noise. So ``auto`` means float32
  there; ask for ``bfloat16`` explicitly to try it.
* :func:`meta_device` builds a model for its shapes only (no memory), without
  the stray ``No CUDA runtime is found, using CUDA_HOME=...`` line a CUDA build
  of torch prints on a machine without a GPU (:func:`quiet_cuda_home_probe`).
"""

from __future__ import annotations

import contextlib
import logging
import os
import sys
from collections.abc import Iterator

import torch

from tinylm.errors import TinylmError

DEVICES = ("auto", "cpu", "cuda", "mps")
DTYPES = ("auto", "float32", "bfloat16")
#: The module whose import logs "No CUDA runtime is found, using CUDA_HOME=...".
CUDA_HOME_PROBE = "torch.utils.cpp_extension"


def mps_available() -> bool:
    """Whether Apple's MPS backend is built into this torch and usable on this machine."""
    backend = getattr(torch.backends, "mps", None)
    return bool(backend is not None and backend.is_available())


def resolve_device(name: str) -> torch.device:
    """A concrete device for ``auto|cpu|cuda|mps``; asking for a missing one is an error."""
    if name == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        if mps_available():
            return torch.device("mps")
        return torch.device("cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise TinylmError("device cuda was asked for but no CUDA GPU is available; use auto")
    if name == "mps" and not mps_available():
        raise TinylmError("device mps was asked for but MPS is not available; use auto")
    if name not in DEVICES:
        raise TinylmError(f"device {name!r} is not one of: {', '.join(DEVICES)}")
    return torch.device(name)


def bf16_supported(device: torch.device) -> bool:
    """Whether bf16 autocast works on this device (CPU: yes, slowly without AVX512-BF16)."""
    if device.type == "cuda":
        return torch.cuda.is_bf16_supported()
    # MPS autocast to bf16 is incomplete across torch versions: not offered there.
    return device.type != "mps"


def resolve_dtype(name: str, device: torch.device) -> torch.dtype:
    """The autocast dtype (``torch.float32`` means: no autocast)."""
    if name == "auto":
        if device.type == "cuda" and bf16_supported(device):
            return torch.bfloat16
        return torch.float32
    if name == "float32":
        return torch.float32
    if name == "bfloat16":
        if not bf16_supported(device):
            raise TinylmError(f"bfloat16 is not supported on {device.type}; use dtype float32")
        return torch.bfloat16
    raise TinylmError(f"dtype {name!r} is not one of: {', '.join(DTYPES)}")


def autocast(device: torch.device, dtype: torch.dtype) -> contextlib.AbstractContextManager:
    """bf16 autocast for the forward pass, or nothing for float32."""
    if dtype == torch.float32:
        return contextlib.nullcontext()
    return torch.autocast(device_type=device.type, dtype=dtype)


def configure_backends(device: torch.device) -> None:
    """TF32 matmuls on Ampere+ GPUs: ~free speed, float32 accuracy is not needed for LMs."""
    if device.type == "cuda":
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.allow_tf32 = True


@contextlib.contextmanager
def quiet_cuda_home_probe() -> Iterator[None]:
    """Keep torch's "No CUDA runtime is found, using CUDA_HOME=..." off the terminal.

    A CUDA build of torch logs that line once, when ``torch.utils.cpp_extension``
    is first imported on a machine that has a CUDA toolkit (``CUDA_HOME``, or
    ``/usr/local/cuda``) but no GPU. tinylm builds no C++ extension: torch imports
    the module itself, from its compiler (``torch._dynamo`` and inductor), which
    ops on the meta device and ``torch.compile`` load. Only that logger is raised
    to errors, only while the block runs, and only until the module is imported:
    the line is printed at import or never.
    """
    if CUDA_HOME_PROBE in sys.modules or torch.cuda.is_available():
        yield
        return
    probe = logging.getLogger(CUDA_HOME_PROBE)
    level = probe.level
    probe.setLevel(logging.ERROR)
    try:
        yield
    finally:
        probe.setLevel(level)


@contextlib.contextmanager
def meta_device() -> Iterator[None]:
    """``torch.device("meta")``: modules built inside have shapes but no memory.

    For counting parameters and checking a config against its weights before
    anything is allocated. Initialising meta tensors runs torch's Python reference
    ops, whose first call imports ``torch._dynamo``, hence
    :func:`quiet_cuda_home_probe`.
    """
    with quiet_cuda_home_probe(), torch.device("meta"):
        yield


# -- free memory ---------------------------------------------------------------------------


def available_bytes(device: torch.device) -> int | None:
    """Free memory on ``device`` (``None`` when it cannot be told)."""
    if device.type == "cuda":
        with contextlib.suppress(RuntimeError):
            return int(torch.cuda.mem_get_info(device)[0])
        return None
    if device.type == "cpu":
        return _host_available()
    return None


def _host_available() -> int | None:
    """``MemAvailable`` (free plus reclaimable cache) from Linux, else the physical total."""
    with (
        contextlib.suppress(OSError, ValueError, IndexError),
        open("/proc/meminfo", encoding="ascii") as handle,
    ):
        for line in handle:
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) * 1024
    with contextlib.suppress(OSError, ValueError, AttributeError):
        return os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    return None


def gib(size: int) -> str:
    """``size`` bytes as GiB, for a message: ``1.5 GiB``."""
    return f"{size / 2**30:,.1f} GiB"
