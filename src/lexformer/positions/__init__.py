"""Position schemes: one file each, one registry.

``POSITION_SCHEMES`` maps the name used in configs and on the command line to a builder
taking the model config. Every scheme also serves bidirectional models (``causal=False``):
XPOS through its symmetric decay (:mod:`.bidirectional`), ALiBi with the bias
−slope·|n − m|, the others unchanged (``docs/bidirectional.md``). Use
:func:`build_position_scheme` rather than the classes when you start from a config.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

from .absolute import SinusoidalPosition
from .alibi import ALiBi, alibi_slopes
from .base import ADDITIVE, BIAS, NONE, ROTARY, PositionScheme
from .bidirectional import bidirectional_logits
from .learned import LearnedPosition
from .none import NoPosition
from .rope import RoPE
from .rotary import RotaryEmbedding
from .xpos import XPos

if TYPE_CHECKING:
    from ..config import ModelConfig

POSITION_SCHEMES: dict[str, Callable[[ModelConfig], PositionScheme]] = {
    "xpos": lambda c: XPos(c.head_dim, gamma=c.xpos_gamma, scale_base=c.xpos_scale_base,
                           base=c.rope_base),
    "rope": lambda c: RoPE(c.head_dim, base=c.rope_base),
    # encoders (causal=False) take the symmetric bias −slope·|n − m|
    "alibi": lambda c: ALiBi(c.n_head, symmetric=not c.causal),
    "absolute": lambda c: SinusoidalPosition(c.d_model),
    "learned": lambda c: LearnedPosition(c.train_length, c.d_model),
    "none": lambda c: NoPosition(),
}


def build_position_scheme(config: ModelConfig) -> PositionScheme:
    """The position scheme named by ``config.position``, built for that config."""
    return POSITION_SCHEMES[config.position](config)


__all__ = [
    "ADDITIVE",
    "BIAS",
    "NONE",
    "POSITION_SCHEMES",
    "ROTARY",
    "ALiBi",
    "LearnedPosition",
    "NoPosition",
    "PositionScheme",
    "RoPE",
    "RotaryEmbedding",
    "SinusoidalPosition",
    "XPos",
    "alibi_slopes",
    "bidirectional_logits",
    "build_position_scheme",
]
