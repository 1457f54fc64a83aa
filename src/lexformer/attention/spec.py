"""What an attention mode lets a query see: :class:`AttentionSpec`, and the fast windowed
path's layout of it (:class:`WindowLayout`)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import NamedTuple

import torch

from ..config import ATTENTION_MODES
from ..errors import LexformerError
from . import masks


class WindowLayout(NamedTuple):
    """Query blocks of c; each sees the keys of ``before`` blocks behind it, its own block and
    ``after`` blocks ahead: windows of w = (before + 1 + after)·c keys."""

    c: int
    before: int
    after: int = 0

    @property
    def w(self) -> int:
        return (self.before + 1 + self.after) * self.c


@dataclass(frozen=True)
class AttentionSpec:
    """Which keys a query may see. ``block`` is h of blockwise, ``window`` W of sliding.

    ``causal=False`` (encoders, :mod:`lexformer.attention.bidirectional`): ``full`` sees every
    key, ``blockwise`` the keys of its own block and of the blocks on either side; ``sliding``
    is causal only.
    """

    mode: str = "full"
    block: int = 128
    window: int = 256
    causal: bool = True

    def __post_init__(self) -> None:
        if self.mode not in ATTENTION_MODES:
            raise LexformerError(
                f"unknown attention mode {self.mode!r}; choose one of {', '.join(ATTENTION_MODES)}"
            )
        if self.block <= 0 or self.window <= 0:
            raise LexformerError("attention block and window must be positive")
        if not self.causal and self.mode == "sliding":
            raise LexformerError("sliding attention is causal only; a bidirectional model "
                                 "(encoder) takes full or blockwise attention")

    def mask(self) -> masks.MaskFn:
        """The mode as a mask function of (query, key) positions (:mod:`.masks`)."""
        if not self.causal:
            return masks.block(self.block, ahead=1) if self.mode == "blockwise" \
                else masks.two_sided()
        if self.mode == "blockwise":
            return masks.and_masks(masks.causal(), masks.block(self.block))
        if self.mode == "sliding":
            return masks.and_masks(masks.causal(), masks.window(self.window))
        return masks.causal()

    def visible(self, q_pos: torch.Tensor, k_pos: torch.Tensor) -> torch.Tensor:
        """Boolean (Tq, Tk): may the query at q_pos[i] see the key at k_pos[j]?"""
        return self.mask()(q_pos.to(torch.int64)[:, None], k_pos.to(torch.int64)[None, :])

    def first_visible(self, pos: int) -> int:
        """Smallest key position a query at ``pos`` (or any later query) can see."""
        if self.mode == "blockwise":
            return masks.block_start(self.block, pos)
        if self.mode == "sliding":
            return masks.window_start(self.window, pos)
        return 0

    def window_layout(self) -> WindowLayout:
        """The fast windowed path's layout: query blocks of c, windows of w keys.

        Blockwise: c = h and one previous block (and, bidirectional, one next block).
        Sliding: c = W/2 and two previous blocks (1.5·W keys per query instead of 2·W with
        c = W); odd W falls back to c = W.
        """
        if self.mode == "blockwise":
            return WindowLayout(self.block, 1, 0 if self.causal else 1)
        if self.window % 2 == 0 and self.window >= 2:
            return WindowLayout(self.window // 2, 2)
        return WindowLayout(self.window, 1)


__all__ = ["AttentionSpec", "WindowLayout"]
