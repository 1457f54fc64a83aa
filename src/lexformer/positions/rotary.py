"""Shared machinery of the rotary schemes (XPOS and RoPE; ``docs/method.md#xpos``).

Both rotate interleaved coordinate pairs ``(2j, 2j+1)`` of q and k by ``n·θ_j``; XPOS also
scales pair j of a query at position n by ``ζ_j^(n/B)`` and of a key at m by ``ζ_j^(-m/B)``,
so that ``q'·k'`` depends on n − m only. The decay is folded into cached tables, so it costs
nothing beyond RoPE. Two arithmetics apply them (:mod:`.rotary_ops`): one complex multiply by
``ζ^(±n/B)·e^{inθ}`` (complex64 tables; the fastest in eager mode on a CPU), or
``q' = q·C + rot(q)·S`` per pair with ``C = ζ^(±n/B)cos(nθ)``, ``S = ζ^(±n/B)sin(nθ)`` stored
in the compute dtype (native bf16, no complex tensors, fused by ``torch.compile``; under
compile the rows are computed in the graph). :attr:`arithmetic` picks.

Exactness far from the origin. Only n − m matters, so positions are shifted by a common
integer centre (in int64, exactly) before indexing the tables, which are computed in float64
from integers and only then rounded to their storage type. Adding any offset to every
position therefore leaves the logits unchanged up to that rounding, and the XPOS factors stay
within ``ζ_0^(-span/2B)`` where span is the range of positions in one call.

Relative positions are passed as a ``range`` where they are one (every fast attention path):
the tables are then sliced with Python integers, with no look at tensor data, which keeps
``torch.compile`` graphs free of data-dependent breaks. Tensors are accepted everywhere.
"""

from __future__ import annotations

import math

import torch

from .base import ROTARY, PositionScheme, contiguous_start, positions_on
from .bidirectional import bidirectional_logits
from .rotary_ops import rotate_complex, rotate_real

#: values of :attr:`RotaryEmbedding.arithmetic`
ARITHMETICS = ("auto", "complex", "real")


def _radius_of(rel_pos: range | torch.Tensor) -> int:
    if isinstance(rel_pos, range):
        return max(abs(rel_pos.start), abs(rel_pos.stop - 1)) if len(rel_pos) else 0
    return int(rel_pos.abs().max()) if rel_pos.numel() else 0


def _as_range(rel_pos: range | torch.Tensor) -> range | None:
    """rel_pos as a step-1 range if it is one (a tensor is inspected on the CPU only)."""
    if isinstance(rel_pos, range):
        if rel_pos.step != 1:
            raise ValueError(f"rotary position ranges must have step 1, got {rel_pos}")
        return rel_pos
    start = contiguous_start(rel_pos)
    return None if start is None else range(start, start + rel_pos.numel())


class RotaryEmbedding(PositionScheme):
    """Interleaved rotary embedding with an optional XPOS decay (``gamma=None``: plain RoPE)."""

    kind = ROTARY
    #: ``auto``: real cos/sin arithmetic under ``torch.compile`` (fusable), one complex64
    #: multiply in eager mode (1 pass in fp32 against 3, and faster in bf16 too on the CPUs
    #: measured: ``docs/benchmarks.md``); ``complex`` or ``real`` forces one everywhere.
    arithmetic: str = "auto"

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
        # ln ζ_0 as a Python float: read on every call, and a tensor read would stop
        # torch.compile's trace (a data-dependent .item()).
        self._log_zeta0 = float(self._log_zeta[0])
        # Tables over relative positions [-_radius, _radius], grown on demand, one per
        # (device, storage dtype): complex64 for the complex arithmetic, else the compute dtype.
        self._radius = -1
        self._tables: dict[tuple[torch.device, torch.dtype], torch.Tensor] = {}

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
        return max(2, int(2 * self.scale_base * math.log(bound) / -self._log_zeta0))

    def zeta(self) -> torch.Tensor:
        """ζ_j per pair, float64 (all ones for RoPE)."""
        return torch.exp(self._log_zeta)

    def theta(self) -> torch.Tensor:
        """θ_j per pair, float64."""
        return self._theta.clone()

    def uses_real_arithmetic(self) -> bool:
        """Whether this call applies the real cos/sin tables (see :attr:`arithmetic`)."""
        if self.arithmetic not in ARITHMETICS:
            raise ValueError(f"arithmetic must be one of {ARITHMETICS}, got {self.arithmetic!r}")
        if self.arithmetic == "auto":
            return torch.compiler.is_compiling()
        return self.arithmetic == "real"

    # ------------------------------------------------------------------ tables
    def _table(self, radius: int, device: torch.device, storage: torch.dtype) -> torch.Tensor:
        """The whole cached table for ``storage`` on ``device``, covering ``radius``."""
        table = self._tables.get((device, storage))
        if table is None or radius > self._radius:
            table = self._grow_and_build(radius, device, storage)
        return table

    def _grow_and_build(
        self, radius: int, device: torch.device, storage: torch.dtype
    ) -> torch.Tensor:
        if radius > self._radius:
            # Grow geometrically so that a slowly lengthening input rebuilds rarely.
            self._radius = max(radius, 2 * self._radius, 1024)
            self._tables.clear()
        table = self._tables.get((device, storage))
        if table is None:
            # Built outside inference mode: tables first made under torch.inference_mode()
            # would be inference tensors, unusable by a later training forward.
            with torch.inference_mode(False), torch.no_grad():
                n = torch.arange(-self._radius, self._radius + 1, dtype=torch.float64)
                table = self._table_rows(n, storage).to(device)
            self._tables[(device, storage)] = table
        return table

    def _table_rows(self, n: torch.Tensor, storage: torch.dtype) -> torch.Tensor:
        """Table rows at relative positions n (float64, integers), rounded once to ``storage``.

        complex64: (2, len(n), d/2), ``[q: ζ^(n/B)e^{inθ}, k: ζ^(−n/B)e^{inθ}]``.
        real: (2, 2, len(n), d/2), ``[c, s][q, k]``, c = ζ^(±n/B)cos(nθ), s = ζ^(±n/B)sin(nθ).
        Positions on the second-last axis, so that one tensor's rows are contiguous (a
        strided table slows the complex multiply by ~13 %, measured).
        Entries far from the centre may over/underflow; the attention code only looks up
        those it keeps bounded (module docstring).
        """
        theta, log_zeta = self._theta.to(n.device), self._log_zeta.to(n.device)
        angle = n[:, None] * theta[None, :]
        log_scale = (n[:, None] / self.scale_base) * log_zeta[None, :]
        scale = torch.stack((log_scale.exp(), (-log_scale).exp()))  # (2 [q, k], N, d/2)
        if storage.is_complex:
            return torch.polar(scale, angle.expand_as(scale)).to(storage)
        return torch.stack((scale * angle.cos(), scale * angle.sin())).to(storage)

    def _rows(
        self, rel_pos: range | torch.Tensor, device: torch.device, storage: torch.dtype
    ) -> torch.Tensor:
        """Table rows at ``rel_pos``: a view for a range (no copy, no transfer).

        Under ``torch.compile`` a range slices the cached table, which
        :meth:`_prepared_radius` builds while the graph is traced (the graph then reads it as
        a tensor of the module, guarded like one: nothing to break on); gathered positions
        (the KV-cache path) are computed in the graph by the same float64 function.
        """
        if torch.compiler.is_compiling():
            if isinstance(rel_pos, range):
                radius = self._prepared_radius(_radius_of(rel_pos), device, storage)
                table = self._tables[(device, storage)]
                return table.narrow(-2, rel_pos.start + radius, len(rel_pos))
            return self._table_rows(rel_pos.to(device, torch.float64), storage)
        return self._cached_rows(rel_pos, device, storage)

    def _cached_rows(
        self, rel_pos: range | torch.Tensor, device: torch.device, storage: torch.dtype
    ) -> torch.Tensor:
        table = self._table(_radius_of(rel_pos), device, storage)
        span = _as_range(rel_pos)
        if span is not None:
            return table.narrow(-2, span.start + self._radius, len(span))
        return table.index_select(-2, positions_on(rel_pos + self._radius, device))

    @torch.compiler.assume_constant_result
    def _prepared_radius(self, radius: int, device: torch.device, storage: torch.dtype) -> int:
        """Make sure the cached table covers ``radius``; return the radius it covers.

        Run for real (not traced) when torch.compile meets it, so the table is built eagerly,
        once, and the int folds into the graph (which specialises on the shapes it covers).
        """
        self._table(radius, device, storage)
        return self._radius

    def tables(
        self, rel_pos: range | torch.Tensor, device: torch.device
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Complex (len(rel_pos), d/2) tables for queries and keys at relative positions."""
        rows = self._rows(rel_pos, device, torch.complex64)
        return rows[0], rows[1]

    def real_tables(
        self, rel_pos: range | torch.Tensor, device: torch.device, dtype: torch.dtype
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        """Real (len(rel_pos), d/2) tables ``c_q, s_q, c_k, s_k`` (per pair) in ``dtype``."""
        rows = self._rows(rel_pos, device, dtype)
        return rows[0, 0], rows[1, 0], rows[0, 1], rows[1, 1]

    # ------------------------------------------------------------------ apply
    def _rotate_one(self, x: torch.Tensor, rel_pos, which: int) -> torch.Tensor:
        """Rotate x (…, T, d) at rel_pos (T,) as a query (which=0) or a key (which=1)."""
        if self.uses_real_arithmetic():
            rows = self._rows(rel_pos, x.device, x.dtype)
            return rotate_real(x, rows[0, which], rows[1, which])
        return rotate_complex(x, self._rows(rel_pos, x.device, torch.complex64)[which])

    def rotate_queries(self, q: torch.Tensor, rel_pos: range | torch.Tensor) -> torch.Tensor:
        return self._rotate_one(q, rel_pos, 0)

    def rotate_keys(self, k: torch.Tensor, rel_pos: range | torch.Tensor) -> torch.Tensor:
        return self._rotate_one(k, rel_pos, 1)

    def rotate_packed_qk(
        self, qkv: torch.Tensor, rel_pos: range | torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Rotate q and k straight out of a packed projection, in one pass over both.

        qkv: (B, T, 3, H, D) as the attention projection lays it out; both q and k are at
        positions ``rel_pos`` (T,). Returns q', k' as (B, H, T, D) views. The table rows
        (T, 2 [q, k], …) broadcast over heads, so queries and keys take their own factors
        (ζ^(+n/B) and ζ^(−n/B)) in the same multiply.
        """
        qk = qkv[:, :, :2]
        if self.uses_real_arithmetic():
            rows = self._rows(rel_pos, qkv.device, qkv.dtype)  # (2, 2, T, D/2)
            cos, sin = (r.transpose(0, 1)[:, :, None, :] for r in rows)  # (T, 2, 1, D/2)
            rotated = rotate_real(qk, cos, sin)
        else:
            rows = self._rows(rel_pos, qkv.device, torch.complex64)  # (2, T, D/2)
            rotated = rotate_complex(qk, rows.transpose(0, 1)[:, :, None, :])
        return rotated[:, :, 0].transpose(1, 2), rotated[:, :, 1].transpose(1, 2)

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
        bounded wherever the positions sit. Contiguous positions (the usual case) cost a few
        scalar reads and a table slice per call; other positions one gather.
        """
        self._check_positions(q_pos, "q_pos")
        self._check_positions(k_pos, "k_pos")
        q_rel, k_rel = _centred_pair(q_pos, k_pos)
        return self.rotate_queries(q, q_rel), self.rotate_keys(k, k_rel)

    def scores(
        self,
        q: torch.Tensor,
        k: torch.Tensor,
        q_pos: torch.Tensor,
        k_pos: torch.Tensor,
        causal: bool = True,
    ) -> torch.Tensor:
        """The pre-softmax logits (…, Tq, Tk) that attention uses, scaled by 1/√head_dim.

        q (…, Tq, d) and k (…, Tk, d) unrotated, at integer positions q_pos (Tq,) and k_pos
        (Tk,). ``causal=True``: the rotated product with the decay ζ_j^((n−m)/B), −inf where
        a key lies after its query. ``causal=False``: every key, with the symmetric decay
        ζ_j^(|n−m|/B) for XPOS (:mod:`.bidirectional`); for RoPE this is the same product
        with no mask. Positions are centred on the middle of the queries (in int64), so any
        common offset gives the same logits and the factors stay bounded.
        """
        self._check_positions(q_pos, "q_pos")
        self._check_positions(k_pos, "k_pos")
        q_rel, k_rel = centre_on_queries(q_pos, k_pos)
        q = q * self.head_dim ** -0.5  # on q: Tq·d multiplications instead of Tq·Tk
        if causal or not self.has_decay:
            logits = self.rotate_queries(q, q_rel) @ self.rotate_keys(k, k_rel).transpose(-1, -2)
        else:
            logits = bidirectional_logits(self, q, k, q_rel, k_rel)
        if causal:
            dev = logits.device
            hidden = positions_on(k_pos, dev)[None, :] > positions_on(q_pos, dev)[:, None]
            logits = logits.masked_fill(hidden, float("-inf"))
        return logits

    def extra_repr(self) -> str:
        decay = f", gamma={self.gamma}, scale_base={self.scale_base}" if self.has_decay else ""
        return f"head_dim={self.head_dim}, base={self.base}{decay}"


def _centred_pair(
    q_pos: torch.Tensor, k_pos: torch.Tensor
) -> tuple[range | torch.Tensor, range | torch.Tensor]:
    """q_pos and k_pos minus the midpoint of their common range, as ranges where they are."""
    same = k_pos is q_pos
    q_pos = q_pos.to(torch.int64).cpu()
    k_pos = q_pos if same else k_pos.to(torch.int64).cpu()
    q_span = _as_range(q_pos)
    k_span = q_span if k_pos is q_pos else _as_range(k_pos)
    if q_span is not None and k_span is not None:
        if not len(q_span) or not len(k_span):
            return q_span, k_span
        lo, hi = min(q_span.start, k_span.start), max(q_span.stop, k_span.stop) - 1
        centre = (lo + hi) // 2
        return (range(q_span.start - centre, q_span.stop - centre),
                range(k_span.start - centre, k_span.stop - centre))
    lo = min(int(q_pos.min()), int(k_pos.min()))
    hi = max(int(q_pos.max()), int(k_pos.max()))
    centre = (lo + hi) // 2
    return q_pos - centre, k_pos - centre


def centre_on_queries(
    q_pos: torch.Tensor, k_pos: torch.Tensor
) -> tuple[range | torch.Tensor, range | torch.Tensor]:
    """q_pos and k_pos minus the midpoint of the queries, as ranges where they are ranges.

    Centring on the queries (not on the common range) bounds every factor that
    :func:`.bidirectional.bidirectional_logits` forms by the span of the queries alone.
    """
    q_pos = q_pos.to(torch.int64).cpu()
    k_pos = k_pos.to(torch.int64).cpu()
    if not q_pos.numel():
        return range(0), k_pos
    centre = (int(q_pos.min()) + int(q_pos.max())) // 2
    q_span, k_span = _as_range(q_pos), _as_range(k_pos)
    q_rel = q_pos - centre if q_span is None else range(q_span.start - centre,
                                                         q_span.stop - centre)
    k_rel = k_pos - centre if k_span is None else range(k_span.start - centre,
                                                         k_span.stop - centre)
    return q_rel, k_rel
