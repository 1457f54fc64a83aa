"""Which cached keys each query sees, and at which position, for every window method.

For a chunk of consecutive query positions a method returns :class:`Branch` es. Each branch
is one contiguous range of cached keys with a visibility mask and optional extra rotations
(:mod:`lexformer.hf.rotation`); the attention engine scores all branches of a query under
one softmax, so a method built from several branches is one exact attention, not an average
of two. Keys never appear in two branches of the same query (the masks are disjoint).

Keys sit in the cache at their absolute positions 0..n−1 and were rotated there, queries
too. Relative distance is what RoPE scores see, and a RoPE score depends on the two
rotations only through their difference: moving a key forward by δ is the same as moving
the query back by δ. Every re-positioning below is therefore written as a rotation of each
query (``q_shift``, one angle per query) and/or of each key (``k_shift``, one per key), never
per (query, key) pair, so that a branch is a plain attention over rotated q and k:

* ``blockwise`` / ``sliding``: masks only, distances unchanged;
* ``sinks`` (StreamingLLM): the kept cache is the S sinks then the last W tokens; positions
  are indices in it. Window keys keep their distance to the query; a sink s sits at
  distance (S + W − 1) − s once the query i has evicted tokens, i.e. the sink moves forward
  by δ_i = max(0, i − (S + W − 1)): the query turns back by δ_i;
* ``lambda`` (LM-Infinite): the first n_global tokens plus a local window of n_local; every
  distance is min(i − j, cap). The local window (n_local ≤ cap) is unchanged; a global key
  within cap of the query too; a global key farther away sits at distance cap: the query
  turns to position cap and the key to position 0;
* ``self-extend``: keys within the neighbour window w keep i − j; farther keys use grouped
  positions: the query is rotated to ⌊i/G⌋ + w − ⌊w/G⌋ and the key to ⌊j/G⌋;
* ``blockwise+sinks``: blockwise plus the S first tokens, which for a query in block b ≥ 2
  sit just before the window, at (b − 1)·h − S + s: a forward shift of (b − 1)·h − S, the
  same for the whole block, by which the query turns back.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch

from ..attention import masks as M
from .options import WindowSettings


@dataclass(frozen=True)
class Branch:
    """Keys ``lo..hi−1``; ``mask`` (q, m): visible pairs; shifts in positions (int64):
    ``q_shift`` (q,) rotates queries, ``k_shift`` (m,) keys (``None``: no rotation)."""

    lo: int
    hi: int
    mask: torch.Tensor
    q_shift: torch.Tensor | None = None
    k_shift: torch.Tensor | None = None


@dataclass(frozen=True)
class WindowPlan:
    """What the engine and the bounded cache need to know of one window method.

    ``build(s, q_pos)``: the branches of queries at consecutive positions. ``reach(s)``: how
    many keys at most one query scores (``None``: any number, every key stays visible).
    ``prefix(s)``: leading tokens (sinks, global tokens) every query may see. ``first(s, p)``:
    the earliest key beyond the prefix that a query at p or later can see (``None``: any, so
    no key can ever be dropped). ``block(s)``: the block that query chunks never cross
    (``None``: no blocks). ``attend``: for a method whose visible keys depend on their
    content (``recall``), not on positions alone, the attention function that replaces the
    branch engine (same arguments as :func:`lexformer.hf.windowed.window_attention`); such a
    method has no ``build``.
    """

    build: Callable[[WindowSettings, torch.Tensor], list[Branch]] | None = None
    reach: Callable[[WindowSettings], int] | None = None
    prefix: Callable[[WindowSettings], int] = lambda s: 0
    first: Callable[[WindowSettings, int], int] | None = None
    block: Callable[[WindowSettings], int] | None = None
    attend: Callable[..., torch.Tensor] | None = None


def _plan(s: WindowSettings) -> WindowPlan:
    if s.plan is None:
        raise ValueError(f"settings of {s.method!r} carry no plan; build them with "
                         "lexformer.hf.methods.resolve_settings")
    return s.plan


def reach(s: WindowSettings, n_keys: int) -> int:
    """How many keys at most one query scores under method ``s`` (beyond the window: n_keys)."""
    plan = _plan(s)
    return n_keys if plan.reach is None else plan.reach(s)


def prefix_tokens(s: WindowSettings) -> int:
    """How many leading tokens (sinks, global tokens) every query may see."""
    return _plan(s).prefix(s)


def first_needed(s: WindowSettings, position: int) -> int | None:
    """The earliest key beyond the prefix that a query at ``position`` or later can see
    (``None``: any key, so no key can ever be dropped)."""
    plan = _plan(s)
    return None if plan.first is None else plan.first(s, position)


def query_chunks(s: WindowSettings, start: int, stop: int, max_chunk: int) -> list[range]:
    """Cut query positions start..stop−1 into runs of at most ``max_chunk``, of even sizes.

    Block methods cut at every block boundary too: the queries of one block share their
    key range and sink shift, so a chunk inside a block sees a rectangle of keys that are
    visible to all its queries plus a causal square, and needs no large mask.
    """
    cuts = [start]
    plan = _plan(s)
    if plan.block is not None:
        h = plan.block(s)
        cuts += range((start // h + 1) * h, stop, h)
    cuts.append(stop)
    chunks = []
    for a, b in zip(cuts, cuts[1:]):
        pieces = -(-(b - a) // max_chunk)
        edges = [a + (b - a) * i // pieces for i in range(pieces + 1)]
        chunks += [range(x, y) for x, y in zip(edges, edges[1:])]
    return chunks


def branches(s: WindowSettings, q_pos: torch.Tensor) -> list[Branch]:
    """The branches for queries at the consecutive positions ``q_pos`` (int64, CPU)."""
    return [b for b in _plan(s).build(s, q_pos) if b.hi > b.lo and bool(b.mask.any())]


def _keys(lo: int, hi: int) -> torch.Tensor:
    # hi < lo happens when a prefix (LM-Infinite's 100 global tokens, sinks) is longer than
    # the input so far: no keys, and branches() drops the branch
    return torch.arange(lo, max(lo, hi), dtype=torch.int64)


def _span(q_pos, lo, visible: M.MaskFn) -> Branch:
    """A shift-free branch over keys lo..(last query) with mask visible(q[:, None], k[None, :])."""
    hi = int(q_pos[-1]) + 1
    k = _keys(lo, hi)
    return Branch(lo, hi, visible(q_pos[:, None], k[None, :]))


def _prefix(q_pos, n: int, visible: M.MaskFn, q_shift=None, k_shift=None) -> Branch:
    """The first n keys; ``q_shift(q)`` / ``k_shift(k)``: their extra rotations."""
    k = _keys(0, min(n, int(q_pos[-1]) + 1))
    return Branch(0, len(k), visible(q_pos[:, None], k[None, :]),
                  None if q_shift is None else _nonzero_or_none(q_shift(q_pos)),
                  None if k_shift is None else _nonzero_or_none(k_shift(k)))


def _nonzero_or_none(shift: torch.Tensor) -> torch.Tensor | None:
    return shift if bool(shift.any()) else None  # a zero rotation is no rotation


def _recent(w: int) -> M.MaskFn:
    return M.and_masks(M.causal(), M.window(w))


def _blockwise(s: WindowSettings, q_pos):
    h = s.block
    return [_span(q_pos, M.block_start(h, int(q_pos[0])),
                  M.and_masks(M.causal(), M.block(h)))]


def _sliding(s: WindowSettings, q_pos):
    return [_span(q_pos, M.window_start(s.window, int(q_pos[0])), _recent(s.window))]


def _sinks(s: WindowSettings, q_pos):
    S, w = s.sinks, s.window
    # the sink moves forward by max(0, i − (S + W − 1)): the query turns back by as much
    sinks = _prefix(q_pos, S, M.causal(), q_shift=lambda q: -(q - (S + w - 1)).clamp(min=0))
    window = _span(q_pos, max(S, M.window_start(w, int(q_pos[0]))), _recent(w))
    return [sinks, window]


def _lambda(s: WindowSettings, q_pos):
    g, n_local, cap = s.global_tokens, s.local_window, s.distance_cap
    near = _prefix(q_pos, g, _recent(cap))
    # distance capped at cap: the query at position cap, the key at 0
    far = _prefix(q_pos, g, M.not_mask(M.window(cap)),
                  q_shift=lambda q: cap - q, k_shift=lambda k: -k)
    local = _span(q_pos, max(g, M.window_start(n_local, int(q_pos[0]))), _recent(n_local))
    return [near, far, local]


def _self_extend(s: WindowSettings, q_pos):
    g, w = s.group, s.neighbours
    near = _span(q_pos, M.window_start(w, int(q_pos[0])), _recent(w))
    hi = max(0, int(q_pos[-1]) - w + 1)
    k = _keys(0, hi)
    far = Branch(0, hi, M.not_mask(M.window(w))(q_pos[:, None], k[None, :]),
                 q_shift=q_pos // g + w - w // g - q_pos, k_shift=k // g - k)
    return [near, far]


def _blockwise_sinks(s: WindowSettings, q_pos):
    h, S = s.block, s.sinks
    # the sinks the block rule hides, placed just before the window
    sinks = _prefix(q_pos, S, M.and_masks(M.causal(), M.not_mask(M.block(h))),
                    q_shift=lambda q: S - (q // h - 1) * h)
    return [*_blockwise(s, q_pos), sinks]


def _block(s: WindowSettings) -> int:
    return s.block


def _block_first(s: WindowSettings, position: int) -> int:
    return M.block_start(s.block, position)


BLOCKWISE = WindowPlan(_blockwise, reach=lambda s: 2 * s.block, first=_block_first,
                       block=_block)
SLIDING = WindowPlan(_sliding, reach=lambda s: s.window,
                     first=lambda s, p: M.window_start(s.window, p))
SINKS = WindowPlan(_sinks, reach=lambda s: s.sinks + s.window, prefix=lambda s: s.sinks,
                   first=lambda s, p: M.window_start(s.window, p))
LAMBDA = WindowPlan(_lambda, reach=lambda s: s.global_tokens + s.local_window,
                    prefix=lambda s: s.global_tokens,
                    first=lambda s, p: M.window_start(s.local_window, p))
SELF_EXTEND = WindowPlan(_self_extend)
BLOCKWISE_SINKS = WindowPlan(_blockwise_sinks, reach=lambda s: 2 * s.block + s.sinks,
                             prefix=lambda s: s.sinks, first=_block_first, block=_block)

__all__ = ["BLOCKWISE", "BLOCKWISE_SINKS", "LAMBDA", "SELF_EXTEND", "SINKS", "SLIDING", "Branch",
           "WindowPlan", "branches", "first_needed", "prefix_tokens", "query_chunks", "reach"]
