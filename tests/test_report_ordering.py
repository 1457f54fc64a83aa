"""The report's ordering sentences: identical configurations (full and blockwise attention at
lengths ≤ L, equal up to fp32 rounding) are grouped, real differences are not."""

from __future__ import annotations

import numpy as np

from lexformer.evaluate import LengthResult, PerplexityResult
from lexformer.experiments.reproduce_report import Label, _groups, _ordering


def _result(doc_nll_by_mode: dict[str, np.ndarray], tokens_per_doc: int = 100) -> PerplexityResult:
    results = {}
    for mode, nll in doc_nll_by_mode.items():
        tokens = tokens_per_doc * nll.size
        results[mode] = {256: LengthResult(256, float(np.exp(nll.sum() / tokens)),
                                           float(nll.sum() / tokens), tokens, nll.size,
                                           None, tuple(float(x) for x in nll))}
    return PerplexityResult("m", "c", "test", results)


def test_rounding_level_differences_are_identical_and_real_ones_are_not():
    rng = np.random.default_rng(0)
    base = 480 + 20 * rng.random(40)                  # ~4.8 nats per token, 100 tokens each
    rounding = base * (1 + 3e-9 * rng.standard_normal(40))  # what two fp32 kernels give
    other = base * (1 + 1e-3)                         # a model 0.1 % worse on every document
    table = {"xpos": [_result({"full": base, "blockwise": rounding})],
             "rope": [_result({"full": other, "blockwise": other * (1 + 1e-4)})]}
    labels = [Label(s, a) for s in ("xpos", "rope") for a in ("full", "blockwise")]
    groups = _groups(table, labels, 256)
    assert sorted(map(str, groups[0])) == ["xpos / blockwise", "xpos / full"]
    assert [len(g) for g in groups] == [2, 1, 1]      # rope's two modes differ by 1e-4
    text = _ordering(table, labels, 256)
    assert "xpos / full" in text.split(",")[0] and "xpos / blockwise" in text.split(",")[0]
    assert "ahead of the next best rope / full" in text


def test_a_tie_with_the_third_best_is_reported_even_when_the_runner_up_is_separable():
    rng = np.random.default_rng(1)
    base = 480 + 20 * rng.random(40)
    runner_up = base * (1 + 2e-3)                     # worse on every document: separable
    signs = np.resize([1.0, -1.0], 40)                # noise with mean ~0 across documents
    noisy = base * (1 + 3e-3 + 0.03 * signs)          # 0.3 % worse on average, ±3 % per doc
    table = {"xpos": [_result({"full": base})], "rope": [_result({"full": runner_up})],
             "alibi": [_result({"full": noisy})]}
    labels = [Label(s, "full") for s in ("xpos", "rope", "alibi")]
    text = _ordering(table, labels, 256)
    assert text.startswith("tie at this scale between xpos / full and alibi / full")
    assert "rope" not in text
