"""RoPE (Roformer): the rotation of XPOS without the decay (ζ = 1)."""

from __future__ import annotations

from .rotary import RotaryEmbedding


class RoPE(RotaryEmbedding):
    """Interleaved rotary embedding: ``q2, k2 = RoPE(head_dim)(q, k, q_pos, k_pos)``."""

    def __init__(self, head_dim: int, base: float = 10000.0) -> None:
        super().__init__(head_dim, base=base, gamma=None)
