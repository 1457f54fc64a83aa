"""XPOS, the extrapolatable position embedding of the LeX Transformer (``docs/method.md#xpos``)."""

from __future__ import annotations

from .rotary import RotaryEmbedding


class XPos(RotaryEmbedding):
    """RoPE with the per-pair exponential decay ζ_j^((n−m)/B).

    ``q2, k2 = XPos(head_dim)(q, k, q_pos, k_pos)``; defaults are the paper's
    (γ = 0.4, scale base B = 512, θ_j = 10000^(−2j/d), interleaved pairs).
    ``XPos(head_dim).scores(q, k, q_pos, k_pos, causal=False)`` gives the bidirectional
    logits, with the symmetric decay ζ_j^(|n−m|/B) (``docs/bidirectional.md``).
    """

    def __init__(
        self, head_dim: int, gamma: float = 0.4, scale_base: float = 512.0, base: float = 10000.0
    ) -> None:
        if gamma <= 0:
            raise ValueError(f"XPOS gamma must be positive, got {gamma}")
        if scale_base <= 0:
            raise ValueError(f"XPOS scale_base must be positive, got {scale_base}")
        super().__init__(head_dim, base=base, gamma=gamma, scale_base=scale_base)
