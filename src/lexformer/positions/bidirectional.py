"""Bidirectional XPOS: the decay ζ_j^(|n−m|/B) on both sides of a query (``docs/bidirectional.md``).

Causal XPOS scales pair j of a query at n by ζ_j^(n/B) and of a key at m by ζ_j^(−m/B), so
their product carries ζ_j^((n−m)/B): a decay for keys behind the query and a growth without
bound for keys ahead of it, which is why XPOS is defined for causal attention only.

The construction here uses two factorisations of the symmetric decay, each exact on one side:

* keys at or behind the query (m ≤ n): the ordinary factors, ζ^(n/B) on the query and
  ζ^(−m/B) on the key, whose product is ζ^((n−m)/B) = ζ^(|n−m|/B);
* keys ahead of the query (m > n): the mirrored factors, ζ^(−n/B) on the query and ζ^(m/B)
  on the key, whose product is ζ^((m−n)/B) = ζ^(|n−m|/B).

Both keep the rotation by nθ and mθ, so every logit is the RoPE rotation by (n − m) times
ζ_j^(|n−m|/B) per pair. The mirrored factors are the other row of the same cached table (a
query takes the key's factor and the key the query's), so nothing new is tabulated. Each
query's logits are taken from the first product for its keys at or behind it and from the
second for the keys ahead, and attention takes one softmax over that union: the same
numbers as merging two partial softmaxes by their log-sum-exp, with no merge step.

Bounded factors. With positions centred on the middle of the queries, a query's factor is
at most ζ_0^(−S/2B) for a query span S. The first product is only formed for keys at or
behind the last query, whose factor ζ^(−m/B) is then at most ζ_0^(−S/2B) and decays to 0 for
keys far behind; the second only for keys ahead of the first query, symmetric. So no factor
exceeds ζ_0^(−S/2B) however long the keys run: chunking the queries bounds everything.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import torch

from .base import positions_on

if TYPE_CHECKING:
    from .rotary import RotaryEmbedding


def _bounds(rel: range | torch.Tensor) -> tuple[int, int]:
    if isinstance(rel, range):
        return rel.start, rel.stop - 1
    return int(rel.min()), int(rel.max())


def bidirectional_logits(
    scheme: RotaryEmbedding,
    q: torch.Tensor,
    k: torch.Tensor,
    q_rel: range | torch.Tensor,
    k_rel: range | torch.Tensor,
) -> torch.Tensor:
    """Logits q'·k' (…, Tq, Tk) with the symmetric decay ζ_j^(|n−m|/B), not scaled by 1/√d.

    q (…, Tq, d) and k (…, Tk, d) are unrotated; ``q_rel`` and ``k_rel`` are their positions,
    already shifted by a common centre (the middle of the queries keeps every factor bounded,
    module docstring). Ranges (ascending, step 1) are sliced with Python integers only, which
    keeps ``torch.compile`` graphs free of data-dependent breaks; tensors are accepted too.
    """
    if not isinstance(q_rel, range) or not isinstance(k_rel, range):
        return _logits_any_positions(scheme, q, k, q_rel, k_rel)
    Tk = len(k_rel)
    q_lo, q_hi = _bounds(q_rel)
    # keys[:n_behind] lie at or behind the last query; keys[first_ahead:] ahead of the first.
    # Keys before first_ahead are behind every query, keys from n_behind on ahead of all.
    n_behind = min(max(q_hi + 1 - k_rel.start, 0), Tk)
    first_ahead = min(max(q_lo + 1 - k_rel.start, 0), Tk)
    if first_ahead <= 1 and n_behind >= Tk - 1:
        # Keys within the queries' span (self-attention, one chunk): both products are
        # bounded over every key, and one select is cheaper than slicing and concatenating.
        behind = scheme.rotate_queries(q, q_rel) @ scheme.rotate_keys(k, k_rel).transpose(-1, -2)
        ahead = scheme.rotate_keys(q, q_rel) @ scheme.rotate_queries(k, k_rel).transpose(-1, -2)
        q_pos = torch.arange(q_lo, q_hi + 1, device=q.device)[:, None]
        k_pos = torch.arange(k_rel.start, k_rel.stop, device=q.device)[None, :]
        return torch.where(k_pos <= q_pos, behind, ahead)
    parts = []
    if n_behind:
        behind = (scheme.rotate_queries(q, q_rel)
                  @ scheme.rotate_keys(k[..., :n_behind, :], k_rel[:n_behind]).transpose(-1, -2))
    if first_ahead < Tk:
        # mirrored factors: the query takes the key's table row and the key the query's
        ahead = (scheme.rotate_keys(q, q_rel)
                 @ scheme.rotate_queries(k[..., first_ahead:, :], k_rel[first_ahead:])
                 .transpose(-1, -2))
    if first_ahead:
        parts.append(behind[..., :first_ahead])
    if first_ahead < n_behind:  # keys behind some queries and ahead of others
        q_pos = torch.arange(q_lo, q_hi + 1, device=q.device)[:, None]
        k_pos = torch.arange(k_rel.start + first_ahead, k_rel.start + n_behind,
                             device=q.device)[None, :]
        parts.append(torch.where(k_pos <= q_pos, behind[..., first_ahead:],
                                 ahead[..., : n_behind - first_ahead]))
    if n_behind < Tk:
        parts.append(ahead[..., n_behind - first_ahead:])
    return parts[0] if len(parts) == 1 else torch.cat(parts, dim=-1)


def _logits_any_positions(scheme, q, k, q_rel, k_rel) -> torch.Tensor:
    """:func:`bidirectional_logits` for positions in any order (e.g. a gathered subset)."""
    q_rel = q_rel if isinstance(q_rel, torch.Tensor) else torch.tensor(list(q_rel))
    k_rel = k_rel if isinstance(k_rel, torch.Tensor) else torch.tensor(list(k_rel))
    q_rel, k_rel = q_rel.to(torch.int64).cpu(), k_rel.to(torch.int64).cpu()
    q_lo, q_hi = _bounds(q_rel)
    # as in the range case: each product only over the keys where its factors stay bounded
    behind_keys = torch.nonzero(k_rel <= q_hi).flatten()
    ahead_keys = torch.nonzero(k_rel > q_lo).flatten()
    dev = q.device
    out = q.new_empty(*torch.broadcast_shapes(q.shape[:-2], k.shape[:-2]),
                      q.shape[-2], k.shape[-2])
    if behind_keys.numel():
        idx = behind_keys.to(dev)
        out[..., idx] = (scheme.rotate_queries(q, q_rel) @ scheme.rotate_keys(
            k.index_select(-2, idx), k_rel[behind_keys]).transpose(-1, -2))
    if ahead_keys.numel():
        idx = ahead_keys.to(dev)
        ahead = (scheme.rotate_keys(q, q_rel) @ scheme.rotate_queries(
            k.index_select(-2, idx), k_rel[ahead_keys]).transpose(-1, -2))
        is_behind = (positions_on(k_rel[ahead_keys], dev)[None, :]
                     <= positions_on(q_rel, dev)[:, None])
        out[..., idx] = torch.where(is_behind, out[..., idx], ahead)
    return out


__all__ = ["bidirectional_logits"]
