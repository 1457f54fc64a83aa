"""No position embedding (NoPE): order comes from the causal mask alone (an encoder without
positions sees its input as a bag of tokens)."""

from __future__ import annotations

from .base import NONE, PositionScheme


class NoPosition(PositionScheme):
    kind = NONE

    def forward(self, *args):  # pragma: no cover - never called; kept for a uniform API
        raise RuntimeError("the 'none' position scheme has nothing to compute")
