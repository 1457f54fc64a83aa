"""Loss by position: how much the model gains from each extra token of context.

Documents are cut into chunks of N tokens, each scored in one forward pass. A token's
*position* is the number of tokens before it in its chunk (1 … N − 1; the first token has no
context and is not scored). Positions are pooled in log-spaced bins with ends 1, 2, 4, …, N:
the bin with end e holds positions p with e_prev < p ≤ e (bin 1 holds position 1 alone;
an empty last bin, when N − 1 is a power of two, is left out).
A model that uses distant context keeps lowering its loss in the late bins; one that cannot
see past its window levels off there.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch

from ..errors import LexformerError
from ..lm import LanguageModel, check_attention
from .results import BinLoss
from .scoring import BATCH_TOKENS, fits, progress, score_sequences


def log_bin_ends(length: int) -> list[int]:
    """1, 2, 4, … (powers of two below ``length``), then ``length``."""
    ends = [1]
    while ends[-1] * 2 < length:
        ends.append(ends[-1] * 2)
    return ends + [length] if ends[-1] < length else ends


def bin_position_losses(nll_sum: np.ndarray, counts: np.ndarray) -> dict[int, BinLoss]:
    """Per-position NLL sums and token counts (index p − 1 for position p) → bins."""
    length = nll_sum.size + 1
    bins: dict[int, BinLoss] = {}
    start = 1
    for end in log_bin_ends(length):
        stop = min(end, length - 1)  # position N itself never occurs in a chunk of N
        tokens = int(counts[start - 1: stop].sum())
        if tokens:  # the last bin is empty when N − 1 is itself a bin end
            bins[end] = BinLoss(float(nll_sum[start - 1: stop].sum() / tokens), tokens)
        start = end + 1
    return bins


def chunk_documents(documents: Sequence[np.ndarray], length: int) -> torch.Tensor:
    """Every whole chunk of ``length`` tokens of every document, (n, length) int64."""
    chunks = [np.asarray(d, dtype=np.int64)[: len(d) // length * length].reshape(-1, length)
              for d in documents if len(d) >= length]
    if not chunks:
        longest = max((len(d) for d in documents), default=0)
        raise LexformerError(f"position-loss needs documents of at least {length} tokens; the "
                             f"longest has {longest}")
    return torch.from_numpy(np.concatenate(chunks))


def resolve_length(model: LanguageModel, attention: str, documents: Sequence[np.ndarray],
                   length: int | None) -> int:
    """The chunk length: ``length`` if it fits, else refuse; unset: the shortest document,
    cut down to what ``attention`` can score."""
    if length is not None:
        if not fits(model, attention, length):
            raise LexformerError(
                f"position-loss length {length} is longer than {model.name} with {attention} "
                f"attention can score ({model.max_length(attention)})")
        return length
    if not len(documents):
        raise LexformerError("position-loss needs documents of real text, and none were given")
    shortest = min(len(d) for d in documents)
    limit = model.max_length(attention)
    return shortest if limit is None else min(shortest, limit)


def plan_position_loss(model: LanguageModel, documents: Sequence[np.ndarray], attention: str,
                       length: int | None = None) -> torch.Tensor:
    """Check everything before scoring: the (n, N) chunks to score."""
    check_attention(model, attention)
    length = resolve_length(model, attention, documents, length)
    if length < 2:
        raise LexformerError(f"position-loss needs chunks of at least 2 tokens, got {length}")
    return chunk_documents(documents, length)


def position_loss(model: LanguageModel, documents: Sequence[np.ndarray], attention: str,
                  length: int | None = None, show_progress: bool = False
                  ) -> dict[int, BinLoss]:
    """``{bin_end: BinLoss}`` of ``model`` under ``attention`` over chunks of ``length``."""
    chunks = plan_position_loss(model, documents, attention, length)
    length = chunks.shape[1]
    nll_sum = np.zeros(length - 1)
    per_pass = max(1, BATCH_TOKENS // length)
    for i in progress(range(0, len(chunks), per_pass), show_progress,
                      f"position-loss {attention}", total=-(-len(chunks) // per_pass)):
        nll_sum += score_sequences(model, chunks[i: i + per_pass], attention
                                   ).double().sum(0).numpy()
    counts = np.full(length - 1, len(chunks))
    return bin_position_losses(nll_sum, counts)


__all__ = ["bin_position_losses", "chunk_documents", "log_bin_ends", "plan_position_loss",
           "position_loss"]
