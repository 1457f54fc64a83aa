"""One interface for every language model that lexformer measures.

Evaluation (perplexity by length), the context-use tasks (loss by position, copy at a
distance, passkey) and the reports talk to a model only through :class:`LanguageModel`, so
the same code measures a model trained here (:class:`LexformerLM`, from a checkpoint) and a
pretrained Hugging Face model (``lexformer.hf``), each under any attention method it offers.

Conventions: token ids are int64 tensors (B, T); ``token_nll`` returns the float32 negative
log-likelihood of ``ids[:, 1:]`` given the tokens before each, shape (B, T - 1).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol, runtime_checkable

import torch

from .errors import LexformerError


@runtime_checkable
class LanguageModel(Protocol):
    """What every measured model offers. ``context_length`` is the length it was trained at
    (L for lexformer models, the declared context for pretrained ones); ``attention_methods``
    are the names accepted by ``attention=`` (the first is the model's own)."""

    name: str
    context_length: int
    attention_methods: tuple[str, ...]

    def token_nll(self, ids: torch.Tensor, attention: str) -> torch.Tensor:
        """(B, T) ids → (B, T - 1) float32 NLL of each next token (no gradient)."""
        ...

    def greedy(self, ids: torch.Tensor, max_new_tokens: int, attention: str) -> torch.Tensor:
        """(1, T) prompt → (1, max_new_tokens) greedily decoded continuation."""
        ...

    def encode(self, text: str) -> list[int]: ...

    def decode(self, ids: Sequence[int]) -> str: ...

    def max_length(self, attention: str) -> int | None:
        """Longest input this method can score (None: unbounded)."""
        ...


#: sequences per forward pass are grouped so that one batch holds about this many tokens
BATCH_TOKENS = 16384


def score_sequences(model: LanguageModel, sequences: torch.Tensor, attention: str,
                    batch_tokens: int = BATCH_TOKENS) -> torch.Tensor:
    """(n, T) int64 ids → (n, T - 1) float32 NLL on the CPU, a few sequences per pass: the
    one batching loop behind perplexity and every context-use task."""
    per_batch = max(1, batch_tokens // sequences.shape[1])
    parts = [model.token_nll(sequences[i: i + per_batch], attention).float().cpu()
             for i in range(0, len(sequences), per_batch)]
    return torch.cat(parts)


def check_attention(model: LanguageModel, attention: str) -> str:
    """``attention`` if the model offers it, else one clear error naming what it offers."""
    if attention not in model.attention_methods:
        raise LexformerError(
            f"{model.name} has no attention method {attention!r}; choose from "
            + ", ".join(model.attention_methods))
    return attention


class LexformerLM:
    """A lexformer :class:`~lexformer.model.TransformerLM` (with its tokenizer) as a
    :class:`LanguageModel`; attention methods are the model's own modes."""

    def __init__(self, model, tokenizer=None, name: str | None = None,
                 autocast_dtype: torch.dtype | None = None) -> None:
        from .config import ATTENTION_MODES

        if not getattr(model.config, "causal", True):
            # perplexity, generation and the context tasks score each token from the ones
            # before it; an encoder sees the token itself
            raise LexformerError(
                "this is a bidirectional masked-LM encoder (causal=false): perplexity, "
                "generation and the context tasks need a causal model; measure it with "
                "lexformer.mlm.evaluate_masked_lm or lexformer reproduce --objective mlm")
        self.model = model.eval()
        self.tokenizer = tokenizer
        self.name = name or model.config.position
        self.context_length = model.config.train_length
        self.attention_methods = tuple(ATTENTION_MODES)
        self.autocast_dtype = autocast_dtype

    @classmethod
    def from_checkpoint(cls, path, name: str | None = None) -> LexformerLM:
        from .checkpoint import load

        ckpt = load(path)
        return cls(ckpt.model, ckpt.tokenizer, name=name or ckpt.config.position)

    @property
    def device(self) -> torch.device:
        return next(self.model.parameters()).device

    def _autocast(self):
        import contextlib

        if self.autocast_dtype is None:
            return contextlib.nullcontext()
        return torch.autocast(self.device.type, dtype=self.autocast_dtype)

    @torch.no_grad()
    def token_nll(self, ids: torch.Tensor, attention: str) -> torch.Tensor:
        from .model import IGNORE_INDEX

        check_attention(self, attention)
        ids = ids.to(self.device)
        # Score the whole chunk in one pass (the last position's target is ignored) so the
        # forward pass sees exactly the chunk, as the paper's protocol does.
        targets = torch.full_like(ids, IGNORE_INDEX)
        targets[:, :-1] = ids[:, 1:]
        with self._autocast():
            nll = self.model(ids, attention=attention, targets=targets, reduction="none")
        return nll[:, :-1].float()

    @torch.no_grad()
    def greedy(self, ids: torch.Tensor, max_new_tokens: int, attention: str) -> torch.Tensor:
        from .generate import generate

        check_attention(self, attention)
        out = generate(self.model, ids.to(self.device), max_new_tokens, temperature=0.0,
                       attention=attention)
        return out[:, ids.shape[1]:]

    def _need_tokenizer(self):
        if self.tokenizer is None:
            raise LexformerError(f"{self.name} has no tokenizer; cannot encode or decode text")
        return self.tokenizer

    def encode(self, text: str) -> list[int]:
        return self._need_tokenizer().encode(text)

    def decode(self, ids: Sequence[int]) -> str:
        return self._need_tokenizer().decode(list(ids))

    def max_length(self, attention: str) -> int | None:
        if self.model.config.position == "learned":
            return self.context_length  # learned positions stop at L
        return None


__all__ = ["BATCH_TOKENS", "LanguageModel", "LexformerLM", "check_attention",
           "score_sequences"]
