"""Slow, obvious float64 references written straight from the paper and SPEC §1–§3.

Nothing here imports lexformer: every formula is re-derived from its definition so that the
tests compare the library against an independent implementation.

* XPOS (paper, Algorithm 1), per pair j = 0 … d/2−1 of interleaved coordinates (2j, 2j+1)::

      θ_j = base^(−2j/d),   ζ_j = (2j/d + γ) / (1 + γ)
      q' = (q cos nθ + rot(q) sin nθ) · ζ^(n/B)       (query at position n)
      k' = (k cos mθ + rot(k) sin mθ) · ζ^(−m/B)      (key at position m)
      rot(x) = [−x1, x0, −x3, x2, …]

* RoPE: the same with ζ = 1.
* ALiBi: slopes 2^(−8h/H), h = 1..H; bias −slope_h · (n − m).
* Visibility (SPEC §2): ``full`` m ≤ p; ``blockwise`` m ≤ p and m//h ≥ p//h − 1;
  ``sliding`` 0 ≤ p − m < W.
"""

from __future__ import annotations

import math

import torch

F64 = torch.float64
ROTARY_SCHEMES = ("xpos", "rope")
SCHEMES = ("xpos", "rope", "alibi", "none")
MODES = ("full", "blockwise", "sliding")


# --------------------------------------------------------------------------- XPOS / RoPE
def xpos_zeta(head_dim: int, gamma: float = 0.4) -> list[float]:
    """ζ_j = (2j/d + γ)/(1 + γ), j = 0 … d/2 − 1."""
    return [(2 * j / head_dim + gamma) / (1 + gamma) for j in range(head_dim // 2)]


def rope_theta(head_dim: int, base: float = 10000.0) -> list[float]:
    """θ_j = base^(−2j/d)."""
    return [base ** (-2 * j / head_dim) for j in range(head_dim // 2)]


def rotary_ref(
    x: torch.Tensor,
    positions,
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
    assert d % 2 == 0
    x = x.to(F64)
    n = torch.as_tensor(positions, dtype=torch.int64).to(F64)  # exact for |n| < 2^53
    assert n.shape == (x.shape[-2],)
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


def xpos_ref(x, positions, *, is_key, **kw):
    return rotary_ref(x, positions, decay=True, is_key=is_key, **kw)


def rope_ref(x, positions, **kw):
    return rotary_ref(x, positions, decay=False, is_key=False, **kw)


def rotary_logits_ref(q, k, q_pos, k_pos, *, decay: bool, **kw) -> torch.Tensor:
    """q'·k'ᵀ (no 1/√d) in float64 for q (…, Tq, d) at q_pos and k (…, Tk, d) at k_pos."""
    q2 = rotary_ref(q, q_pos, decay=decay, is_key=False, **kw)
    k2 = rotary_ref(k, k_pos, decay=decay, is_key=True, **kw)
    return q2 @ k2.transpose(-1, -2)


def rotary_logits_magnitude(q, k, q_pos, k_pos, *, decay: bool, **kw) -> torch.Tensor:
    """Σ_j |q'_j||k'_j| per logit: the scale against which fp32 rounding is judged."""
    q2 = rotary_ref(q, q_pos, decay=decay, is_key=False, **kw).abs()
    k2 = rotary_ref(k, k_pos, decay=decay, is_key=True, **kw).abs()
    return q2 @ k2.transpose(-1, -2)


# --------------------------------------------------------------------------- ALiBi
def alibi_slopes_ref(num_heads: int) -> list[float]:
    """2^(−8h/H), h = 1..H (H a power of two); otherwise the ALiBi paper's interleaving."""
    def pow2(n):
        return [2.0 ** (-8.0 * h / n) for h in range(1, n + 1)]

    if (num_heads & (num_heads - 1)) == 0:
        return pow2(num_heads)
    lower = 2 ** int(math.floor(math.log2(num_heads)))
    return pow2(lower) + pow2(2 * lower)[0::2][: num_heads - lower]


def alibi_bias_ref(num_heads: int, q_pos, k_pos) -> torch.Tensor:
    """(H, Tq, Tk) float64 bias −slope_h·(n − m), computed entry by entry."""
    q_pos = [int(p) for p in q_pos]
    k_pos = [int(p) for p in k_pos]
    slopes = alibi_slopes_ref(num_heads)
    out = torch.empty(num_heads, len(q_pos), len(k_pos), dtype=F64)
    dist = torch.tensor([[n - m for m in k_pos] for n in q_pos], dtype=F64)
    for h, s in enumerate(slopes):
        out[h] = -s * dist
    return out


# --------------------------------------------------------------------------- visibility
def visible_ref(p: int, m: int, mode: str, block: int, window: int) -> bool:
    """May the query at position p see the key at position m? (SPEC §2, from the text)."""
    if m > p:
        return False
    if mode == "full":
        return True
    if mode == "blockwise":
        return m // block >= p // block - 1
    if mode == "sliding":
        return 0 <= p - m < window
    raise ValueError(mode)


def mask_ref(q_pos, k_pos, mode: str, block: int, window: int) -> torch.Tensor:
    """Boolean (Tq, Tk) visibility built with explicit Python loops."""
    q_pos = [int(p) for p in q_pos]
    k_pos = [int(p) for p in k_pos]
    return torch.tensor(
        [[visible_ref(p, m, mode, block, window) for m in k_pos] for p in q_pos],
        dtype=torch.bool,
    )


# --------------------------------------------------------------------------- attention
def scores_ref(q, k, q_pos, k_pos, scheme: str, **kw) -> torch.Tensor:
    """Pre-softmax scores q'·k'/√d (+ ALiBi bias), float64, (B, H, Tq, Tk), no mask."""
    d = q.shape[-1]
    if scheme in ROTARY_SCHEMES:
        logits = rotary_logits_ref(q, k, q_pos, k_pos, decay=(scheme == "xpos"), **kw)
    elif scheme in ("alibi", "none"):
        logits = q.to(F64) @ k.to(F64).transpose(-1, -2)
    else:
        raise ValueError(scheme)
    scores = logits / math.sqrt(d)
    if scheme == "alibi":
        scores = scores + alibi_bias_ref(q.shape[1], q_pos, k_pos)
    return scores


def attention_ref(q, k, v, scheme: str, mode: str, block: int, window: int,
                  q_pos=None, k_pos=None, return_weights: bool = False, **kw):
    """Dense-mask attention in float64: q, k, v (B, H, T, D) *unrotated*.

    Positions default to 0..T−1 (global, uncentred). Returns the output (B, H, Tq, D) and,
    with ``return_weights``, also the masked scores (−inf where hidden) and probabilities.
    """
    Tq, Tk = q.shape[-2], k.shape[-2]
    q_pos = list(range(Tk - Tq, Tk)) if q_pos is None else [int(p) for p in q_pos]
    k_pos = list(range(Tk)) if k_pos is None else [int(p) for p in k_pos]
    scores = scores_ref(q, k, q_pos, k_pos, scheme, **kw)
    visible = mask_ref(q_pos, k_pos, mode, block, window)
    scores = scores.masked_fill(~visible, float("-inf"))
    probs = torch.softmax(scores, dim=-1)
    out = probs @ v.to(F64)
    if return_weights:
        return out, scores, probs
    return out


def attention_rows_ref(q, k, v, rows, scheme: str, mode: str, block: int, window: int, **kw):
    """Output rows ``rows`` of self-attention over positions 0..T−1, float64, (B, H, R, D).

    Each row is computed on its own with positions *relative to its query* (query at 0, key
    m at m − p): relative invariance makes this exact, and XPOS factors stay ≤ 1, so it
    works at any length. Only the visible keys of the row are touched.
    """
    outs = []
    for p in rows:
        p = int(p)
        keys = [m for m in range(max(0, p - 4 * block - 4 * window) if mode != "full" else 0,
                                 p + 1) if visible_ref(p, m, mode, block, window)]
        idx = torch.tensor(keys)
        qr = q[..., p:p + 1, :]
        kr, vr = k[..., idx, :], v[..., idx, :]
        rel_k = [m - p for m in keys]
        out = attention_ref(qr, kr, vr, scheme, "full", block, window,
                            q_pos=[0], k_pos=rel_k, **kw)
        outs.append(out)
    return torch.cat(outs, dim=-2)
