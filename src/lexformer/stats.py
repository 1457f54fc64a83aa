"""Paired bootstrap over documents: 95 % intervals for perplexities and their differences.

The evaluation scores the same documents for every model and attention mode, so the
uncertainty that matters when comparing two of them is which documents happened to be in the
test set. One resample draws ``n_docs`` document indices with replacement; a perplexity on a
resample is ``exp(Σ doc_nll[idx] / Σ doc_tokens[idx])``. Every model and mode is resampled
with the SAME indices (they depend only on the number of documents and the seed), so a
difference between two of them is computed on matched resamples: a paired bootstrap. The
interval is the percentile interval of the resampled statistic.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from .errors import LexformerError

#: resamples per interval; the percentile interval's ends move by well under 1 % of its width
#: between seeds at this count for the document counts used here
DEFAULT_RESAMPLES = 1000
DEFAULT_SEED = 0
LEVEL = 0.95
#: differences smaller than this (in perplexity) are rounding, not a difference: at lengths
#: ≤ L full and blockwise attention compute the same scores up to float error
TIE_TOLERANCE = 1e-6


def resample_indices(n_docs: int, resamples: int = DEFAULT_RESAMPLES,
                     seed: int = DEFAULT_SEED) -> np.ndarray:
    """(resamples, n_docs) document indices drawn with replacement; a pure function of its
    arguments, so every model evaluated on the same documents gets the same resamples."""
    if n_docs < 1 or resamples < 1:
        raise LexformerError(f"bootstrap needs at least one document and one resample, got "
                             f"{n_docs} documents and {resamples} resamples")
    return np.random.default_rng(seed).integers(0, n_docs, size=(resamples, n_docs))


def _as_docs(doc_nll: Sequence[float], doc_tokens: Sequence[float] | float) -> tuple[
        np.ndarray, np.ndarray]:
    nll = np.asarray(doc_nll, dtype=np.float64)
    tokens = np.broadcast_to(np.asarray(doc_tokens, dtype=np.float64), nll.shape)
    if nll.ndim != 1 or nll.size == 0:
        raise LexformerError("bootstrap needs a non-empty 1-D array of per-document NLL")
    return nll, tokens


def resampled_perplexity(doc_nll: Sequence[float], doc_tokens: Sequence[float] | float,
                         indices: np.ndarray) -> np.ndarray:
    """Perplexity on every resample (one value per row of ``indices``)."""
    nll, tokens = _as_docs(doc_nll, doc_tokens)
    return np.exp(nll[indices].sum(axis=1) / tokens[indices].sum(axis=1))


def _percentiles(values: np.ndarray, level: float) -> tuple[float, float]:
    tail = (1.0 - level) / 2.0 * 100.0
    lo, hi = np.percentile(values, [tail, 100.0 - tail])
    return float(lo), float(hi)


def perplexity_interval(doc_nll: Sequence[float], doc_tokens: Sequence[float] | float,
                        indices: np.ndarray | None = None,
                        level: float = LEVEL) -> tuple[float, float] | None:
    """Percentile bootstrap interval of the perplexity ``exp(Σ nll / Σ tokens)``; None for a
    single document (nothing to resample)."""
    if len(doc_nll) < 2:
        return None
    if indices is None:
        indices = resample_indices(len(doc_nll))
    return _percentiles(resampled_perplexity(doc_nll, doc_tokens, indices), level)


@dataclass(frozen=True)
class Difference:
    """``perplexity(a) − perplexity(b)`` on the same documents, with its paired interval."""

    value: float
    ci95: tuple[float, float]

    @property
    def is_tie(self) -> bool:
        """The interval contains zero (up to rounding): the data cannot order the two."""
        return self.ci95[0] <= TIE_TOLERANCE and self.ci95[1] >= -TIE_TOLERANCE


def perplexity_difference(doc_nll_a: Sequence[float], doc_nll_b: Sequence[float],
                          doc_tokens: Sequence[float] | float,
                          indices: np.ndarray | None = None,
                          level: float = LEVEL) -> Difference:
    """Paired bootstrap of ``ppl(a) − ppl(b)``: both resampled with the same indices. With a
    single document the interval is (−inf, inf): one document cannot order two models."""
    a, tokens = _as_docs(doc_nll_a, doc_tokens)
    b, _ = _as_docs(doc_nll_b, doc_tokens)
    if a.shape != b.shape:
        raise LexformerError(f"paired bootstrap needs the same documents for both models, got "
                             f"{a.size} and {b.size}")
    if indices is None:
        indices = resample_indices(a.size)
    total = tokens.sum()
    value = float(np.exp(a.sum() / total) - np.exp(b.sum() / total))
    if a.size < 2:
        return Difference(value, (-np.inf, np.inf))
    diffs = (resampled_perplexity(a, tokens, indices)
             - resampled_perplexity(b, tokens, indices))
    return Difference(value, _percentiles(diffs, level))


__all__ = ["DEFAULT_RESAMPLES", "DEFAULT_SEED", "TIE_TOLERANCE", "Difference",
           "perplexity_difference", "perplexity_interval", "resample_indices",
           "resampled_perplexity"]
