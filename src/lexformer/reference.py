"""Slow, obvious float64 references for the position schemes and the attention modes.

This is the one reference implementation that the tests, the benchmarks and
``scripts/long_numerics.py`` compare the library against. Nothing in the library's fast
paths uses it, and it imports nothing from ``lexformer``: every formula is written out again
from its definition in ``docs/method.md``, one coordinate pair, one entry or one query row at
a time, so that an error in the library cannot be copied into its own yardstick.

* XPOS (``docs/method.md#xpos``), per interleaved pair j = 0 … d/2−1 of coordinates
  (2j, 2j+1)::

      θ_j = base^(−2j/d),   ζ_j = (2j/d + γ) / (1 + γ)
      q' = (q cos nθ + rot(q) sin nθ) · ζ^(n/B)       (query at position n)
      k' = (k cos mθ + rot(k) sin mθ) · ζ^(−m/B)      (key at position m)
      rot(x) = [−x1, x0, −x3, x2, …]

  RoPE is the same with ζ = 1.
* ALiBi (``docs/method.md#baselines``): slopes 2^(−8h/H), h = 1..H; bias −slope_h · (n − m).
* Visibility (``docs/method.md#blockwise-causal-attention``): ``full`` m ≤ p; ``blockwise``
  m ≤ p and m//h ≥ p//h − 1; ``sliding`` 0 ≤ p − m < W.

Positions are used as given (no centring) except in :func:`attention_rows`, which places each
query at 0 and its keys at m − p: relative invariance makes that exact, and it keeps every
XPOS factor ≤ 1 at any sequence length.
"""

from __future__ import annotations

import math
from collections.abc import Iterable

import torch

F64 = torch.float64
#: the position schemes this module has a reference for
SCHEMES = ("xpos", "rope", "alibi", "none")
ROTARY_SCHEMES = ("xpos", "rope")


# --------------------------------------------------------------------------- XPOS / RoPE
def xpos_zeta(head_dim: int, gamma: float = 0.4) -> list[float]:
    """ζ_j = (2j/d + γ)/(1 + γ), j = 0 … d/2 − 1."""
    return [(2 * j / head_dim + gamma) / (1 + gamma) for j in range(head_dim // 2)]


def rope_theta(head_dim: int, base: float = 10000.0) -> list[float]:
    """θ_j = base^(−2j/d)."""
    return [base ** (-2 * j / head_dim) for j in range(head_dim // 2)]


def rotate(
    x: torch.Tensor,
    positions: Iterable[int] | torch.Tensor,
    *,
    decay: bool,
    is_key: bool,
    gamma: float = 0.4,
    scale_base: float = 512.0,
    base: float = 10000.0,
) -> torch.Tensor:
    """Rotate x (…, T, d) at integer ``positions`` (T,) in float64, one pair j at a time.

    ``decay=True`` is XPOS (queries scaled by ζ^(n/B), keys by ζ^(−m/B)); ``decay=False``
    is RoPE. Positions are used as given (global, uncentred): fine in float64 while
    ζ_0^(±n/B) stays inside 1e±308, i.e. |n| up to ~2.8e5 for B = 512.
    """
    d = x.shape[-1]
    if d % 2:
        raise ValueError(f"rotary references need an even dimension, got {d}")
    x = x.to(F64)
    n = torch.as_tensor(list(map(int, positions)), dtype=torch.int64).to(F64)  # exact < 2^53
    if n.shape != (x.shape[-2],):
        raise ValueError(f"{n.numel()} positions for {x.shape[-2]} rows")
    out = torch.empty_like(x)
    thetas = rope_theta(d, base)
    zetas = xpos_zeta(d, gamma)
    for j in range(d // 2):
        angle = n * thetas[j]
        cos, sin = torch.cos(angle), torch.sin(angle)
        x0, x1 = x[..., 2 * j], x[..., 2 * j + 1]
        # x·cos + rot(x)·sin with rot(x) = [−x1, x0]
        r0 = x0 * cos - x1 * sin
        r1 = x1 * cos + x0 * sin
        if decay:
            sign = -1.0 if is_key else 1.0
            factor = torch.pow(torch.tensor(zetas[j], dtype=F64), sign * n / scale_base)
            r0, r1 = r0 * factor, r1 * factor
        out[..., 2 * j], out[..., 2 * j + 1] = r0, r1
    return out


def rotary_logits(q, k, q_pos, k_pos, *, decay: bool, **kw) -> torch.Tensor:
    """q'·k'ᵀ (no 1/√d) in float64 for q (…, Tq, d) at q_pos and k (…, Tk, d) at k_pos."""
    q2 = rotate(q, q_pos, decay=decay, is_key=False, **kw)
    k2 = rotate(k, k_pos, decay=decay, is_key=True, **kw)
    return q2 @ k2.transpose(-1, -2)


def rotary_logit_magnitude(q, k, q_pos, k_pos, *, decay: bool, **kw) -> torch.Tensor:
    """Σ_j |q'_j||k'_j| per logit: the scale against which fp32 rounding is judged."""
    q2 = rotate(q, q_pos, decay=decay, is_key=False, **kw).abs()
    k2 = rotate(k, k_pos, decay=decay, is_key=True, **kw).abs()
    return q2 @ k2.transpose(-1, -2)


# --------------------------------------------------------------------------- ALiBi
def alibi_slopes(num_heads: int) -> list[float]:
    """2^(−8h/H), h = 1..H (H a power of two); otherwise the ALiBi paper's interleaving."""
    def pow2(n):
        return [2.0 ** (-8.0 * h / n) for h in range(1, n + 1)]

    if (num_heads & (num_heads - 1)) == 0:
        return pow2(num_heads)
    lower = 2 ** int(math.floor(math.log2(num_heads)))
    return pow2(lower) + pow2(2 * lower)[0::2][: num_heads - lower]


def alibi_bias(num_heads: int, q_pos, k_pos) -> torch.Tensor:
    """(H, Tq, Tk) float64 bias −slope_h·(n − m), computed entry by entry."""
    q_pos = [int(p) for p in q_pos]
    k_pos = [int(p) for p in k_pos]
    out = torch.empty(num_heads, len(q_pos), len(k_pos), dtype=F64)
    dist = torch.tensor([[n - m for m in k_pos] for n in q_pos], dtype=F64)
    for h, s in enumerate(alibi_slopes(num_heads)):
        out[h] = -s * dist
    return out


# --------------------------------------------------------------------------- visibility
def visible(p: int, m: int, mode: str, block: int, window: int) -> bool:
    """May the query at position p see the key at position m? (from the definition)"""
    if m > p:
        return False
    if mode == "full":
        return True
    if mode == "blockwise":
        return m // block >= p // block - 1
    if mode == "sliding":
        return 0 <= p - m < window
    raise ValueError(mode)


def visibility_mask(q_pos, k_pos, mode: str, block: int, window: int) -> torch.Tensor:
    """Boolean (Tq, Tk) visibility built with explicit Python loops."""
    q_pos = [int(p) for p in q_pos]
    k_pos = [int(p) for p in k_pos]
    return torch.tensor(
        [[visible(p, m, mode, block, window) for m in k_pos] for p in q_pos],
        dtype=torch.bool,
    )


def visible_keys(p: int, mode: str, block: int, window: int) -> list[int]:
    """Positions of the keys (of a sequence 0, 1, …) that the query at p sees, ascending.

    In the windowed modes no visible key lies 2·max(h, W) or more back (blockwise: at most
    2h − 1; sliding: at most W − 1), so only that stretch is tested key by key.
    """
    lo = 0 if mode == "full" else max(0, p - 2 * max(block, window))
    return [m for m in range(lo, p + 1) if visible(p, m, mode, block, window)]


# --------------------------------------------------------------------------- attention
def scores(q, k, q_pos, k_pos, scheme: str, **kw) -> torch.Tensor:
    """Pre-softmax scores q'·k'/√d (+ ALiBi bias), float64, (B, H, Tq, Tk), no mask."""
    d = q.shape[-1]
    if scheme in ROTARY_SCHEMES:
        logits = rotary_logits(q, k, q_pos, k_pos, decay=(scheme == "xpos"), **kw)
    elif scheme in ("alibi", "none"):
        logits = q.to(F64) @ k.to(F64).transpose(-1, -2)
    else:
        raise ValueError(scheme)
    out = logits / math.sqrt(d)
    if scheme == "alibi":
        out = out + alibi_bias(q.shape[1], q_pos, k_pos)
    return out


def attention(q, k, v, scheme: str, mode: str, block: int, window: int,
              q_pos=None, k_pos=None, return_weights: bool = False, **kw):
    """Dense-mask attention in float64: q, k, v (B, H, T, D) *unrotated*.

    Positions default to the last Tq of 0..Tk−1 for the queries and 0..Tk−1 for the keys
    (global, uncentred). Returns the output (B, H, Tq, D) and, with ``return_weights``, also
    the masked scores (−inf where hidden) and probabilities.
    """
    Tq, Tk = q.shape[-2], k.shape[-2]
    q_pos = list(range(Tk - Tq, Tk)) if q_pos is None else [int(p) for p in q_pos]
    k_pos = list(range(Tk)) if k_pos is None else [int(p) for p in k_pos]
    s = scores(q, k, q_pos, k_pos, scheme, **kw)
    s = s.masked_fill(~visibility_mask(q_pos, k_pos, mode, block, window), float("-inf"))
    probs = torch.softmax(s, dim=-1)
    out = probs @ v.to(F64)
    if return_weights:
        return out, s, probs
    return out


def attention_rows(q, k, v, rows, scheme: str, mode: str, block: int, window: int, **kw):
    """Output rows ``rows`` of self-attention over positions 0..T−1, float64, (B, H, R, D).

    Each row is computed on its own, over only the keys its query sees, with positions
    relative to that query (query at 0, key m at m − p): relative invariance makes this
    exact, and XPOS factors stay ≤ 1, so it works at any length.
    """
    outs = []
    for p in map(int, rows):
        keys = visible_keys(p, mode, block, window)
        idx = torch.tensor(keys)
        s = scores(q[..., p:p + 1, :], k[..., idx, :], [0], [m - p for m in keys], scheme, **kw)
        outs.append(torch.softmax(s, dim=-1) @ v[..., idx, :].to(F64))
    return torch.cat(outs, dim=-2)
