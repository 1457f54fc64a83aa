"""Learned absolute position embedding (GPT-2 style); cannot represent unseen positions."""

from __future__ import annotations

import torch
from torch import nn

from ..errors import LexformerError
from .base import ADDITIVE, PositionScheme, positions_on


class LearnedPosition(PositionScheme):
    """``emb = LearnedPosition(max_positions, d_model)(pos)`` → (T, d_model)."""

    kind = ADDITIVE
    extrapolates = False

    def __init__(self, max_positions: int, d_model: int) -> None:
        super().__init__()
        self.max_positions = max_positions
        self.embedding = nn.Embedding(max_positions, d_model)
        nn.init.normal_(self.embedding.weight, std=0.02)

    def forward(self, pos: torch.Tensor) -> torch.Tensor:
        self._check_positions(pos, "pos")
        if pos.numel() and (int(pos.max()) >= self.max_positions or int(pos.min()) < 0):
            raise LexformerError(
                f"the 'learned' position scheme only knows positions 0..{self.max_positions - 1} "
                f"(its training length), got position {int(pos.max())}; use a shorter input "
                "or a scheme that extrapolates (xpos, rope, alibi, absolute, none)"
            )
        return self.embedding(positions_on(pos, self.embedding.weight.device))
