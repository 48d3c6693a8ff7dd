"""Rotary position embedding (RoPE; Su et al., 2021, "RoFormer").

Instead of adding a position vector to the token embedding, RoPE rotates the
query and key vectors of each attention head by an angle proportional to the
token's position. Split a head vector into pairs ``(x[2i], x[2i+1])`` and treat
each pair as a point in the plane; pair ``i`` at position ``m`` is rotated by the
angle ``m * theta_i`` with ``theta_i = theta ** (-2i / d)``.

Why this works: a rotation by ``a`` followed by the dot product with a vector
rotated by ``b`` is the same as rotating by ``a - b`` alone, so the score
``q_m . k_n`` depends on the positions only through ``m - n``. Attention becomes
sensitive to *relative* distance, and nothing is learned. Low pairs spin fast
(fine-grained distance), high pairs spin slowly (coarse distance).

``apply_rope`` takes the positions explicitly, so a KV cache can rotate the new
token at position ``t`` without recomputing the earlier ones.

Two paths, chosen by ``ModelConfig.kernels``: ``explicit`` (``apply_rope``) computes
the angles on every call and rotates each pair with the four products of the
formula; ``fused`` (``Rotary``) computes the rotations once, as unit complex numbers
``cos + i sin``, and rotates every pair with one complex multiplication, which is
the same 2-D rotation: ``(a + ib)(cos + i sin) = (a cos - b sin) + i (a sin + b cos)``.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from tinylm.errors import TinylmError
from tinylm.model.config import ModelConfig


def rope_angles(positions: Tensor, head_dim: int, theta: float = 10000.0) -> Tensor:
    """The rotation angle of every (position, pair): shape ``(len(positions), head_dim // 2)``.

    Computed in float64 (where the device has it) and rounded once, so large
    positions do not lose the small angles to float32 rounding in the product.
    """
    dtype = torch.float32 if positions.device.type == "mps" else torch.float64
    pair = torch.arange(0, head_dim, 2, device=positions.device, dtype=dtype)
    inv_freq = theta ** (-pair / head_dim)  # theta_i = theta^(-2i/d)
    return positions.to(dtype)[:, None] * inv_freq[None, :]


def apply_rope(x: Tensor, positions: Tensor, theta: float = 10000.0) -> Tensor:
    """Rotate ``x`` (shape ``(..., T, head_dim)``) for tokens at ``positions`` (shape ``(T,)``).

    ``positions`` is a 1-D integer tensor of absolute token positions, usually
    ``arange(offset, offset + T)``, or ``(B, T)`` for ``x`` of shape ``(B, heads, T,
    head_dim)`` when each row has its own positions (a batch of left-padded prompts).
    Returns a tensor of the same shape and dtype.
    """
    head_dim = x.shape[-1]
    if head_dim % 2 != 0:
        raise TinylmError(f"apply_rope needs an even last dimension, got {head_dim}")
    per_row = positions.dim() == 2 and x.dim() == 4 and positions.shape[0] == x.shape[0]
    if not (positions.dim() == 1 or per_row) or positions.shape[-1] != x.shape[-2]:
        raise TinylmError(
            f"apply_rope needs one position per token: x has {x.shape[-2]} tokens, "
            f"positions has shape {tuple(positions.shape)}"
        )
    angles = rope_angles(positions.flatten(), head_dim, theta).unflatten(0, positions.shape)
    if per_row:
        angles = angles[:, None]  # (B, 1, T, head_dim // 2): the same angles for every head
    compute_dtype = torch.promote_types(x.dtype, torch.float32)
    cos = angles.cos().to(compute_dtype)
    sin = angles.sin().to(compute_dtype)

    pairs = x.to(compute_dtype).unflatten(-1, (head_dim // 2, 2))
    x_even, x_odd = pairs[..., 0], pairs[..., 1]
    # The 2-D rotation [[cos, -sin], [sin, cos]] applied to each pair.
    rotated_even = x_even * cos - x_odd * sin
    rotated_odd = x_even * sin + x_odd * cos
    rotated = torch.stack((rotated_even, rotated_odd), dim=-1).flatten(-2)
    return rotated.to(x.dtype)


def build_rotary(config: ModelConfig) -> Rotary | None:
    """The rotation table a model's attention layers share, or None.

    None unless the model uses RoPE on the fused path (``kernels = fused``); the
    explicit path computes its angles on every call instead. One table serves
    every layer (the rotations depend only on position and head size), so a model
    with a long context holds it once, not ``n_layer`` times.
    """
    if config.position != "rope" or config.kernels != "fused":
        return None
    return Rotary(config.block_size, config.head_dim, config.rope_theta)


class Rotary(nn.Module):
    """RoPE with the rotations of all ``block_size`` positions computed once.

    The table holds ``exp(i * angle)`` per (position, pair) as complex64, a buffer
    that is rebuilt from the config rather than saved, and that ``model.to(bfloat16)``
    leaves in full precision (it only casts real floating-point tensors).
    """

    def __init__(self, block_size: int, head_dim: int, theta: float = 10000.0) -> None:
        super().__init__()
        angles = rope_angles(torch.arange(block_size), head_dim, theta)
        rotations = torch.polar(torch.ones_like(angles), angles).to(torch.complex64)
        self.register_buffer("rotations", rotations, persistent=False)

    def forward(self, x: Tensor, positions: Tensor) -> Tensor:
        """``x`` rotated for ``positions``, like ``apply_rope(x, positions, theta)``.

        ``positions`` is ``(T,)``, or ``(B, T)`` (each row its own positions) for
        ``x`` of shape ``(B, heads, T, head_dim)``.
        """
        return self._rotate(x, self._lookup(positions))

    def rotate_pair(self, q: Tensor, k: Tensor, positions: Tensor) -> tuple[Tensor, Tensor]:
        """``q`` and ``k`` rotated for the same ``positions``, looking the table up once."""
        rotations = self._lookup(positions)
        return self._rotate(q, rotations), self._rotate(k, rotations)

    def _lookup(self, positions: Tensor) -> Tensor:
        rotations = self.rotations[positions]
        if positions.dim() == 2:
            rotations = rotations[:, None]  # the same rotations for every head
        return rotations

    @staticmethod
    def _rotate(x: Tensor, rotations: Tensor) -> Tensor:
        compute_dtype = torch.promote_types(x.dtype, torch.float32)
        pairs = torch.view_as_complex(x.to(compute_dtype).unflatten(-1, (-1, 2)).contiguous())
        rotated = torch.view_as_real(pairs * rotations).flatten(-2)
        return rotated.to(x.dtype)
