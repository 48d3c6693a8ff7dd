"""The device and dtype rules every command shares, and that importing them stays light."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

import tinylm.device as device_module
from tinylm.device import autocast, resolve_device, resolve_dtype
from tinylm.errors import TinylmError

SRC = Path(__file__).resolve().parents[1] / "src"


def test_auto_picks_cuda_then_mps_then_cpu(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.setattr(device_module, "mps_available", lambda: False)
    assert resolve_device("auto") == torch.device("cpu")
    monkeypatch.setattr(device_module, "mps_available", lambda: True)
    assert resolve_device("auto") == torch.device("mps")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    assert resolve_device("auto") == torch.device("cuda")


def test_a_missing_or_unknown_device_is_a_one_line_error(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.setattr(device_module, "mps_available", lambda: False)
    with pytest.raises(TinylmError, match="device cuda was asked for but no CUDA GPU"):
        resolve_device("cuda")
    with pytest.raises(TinylmError, match="device mps was asked for but MPS"):
        resolve_device("mps")
    with pytest.raises(TinylmError, match="device 'tpu' is not one of: auto, cpu, cuda, mps"):
        resolve_device("tpu")


def test_dtype_auto_is_float32_on_cpu_and_bfloat16_is_autocast():
    cpu = torch.device("cpu")
    assert resolve_dtype("auto", cpu) == torch.float32
    assert resolve_dtype("bfloat16", cpu) == torch.bfloat16
    with pytest.raises(TinylmError, match="bfloat16 is not supported on mps"):
        resolve_dtype("bfloat16", torch.device("mps"))
    with pytest.raises(TinylmError, match="dtype 'float16' is not one of"):
        resolve_dtype("float16", cpu)
    a, b = torch.randn(4, 4), torch.randn(4, 4)
    with autocast(cpu, torch.bfloat16):
        assert (a @ b).dtype == torch.bfloat16
    with autocast(cpu, torch.float32):
        assert (a @ b).dtype == torch.float32


def test_resolving_a_device_does_not_load_the_training_code():
    """Sampling, inspecting and serving resolve a device without importing tinylm.train."""
    code = (
        "import sys\n"
        "from tinylm.device import resolve_device, resolve_dtype\n"
        "resolve_dtype('auto', resolve_device('cpu'))\n"
        "loaded = sorted(m for m in sys.modules if m.startswith('tinylm.train'))\n"
        "assert not loaded, loaded\n"
    )
    env = {**os.environ, "PYTHONPATH": str(SRC)}
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env)
    assert result.returncode == 0, result.stderr
