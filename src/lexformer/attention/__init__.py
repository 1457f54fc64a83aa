"""Attention: which keys a query sees (:mod:`.masks`, :class:`AttentionSpec`) and the kernels
that compute it, causal (:mod:`.causal`: the language model) and bidirectional
(:mod:`.bidirectional`: encoders), over one shared windowed kernel (:mod:`.kernels`)."""

from . import masks
from .bidirectional import (
    FLASH_MIN_LENGTH,
    XPOS_CHUNK,
    XPOS_CHUNK_THRESHOLD,
    TwoSidedAttention,
    attend_bidirectional,
    attend_bidirectional_eager,
    bidirectional_attention,
    bidirectional_attention_packed,
)
from .causal import (
    FULL_CHUNK,
    FULL_CHUNK_THRESHOLD,
    BiasMemo,
    attend,
    attend_eager,
    causal_attention,
    causal_attention_packed,
)
from .kernels import AttentionIntermediates
from .spec import AttentionSpec, WindowLayout

__all__ = ["FLASH_MIN_LENGTH", "FULL_CHUNK", "FULL_CHUNK_THRESHOLD", "XPOS_CHUNK",
           "XPOS_CHUNK_THRESHOLD", "AttentionIntermediates", "AttentionSpec", "BiasMemo",
           "TwoSidedAttention", "WindowLayout", "attend", "attend_bidirectional",
           "attend_bidirectional_eager", "attend_eager", "bidirectional_attention",
           "bidirectional_attention_packed", "causal_attention", "causal_attention_packed",
           "masks"]
