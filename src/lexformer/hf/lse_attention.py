"""Attention over one part of the keys with its log-sum-exp, and the exact merge of parts.

softmax over keys A ∪ B is a weighted mean of the softmax over A and the softmax over B,
with weights exp(lse_A) and exp(lse_B) (lse: log of the sum of exp(score) over the part).
So a query whose keys come in pieces, some re-positioned by other rotations, some needing a
mask and some not, can attend to each piece with a fused kernel and still get exactly one
softmax over all of them (up to rounding).

On the CPU the fused kernel is PyTorch's flash attention for CPU, the kernel behind
``scaled_dot_product_attention`` there, called through its ATen op because that op also
returns the log-sum-exp. It wants as many query heads as key heads; grouped-query
attention is handled by the caller, which stacks the query heads of one key head along the
query axis. Elsewhere (other devices, or a PyTorch without the op) the same contract is met
by explicit scores in at least float32.
"""

from __future__ import annotations

import torch

_FLASH_CPU = getattr(torch.ops.aten, "_scaled_dot_product_flash_attention_for_cpu", None)
_FLASH_DTYPES = (torch.float32, torch.float64, torch.bfloat16, torch.float16)


def attend_part(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, scale: float,
                mask: torch.Tensor | None = None,
                causal: bool = False) -> tuple[torch.Tensor, torch.Tensor]:
    """q (B, H, R, D) over k, v (B, H, m, D) → (out (B, H, R, D), lse (B, H, R) in ≥ float32).

    ``mask``: additive (R, m) in q's dtype (0 visible, −inf hidden). ``causal``: row r sees
    keys 0..r (top-left aligned). Every row must see at least one key; the caller marks
    empty rows itself (the fused kernel returns lse 0 for them).
    """
    if _FLASH_CPU is not None and q.device.type == "cpu" and q.dtype in _FLASH_DTYPES:
        out, lse = _FLASH_CPU(q, k, v, 0.0, causal, attn_mask=mask, scale=scale)
        return out, lse
    return attend_part_explicit(q, k, v, scale, mask, causal)


def attend_part_explicit(q, k, v, scale: float, mask: torch.Tensor | None = None,
                         causal: bool = False) -> tuple[torch.Tensor, torch.Tensor]:
    """:func:`attend_part` from explicit (B, H, R, m) scores: any device, any float dtype."""
    work = torch.promote_types(q.dtype, torch.float32)
    scores = (q.to(work) @ k.to(work).transpose(-1, -2)) * scale
    if mask is not None:
        scores = scores + mask.to(work)
    if causal:
        rows, cols = scores.shape[-2:]
        hidden = torch.ones(rows, cols, dtype=torch.bool, device=q.device).triu(1)
        scores = scores.masked_fill(hidden, float("-inf"))
    lse = torch.logsumexp(scores, dim=-1)
    probs = torch.softmax(scores, dim=-1)
    # a row that sees no key: output 0 (as the fused kernel gives), not softmax's NaN
    probs = probs.masked_fill(torch.isneginf(lse)[..., None], 0.0)
    return probs.to(v.dtype) @ v, lse


def merge_parts(parts: list[tuple[torch.Tensor, torch.Tensor]]) -> torch.Tensor:
    """One softmax over all parts from each part's (out (…, R, D), lse (…, R)).

    A part's lse of −inf (its keys all hidden from that row) gives it weight 0; at least
    one part must see every row.
    """
    if len(parts) == 1:
        return parts[0][0]
    dtype = parts[0][0].dtype
    work = torch.promote_types(dtype, torch.float32)
    lse = torch.stack([p[1].to(work) for p in parts])  # (P, …, R)
    weight = torch.exp(lse - lse.amax(dim=0))
    weight = weight / weight.sum(dim=0)
    out = sum(w[..., None] * o.to(work) for w, (o, _) in zip(weight, parts))
    return out.to(dtype)


def additive_mask(visible: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    """Boolean visibility → 0 / −inf in ``dtype`` (what the fused kernel adds to scores)."""
    return torch.zeros(visible.shape, dtype=dtype, device=visible.device).masked_fill_(
        ~visible, float("-inf"))


__all__ = ["additive_mask", "attend_part", "attend_part_explicit", "merge_parts"]
