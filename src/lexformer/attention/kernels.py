"""What the causal and the bidirectional attention share: the masked SDPA call, the eager
softmax that exposes scores and probabilities, and the windowed kernel.

The windowed kernel (:func:`windowed`) is the O(n·L) fast path of blockwise and sliding
attention, causal or not: queries are cut into blocks of c and each block attends, through one
batched call, to an unfolded window of w keys (:class:`~.spec.WindowLayout`). Windows start on
block boundaries, so a rule that shifts with the blocks (causal, the block rule, a window)
holds at window-local positions unchanged: one (c, w) mask serves every window.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import NamedTuple

import torch
import torch.nn.functional as F

from ..positions import BIAS, PositionScheme
from ..positions.base import positions_on
from .masks import MaskFn
from .spec import AttentionSpec, WindowLayout


class AttentionIntermediates(NamedTuple):
    """What the eager path exposes of one attention call, both (B, H, Tq, Tk) float32.

    ``scores`` are pre-softmax (q'·k'/√d plus any bias), −inf on pairs the mode hides;
    ``probs`` their softmax. A tuple, so ``scores, probs = intermediates`` works.
    """

    scores: torch.Tensor
    probs: torch.Tensor


def sdpa_masked(q, k, v, visible, bias, dropout_p: float = 0.0) -> torch.Tensor:
    """SDPA under the boolean ``visible`` (None: every key) and ALiBi's (H, Tq, Tk) ``bias``.

    A bias goes to SDPA as (1, H, Tq, Tk) with −inf where hidden: torch's fused CPU kernel
    takes a 4-D float mask but sends a 3-D one to the slow math path.
    """
    mask = visible
    if bias is not None:
        mask = bias.to(q.device, q.dtype)[None]
        if visible is not None:
            mask = mask.masked_fill(~visible, float("-inf"))
    return F.scaled_dot_product_attention(q, k, v, attn_mask=mask, dropout_p=dropout_p)


def positioned(q_pos, k_pos, scheme: PositionScheme, spec: AttentionSpec, device):
    """What every general path needs before its product: the positions as int64 on the CPU
    (host metadata: their min/max decide the centring), the spec's (Tq, Tk) visibility on
    ``device`` and ALiBi's bias (None for other schemes)."""
    q_pos = q_pos.to(torch.int64).cpu()
    k_pos = k_pos.to(torch.int64).cpu()
    visible = spec.visible(positions_on(q_pos, device), positions_on(k_pos, device))
    bias = scheme(q_pos, k_pos) if scheme.kind == BIAS else None
    return q_pos, k_pos, visible, bias


def eager_softmax(scores, bias, visible, v) -> tuple[torch.Tensor, AttentionIntermediates]:
    """The float32 tail of both eager paths (call with autocast off): scores plus bias, −inf
    where hidden, softmax, product with v in v's dtype."""
    if bias is not None:
        scores = scores + bias.to(scores.device).float()
    scores = scores.masked_fill(~visible, float("-inf"))
    probs = torch.softmax(scores, dim=-1)
    out = (probs @ v.float()).to(v.dtype)
    return out, AttentionIntermediates(scores, probs)


#: attend_window(q (N, H, c, D), k, v (N, H, w, D), q_rel, k_rel, visible, bias) → (N, H, c, D):
#: one batched attention of every query block over its window, at window-local positions
#: q_rel, k_rel (ranges, re-centred); ``bias``: ALiBi's (H, c, w) or None
WindowAttend = Callable[..., torch.Tensor]


def windowed(q, k, v, layout: WindowLayout, scheme: PositionScheme, attend_window: WindowAttend,
             mask: MaskFn | None = None) -> torch.Tensor:
    """Query blocks against unfolded key windows; q, k, v (B, H, T, D) → (B, H, n·c, D).

    Causal (``mask`` given: the mode's rule, asked at window-local positions): the first
    ``before`` blocks have no full window and are left to the caller, the output covers
    blocks ``before``.. . Bidirectional (``mask`` None): keys are padded by ``before`` blocks
    in front and ``after`` behind, every block gets a window, and the padding keys are the
    only hidden ones (inside a window the block rule holds for every pair by construction).
    Both keep the rows of the padded last block: the caller cuts to T.
    """
    B, H, T, D = q.shape
    c, w = layout.c, layout.w
    causal = mask is not None
    pad = (-T) % c
    front = 0 if causal else layout.before * c
    if pad:
        q = F.pad(q, (0, 0, 0, pad))
    if pad or front or layout.after:
        k, v = (F.pad(x, (0, 0, front, pad + layout.after * c)) for x in (k, v))
    first = layout.before if causal else 0  # the first query block with a window
    n_win = (T + pad) // c - first
    q_lo = layout.before * c  # window-local position of a block's first query
    # positions re-centred on the window (causal) or on its queries (bidirectional)
    centre = w // 2 if causal else q_lo + (c - 1) // 2
    q_rel, k_rel = range(q_lo - centre, q_lo + c - centre), range(-centre, w - centre)

    def windows(x):  # (B, H, T', D) → (B·n_win, H, w, D)
        win = x.unfold(2, w, c)  # (B, H, n_win, D, w)
        return win.permute(0, 2, 1, 4, 3).reshape(B * n_win, H, w, D)

    qb = q[..., first * c:, :].reshape(B, H, n_win, c, D).transpose(1, 2).reshape(
        B * n_win, H, c, D)  # (B·n_win, H, c, D)
    if causal:
        qi = torch.arange(c, device=q.device)[:, None] + q_lo
        visible = mask(qi, torch.arange(w, device=q.device)[None, :])  # (c, w), shared
    else:
        key_pos = (torch.arange(n_win, device=q.device)[:, None] * c
                   + torch.arange(w, device=q.device)[None, :] - front)  # global, (n_win, w)
        valid = (key_pos >= 0) & (key_pos < T)
        visible = valid[None].expand(B, n_win, w).reshape(B * n_win, 1, 1, w)
    bias = scheme(torch.arange(q_lo, q_lo + c), torch.arange(w)) if scheme.kind == BIAS else None
    out = attend_window(qb, windows(k), windows(v), q_rel, k_rel, visible, bias)
    return out.reshape(B, n_win, H, c, D).transpose(1, 2).reshape(B, H, n_win * c, D)


__all__ = ["AttentionIntermediates", "eager_softmax", "positioned", "sdpa_masked",
           "windowed"]
