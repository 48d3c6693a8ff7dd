"""Which device and number format to train in, and whether to compile.

Only features that help on the chosen device are switched on:

* device ``auto`` picks CUDA, then Apple's MPS, then the CPU.
* dtype ``auto`` trains in bfloat16 autocast on a GPU that supports it (the
  matrix multiplies run in bf16, the weights and optimiser stay float32) and in
  plain float32 elsewhere. On CPU, torch does support bf16 autocast, but even on
  a CPU with AVX512-BF16 it measured no faster for the baby model and slower for
  the ``small`` preset (docs/training.md): at these sizes the casts cost what the
  narrower matmuls save, and bf16 adds rounding noise. So ``auto`` means float32
  there; ask for ``bfloat16`` explicitly to try it.
* ``compile`` runs ``torch.compile``; compilation happens lazily at the first
  forward pass, so :class:`CompiledOrEager` catches a failure there (no C++
  compiler, unsupported platform) and falls back to the plain model with a
  warning instead of ending the run.
"""

from __future__ import annotations

import contextlib
import warnings
from collections.abc import Callable
from typing import Any

import torch
from torch import nn

from tinylm.errors import TinylmError
from tinylm.train.config import DEVICES, DTYPES


def mps_available() -> bool:
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


class CompiledOrEager:
    """Calls a compiled module, and permanently switches to the eager one if that fails.

    ``torch.compile`` returns immediately and compiles at the first call, so this
    is where a missing compiler shows up. The failing call is retried eagerly; the
    caller must not have run ``backward`` on anything from it, which holds because
    a failure is raised by the forward call itself.
    """

    def __init__(self, module: nn.Module, eager: nn.Module) -> None:
        self.module = module
        self.eager = eager
        self.compiled = module is not eager

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        if not self.compiled:
            return self.eager(*args, **kwargs)
        try:
            return self.module(*args, **kwargs)
        except TinylmError:
            raise  # bad input, not a compiler problem
        except Exception as exc:  # any compile failure means: run eagerly
            warnings.warn(
                f"torch.compile failed ({type(exc).__name__}: {str(exc).splitlines()[0][:200]}); "
                "continuing without compilation",
                stacklevel=2,
            )
            self.compiled = False
            return self.eager(*args, **kwargs)


def maybe_compile(module: nn.Module, enabled: bool) -> Callable[..., Any]:
    """``module`` wrapped for calling: compiled when asked (and possible), eager otherwise."""
    if not enabled:
        return CompiledOrEager(module, module)
    try:
        compiled = torch.compile(module)
    except Exception as exc:  # e.g. unsupported Python version
        warnings.warn(f"torch.compile is unavailable ({exc}); running eagerly", stacklevel=2)
        return CompiledOrEager(module, module)
    return CompiledOrEager(compiled, module)
