"""Paired bootstrap over documents: against a slow obvious reference, and on synthetic data
whose answer is known."""

from __future__ import annotations

import math

import numpy as np
import pytest

from lexformer.stats import (
    perplexity_difference,
    perplexity_interval,
    resample_indices,
    resampled_perplexity,
)


def _reference_resamples(doc_nll, doc_tokens, indices):
    """One resample at a time, in plain Python."""
    out = []
    for row in indices:
        nll = sum(doc_nll[i] for i in row)
        tokens = sum(doc_tokens[i] for i in row)
        out.append(math.exp(nll / tokens))
    return np.array(out)


def _docs(n=12, seed=3):
    rng = np.random.default_rng(seed)
    tokens = rng.integers(50, 200, size=n).astype(float)
    nll = tokens * rng.normal(4.0, 0.3, size=n)  # per-document mean NLL ~ 4 nats
    return nll, tokens


def test_resamples_match_a_slow_reference():
    nll, tokens = _docs()
    idx = resample_indices(len(nll), resamples=200, seed=5)
    np.testing.assert_allclose(resampled_perplexity(nll, tokens, idx),
                               _reference_resamples(nll, tokens, idx), rtol=1e-12)
    lo, hi = perplexity_interval(nll, tokens, idx)
    ref = _reference_resamples(nll, tokens, idx)
    assert (lo, hi) == pytest.approx((np.percentile(ref, 2.5), np.percentile(ref, 97.5)),
                                     rel=1e-12)


def test_indices_depend_only_on_document_count_and_seed():
    a = resample_indices(7, 50, seed=0)
    assert a.shape == (50, 7) and a.min() >= 0 and a.max() <= 6
    np.testing.assert_array_equal(a, resample_indices(7, 50, seed=0))
    assert not np.array_equal(a, resample_indices(7, 50, seed=1))


def test_interval_brackets_the_point_estimate():
    nll, tokens = _docs()
    point = math.exp(nll.sum() / tokens.sum())
    lo, hi = perplexity_interval(nll, tokens)
    assert lo < point < hi


def test_identical_models_tie_with_a_zero_width_interval():
    nll, tokens = _docs()
    d = perplexity_difference(nll, nll.copy(), tokens)
    assert d.value == 0.0 and d.ci95 == (0.0, 0.0) and d.is_tie


def test_uniformly_better_model_is_separated():
    """B's per-token NLL is lower by δ on every document: B's perplexity is lower on every
    resample, so the interval of ppl(A) − ppl(B) lies above zero."""
    nll, tokens = _docs()
    delta = 0.01
    d = perplexity_difference(nll, nll - delta * tokens, tokens)
    assert not d.is_tie and d.ci95[0] > 0
    expected = math.exp(nll.sum() / tokens.sum()) * (1 - math.exp(-delta))
    assert d.value == pytest.approx(expected, rel=1e-12)


def test_noise_without_a_shift_is_a_tie():
    """Two models that differ only by per-document noise of mean zero: a tie."""
    nll, tokens = _docs(n=40)
    noise = np.random.default_rng(9).normal(0, 0.02, size=40) * tokens
    noise -= noise.mean()  # exactly the same total NLL
    d = perplexity_difference(nll, nll + noise, tokens)
    assert d.is_tie and d.ci95[0] < 0 < d.ci95[1]


def test_pairing_narrows_the_interval():
    """The paired interval of a difference is narrower than the two unpaired intervals'
    widths would suggest when the models agree on which documents are hard."""
    nll, tokens = _docs(n=30)
    d = perplexity_difference(nll, nll * 0.99, tokens)
    lo_a, hi_a = perplexity_interval(nll, tokens)
    assert d.ci95[1] - d.ci95[0] < 0.2 * (hi_a - lo_a)


def test_single_document_has_no_interval():
    assert perplexity_interval([400.0], [100.0]) is None
    d = perplexity_difference([400.0], [390.0], [100.0])
    assert d.is_tie and d.ci95 == (-math.inf, math.inf)


# --------------------------------------------------------------------------- several seeds
def test_t_quantiles_match_the_tables():
    from lexformer.stats import t_quantile_975
    # standard tables: t(0.975) for 1, 2, 4, 10 degrees of freedom; large dof → 1.96
    for dof, expected in [(1, 12.706), (2, 4.303), (4, 2.776), (10, 2.228)]:
        assert t_quantile_975(dof) == pytest.approx(expected, abs=1e-3)
    assert t_quantile_975(30) == pytest.approx(2.042, rel=0.01)
    assert t_quantile_975(1000) == pytest.approx(1.962, rel=0.01)
    with pytest.raises(Exception, match="degree of freedom"):
        t_quantile_975(0)


def test_seed_interval_is_mean_plus_minus_t_standard_error():
    from lexformer.stats import seed_interval
    x = [10.0, 12.0, 14.0]
    half = 4.303 * 2.0 / math.sqrt(3)        # sd of (10, 12, 14) is 2
    lo, hi = seed_interval(x)
    assert (lo, hi) == pytest.approx((12 - half, 12 + half), abs=1e-3)
    assert seed_interval([5.0]) is None


def test_seed_difference_against_per_seed_references():
    from lexformer.stats import seed_difference
    nll, tokens = _docs()
    rng = np.random.default_rng(9)
    seeds_a = [nll * (1 + 0.01 * rng.standard_normal()) for _ in range(3)]
    seeds_b = [x * 0.98 for x in seeds_a]           # b is 2 % better in NLL on every seed
    idx = resample_indices(len(nll), resamples=200)
    d = seed_difference(seeds_a, seeds_b, tokens, idx)
    ppl = lambda x: math.exp(sum(x) / sum(tokens))  # noqa: E731
    per_seed = [ppl(a) - ppl(b) for a, b in zip(seeds_a, seeds_b)]
    assert d.value == pytest.approx(np.mean(per_seed), rel=1e-12)
    # documents: the seed-averaged paired bootstrap, computed one seed at a time by the
    # plain-Python reference
    ref = np.mean([_reference_resamples(a, tokens, idx) - _reference_resamples(b, tokens, idx)
                   for a, b in zip(seeds_a, seeds_b)], axis=0)
    assert d.ci95 == pytest.approx(tuple(np.percentile(ref, [2.5, 97.5])), rel=1e-9)
    # seeds: every seed improves, with little spread → both intervals exclude zero
    assert d.seed_ci95[0] > 0 and not d.is_tie


def test_seed_difference_is_a_tie_when_seeds_disagree():
    from lexformer.stats import seed_difference
    nll, tokens = _docs()
    # b is better on two seeds and worse on the third: the documents agree within each seed,
    # but the seeds do not, and the comparison must say tie
    seeds_a = [nll, nll, nll]
    seeds_b = [nll * 0.97, nll * 0.97, nll * 1.05]
    d = seed_difference(seeds_a, seeds_b, tokens, resample_indices(len(nll), resamples=200))
    assert d.seed_ci95[0] < 0 < d.seed_ci95[1]
    assert d.is_tie
    with pytest.raises(Exception, match="same seeds"):
        seed_difference(seeds_a, seeds_b[:2], tokens)


def test_one_seed_is_the_plain_paired_bootstrap():
    from lexformer.stats import seed_difference
    nll, tokens = _docs()
    idx = resample_indices(len(nll), resamples=200)
    plain = perplexity_difference(nll, nll * 0.98, tokens, idx)
    seeded = seed_difference([nll], [nll * 0.98], tokens, idx)
    assert (seeded.value, seeded.ci95, seeded.seed_ci95) == (plain.value, plain.ci95, None)
