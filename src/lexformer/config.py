"""Model configuration: one dataclass that validates itself and round-trips through JSON."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any, Literal, get_args

from .errors import LexformerError
from .positions import ROTARY, SCHEME_KINDS

# The allowed values of every enumerated option, once. Everything else (argparse choices,
# validation, docs) derives its list from these.
AttentionMode = Literal["full", "blockwise", "sliding"]
ATTENTION_MODES: tuple[str, ...] = get_args(AttentionMode)
Split = Literal["train", "validation", "test"]
SPLITS: tuple[str, ...] = get_args(Split)
Schedule = Literal["cosine", "linear", "polynomial"]
SCHEDULES: tuple[str, ...] = get_args(Schedule)
DType = Literal["auto", "fp32", "bf16"]
DTYPES: tuple[str, ...] = get_args(DType)
TokenizerKind = Literal["bpe", "bytes"]
TOKENIZER_KINDS: tuple[str, ...] = get_args(TokenizerKind)


@dataclass
class ModelConfig:
    """Shape and position scheme of a :class:`lexformer.TransformerLM`.

    ``train_length`` (L) is the length the model is trained at. Blockwise attention at
    inference uses blocks of ``block_size`` (default L/2: a query sees its own block and the
    previous one, so it never looks L or more tokens back); sliding attention uses a window of
    ``window`` keys (default L).
    """

    vocab_size: int = 4096
    n_layer: int = 4
    n_head: int = 8
    d_model: int = 256
    d_ff: int = 1024
    train_length: int = 256
    position: str = "xpos"
    dropout: float = 0.0
    tie_embeddings: bool = True
    xpos_gamma: float = 0.4
    xpos_scale_base: float = 512.0
    rope_base: float = 10000.0
    block_size: int | None = None
    window: int | None = None
    norm_eps: float = 1e-5
    extra: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        def fail(msg: str) -> None:
            raise LexformerError(f"invalid model config: {msg}")

        for name in ("vocab_size", "n_layer", "n_head", "d_model", "d_ff", "train_length"):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value <= 0:
                fail(f"{name} must be a positive integer, got {value!r}")
        if self.position not in SCHEME_KINDS:
            fail(
                f"unknown position scheme {self.position!r}; known schemes: "
                + ", ".join(sorted(SCHEME_KINDS))
            )
        if self.d_model % self.n_head:
            fail(f"d_model ({self.d_model}) must be divisible by n_head ({self.n_head})")
        if SCHEME_KINDS[self.position] == ROTARY and self.head_dim % 2:
            fail(
                f"the rotary scheme {self.position!r} needs an even head dimension, got "
                f"d_model/n_head = {self.head_dim}"
            )
        if self.position == "absolute" and self.d_model % 2:
            fail(f"sinusoidal 'absolute' positions need an even d_model, got {self.d_model}")
        if self.train_length < 2 or self.train_length % 2:
            fail(f"train_length must be even and at least 2 (blocks are L/2), got "
                 f"{self.train_length}")
        if not 0.0 <= self.dropout < 1.0:
            fail(f"dropout must be in [0, 1), got {self.dropout}")
        if self.xpos_gamma <= 0 or self.xpos_scale_base <= 0 or self.rope_base <= 1:
            fail("xpos_gamma and xpos_scale_base must be positive and rope_base > 1")
        for name in ("block_size", "window"):
            value = getattr(self, name)
            if value is not None and (not isinstance(value, int) or value <= 0):
                fail(f"{name} must be a positive integer or None, got {value!r}")

    @property
    def head_dim(self) -> int:
        return self.d_model // self.n_head

    @property
    def attention_block(self) -> int:
        """Block size h of blockwise attention (L/2 unless set)."""
        return self.block_size or self.train_length // 2

    @property
    def attention_window(self) -> int:
        """Window W of sliding attention (L unless set)."""
        return self.window or self.train_length

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ModelConfig:
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise LexformerError(
                f"invalid model config: unknown field(s) {', '.join(unknown)}; known fields: "
                + ", ".join(sorted(known))
            )
        return cls(**data)

    def num_parameters(self, include_embeddings: bool = True) -> int:
        """Parameter count computed from the shape (matches ``TransformerLM``)."""
        d, f = self.d_model, self.d_ff
        per_layer = 4 * d * d + 4 * d + 2 * d * f + f + d + 4 * d  # attn, ffn, 2 LayerNorms
        total = self.n_layer * per_layer + 2 * d  # final LayerNorm
        if include_embeddings:
            total += self.vocab_size * d * (1 if self.tie_embeddings else 2)
            if self.position == "learned":
                total += self.train_length * d
        if self.position == "absolute":
            total += 1  # the sinusoids' learned scale
        return total
