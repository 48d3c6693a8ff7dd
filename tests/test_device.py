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


def test_no_meta_build_bypasses_meta_device():
    """Every model built for its shapes goes through meta_device, which quiets the probe."""
    direct = [
        f"{path.relative_to(SRC)}:{number}"
        for path in sorted(SRC.rglob("*.py"))
        if path.name != "device.py"
        for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1)
        if 'torch.device("meta")' in line
    ]
    assert direct == []


# A CUDA build of torch on a machine without a GPU, as far as the CUDA_HOME probe can
# tell: torch.utils.cpp_extension logs "No CUDA runtime is found, using CUDA_HOME=..."
# when it is imported, and the compiler's modules (torch._dynamo) import it. The CPU
# build installed here does neither, so both are stood in for.
LIKE_A_CUDA_BUILD = """
import importlib, importlib.abc, sys, torch
torch.cuda.is_available = lambda: False

def import_the_probe():
    compiled, version = torch.cuda._is_compiled, torch.version.cuda
    torch.cuda._is_compiled, torch.version.cuda = (lambda: True), "12.8"
    try:
        importlib.import_module("torch.utils.cpp_extension")
    finally:
        torch.cuda._is_compiled, torch.version.cuda = compiled, version

class DynamoImportsTheProbe(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path, target=None):
        if name == "torch._dynamo":
            sys.meta_path.remove(self)
            import_the_probe()
        return None

sys.meta_path.insert(0, DynamoImportsTheProbe())
"""

TRAIN = """
from tinylm.cli.main import main
code = main(sys.argv[1:])
assert "torch.utils.cpp_extension" in sys.modules, "the probe never ran"
sys.exit(code)
"""


def test_train_prints_no_cuda_home_line_on_a_machine_without_a_gpu(tmp_path):
    corpus = tmp_path / "zen.txt"
    corpus.write_text("Simple is better than complex. Flat is better than nested. " * 30)
    (tmp_path / "cuda").mkdir()
    env = {**os.environ, "PYTHONPATH": str(SRC), "CUDA_HOME": str(tmp_path / "cuda")}
    env["OMP_NUM_THREADS"] = "1"
    argv = ["train", "--data", str(corpus), "--out", str(tmp_path / "run"), "--steps", "2"]
    argv += ["--set", "n_layer=1", "--set", "n_embd=16", "--set", "n_head=2", "--quiet"]
    argv += ["--set", "block_size=32", "--set", "batch_size=4", "--set", "eval_batches=1"]

    def run(code: str) -> subprocess.CompletedProcess:
        command = [sys.executable, "-c", code, *argv]
        return subprocess.run(command, capture_output=True, text=True, env=env, check=False)

    # the stand-in is faithful: importing the probe plainly prints the line
    shown = run(LIKE_A_CUDA_BUILD + "import_the_probe()\n")
    assert "No CUDA runtime is found, using CUDA_HOME" in shown.stderr
    trained = run(LIKE_A_CUDA_BUILD + TRAIN)
    assert trained.returncode == 0, trained.stderr
    assert "CUDA_HOME" not in trained.stderr and "No CUDA runtime" not in trained.stderr
    assert (tmp_path / "run" / "ckpt-000002").is_dir()
