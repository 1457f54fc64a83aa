"""Extra RoPE rotations on queries and keys that a Hugging Face model has already rotated.

Transformers rotates q and k at their absolute positions before the attention function runs.
RoPE rotations compose, R(a)·R(p) = R(p + a), so a vector rotated at p is moved to position
p + a by one more rotation by a, exactly (up to rounding). This module does that rotation
with the model's own frequencies (``inv_freq`` of its rotary module) in the model's layout:
Hugging Face Llama-family models pair dimension i with i + d/2 (``rotate_half``), not the
interleaved (2i, 2i+1) pairs of lexformer's own rotary code.

The rotation is a pure one: the model's ``attention_scaling`` (YaRN's m-scale, for instance)
already multiplies the rotated q and k and must not be applied twice, so cos/sin here are
built from ``inv_freq`` directly rather than taken from the rotary module's output. Angles
are computed in float64 so the shift itself adds no float32 angle error. When the rotary
part is narrower than the head (partial rotary), only its leading dimensions turn.
"""

from __future__ import annotations

import torch


def rotate_half(x: torch.Tensor) -> torch.Tensor:
    """(x1, x2) → (−x2, x1) over the two halves of the last dimension."""
    half = x.shape[-1] // 2
    return torch.cat((-x[..., half:], x[..., :half]), dim=-1)


def turn_table(shift: torch.Tensor, inv_freq: torch.Tensor, dtype: torch.dtype,
               device: torch.device | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """cos and sin (…, rot_dim) of a rotation by ``shift`` positions, in ``dtype``.

    The angles are computed in float64 so the shift itself adds no float32 angle error.
    """
    angles = shift.to(device, torch.float64)[..., None] * inv_freq.to(device, torch.float64)
    angles = torch.cat((angles, angles), dim=-1)
    return angles.cos().to(dtype), angles.sin().to(dtype)


def apply_turn(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    """Rotate ``x`` (..., D) by a :func:`turn_table` that broadcasts against it."""
    rot_dim = cos.shape[-1]
    if rot_dim == x.shape[-1]:
        return x * cos + rotate_half(x) * sin
    head, tail = x[..., :rot_dim], x[..., rot_dim:]
    turned = head * cos + rotate_half(head) * sin
    return torch.cat((turned, tail.expand(*turned.shape[:-1], tail.shape[-1])), dim=-1)


def rotate_by(x: torch.Tensor, shift: torch.Tensor, inv_freq: torch.Tensor) -> torch.Tensor:
    """Rotate ``x`` (..., D) by ``shift`` positions; ``shift`` broadcasts against x[..., 0]."""
    return apply_turn(x, *turn_table(shift, inv_freq, x.dtype, x.device))


__all__ = ["apply_turn", "rotate_by", "rotate_half", "turn_table"]
