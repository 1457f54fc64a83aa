"""``recall``: blockwise attention with sinks, plus the past blocks each query recalls.

Within the model's declared context L the method *is* the model: a query at position i < L
sees every key 0..i at its own position (those rows go through the branch engine as sliding
attention with W = L, which there is exactly causal attention). A query at i ≥ L, in block
c = ⌊i/h⌋, with w₀ = (c − 1)·h, sees under one softmax

* its window: its own block and the previous one, keys w₀..i at their distance (BCA);
* the S sink tokens;
* k past blocks of b keys recalled for it, out of the candidates [S + m·b, S + (m + 1)·b)
  that lie wholly before the window (m < M = ⌊(w₀ − S)/b⌋; the few keys between the last
  candidate and the window are never seen).

Positions: sinks and recalled blocks sit contiguously just before the window, in their
original order, sinks first: sink s at w₀ − k·b − S + s, the j-th recalled block at
w₀ − k·b + j·b + t. The farthest key is then at distance ≤ S + k·b + 2h − 1, inside the
pretrained range (the record refuses S + k·b + 2h > L); for i ≥ L, w₀ > L − 2h ≥ S + k·b, so
there are always at least k candidates. Keys come rotated at their own positions; moving one
by δ is one more rotation by δ, applied to the query instead (q·R(δ)k = R(−δ)q·k: k
rotations per query rather than k·b per query).

Selection, after Quest (Tang et al. 2024, arXiv 2406.10774): a block's summary is the
per-channel minimum and maximum of its keys, and q·k over the block is at most
Σ_c max(q_c·min_c, q_c·max_c) = max(q, 0)·max + min(q, 0)·min (two matrix products). RoPE
makes q·k between far-apart positions say little about content, so the bound is taken at one
common distance: each block's keys are turned back to positions 0..b−1 (its summary then no
longer depends on the query and is built once per call) and the query to i − w₀ + b, so
every block is scored as if it sat just before the window, about where a recalled block
lands. One selection per key head: the maximum of the bound over the query heads sharing it
(GQA). Per query, not per query block: a choice made from the whole block would let a query's
output depend on later tokens (a perplexity that reads the future), and generating one token
at a time could not reproduce it without keeping every layer's queries. Cost: O(n/b) scores
per query beside its at most S + k·b + 2h attended keys. A chunk of consecutive queries
(inside one block) gathers the union of the blocks its queries recall once and meets each
block's keys in one matrix product, each query masking the blocks it did not pick: the work
is that of the union, k blocks when neighbouring queries agree, at most min(M, rows·k).

Generation runs on the model's ordinary unbounded cache (every past block stays selectable:
the key/value memory grows linearly with n).
"""

from __future__ import annotations

import contextlib
import dataclasses
from collections.abc import Callable, Iterator
from functools import lru_cache

import torch

from ..errors import LexformerError
from .options import WindowSettings
from .plans import SLIDING, WindowPlan
from .rotation import rotate_by
from .windowed import window_attention

#: elements of one chunk's recalled scores and turned queries, B·Hq·rows·U·(b + D) for U ≈ 2k
#: recalled blocks (the union of the rows' choices): bounds the memory per step
GATHER_BUDGET = 1 << 23

_forced: list[Callable] = []  # see forced_selection


@contextlib.contextmanager
def forced_selection(choose: Callable[[torch.Tensor, int, int], torch.Tensor]) -> Iterator[None]:
    """Within the block every query recalls the blocks ``choose(positions (Tc,), M, k)``
    names ((Tc, k) candidate indices), in every layer and key head: a test can then check
    the positions apart from the selection."""
    _forced.append(choose)
    try:
        yield
    finally:
        _forced.pop()


def recall_attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, s: WindowSettings,
                     scaling: float, inv_freq: torch.Tensor,
                     q_start: int | None = None) -> torch.Tensor:
    """Rotated q (B, Hq, Tq, D) over the rotated cache k, v (B, Hkv, Tk, D) → (B, Hq, Tq, D).

    The cache holds every key 0..Tk − 1 and the queries sit at the last Tq positions.
    """
    Tq, Tk = q.shape[-2], k.shape[-2]
    start = Tk - Tq
    if q_start is not None and q_start != start:
        raise LexformerError("recall needs every past key in its cache (no bounded cache)")
    n_full = max(0, min(Tq, s.context - start))  # the rows still inside the context
    parts = []
    if n_full:
        end = start + n_full
        parts.append(window_attention(q[..., :n_full, :], k[..., :end, :], v[..., :end, :],
                                      _causal(s), scaling, inv_freq, start))
    if n_full < Tq:
        last_w0 = ((Tk - 1) // s.block - 1) * s.block
        blocks = _Blocks(k, v, s, (last_w0 - s.sinks) // s.recall_block, inv_freq)
        per_row = q.shape[0] * q.shape[1] * 2 * s.recall_blocks * (s.recall_block + q.shape[-1])
        for rows in _row_chunks(s.block, start + n_full, Tk, per_row):
            part = q[..., rows.start - start:rows.stop - start, :]
            parts.append(_recall_rows(part, k, v, s, scaling, inv_freq, rows, blocks))
    return torch.cat(parts, dim=-2)


@lru_cache(maxsize=16)
def _causal(s: WindowSettings) -> WindowSettings:
    # sliding attention over the last L keys: for a query at i < L, every key 0..i
    return dataclasses.replace(s, method="sliding", window=s.context, plan=SLIDING)


def _row_chunks(h: int, start: int, stop: int, per_row: int) -> list[range]:
    """Query positions start..stop − 1 in runs inside one block, of a bounded gather each."""
    size = max(1, GATHER_BUDGET // max(1, per_row))
    chunks, a = [], start
    while a < stop:
        b = min(stop, (a // h + 1) * h, a + size)
        chunks.append(range(a, b))
        a = b
    return chunks


class _Blocks:
    """The candidate blocks of one call, as views (B, Hkv, M, b, D) of the keys and values
    (nothing copied), and their summaries: the per-channel (min, max) (B, Hkv, M, D) of each
    block's keys turned back to positions 0..b − 1."""

    def __init__(self, k, v, s: WindowSettings, n_blocks: int, inv_freq):
        S, b = s.sinks, s.recall_block
        self.keys, self.values = (x[..., S:S + n_blocks * b, :].unflatten(-2, (n_blocks, b))
                                  for x in (k, v))
        starts = S + b * torch.arange(n_blocks, dtype=torch.int64)
        turned = rotate_by(self.keys, -starts[:, None], inv_freq)
        self.summary = turned.amin(dim=-2), turned.amax(dim=-2)

    def gather(self, chosen: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Keys and values (B, Hkv, U, b, D) of the blocks ``chosen`` (B, Hkv, U)."""
        B, Hkv = chosen.shape[:2]
        batch = torch.arange(B, device=chosen.device)[:, None, None]
        head = torch.arange(Hkv, device=chosen.device)[None, :, None]
        return self.keys[batch, head, chosen], self.values[batch, head, chosen]


def select_blocks(q, summary, s: WindowSettings, w0: int, positions: torch.Tensor, inv_freq):
    """The k candidate blocks (B, Hkv, Tc, k), in order, that queries q (B, Hkv, G, Tc, D) of
    the block whose window starts at w0 recall."""
    B, Hkv, G, Tc, _ = q.shape
    S, b, n = s.sinks, s.recall_block, s.recall_blocks
    n_cand = (w0 - S) // b
    if _forced:
        chosen = torch.as_tensor(_forced[-1](positions, n_cand, n), dtype=torch.int64)
        return chosen.to(q.device).sort(dim=-1).values.expand(B, Hkv, Tc, n)
    if n == 0:
        return torch.zeros(B, Hkv, Tc, 0, dtype=torch.int64, device=q.device)
    kmin, kmax = (x[:, :, None, :n_cand].transpose(-1, -2) for x in summary)
    turned = rotate_by(q, torch.tensor(b - w0), inv_freq)  # each block just before the window
    bound = turned.clamp(min=0) @ kmax + turned.clamp(max=0) @ kmin  # (B, Hkv, G, Tc, M)
    return bound.amax(dim=2).topk(n, dim=-1).indices.sort(dim=-1).values


def _recall_rows(q, k, v, s: WindowSettings, scaling, inv_freq, rows: range, blocks):
    """Queries q (B, Hq, Tc, D) at positions ``rows`` (one block, all ≥ L) → (B, Hq, Tc, D)."""
    B, Hq, Tc, D = q.shape
    Hkv = k.shape[1]
    h, S, b, n = s.block, s.sinks, s.recall_block, s.recall_blocks
    w0 = (rows.start // h - 1) * h
    pos = torch.arange(rows.start, rows.stop, dtype=torch.int64)
    qg = q.reshape(B, Hkv, Hq // Hkv, Tc, D)  # query heads grouped by their key head
    chosen = select_blocks(qg, blocks.summary, s, w0, pos, inv_freq)
    base = w0 - n * b  # where the first recalled key lands
    # sinks: one shift for the whole chunk, to base − S + s
    sink_k = rotate_by(k[..., :S, :], torch.tensor(base - S), inv_freq)
    # recalled blocks: the j-th moves from S + m_j·b to base + j·b; the query turns back.
    # The chunk's queries share the blocks they recall (their union), so that each block's
    # keys meet all of its queries in one matrix product; a query skips those it did not pick
    union, picked, rank = _union(chosen, (w0 - S) // b)
    rec_k, rec_v = blocks.gather(union)  # (B, Hkv, U, b, D)
    shift = base + b * rank - (S + b * union[:, :, None])  # (B, Hkv, Tc, U)
    rec_q = rotate_by(qg[..., None, :], -shift[:, :, None], inv_freq)  # (B, Hkv, G, Tc, U, D)
    rec = torch.einsum("zhgtud,zhuxd->zhgtux", rec_q, rec_k).masked_fill(
        ~picked[:, :, None, :, :, None], float("-inf"))
    win_k, win_v = k[..., w0:rows.stop, :], v[..., w0:rows.stop, :]
    later = torch.arange(w0, rows.stop)[None, :] > pos[:, None]  # causal inside the window
    scores = torch.cat((qg @ sink_k[:, :, None].transpose(-1, -2),
                        rec.flatten(-2),
                        (qg @ win_k[:, :, None].transpose(-1, -2)).masked_fill(
                            later.to(q.device), float("-inf"))), dim=-1)
    work = torch.promote_types(q.dtype, torch.float32)
    probs = (scores.to(work) * scaling).softmax(dim=-1).to(v.dtype)
    p_sink, p_rec, p_win = probs.split((S, rec.shape[-2] * b, win_k.shape[-2]), dim=-1)
    out = (p_sink @ v[..., :S, :][:, :, None]
           + torch.einsum("zhgtux,zhuxd->zhgtd", p_rec.unflatten(-1, (-1, b)), rec_v)
           + p_win @ win_v[:, :, None])
    return out.reshape(B, Hq, Tc, D)


def _union(chosen: torch.Tensor, n_cand: int):
    """The blocks any query of the chunk recalls (chosen (B, Hkv, Tc, k)), per key head and
    padded to one count U: their indices (B, Hkv, U); whether each query picked each
    (B, Hkv, Tc, U); and its rank j in that query's own (ordered) choice."""
    B, Hkv, Tc, n = chosen.shape
    present = torch.zeros(B, Hkv, n_cand, dtype=torch.bool, device=chosen.device)
    present.scatter_(-1, chosen.flatten(2), True)
    count = int(present.sum(dim=-1).max()) if present.numel() else 0
    union = present.to(torch.int8).sort(dim=-1, descending=True, stable=True).indices
    union = union[..., :count]
    match = chosen[..., :, None] == union[:, :, None, None, :]  # (B, Hkv, Tc, k, U)
    rank = (match * torch.arange(n, device=chosen.device)[:, None]).sum(dim=-2)
    return union, match.any(dim=-2), rank


RECALL = WindowPlan(attend=recall_attention, reach=lambda s: s.context,
                    prefix=lambda s: s.sinks, block=lambda s: s.block)

__all__ = ["GATHER_BUDGET", "RECALL", "forced_selection", "recall_attention", "select_blocks"]
