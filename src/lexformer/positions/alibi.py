"""ALiBi: a head-specific linear penalty on the logits, ``−slope_h · (n − m)``; for encoders
the symmetric ``−slope_h · |n − m|`` (``docs/bidirectional.md``).

See ``docs/method.md#baselines``.
"""

from __future__ import annotations

import math

import torch

from .base import BIAS, PositionScheme, positions_on


def alibi_slopes(num_heads: int) -> torch.Tensor:
    """Slopes 2^(−8h/H), h = 1..H, for H a power of two (the ALiBi paper's rule).

    For other H, the ALiBi paper takes the slopes of the nearest lower power of two and
    fills the rest with every other slope of the next power of two.
    """

    def power_of_two(n: int) -> list[float]:
        return [2.0 ** (-8.0 * h / n) for h in range(1, n + 1)]

    if num_heads <= 0:
        raise ValueError(f"num_heads must be positive, got {num_heads}")
    if math.log2(num_heads).is_integer():
        slopes = power_of_two(num_heads)
    else:
        lower = 2 ** math.floor(math.log2(num_heads))
        slopes = power_of_two(lower) + power_of_two(2 * lower)[0::2][: num_heads - lower]
    return torch.tensor(slopes, dtype=torch.float32)


class ALiBi(PositionScheme):
    """``bias = ALiBi(num_heads)(q_pos, k_pos)`` → (heads, Tq, Tk), added to the logits.

    Keys after the query get a positive bias here; the causal mask removes them. With
    ``symmetric=True`` (bidirectional models) the bias is ``−slope_h · |n − m|``, a penalty
    on both sides.
    """

    kind = BIAS

    def __init__(self, num_heads: int, symmetric: bool = False) -> None:
        super().__init__()
        self.num_heads = num_heads
        self.symmetric = symmetric
        self.register_buffer("slopes", alibi_slopes(num_heads), persistent=False)

    def forward(self, q_pos: torch.Tensor, k_pos: torch.Tensor) -> torch.Tensor:
        self._check_positions(q_pos, "q_pos")
        self._check_positions(k_pos, "k_pos")
        # Distances in int64 first (exact for any offset), then a small float; built on the
        # slopes' device so that no (Tq, Tk) matrix crosses from host to GPU.
        dev = self.slopes.device
        distance = positions_on(q_pos, dev)[:, None] - positions_on(k_pos, dev)[None, :]
        if self.symmetric:
            distance = distance.abs()
        distance = distance.to(torch.float32)
        return -self.slopes[:, None, None] * distance[None]

    def extra_repr(self) -> str:
        return f"num_heads={self.num_heads}" + (", symmetric=True" if self.symmetric else "")
