"""The attention engine behind every window method: O(n·L) time and memory, never n×n.

Queries are processed in chunks of consecutive positions (:func:`~lexformer.hf.plans.
query_chunks`: at most ``MAX_CHUNK``, never across a block boundary); each chunk scores only
the key ranges its :class:`~lexformer.hf.plans.Branch` es name (its block and the previous
one, a window, the few sink tokens), so work and memory grow with n times the window, not
n². This is the same cut-into-windows idea as lexformer's own windowed attention
(:mod:`lexformer.attention`), specialised to keys that the Hugging Face model has already
rotated and to methods that re-position some keys.

Every branch is a plain attention once its queries and keys are rotated (the plans never
rotate per (query, key) pair), so it runs in the fused attention kernel, which also returns
each query's log-sum-exp; the branches, and the pieces a branch is cut into, are then merged
into one exact softmax (:mod:`lexformer.hf.lse_attention`). A branch's keys are cut by what
the chunk's queries see of them: keys that every query sees (no mask at all), keys at the
queries' own positions (a causal square: the kernel's own causal mode, which skips the
hidden half), and keys that only some queries see (a mask, over a band no wider than the
chunk when chunks follow the blocks). No score matrix is ever materialised.

Grouped-query attention is handled without repeating keys: the query heads that share a
key head are stacked along the query axis (B, Hkv, G·Tc, D), which the kernel sees as Hkv
heads with G times as many queries. The causal square alone, where stacking would break the
kernel's causal alignment, repeats its Tc keys instead.

Which keys each chunk sees, the masks and the query rotations depend only on positions, not
on the layer, so they are worked out once per forward pass (the *plan*) and reused by every
layer; when decoding one token at a time that bookkeeping would otherwise cost more than
the attention itself.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

import torch

from .lse_attention import additive_mask, attend_part, merge_parts
from .options import WindowSettings
from .plans import Branch, branches, prefix_tokens, query_chunks
from .rotation import apply_turn, rotate_by, turn_table

#: queries per chunk: large enough for the kernel to run at full speed, small enough that
#: the masked band and the causal square (about Tc/2 wasted keys per query) stay small
MAX_CHUNK = 512

_NONE, _SOME, _ALL = 0, 1, 2  # which rows of a chunk see a key column


def window_attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, s: WindowSettings,
                     scaling: float, inv_freq: torch.Tensor,
                     q_start: int | None = None) -> torch.Tensor:
    """Rotated q (B, Hq, Tq, D) over the rotated cache k, v (B, Hkv, Tk, D) → (B, Hq, Tq, D).

    Queries sit at positions ``q_start``.. (default: the last Tq positions of an unbounded
    cache, Tk − Tq). A bounded cache (:mod:`lexformer.hf.cache`) holds the method's prefix
    tokens and then a contiguous tail ending at the last query; the keys it dropped were
    never visible to these queries.
    """
    if s.plan is not None and s.plan.attend is not None:  # a method with an engine of its own
        return s.plan.attend(q, k, v, s, scaling, inv_freq, q_start)
    Tq, Tk = q.shape[-2], k.shape[-2]
    start = Tk - Tq if q_start is None else q_start
    plan = _plan_for(s, start, Tq, Tk, inv_freq, q.dtype, q.device)
    return torch.cat([_attend_chunk(q[..., c.rows, :], k, v, c, scaling, inv_freq)
                      for c in plan], dim=-2)


# --------------------------------------------------------------------------- the plan
@dataclass(frozen=True)
class _Piece:
    """One fused-kernel call: the branch's keys ``keys``, seen by every query
    (``visible`` None), by the queries ``visible`` (Tc, m) says, or causally."""

    keys: slice
    visible: torch.Tensor | None = None
    causal: bool = False


@dataclass(frozen=True)
class _BranchPlan:
    keys: slice  # cache indices
    q_turn: tuple[torch.Tensor, torch.Tensor] | None  # cos, sin (Tc, rot_dim)
    k_shift: torch.Tensor | None
    pieces: tuple[_Piece, ...]


@dataclass(frozen=True)
class _ChunkPlan:
    rows: slice  # the chunk's queries, as indices of this call's queries
    branches: tuple[_BranchPlan, ...]


def _plan_for(s, start, Tq, Tk, inv_freq, dtype, device) -> list[_ChunkPlan]:
    """The plan of one call, shared by every layer of a forward pass.

    All layers of a step attend at the same positions over caches of the same length, so
    which keys each chunk sees, the masks and the query rotations are worked out once and
    reused by the next layers; only the last plan is kept (a few MB: masks are kept only
    for bands no wider than a chunk).
    """
    key = (s, start, Tq, Tk, MAX_CHUNK, dtype, device, id(inv_freq), inv_freq._version)
    if _last_plan and _last_plan[0] == key and _last_plan[1] is inv_freq:
        return _last_plan[2]
    plan = _build_plan(s, start, Tq, Tk, inv_freq, dtype, device)
    _last_plan[:] = [key, inv_freq, plan]  # the reference keeps id(inv_freq) unambiguous
    return plan


_last_plan: list = []


def _build_plan(s, start, Tq, Tk, inv_freq, dtype, device) -> list[_ChunkPlan]:
    layout = _CacheLayout(evicted=start + Tq - Tk, prefix=prefix_tokens(s))
    plan = []
    for chunk in query_chunks(s, start, start + Tq, MAX_CHUNK):
        pos = torch.arange(chunk.start, chunk.stop, dtype=torch.int64)
        planned = []
        for b in branches(s, pos):
            turn = None if b.q_shift is None else turn_table(b.q_shift, inv_freq, dtype, device)
            visible = b.mask.to(device)
            planned.append(_BranchPlan(layout.keys(b), turn, b.k_shift,
                                       _pieces(visible, b.hi == chunk.stop)))
        plan.append(_ChunkPlan(slice(chunk.start - start, chunk.stop - start), tuple(planned)))
    return plan


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


def _pieces(visible: torch.Tensor, ends_at_queries: bool) -> tuple[_Piece, ...]:
    """Cut one branch's keys by what the chunk's queries see of them (``visible`` (Tc, m));
    ``ends_at_queries``: the last Tc keys sit at the queries' own positions."""
    Tc, m = visible.shape
    pieces = []
    if Tc > 1 and ends_at_queries and m >= Tc and torch.equal(
            visible[:, m - Tc:], _lower_triangle(Tc, visible.device)):
        pieces.append(_Piece(slice(m - Tc, m), causal=True))
        m -= Tc
    for a, b, seen_by in _column_runs(visible[:, :m]):
        if seen_by == _ALL:
            pieces.append(_Piece(slice(a, b)))
        elif seen_by == _SOME:  # a copy: the plan must not keep the whole (Tc, m) alive
            pieces.append(_Piece(slice(a, b), visible[:, a:b].clone()))
    return tuple(pieces)


def _column_runs(visible: torch.Tensor) -> list[tuple[int, int, int]]:
    """Maximal runs a..b−1 of key columns seen by no row, some rows, or all rows."""
    if visible.shape[1] == 0:
        return []
    if bool(visible.all()):  # the common case of one decoding query: a single run
        return [(0, visible.shape[1], _ALL)]
    kind = visible.any(dim=0).to(torch.int8) + visible.all(dim=0).to(torch.int8)
    starts = torch.cat((kind.new_zeros(1, dtype=torch.int64),
                        (kind[1:] != kind[:-1]).nonzero().flatten() + 1))
    bounds = [*starts.tolist(), len(kind)]
    return list(zip(bounds, bounds[1:], kind[starts].tolist()))


@lru_cache(maxsize=8)
def _lower_triangle(n: int, device: torch.device) -> torch.Tensor:
    return torch.ones(n, n, dtype=torch.bool, device=device).tril()


# --------------------------------------------------------------------------- execution
def _attend_chunk(q, k, v, chunk: _ChunkPlan, scaling, inv_freq) -> torch.Tensor:
    """The chunk's queries q (B, Hq, Tc, D) under all their branches → (B, Hq, Tc, D)."""
    B, Hq, Tc, D = q.shape
    Hkv = k.shape[1]
    G = Hq // Hkv
    rows = (B, Hkv, G * Tc)
    results = []
    for b in chunk.branches:
        qb = q if b.q_turn is None else apply_turn(q, *b.q_turn)
        kb, vb = k[..., b.keys, :], v[..., b.keys, :]
        if b.k_shift is not None:
            kb = rotate_by(kb, b.k_shift, inv_freq)
        stacked = qb.reshape(*rows, D)  # query heads of one key head stacked along the rows
        for p in b.pieces:
            if p.causal:  # stacking would break the kernel's causal alignment: repeat keys
                out, lse = attend_part(qb, kb[..., p.keys, :].repeat_interleave(G, dim=1),
                                       vb[..., p.keys, :].repeat_interleave(G, dim=1),
                                       scaling, causal=True)
                results.append((out.reshape(*rows, D), lse.reshape(rows)))
                continue
            mask = None if p.visible is None else additive_mask(p.visible, q.dtype).repeat(G, 1)
            out, lse = attend_part(stacked, kb[..., p.keys, :], vb[..., p.keys, :], scaling,
                                   mask)
            if p.visible is not None:
                blind = ~p.visible.any(dim=1)  # rows that see none of these keys
                if bool(blind.any()):
                    lse = lse.masked_fill(blind.repeat(G), float("-inf"))
            results.append((out, lse))
    return merge_parts(results).reshape(B, Hq, Tc, D)


__all__ = ["MAX_CHUNK", "window_attention"]
