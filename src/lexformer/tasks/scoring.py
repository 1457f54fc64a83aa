"""Helpers shared by the tasks: batched scoring through the LanguageModel protocol, length
checks against what an attention method can score, and progress bars."""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from typing import TypeVar

import numpy as np
import torch

from ..errors import LexformerError
from ..lm import LanguageModel

#: sequences per forward pass are grouped so that one batch holds about this many tokens
BATCH_TOKENS = 16384

T = TypeVar("T")


def score_sequences(model: LanguageModel, sequences: torch.Tensor, attention: str,
                    batch_tokens: int = BATCH_TOKENS) -> torch.Tensor:
    """(n, T) int64 ids → (n, T - 1) float32 NLL on the CPU, a few sequences per pass."""
    per_batch = max(1, batch_tokens // sequences.shape[1])
    parts = [model.token_nll(sequences[i: i + per_batch], attention).float().cpu()
             for i in range(0, len(sequences), per_batch)]
    return torch.cat(parts)


def fits(model: LanguageModel, attention: str, length: int) -> bool:
    limit = model.max_length(attention)
    return limit is None or length <= limit


def require_fit(model: LanguageModel, attention: str, length: int, what: str) -> None:
    """Refuse, in one line, an input longer than ``attention`` can score."""
    if not fits(model, attention, length):
        raise LexformerError(
            f"{what} needs {length} tokens, but {model.name} with {attention} attention scores "
            f"at most {model.max_length(attention)}; choose smaller values")


def token_pool(documents: Sequence[np.ndarray]) -> np.ndarray:
    """All documents end to end as one int64 stream (the way training text is laid out)."""
    if not len(documents):
        raise LexformerError("this task needs documents of real text, and none were given")
    return np.concatenate([np.asarray(d, dtype=np.int64).ravel() for d in documents])


def progress(items: Iterable[T], enabled: bool, desc: str, total: int | None = None
             ) -> Iterator[T]:
    if not enabled:
        yield from items
        return
    from tqdm.auto import tqdm

    yield from tqdm(items, desc=desc, total=total, dynamic_ncols=True, leave=False)


__all__ = ["BATCH_TOKENS", "fits", "progress", "require_fit", "score_sequences", "token_pool"]
