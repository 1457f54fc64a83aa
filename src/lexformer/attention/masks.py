"""Which keys a query may see, as small composable functions (the rule written once).

A mask function takes integer positions ``(q, k)`` (int64 tensors that broadcast against each
other, typically ``q_pos[:, None]`` and ``k_pos[None, :]``) and returns a boolean tensor:
True where the query at q may see the key at k. They compose with :func:`and_masks`,
:func:`or_masks` and :func:`not_mask`, in the manner of transformers' ``masking_utils`` and of
FlexAttention's ``mask_mod``; lexformer's attention modes (:class:`~.spec.AttentionSpec`),
the encoder and the Hugging Face plans (:mod:`lexformer.hf.plans`) all ask these functions.

Beside each rule that bounds how far back a query looks stands the earliest key it keeps
(:func:`block_start`, :func:`window_start`): what a KV cache may drop, and where a plan's key
range begins.
"""

from __future__ import annotations

from collections.abc import Callable

import torch

MaskFn = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]


def causal() -> MaskFn:
    """Keys at or before the query."""
    return lambda q, k: k <= q


def two_sided() -> MaskFn:
    """Every key (a bidirectional encoder's full attention), at the broadcast shape."""
    def every(q, k):
        return torch.ones(torch.broadcast_shapes(q.shape, k.shape), dtype=torch.bool,
                          device=q.device)
    return every


def block(h: int, ahead: int = 0) -> MaskFn:
    """Keys of the query's block of h, of the block before it and of ``ahead`` blocks after it.

    The paper's block rule ⌊k/h⌋ ≥ ⌊q/h⌋ − 1 (with ⌊k/h⌋ ≤ ⌊q/h⌋ + ahead): with
    :func:`causal` it is blockwise causal attention (``ahead`` is then moot), with ``ahead=1``
    its two-sided analogue.
    """
    def near_blocks(q, k):
        d = torch.div(k, h, rounding_mode="floor") - torch.div(q, h, rounding_mode="floor")
        return (d >= -1) & (d <= ahead)
    return near_blocks


def window(w: int) -> MaskFn:
    """Keys fewer than w positions behind the query (itself included; keys ahead too)."""
    return lambda q, k: q - k < w


def sinks(n: int) -> MaskFn:
    """The first n keys (attention sinks, global tokens)."""
    return lambda q, k: k < n


def and_masks(*fns: MaskFn) -> MaskFn:
    """Visible where every one of ``fns`` says visible."""
    def both(q, k):
        out = fns[0](q, k)
        for fn in fns[1:]:
            out = out & fn(q, k)
        return out
    return both


def or_masks(*fns: MaskFn) -> MaskFn:
    """Visible where any one of ``fns`` says visible."""
    def either(q, k):
        out = fns[0](q, k)
        for fn in fns[1:]:
            out = out | fn(q, k)
        return out
    return either


def not_mask(fn: MaskFn) -> MaskFn:
    """Visible where ``fn`` hides (the keys a second branch of a method takes over)."""
    return lambda q, k: ~fn(q, k)


def block_start(h: int, pos: int) -> int:
    """Earliest key the block rule lets a query at ``pos`` (or any later one) see."""
    return max(0, (pos // h - 1) * h)


def window_start(w: int, pos: int) -> int:
    """Earliest key a window of w lets a query at ``pos`` (or any later one) see."""
    return max(0, pos - w + 1)


__all__ = ["MaskFn", "and_masks", "block", "block_start", "causal", "not_mask", "or_masks",
           "sinks", "two_sided", "window", "window_start"]
