"""Which cached keys each query sees, and at which position, for every window method.

For a chunk of consecutive query positions a method returns :class:`Branch` es. Each branch
is one contiguous range of cached keys with a visibility mask and optional extra rotations
(:mod:`lexformer.hf.rotation`); the attention engine scores all branches of a query under
one softmax, so a method built from several branches is one exact attention, not an average
of two. Keys never appear in two branches of the same query (the masks are disjoint).

Keys sit in the cache at their absolute positions 0..n−1 and were rotated there, queries
too. Relative distance is what RoPE scores see, so:

* ``blockwise`` / ``sliding``: masks only, distances unchanged;
* ``sinks`` (StreamingLLM): the kept cache is the S sinks then the last W tokens; positions
  are indices in it. Window keys keep their distance to the query; a sink s sits at
  distance (S + W − 1) − s once the query i has evicted tokens, i.e. the sink key moves
  forward by δ_i = max(0, i − (S + W − 1)) (a per-(query, key) rotation of the S sinks);
* ``lambda`` (LM-Infinite): the first n_global tokens plus a local window of n_local; every
  distance is min(i − j, cap): a global key j moves forward by max(0, i − j − cap) and the
  local window (n_local ≤ cap) is unchanged;
* ``self-extend``: keys within the neighbour window w keep i − j; farther keys use grouped
  positions: the query is rotated to ⌊i/G⌋ + w − ⌊w/G⌋ and the key to ⌊j/G⌋;
* ``blockwise+sinks``: blockwise plus the S first tokens, which for a query in block b ≥ 2
  sit just before the window, at (b − 1)·h − S + s (a shift of (b − 1)·h − S).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from .methods import WindowSettings


@dataclass(frozen=True)
class Branch:
    """Keys ``lo..hi−1``; ``mask`` (q, m): visible pairs; shifts in positions (int64):
    ``q_shift`` (q,) rotates queries, ``k_shift`` (m,) keys, ``pair_shift`` (q, m) the key
    as seen by each query."""

    lo: int
    hi: int
    mask: torch.Tensor
    q_shift: torch.Tensor | None = None
    k_shift: torch.Tensor | None = None
    pair_shift: torch.Tensor | None = None


def reach(s: WindowSettings, n_keys: int) -> int:
    """How many keys at most one query scores under method ``s`` (sizes the query chunks)."""
    return {
        "blockwise": 2 * s.block,
        "sliding": s.window,
        "sinks": s.sinks + s.window,
        "lambda": s.global_tokens + s.local_window,
        "blockwise+sinks": 2 * s.block + s.sinks,
    }.get(s.method, n_keys)


def prefix_tokens(s: WindowSettings) -> int:
    """How many leading tokens (sinks, global tokens) every query may see."""
    return {"sinks": s.sinks, "lambda": s.global_tokens, "blockwise+sinks": s.sinks}.get(
        s.method, 0)


def first_needed(s: WindowSettings, position: int) -> int | None:
    """The earliest key beyond the prefix that a query at ``position`` or later can see
    (``None``: any key, so no key can ever be dropped)."""
    if s.method in ("blockwise", "blockwise+sinks"):
        return max(0, (position // s.block - 1) * s.block)
    if s.method in ("sliding", "sinks"):
        return max(0, position - s.window + 1)
    if s.method == "lambda":
        return max(0, position - s.local_window + 1)
    return None


def branches(s: WindowSettings, q_pos: torch.Tensor) -> list[Branch]:
    """The branches for queries at the consecutive positions ``q_pos`` (int64, CPU)."""
    builder = _BUILDERS[s.method]
    return [b for b in builder(s, q_pos) if b.hi > b.lo and bool(b.mask.any())]


def _keys(lo: int, hi: int) -> torch.Tensor:
    # hi < lo happens when a prefix (LM-Infinite's 100 global tokens, sinks) is longer than
    # the input so far: no keys, and branches() drops the branch
    return torch.arange(lo, max(lo, hi), dtype=torch.int64)


def _span(q_pos, lo, hi, visible) -> Branch:
    """A shift-free branch over keys lo..hi−1 with mask visible(q[:, None], k[None, :])."""
    k = _keys(lo, hi)
    return Branch(lo, hi, visible(q_pos[:, None], k[None, :]))


def _blockwise(s: WindowSettings, q_pos):
    h = s.block
    lo = max(0, (int(q_pos[0]) // h - 1) * h)
    return [_span(q_pos, lo, int(q_pos[-1]) + 1,
                  lambda q, k: (k <= q) & (k // h >= q // h - 1))]


def _sliding(s: WindowSettings, q_pos):
    w = s.window
    lo = max(0, int(q_pos[0]) - w + 1)
    return [_span(q_pos, lo, int(q_pos[-1]) + 1, lambda q, k: (k <= q) & (q - k < w))]


def _prefix(q_pos, n: int, visible, shift) -> Branch:
    """The first n keys, with a per-(query, key) forward shift."""
    k = _keys(0, min(n, int(q_pos[-1]) + 1))
    q, kk = q_pos[:, None], k[None, :]
    return Branch(0, len(k), visible(q, kk), pair_shift=shift(q, kk).expand(len(q_pos), len(k)))


def _sinks(s: WindowSettings, q_pos):
    S, w = s.sinks, s.window
    sinks = _prefix(q_pos, S, lambda q, k: k <= q,
                    lambda q, k: (q - (S + w - 1)).clamp(min=0))
    lo = max(S, int(q_pos[0]) - w + 1)
    window = _span(q_pos, lo, int(q_pos[-1]) + 1, lambda q, k: (k <= q) & (q - k < w))
    return [sinks, window]


def _lambda(s: WindowSettings, q_pos):
    g, n_local, cap = s.global_tokens, s.local_window, s.distance_cap
    head = _prefix(q_pos, g, lambda q, k: k <= q, lambda q, k: (q - k - cap).clamp(min=0))
    lo = max(g, int(q_pos[0]) - n_local + 1)
    local = _span(q_pos, lo, int(q_pos[-1]) + 1, lambda q, k: (k <= q) & (q - k < n_local))
    return [head, local]


def _self_extend(s: WindowSettings, q_pos):
    g, w = s.group, s.neighbours
    near = _span(q_pos, max(0, int(q_pos[0]) - w + 1), int(q_pos[-1]) + 1,
                 lambda q, k: (k <= q) & (q - k < w))
    hi = max(0, int(q_pos[-1]) - w + 1)
    k = _keys(0, hi)
    far = Branch(0, hi, q_pos[:, None] - k[None, :] >= w,
                 q_shift=q_pos // g + w - w // g - q_pos, k_shift=k // g - k)
    return [near, far]


def _blockwise_sinks(s: WindowSettings, q_pos):
    h, S = s.block, s.sinks
    sinks = _prefix(q_pos, S, lambda q, k: (k <= q) & (k // h < q // h - 1),
                    lambda q, k: (q // h - 1) * h - S)
    return [*_blockwise(s, q_pos), sinks]


_BUILDERS = {
    "blockwise": _blockwise,
    "sliding": _sliding,
    "sinks": _sinks,
    "lambda": _lambda,
    "self-extend": _self_extend,
    "blockwise+sinks": _blockwise_sinks,
}

__all__ = ["Branch", "branches", "first_needed", "prefix_tokens", "reach"]
