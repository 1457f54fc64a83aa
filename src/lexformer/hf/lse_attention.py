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
query axis.

On CUDA the fused kernel is FlexAttention (``torch.nn.attention.flex_attention``), compiled
once, with the visibility as a block mask, asked for the log-sum-exp. Chosen over the ATen
SDPA ops that also return it because (1) a block mask lets the kernel skip the blocks a
window hides entirely, where an additive bias (``_scaled_dot_product_efficient_attention``)
is read and added in full, and the flash op takes no mask at all; (2) its lse is float32
(natural log) for any input dtype, unpadded, through a public API, where the efficient op's
is padded to 32 rows behind a private signature that changes between releases; (3) its
forward also runs on the CPU (uncompiled), so the suite checks this path's logic without a
GPU (``tests/test_hf_windowed_speed_paths.py``). Elsewhere (other devices, or a PyTorch
without these) the same contract is met by explicit scores in at least float32.
"""

from __future__ import annotations

import functools

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
    if q.device.type == "cuda" and _has_flex():
        return attend_part_flex(q, k, v, scale, mask, causal)
    return attend_part_explicit(q, k, v, scale, mask, causal)


def _has_flex() -> bool:
    try:
        from torch.nn.attention.flex_attention import AuxRequest  # noqa: F401
    except ImportError:  # a PyTorch before FlexAttention's lse request
        return False
    return True


@functools.cache
def _compiled_flex():
    """FlexAttention compiled once per process: uncompiled it is the unfused reference."""
    from torch.nn.attention.flex_attention import flex_attention

    return torch.compile(flex_attention)


def attend_part_flex(q, k, v, scale: float, mask: torch.Tensor | None = None,
                     causal: bool = False,
                     compiled: bool = True) -> tuple[torch.Tensor, torch.Tensor]:
    """:func:`attend_part` through FlexAttention: the mask's −inf entries (and, ``causal``,
    keys after the row) hidden by a block mask. A row that sees no key gets output 0 and
    lse −inf, as from explicit scores. ``compiled`` False: FlexAttention's uncompiled
    forward, which runs on any device (the CPU tests use it)."""
    from torch.nn.attention.flex_attention import AuxRequest, create_block_mask, flex_attention

    block = None
    if mask is not None or causal:
        visible = None if mask is None else ~torch.isneginf(mask)

        def keep(b, h, q_idx, kv_idx):
            if visible is None:
                return q_idx >= kv_idx
            seen = visible[q_idx, kv_idx]
            return seen & (q_idx >= kv_idx) if causal else seen

        block = create_block_mask(keep, None, None, q.shape[-2], k.shape[-2], device=q.device)
    run = _compiled_flex() if compiled else flex_attention
    out, aux = run(q, k, v, block_mask=block, scale=scale, return_aux=AuxRequest(lse=True))
    return out, aux.lse


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


__all__ = ["additive_mask", "attend_part", "attend_part_explicit", "attend_part_flex",
           "merge_parts"]
