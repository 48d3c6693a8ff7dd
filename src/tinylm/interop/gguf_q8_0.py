"""GGUF's Q8_0 blocks: a weight matrix as 8-bit numbers, 32 at a time, each block scaled.

llama.cpp's Q8_0 cuts every row of a matrix into blocks of 32 numbers (so a row's
length must be a multiple of 32) and stores each block in 34 bytes::

    d = max(|x|) / 127            # the block's scale, stored as float16 (2 bytes)
    q = round(x / d)              # 32 whole numbers in [-127, 127], int8 (32 bytes)
    x ~= q * d                    # what a reader gets back

The rounding is done with ``d`` in float32, as llama.cpp does, so a number read back
is off by at most ``d / 2`` plus ``127 * |d - float16(d)|``. A block of zeros has
``d = 0`` and ``q = 0``. Unlike tinylm's own int8 format (one scale per row,
``tinylm.inference.weight_formats``), each 32 numbers get their own scale: more
bytes (8.5 bits a number) and less rounding error.

Which tensors: the 2-D weight matrices whose rows split into whole blocks; norms,
biases and any matrix with another row length stay float32, as llama.cpp leaves
its 1-D tensors (and falls back for matrices that do not split).
"""

from __future__ import annotations

import numpy as np

#: Numbers per Q8_0 block, and the largest magnitude of its int8 grid.
BLOCK = 32
LEVELS = 127


def q8_0_fits(array: np.ndarray) -> bool:
    """Whether ``array`` is a matrix Q8_0 can hold: 2-D, rows a whole number of blocks."""
    return array.ndim == 2 and array.shape[1] % BLOCK == 0


def quantize_q8_0(array: np.ndarray) -> np.ndarray:
    """``array`` ``(rows, cols)`` as Q8_0 bytes ``(rows, cols / 32 * 34)``, uint8.

    Each block's 34 bytes are its float16 ``d`` (little-endian), then its 32 ``q``.
    """
    rows, cols = array.shape
    blocks = array.astype(np.float32).reshape(-1, BLOCK)
    d = np.abs(blocks).max(axis=1) / LEVELS
    safe = np.where(d > 0, d, 1.0).astype(np.float32)  # a zero block: any d gives q = 0
    q = np.clip(np.rint(blocks / safe[:, None]), -LEVELS, LEVELS).astype(np.int8)
    scales = d.astype("<f2").view(np.uint8).reshape(-1, 2)
    packed = np.concatenate([scales, q.view(np.uint8)], axis=1)
    return packed.reshape(rows, cols // BLOCK * (BLOCK + 2))


def dequantize_q8_0(packed: np.ndarray, cols: int) -> np.ndarray:
    """The float32 matrix Q8_0 bytes stand for (the inverse reading, for tests and checks)."""
    blocks = packed.reshape(-1, BLOCK + 2)
    d = blocks[:, :2].copy().view("<f2").astype(np.float32)
    q = blocks[:, 2:].copy().view(np.int8).astype(np.float32)
    return (q * d).reshape(-1, cols)
