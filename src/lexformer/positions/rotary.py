"""Shared machinery of the rotary schemes (XPOS and RoPE; ``docs/method.md#xpos``).

Both rotate interleaved coordinate pairs ``(2j, 2j+1)`` of q and k by ``n·θ_j``; XPOS also
scales pair j of a query at position n by ``ζ_j^(n/B)`` and of a key at m by ``ζ_j^(-m/B)``,
so that ``q'·k'`` depends on n − m only. A pair is treated as one complex number, so the
whole transform is one complex multiply by a cached table ``ζ^(±n/B)·e^{inθ}``: the decay is
folded into the rotation table and costs nothing beyond RoPE.

Exactness far from the origin. Only n − m matters, so positions are shifted by a common
integer centre (in int64, exactly) before indexing the tables, which are computed in float64
from integers and stored in complex64. Adding any offset to every position therefore leaves
the logits unchanged up to fp32 rounding, and the XPOS factors stay within
``ζ_0^(-span/2B)`` where span is the range of positions in one call.
"""

from __future__ import annotations

import math

import torch

from .base import ROTARY, PositionScheme, contiguous_start, positions_on


class RotaryEmbedding(PositionScheme):
    """Interleaved rotary embedding with an optional XPOS decay (``gamma=None``: plain RoPE)."""

    kind = ROTARY

    def __init__(
        self,
        head_dim: int,
        base: float = 10000.0,
        gamma: float | None = None,
        scale_base: float = 512.0,
    ) -> None:
        super().__init__()
        if head_dim <= 0 or head_dim % 2:
            raise ValueError(f"rotary schemes need an even head dimension, got {head_dim}")
        self.head_dim = head_dim
        self.base = float(base)
        self.gamma = None if gamma is None else float(gamma)
        self.scale_base = float(scale_base)
        half = head_dim // 2
        j = torch.arange(half, dtype=torch.float64)
        # θ_j = base^(−2j/d)
        self._theta = self.base ** (-2.0 * j / head_dim)
        # ln ζ_j with ζ_j = (2j/d + γ)/(1 + γ); ζ = 1 (ln ζ = 0) for RoPE
        if self.gamma is None:
            self._log_zeta = torch.zeros(half, dtype=torch.float64)
        else:
            self._log_zeta = torch.log((2.0 * j / head_dim + self.gamma) / (1.0 + self.gamma))
        # Tables over relative positions [-_radius, _radius], grown on demand.
        self._radius = -1
        self._tables: dict[torch.device, tuple[torch.Tensor, torch.Tensor]] = {}

    # ------------------------------------------------------------------ tables
    @property
    def has_decay(self) -> bool:
        return self.gamma is not None

    def max_safe_span(self, dtype: torch.dtype = torch.float32) -> int:
        """Longest span of positions whose centred XPOS factors stay below a safe bound.

        Centred on the middle of a span S, the largest factor is ζ_0^(−S/2B). It is kept under
        2.5e4 for fp32/bf16 (so q'·k' products stay far from overflow) and under 128 for fp16
        (max 65504). RoPE has no decay: any span is safe.
        """
        if not self.has_decay:
            return 1 << 62
        bound = 128.0 if dtype == torch.float16 else 2.5e4
        return max(2, int(2 * self.scale_base * math.log(bound) / -float(self._log_zeta[0])))

    def zeta(self) -> torch.Tensor:
        """ζ_j per pair, float64 (all ones for RoPE)."""
        return torch.exp(self._log_zeta)

    def theta(self) -> torch.Tensor:
        """θ_j per pair, float64."""
        return self._theta.clone()

    def _ensure_radius(
        self, radius: int, device: torch.device
    ) -> tuple[torch.Tensor, torch.Tensor]:
        if radius > self._radius:
            # Grow geometrically so that a slowly lengthening input rebuilds rarely.
            self._radius = max(radius, 2 * self._radius, 1024)
            self._tables.clear()
        tables = self._tables.get(device)
        if tables is None:
            # Built outside inference mode: tables first made under torch.inference_mode()
            # would be inference tensors, unusable by a later training forward.
            with torch.inference_mode(False), torch.no_grad():
                tables = self._build_tables(device)
            self._tables[device] = tables
        return tables

    def _build_tables(self, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
        n = torch.arange(-self._radius, self._radius + 1, dtype=torch.float64)
        angle = n[:, None] * self._theta[None, :]
        log_scale = (n[:, None] / self.scale_base) * self._log_zeta[None, :]
        # q: ζ^(n/B) e^{inθ};  k: ζ^(−n/B) e^{inθ}. exp in float64, then complex64: entries
        # far from the centre may over/underflow, and are only ever looked up where the
        # attention code keeps them bounded (see module docstring).
        q_table = torch.polar(torch.exp(log_scale), angle).to(torch.complex64)
        k_table = torch.polar(torch.exp(-log_scale), angle).to(torch.complex64)
        return q_table.to(device), k_table.to(device)

    def tables(
        self, rel_pos: torch.Tensor, device: torch.device
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Complex (len(rel_pos), d/2) tables for queries and keys at relative positions."""
        radius = int(rel_pos.abs().max()) if rel_pos.numel() else 0
        q_table, k_table = self._ensure_radius(radius, device)
        start = contiguous_start(rel_pos)
        if start is not None:  # a range: slice the tables (a view, no copy, no transfer)
            lo = start + self._radius
            return q_table[lo: lo + rel_pos.numel()], k_table[lo: lo + rel_pos.numel()]
        idx = positions_on(rel_pos + self._radius, device)
        return q_table.index_select(0, idx), k_table.index_select(0, idx)

    # ------------------------------------------------------------------ apply
    @staticmethod
    def _rotate(x: torch.Tensor, table: torch.Tensor) -> torch.Tensor:
        """x: (..., T, d) real; table: (T, d/2) complex64 → x·table pairwise, in x's dtype."""
        dtype = x.dtype
        xc = torch.view_as_complex(x.float().reshape(*x.shape[:-1], -1, 2).contiguous())
        out = torch.view_as_real(xc * table).flatten(-2)
        return out.to(dtype)

    def rotate_packed_qk(
        self, qkv: torch.Tensor, rel_pos: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Rotate q and k straight out of a packed projection, in one complex multiply.

        qkv: (B, T, 3, H, D) as the attention projection lays it out; both q and k are at
        positions ``rel_pos`` (T,). Returns q', k' as (B, H, T, D) views. In fp32 the complex
        view of the q/k slice needs no copy, so the rotation costs one read and one write of
        q and k: the whole price of XPOS (and RoPE) over absolute positions in the model.
        """
        q_table, k_table = self.tables(rel_pos, qkv.device)
        # (T, 2, 1, D/2): queries and keys take different tables (ζ^(+n/B) and ζ^(−n/B))
        table = torch.stack((q_table, k_table), dim=1)[:, :, None, :]
        qk = qkv[:, :, :2]
        if qk.dtype != torch.float32:
            qk = qk.float()
        rotated = torch.view_as_real(torch.view_as_complex(qk.unflatten(-1, (-1, 2))) * table)
        rotated = rotated.flatten(-2).to(qkv.dtype)  # (B, T, 2, H, D)
        return rotated[:, :, 0].transpose(1, 2), rotated[:, :, 1].transpose(1, 2)

    def rotate_queries(self, q: torch.Tensor, rel_pos: torch.Tensor) -> torch.Tensor:
        q_table, _ = self.tables(rel_pos, q.device)
        return self._rotate(q, q_table)

    def rotate_keys(self, k: torch.Tensor, rel_pos: torch.Tensor) -> torch.Tensor:
        _, k_table = self.tables(rel_pos, k.device)
        return self._rotate(k, k_table)

    def forward(
        self,
        q: torch.Tensor,
        k: torch.Tensor,
        q_pos: torch.Tensor,
        k_pos: torch.Tensor,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Rotate q (…, Tq, d) at positions q_pos (Tq,) and k (…, Tk, d) at k_pos (Tk,).

        Positions are re-centred on the midpoint of their common range first; logits
        ``q2 @ k2.T`` are unchanged by this (relative invariance) but the XPOS factors stay
        bounded wherever the positions sit.
        """
        self._check_positions(q_pos, "q_pos")
        self._check_positions(k_pos, "k_pos")
        q_pos = q_pos.to(torch.int64).cpu()
        k_pos = k_pos.to(torch.int64).cpu()
        lo = min(int(q_pos.min()), int(k_pos.min()))
        hi = max(int(q_pos.max()), int(k_pos.max()))
        centre = (lo + hi) // 2
        return (
            self.rotate_queries(q, q_pos - centre),
            self.rotate_keys(k, k_pos - centre),
        )

    def extra_repr(self) -> str:
        decay = f", gamma={self.gamma}, scale_base={self.scale_base}" if self.has_decay else ""
        return f"head_dim={self.head_dim}, base={self.base}{decay}"
