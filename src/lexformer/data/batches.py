"""Training batches and evaluation documents.

:class:`BatchSampler` draws random contiguous windows from the concatenated training
tokens. Batch number ``step`` depends only on ``(seed, step)`` and the global batch size:
its window starts come from ``numpy.random.default_rng([seed, step])``, so there is no
hidden state beyond the step counter, resuming from a saved step continues the same
stream, and with ``world_size`` processes each rank takes its own slice of the same
global batch (two processes see exactly what one process with the same global batch
sees).

:func:`eval_documents` implements the paper's evaluation protocol: keep the documents at
least ``N`` tokens long and take the first ``N`` tokens of each; the evaluation code then
cuts those into ``N / l`` chunks of each length ``l`` and scores each chunk as a
standalone sequence (``l - 1`` scored next-token predictions per chunk).
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from ..errors import LexformerError

if TYPE_CHECKING:
    from .tokens import TokenizedSplit


def _positive_int(name: str, value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
        raise LexformerError(f"{name} must be a positive integer, got {value!r}")
    return int(value)


class BatchSampler:
    """Infinite, deterministic stream of ``(inputs, targets)`` training batches.

    Each batch is ``batch_size`` random windows of ``seq_len + 1`` tokens (int64), inputs
    ``[:, :-1]`` and targets ``[:, 1:]``. The global batch at a step has
    ``world_size * batch_size`` rows; rank ``r`` gets rows ``[r * batch_size, (r + 1) *
    batch_size)``.
    """

    def __init__(self, tokens: np.ndarray, seq_len: int, batch_size: int, seed: int,
                 rank: int = 0, world_size: int = 1) -> None:
        self.seq_len = _positive_int("seq_len", seq_len)
        self.batch_size = _positive_int("batch_size", batch_size)
        self.world_size = _positive_int("world_size", world_size)
        if isinstance(rank, bool) or not isinstance(rank, (int, np.integer)) \
                or not 0 <= rank < self.world_size:
            raise LexformerError(f"rank must be in 0..{self.world_size - 1}, got {rank!r}")
        if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
            raise LexformerError(f"seed must be a non-negative integer, got {seed!r}")
        self.rank = int(rank)
        self.seed = int(seed)
        self.tokens = tokens
        n = len(tokens)
        if n < self.seq_len + 1:
            raise LexformerError(
                f"corpus too small for length {self.seq_len}: has {n} tokens, needs at least "
                f"{self.seq_len + 1}; use a shorter length or a bigger corpus")
        self.num_starts = n - self.seq_len  # valid window starts: 0 .. n - seq_len - 1
        self.step = 0
        self._offsets = np.arange(self.seq_len + 1, dtype=np.int64)

    @property
    def global_batch_size(self) -> int:
        return self.batch_size * self.world_size

    def global_starts(self, step: int) -> np.ndarray:
        """Window starts of the whole global batch at ``step`` (a function of seed, step)."""
        rng = np.random.default_rng([self.seed, int(step)])
        return rng.integers(0, self.num_starts, size=self.global_batch_size, dtype=np.int64)

    def batch_at(self, step: int) -> torch.Tensor:
        """This rank's ``(batch_size, seq_len + 1)`` int64 windows at ``step``."""
        starts = self.global_starts(step)[self.rank * self.batch_size:
                                          (self.rank + 1) * self.batch_size]
        windows = np.asarray(self.tokens[starts[:, None] + self._offsets], dtype=np.int64)
        return torch.from_numpy(windows)

    def next_batch(self) -> tuple[torch.Tensor, torch.Tensor]:
        """The next ``(inputs, targets)``, each ``(batch_size, seq_len)`` int64."""
        batch = self.batch_at(self.step)
        self.step += 1
        return batch[:, :-1], batch[:, 1:]

    def state_dict(self) -> dict[str, int]:
        return {"step": self.step, "seed": self.seed, "seq_len": self.seq_len,
                "global_batch_size": self.global_batch_size, "num_tokens": len(self.tokens)}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Continue from ``state["step"]``. A state saved with another seed, length, global
        batch size or token count would not continue the same stream: that only warns."""
        try:
            step = int(state["step"])
        except (KeyError, TypeError, ValueError):
            raise LexformerError("sampler state has no integer 'step'; the checkpoint's "
                                 "train state is damaged") from None
        if step < 0:
            raise LexformerError(f"sampler state has a negative step ({step})")
        mine = self.state_dict()
        diff = [f"{k} {state[k]} -> {mine[k]}" for k in ("seed", "seq_len", "global_batch_size",
                                                          "num_tokens")
                if k in state and state[k] != mine[k]]
        if diff:
            warnings.warn("resuming the data stream with different settings ("
                          + ", ".join(diff) + "): batches will differ from the original run",
                          stacklevel=2)
        self.step = step


def eval_documents(split: TokenizedSplit, max_length: int, lengths: Sequence[int] | None = None,
                   max_docs: int | None = None) -> list[np.ndarray]:
    """The first ``max_length`` tokens (int64) of each document of ``split`` that has at
    least that many, in split order; only the first ``max_docs`` such documents if given.

    ``lengths``, if given, are the evaluation lengths: each must divide ``max_length`` (so
    the prefix cuts into whole chunks).
    """
    max_length = _positive_int("max_length", max_length)
    if max_docs is not None:
        max_docs = _positive_int("max_docs", max_docs)
    for length in (lengths if lengths is not None else ()):
        length = _positive_int("evaluation length", length)
        if max_length % length:
            raise LexformerError(
                f"evaluation length {length} does not divide the maximum length {max_length}; "
                f"use lengths that divide it (e.g. powers of two)")
    sizes = split.document_lengths()
    keep = [i for i, n in enumerate(sizes) if n >= max_length][:max_docs]
    if not keep:
        longest = int(max(sizes)) if len(sizes) else 0
        raise LexformerError(
            f"no document has {max_length} tokens (the longest of {len(sizes)} has {longest}); "
            f"evaluate at lengths up to {longest} or use a corpus with longer documents")
    return [np.asarray(split.document(i)[:max_length], dtype=np.int64) for i in keep]


__all__ = ["BatchSampler", "eval_documents"]
