"""Paired bootstrap over documents: 95 % intervals for perplexities and their differences.

The evaluation scores the same documents for every model and attention mode, so the
uncertainty that matters when comparing two of them is which documents happened to be in the
test set. One resample draws ``n_docs`` document indices with replacement; a perplexity on a
resample is ``exp(Σ doc_nll[idx] / Σ doc_tokens[idx])``. Every model and mode is resampled
with the SAME indices (they depend only on the number of documents and the seed), so a
difference between two of them is computed on matched resamples: a paired bootstrap. The
interval is the percentile interval of the resampled statistic.

With several training seeds a second source of variation appears: another seed gives another
model. :func:`seed_difference` gives the Student-t interval of the per-seed differences (seed
k of one scheme paired with seed k of the other: same data order); a comparison counts as an
ordering only when both intervals exclude zero. With 3 seeds t(0.975, 2) = 4.30, so the seed
interval is wide — deliberately: three draws say little about a distribution's spread.
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


def _contains_zero(interval: tuple[float, float]) -> bool:
    return interval[0] <= TIE_TOLERANCE and interval[1] >= -TIE_TOLERANCE


@dataclass(frozen=True)
class Difference:
    """``perplexity(a) − perplexity(b)`` on the same documents, with its paired interval over
    documents and, when several seeds were trained, the interval over seeds."""

    value: float
    ci95: tuple[float, float]
    seed_ci95: tuple[float, float] | None = None

    @property
    def is_tie(self) -> bool:
        """An interval contains zero (up to rounding): the data cannot order the two."""
        return _contains_zero(self.ci95) or (
            self.seed_ci95 is not None and _contains_zero(self.seed_ci95))


#: two-sided 97.5 % quantiles of Student's t by degrees of freedom (1–10); beyond, 1.96 + a
#: small-sample correction is within 1 % of the exact value
_T975 = (12.706, 4.303, 3.182, 2.776, 2.571, 2.447, 2.365, 2.306, 2.262, 2.228)


def t_quantile_975(dof: int) -> float:
    """The 0.975 quantile of Student's t with ``dof`` degrees of freedom."""
    if dof < 1:
        raise LexformerError(f"a t interval needs at least 1 degree of freedom, got {dof}")
    return _T975[dof - 1] if dof <= len(_T975) else 1.96 + 2.4 / dof


def seed_interval(per_seed: Sequence[float]) -> tuple[float, float] | None:
    """95 % Student-t interval of the mean of per-seed values; None for a single seed."""
    x = np.asarray(per_seed, dtype=np.float64)
    if x.size < 2:
        return None
    half = t_quantile_975(x.size - 1) * float(x.std(ddof=1)) / np.sqrt(x.size)
    return float(x.mean() - half), float(x.mean() + half)


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


def seed_difference(per_seed_a: Sequence[Sequence[float]], per_seed_b: Sequence[Sequence[float]],
                    doc_tokens: Sequence[float] | float,
                    indices: np.ndarray | None = None) -> Difference:
    """``mean_k ppl(a_k) − mean_k ppl(b_k)`` for K seeds, each a (documents,) NLL array on the
    same documents. ``ci95``: the paired bootstrap over documents of the seed-averaged
    difference (the same resamples for every seed); ``seed_ci95``: the t interval of the K
    per-seed differences (None for one seed)."""
    a = [_as_docs(x, doc_tokens) for x in per_seed_a]
    b = [_as_docs(x, doc_tokens) for x in per_seed_b]
    if len(a) != len(b) or not a:
        raise LexformerError(f"a seed comparison needs the same seeds for both models, got "
                             f"{len(a)} and {len(b)}")
    if len({x.size for x, _ in a + b}) != 1:
        raise LexformerError("a seed comparison needs the same documents for every seed")
    tokens = a[0][1]
    ppl = lambda nll: float(np.exp(nll.sum() / tokens.sum()))  # noqa: E731
    per_seed = [ppl(x) - ppl(y) for (x, _), (y, _) in zip(a, b)]
    value = float(np.mean(per_seed))
    if tokens.size < 2:
        return Difference(value, (-np.inf, np.inf), seed_interval(per_seed))
    if indices is None:
        indices = resample_indices(tokens.size)
    diffs = np.mean([resampled_perplexity(x, tokens, indices)
                     - resampled_perplexity(y, tokens, indices)
                     for (x, _), (y, _) in zip(a, b)], axis=0)
    return Difference(value, _percentiles(diffs, LEVEL), seed_interval(per_seed))


def resampled_ratio(doc_sum: Sequence[float], doc_count: Sequence[float],
                    indices: np.ndarray) -> np.ndarray:
    """``Σ doc_sum[idx] / Σ doc_count[idx]`` on every resample: a mean per counted token, such
    as the masked-token loss (summed NLL over masked tokens). A resample without any counted
    token divides by 1 (its sum is 0 too), not by 0."""
    total = np.asarray(doc_count, dtype=np.float64)[indices].sum(axis=1)
    return np.asarray(doc_sum, dtype=np.float64)[indices].sum(axis=1) / np.maximum(total, 1.0)


def ratio_interval(doc_sum: Sequence[float], doc_count: Sequence[float],
                   indices: np.ndarray | None = None,
                   level: float = LEVEL) -> tuple[float, float] | None:
    """Percentile bootstrap interval of ``Σ sum / Σ count`` over documents (a masked-token
    loss); None for a single document (nothing to resample)."""
    if len(doc_sum) < 2:
        return None
    if indices is None:
        indices = resample_indices(len(doc_sum))
    return _percentiles(resampled_ratio(doc_sum, doc_count, indices), level)


def ratio_difference_interval(doc_sum_a: Sequence[float], doc_sum_b: Sequence[float],
                              doc_count: Sequence[float], indices: np.ndarray | None = None,
                              level: float = LEVEL) -> tuple[float, float] | None:
    """Paired bootstrap interval of ``mean(a) − mean(b)``, both ``Σ sum / Σ count`` over the
    same documents and the same counted tokens (two models scored on the same masks); None
    for a single document (nothing to resample)."""
    if len(doc_sum_a) != len(doc_sum_b):
        raise LexformerError(f"paired bootstrap needs the same documents for both models, got "
                             f"{len(doc_sum_a)} and {len(doc_sum_b)}")
    if len(doc_sum_a) < 2:
        return None
    if indices is None:
        indices = resample_indices(len(doc_sum_a))
    return _percentiles(resampled_ratio(doc_sum_a, doc_count, indices)
                        - resampled_ratio(doc_sum_b, doc_count, indices), level)


def wilson_interval(successes: int, trials: int, level: float = LEVEL) -> tuple[float, float]:
    """Wilson score interval of a binomial proportion (sound at 0 and at ``trials`` hits,
    where the normal interval collapses to a point)."""
    from statistics import NormalDist

    if trials < 1 or not 0 <= successes <= trials:
        raise LexformerError(f"Wilson interval needs 0 <= successes <= trials >= 1, got "
                             f"{successes} of {trials}")
    z = NormalDist().inv_cdf(0.5 + level / 2)
    p, z2 = successes / trials, z * z / trials
    centre = (p + z2 / 2) / (1 + z2)
    half = z * np.sqrt(p * (1 - p) / trials + z2 / (4 * trials)) / (1 + z2)
    # the ends at 0 and n hits are exactly 0 and 1; the formula leaves rounding there
    lo = 0.0 if successes == 0 else max(0.0, float(centre - half))
    hi = 1.0 if successes == trials else min(1.0, float(centre + half))
    return lo, hi


def mean_interval(values: Sequence[float], seed: int = DEFAULT_SEED,
                  level: float = LEVEL) -> tuple[float, float]:
    """Percentile bootstrap interval of a mean over samples (a single value: itself)."""
    x = np.asarray(values, dtype=np.float64)
    if x.size < 2:
        return (float(x.mean()), float(x.mean())) if x.size else (np.nan, np.nan)
    return _percentiles(x[resample_indices(x.size, seed=seed)].mean(axis=1), level)


__all__ = ["DEFAULT_RESAMPLES", "DEFAULT_SEED", "TIE_TOLERANCE", "Difference",
           "perplexity_difference", "perplexity_interval", "ratio_difference_interval",
           "ratio_interval", "resample_indices", "resampled_perplexity", "resampled_ratio",
           "mean_interval", "seed_difference", "seed_interval", "t_quantile_975",
           "wilson_interval"]
