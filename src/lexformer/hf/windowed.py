"""The attention engine behind every window method: O(n·L) time and memory, never n×n.

Queries are processed in chunks of consecutive positions; each chunk scores only the key
ranges its :class:`~lexformer.hf.plans.Branch` es name (its block and the previous one, a
window, the few sink tokens), so work and memory grow with n times the window, not n².
This is the same cut-into-windows idea as lexformer's own windowed attention
(:mod:`lexformer.attention`), specialised to keys that the Hugging Face model has already
rotated and to methods that re-position some keys.

A chunk with one shift-free branch (blockwise, sliding) goes through
``scaled_dot_product_attention`` with a (chunk, window) boolean mask. Chunks with several
branches or shifted keys compute scores explicitly (softmax in at least float32) so that all
branches share one softmax. Grouped-query attention is handled by viewing the query heads
as (kv heads, group) instead of repeating keys.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

from .methods import WindowSettings
from .plans import Branch, branches, prefix_tokens, reach
from .rotation import rotate_by

#: score elements one chunk may hold (per batch element): bounds memory at any length.
CHUNK_BUDGET = 1 << 23
MIN_CHUNK, MAX_CHUNK = 16, 1024


def chunk_size(s: WindowSettings, n_heads: int, n_keys: int) -> int:
    span = min(reach(s, n_keys), n_keys) + MAX_CHUNK
    return max(MIN_CHUNK, min(MAX_CHUNK, CHUNK_BUDGET // (n_heads * span)))


def window_attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, s: WindowSettings,
                     scaling: float, inv_freq: torch.Tensor,
                     q_start: int | None = None) -> torch.Tensor:
    """Rotated q (B, Hq, Tq, D) over the rotated cache k, v (B, Hkv, Tk, D) → (B, Hq, Tq, D).

    Queries sit at positions ``q_start``.. (default: the last Tq positions of an unbounded
    cache, Tk − Tq). A bounded cache (:mod:`lexformer.hf.cache`) holds the method's prefix
    tokens and then a contiguous tail ending at the last query; the keys it dropped were
    never visible to these queries.
    """
    Tq, Tk = q.shape[-2], k.shape[-2]
    start = Tk - Tq if q_start is None else q_start
    layout = _CacheLayout(evicted=start + Tq - Tk, prefix=prefix_tokens(s))
    q_pos = torch.arange(start, start + Tq, dtype=torch.int64)
    step = chunk_size(s, q.shape[1], Tk)
    outs = []
    for first in range(0, Tq, step):
        pos = q_pos[first:first + step]
        outs.append(_attend_chunk(q[..., first:first + step, :], k, v, branches(s, pos),
                                  scaling, inv_freq, layout))
    return torch.cat(outs, dim=-2)


@dataclass(frozen=True)
class _CacheLayout:
    """Cache index of position p: p inside the prefix, p − evicted in the tail."""

    evicted: int
    prefix: int

    def keys(self, b: Branch) -> slice:
        if self.evicted == 0 or b.hi <= self.prefix:
            return slice(b.lo, b.hi)
        if b.lo - self.evicted < self.prefix:
            raise RuntimeError(f"keys from position {b.lo} were dropped from the cache")
        return slice(b.lo - self.evicted, b.hi - self.evicted)


def _attend_chunk(q, k, v, parts: list[Branch], scaling, inv_freq, layout: _CacheLayout):
    only = parts[0]
    if len(parts) == 1 and only.q_shift is None and only.k_shift is None \
            and only.pair_shift is None:
        at = layout.keys(only)
        return F.scaled_dot_product_attention(
            q, k[..., at, :], v[..., at, :], attn_mask=only.mask.to(q.device),
            scale=scaling, enable_gqa=q.shape[1] != k.shape[1])
    B, Hq, Tc, D = q.shape
    Hkv = k.shape[1]
    qg = q.view(B, Hkv, Hq // Hkv, Tc, D)
    scores = [_branch_scores(qg, k[..., layout.keys(b), :], b, scaling, inv_freq)
              for b in parts]
    work = torch.promote_types(q.dtype, torch.float32)
    probs = torch.softmax(torch.cat(scores, dim=-1).to(work), dim=-1).to(v.dtype)
    out, used = 0, 0
    for b in parts:
        m = b.hi - b.lo
        p = probs[..., used:used + m]  # (B, Hkv, G, Tc, m)
        out = out + p @ v[:, :, None, layout.keys(b), :]
        used += m
    return out.reshape(B, Hq, Tc, D)


def _branch_scores(qg, kb, b: Branch, scaling, inv_freq):
    """Scaled scores (B, Hkv, G, Tc, m) of one branch over its keys kb, hidden pairs −inf."""
    if b.q_shift is not None:
        qg = rotate_by(qg, b.q_shift, inv_freq)
    if b.k_shift is not None:
        kb = rotate_by(kb, b.k_shift, inv_freq)
    if b.pair_shift is not None:
        kp = rotate_by(kb[:, :, None], b.pair_shift, inv_freq)  # (B, Hkv, Tc, m, D)
        s = torch.einsum("bhgqd,bhqmd->bhgqm", qg, kp)
    else:
        s = qg @ kb[:, :, None].transpose(-1, -2)
    s = s * scaling
    return s.masked_fill(~b.mask.to(s.device), float("-inf"))


__all__ = ["window_attention", "chunk_size", "CHUNK_BUDGET"]
