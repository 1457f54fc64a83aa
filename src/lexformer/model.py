"""The LeX language model: a decoder-only pre-LayerNorm Transformer (``docs/method.md#model``).

``TransformerLM(config)(input_ids, attention="full"|"blockwise"|"sliding")`` → logits
(B, T, vocab). The position scheme comes from the registry by ``config.position``; the
attention mode is chosen per call, so one trained model is evaluated with and without
blockwise attention. With ``config.causal=False`` the same stack is a bidirectional encoder
(masked-LM training, ``lexformer.mlm``): attention goes through
:mod:`lexformer.attention.bidirectional` and there is no KV cache (``docs/bidirectional.md``).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from torch import nn

from .attention import (
    AttentionIntermediates,
    AttentionSpec,
    attend,
    attend_bidirectional_eager,
    attend_eager,
    bidirectional_attention_packed,
    causal_attention,
    causal_attention_packed,
)
from .cache import KVCache
from .config import ModelConfig
from .errors import LexformerError
from .positions import ADDITIVE, PositionScheme, build_position_scheme

#: target id that is not scored (as in ``torch.nn.functional.cross_entropy``)
IGNORE_INDEX = -100


def lm_loss(logits: torch.Tensor, targets: torch.Tensor, reduction: str = "mean") -> torch.Tensor:
    """Next-token cross-entropy in float32: logits (B, T, V), targets (B, T).

    The one place where the library computes a language-model loss. ``reduction`` is
    ``mean`` (over scored tokens), ``sum``, or ``none`` (per-token NLL, (B, T)). Logits are
    upcast so that bf16 autocast never reduces in bf16; targets equal to ``IGNORE_INDEX``
    are not scored (0 under ``none``).
    """
    if reduction not in ("mean", "sum", "none"):
        raise ValueError(f"reduction must be 'mean', 'sum' or 'none', got {reduction!r}")
    B, T, V = logits.shape
    loss = F.cross_entropy(logits.float().reshape(B * T, V), targets.reshape(B * T),
                           ignore_index=IGNORE_INDEX, reduction=reduction)
    return loss.view(B, T) if reduction == "none" else loss


@dataclass(frozen=True)
class PassContext:
    """What every layer of one forward pass shares.

    ``positions`` (T,) int64 on the CPU are the positions of this call's tokens; with a
    ``cache`` they continue the cached sequence and each layer extends its entry. ``eager``
    selects the slow attention path that also returns :class:`AttentionIntermediates`.
    ``memo`` holds what every layer would otherwise rebuild identically (ALiBi's bias).
    """

    spec: AttentionSpec
    positions: torch.Tensor
    cache: KVCache | None = None
    eager: bool = False
    memo: dict = field(default_factory=dict, compare=False, hash=False, repr=False)


class SelfAttention(nn.Module):
    """Multi-head causal self-attention; ``layer`` indexes this layer's KV-cache entry."""

    def __init__(self, config: ModelConfig, scheme: PositionScheme, layer: int = 0) -> None:
        super().__init__()
        self.n_head = config.n_head
        self.head_dim = config.head_dim
        self.layer = layer
        self.qkv = nn.Linear(config.d_model, 3 * config.d_model)
        self.proj = nn.Linear(config.d_model, config.d_model)
        self.dropout = config.dropout
        # Shared by all layers; kept out of the module tree so it is not registered n_layer
        # times (its tables are caches, not parameters).
        self._scheme = (scheme,)

    def forward(
        self, x: torch.Tensor, ctx: PassContext
    ) -> tuple[torch.Tensor, AttentionIntermediates | None]:
        """x (B, T, C) → (output (B, T, C), intermediates if ``ctx.eager`` else None)."""
        B, T, C = x.shape
        qkv = self.qkv(x).view(B, T, 3, self.n_head, self.head_dim)
        if ctx.eager:
            out, intermediates = self._attend_eager(qkv, ctx)
        else:
            out, intermediates = self._attend_fast(qkv, ctx), None
        return self.proj(out.transpose(1, 2).reshape(B, T, C)), intermediates

    def _attend_fast(self, qkv: torch.Tensor, ctx: PassContext) -> torch.Tensor:
        """SDPA paths: a whole sequence, a cache's first (prefill) call, or a cached step."""
        scheme, spec, cache = self._scheme[0], ctx.spec, ctx.cache
        dropout_p = self.dropout if self.training else 0.0
        if not spec.causal:  # an encoder: never a cache (TransformerLM.new_cache refuses)
            return bidirectional_attention_packed(qkv, scheme, spec, dropout_p, ctx.memo)
        if cache is None:
            return causal_attention_packed(qkv, scheme, spec, dropout_p, ctx.memo)
        q, k, v = _split_heads(qkv)
        if cache.is_empty(self.layer):  # prefill: the tokens are at 0..T−1
            cache.extend(self.layer, k, v, ctx.positions)
            return causal_attention(q, k, v, scheme, spec, dropout_p, ctx.memo)
        k_all, v_all, k_pos = cache.extend(self.layer, k, v, ctx.positions)
        return attend(q, k_all, v_all, ctx.positions, k_pos, scheme, spec, dropout_p)

    def _attend_eager(
        self, qkv: torch.Tensor, ctx: PassContext
    ) -> tuple[torch.Tensor, AttentionIntermediates]:
        q, k, v = _split_heads(qkv)
        k_pos = ctx.positions
        if not ctx.spec.causal:
            return attend_bidirectional_eager(q, k, v, ctx.positions, k_pos, self._scheme[0],
                                              ctx.spec)
        if ctx.cache is not None:
            k, v, k_pos = ctx.cache.extend(self.layer, k, v, ctx.positions)
        return attend_eager(q, k, v, ctx.positions, k_pos, self._scheme[0], ctx.spec)


def _split_heads(qkv: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(B, T, 3, H, D) → q, k, v, each (B, H, T, D)."""
    return qkv.permute(2, 0, 3, 1, 4).unbind(0)


class FeedForward(nn.Module):
    def __init__(self, config: ModelConfig) -> None:
        super().__init__()
        self.up = nn.Linear(config.d_model, config.d_ff)
        self.down = nn.Linear(config.d_ff, config.d_model)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.down(F.gelu(self.up(x)))


class Block(nn.Module):
    """Pre-LN block: x + Attn(LN(x)), then x + FFN(LN(x))."""

    def __init__(self, config: ModelConfig, scheme: PositionScheme, layer: int = 0) -> None:
        super().__init__()
        self.ln_attn = nn.LayerNorm(config.d_model, eps=config.norm_eps)
        self.attn = SelfAttention(config, scheme, layer)
        self.ln_ffn = nn.LayerNorm(config.d_model, eps=config.norm_eps)
        self.ffn = FeedForward(config)
        self.drop = nn.Dropout(config.dropout)

    def forward(
        self, x: torch.Tensor, ctx: PassContext
    ) -> tuple[torch.Tensor, AttentionIntermediates | None]:
        attended, intermediates = self.attn(self.ln_attn(x), ctx)
        x = x + self.drop(attended)
        return x + self.drop(self.ffn(self.ln_ffn(x))), intermediates


class TransformerLM(nn.Module):
    """Decoder-only language model with a pluggable position scheme."""

    def __init__(self, config: ModelConfig) -> None:
        super().__init__()
        self.config = config
        self.position = build_position_scheme(config)
        self.tok_emb = nn.Embedding(config.vocab_size, config.d_model)
        self.drop = nn.Dropout(config.dropout)
        self.blocks = nn.ModuleList(Block(config, self.position, i) for i in range(config.n_layer))
        self.ln_f = nn.LayerNorm(config.d_model, eps=config.norm_eps)
        self.lm_head = nn.Linear(config.d_model, config.vocab_size, bias=False)
        self.apply(self._init_weights)
        # GPT-2: residual projections scaled down with depth so the residual stream's variance
        # does not grow with n_layer.
        for name, p in self.named_parameters():
            if name.endswith(("attn.proj.weight", "ffn.down.weight")):
                nn.init.normal_(p, mean=0.0, std=0.02 / math.sqrt(2 * config.n_layer))
        if config.tie_embeddings:
            self.lm_head.weight = self.tok_emb.weight

    @staticmethod
    def _init_weights(module: nn.Module) -> None:
        if isinstance(module, nn.Linear):
            nn.init.normal_(module.weight, mean=0.0, std=0.02)
            if module.bias is not None:
                nn.init.zeros_(module.bias)
        elif isinstance(module, nn.Embedding):
            nn.init.normal_(module.weight, mean=0.0, std=0.02)

    def attention_spec(self, attention: str) -> AttentionSpec:
        c = self.config
        return AttentionSpec(attention, block=c.attention_block, window=c.attention_window,
                             causal=c.causal)

    def num_parameters(self) -> int:
        return sum(p.numel() for p in self.parameters())

    def forward(
        self,
        input_ids: torch.Tensor,
        attention: str = "full",
        cache: KVCache | None = None,
        targets: torch.Tensor | None = None,
        reduction: str = "mean",
    ) -> torch.Tensor:
        """input_ids (B, T) → logits (B, T, vocab); with ``targets`` (B, T) → the loss.

        ``targets[b, t]`` is the token that should follow ``input_ids[b, t]`` (``IGNORE_INDEX``
        where nothing is scored); ``reduction`` is ``mean`` (over scored tokens), ``sum`` or
        ``none`` (per-token float32 NLL, (B, T)). Passing targets through ``forward`` rather
        than a separate method keeps DDP and torch.compile wrappers in the loop.

        With a ``cache`` (see :meth:`new_cache`) the tokens continue the cached sequence and
        the cache is updated.
        """
        logits, _ = self._run(input_ids, attention, cache, eager=False)
        if targets is None:
            return logits
        return lm_loss(logits, targets, reduction)

    def forward_with_intermediates(
        self, input_ids: torch.Tensor, attention: str = "full", cache: KVCache | None = None
    ) -> tuple[torch.Tensor, list[AttentionIntermediates]]:
        """Logits and, per layer, the attention's :class:`AttentionIntermediates`.

        Runs the eager attention path (the same maths as :meth:`forward`, with every
        (B, H, T, Tk) score matrix materialised): for analysis and tests, not for speed.
        """
        return self._run(input_ids, attention, cache, eager=True)

    def _run(
        self, input_ids: torch.Tensor, attention: str, cache: KVCache | None, eager: bool
    ) -> tuple[torch.Tensor, list[AttentionIntermediates]]:
        """The forward pass; the list holds one entry per layer when ``eager``, else none."""
        spec = self.attention_spec(attention)
        if cache is not None and not spec.causal:
            raise LexformerError("a bidirectional model (causal=False) has no KV cache")
        if cache is not None and cache.spec != spec:
            raise ValueError(f"this cache was made for {cache.spec}, not {spec}")
        T = input_ids.shape[1]
        start = 0 if cache is None else cache.next_pos
        ctx = PassContext(spec, torch.arange(start, start + T), cache, eager)
        x = self.tok_emb(input_ids)
        if self.position.kind == ADDITIVE:
            x = x + self.position(ctx.positions).to(x.dtype)
        x = self.drop(x)
        intermediates = []
        for block in self.blocks:
            x, layer_intermediates = block(x, ctx)
            if layer_intermediates is not None:
                intermediates.append(layer_intermediates)
        if cache is not None:
            cache.advance(T)
        return self.lm_head(self.ln_f(x)), intermediates

    def new_cache(self, attention: str = "full") -> KVCache:
        """An empty KV cache for incremental decoding in the given attention mode."""
        if not self.config.causal:
            raise LexformerError("a bidirectional model (causal=False) cannot decode "
                                 "incrementally: every token attends to the ones after it")
        return KVCache(self.config.n_layer, self.attention_spec(attention))

    @torch.no_grad()
    def attention_scores(
        self, input_ids: torch.Tensor, attention: str = "full"
    ) -> list[AttentionIntermediates]:
        """Per-layer ``(scores, probs)``, each (B, H, T, T), from the eager attention path."""
        return self.forward_with_intermediates(input_ids, attention)[1]
