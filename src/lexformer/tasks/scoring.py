"""Helpers shared by the tasks: batched scoring (``lexformer.lm.score_sequences``), length
checks against what an attention method can score, and progress bars."""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from typing import TypeVar

import numpy as np

from ..errors import LexformerError
from ..lm import BATCH_TOKENS, LanguageModel, score_sequences

T = TypeVar("T")


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
    from ..progress import progress_iter

    yield from progress_iter(items, desc, enabled, total, leave=False)


__all__ = ["BATCH_TOKENS", "fits", "progress", "require_fit", "score_sequences", "token_pool"]
