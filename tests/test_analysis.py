"""Attention resolution: analytic curve, R(s), empirical ŝ (paper Eq. 8, 9, 11)."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from lexformer import ModelConfig, TransformerLM
from lexformer.analysis import (
    AnalysisResult,
    analytic_resolution,
    analytic_resolutions,
    analyze_model,
    empirical_expected_scores,
    expectation_curve,
    model_resolution,
    resolution,
    visible_prefix,
)
from lexformer.errors import LexformerError


# --------------------------------------------------------------------------- analytic curve
def test_rope_curve_is_sum_of_cosines():
    d, N = 64, 300
    g = expectation_curve(d, N, gamma=None)
    theta = 10000.0 ** (-2.0 * np.arange(d // 2) / d)
    n = np.arange(N + 1)[:, None]
    np.testing.assert_allclose(g, np.cos(n * theta).sum(axis=1), rtol=0, atol=1e-12)
    assert g.dtype == np.float64 and g.shape == (N + 1,)
    assert g[0] == d / 2


def test_xpos_curve_matches_eq8():
    d, N, gamma, B = 32, 200, 0.4, 512
    g = expectation_curve(d, N, gamma=gamma, scale_base=B)
    j = np.arange(d // 2)
    theta = 10000.0 ** (-2.0 * j / d)
    zeta = (2.0 * j / d + gamma) / (1 + gamma)
    n = np.arange(N + 1)[:, None]
    np.testing.assert_allclose(g, (np.cos(n * theta) * zeta ** (n / B)).sum(axis=1), atol=1e-12)
    assert g[0] == d / 2


def test_xpos_is_smoother_and_sharper_than_rope():
    """Paper Figure 1: RoPE's expectation oscillates at long distance, XPOS' decays."""
    rope = expectation_curve(64, 4096, gamma=None)
    xpos = expectation_curve(64, 4096, gamma=0.4)
    far = slice(2000, 4097)
    assert np.abs(xpos[far]).max() < 0.5 * np.abs(rope[far]).max()
    # R of un-normalised scores (g[0] = 32) is set by the first few distances, where XPOS
    # already decays faster; the gap is ~0.009 at every range from 4 to 4096.
    for N in (1024, 4096):
        assert analytic_resolution(64, N, 0.4) > analytic_resolution(64, N, None)


# --------------------------------------------------------------------------- R(s)
def test_resolution_hand_computed():
    # e^s = [4, 2, 1]: numerator 4·(4−2) + 2·(2−1) = 10, denominator (4+2+1)² = 49
    assert resolution(np.log([4.0, 2.0, 1.0])) == pytest.approx(10 / 49, rel=1e-14)


def test_resolution_constant_is_zero_and_decreasing_is_higher():
    assert resolution(np.full(50, 3.7)) == 0.0
    decreasing = -0.1 * np.arange(50)
    assert resolution(decreasing) > 0.0
    assert resolution(decreasing[::-1]) < 0.0  # increasing with distance: negative
    assert resolution([1.0]) == 0.0
    assert resolution(decreasing) <= 1.0


def test_resolution_shift_invariant_and_stable():
    rng = np.random.default_rng(0)
    s = rng.normal(size=40).cumsum()
    r = resolution(s)
    for c in (-500.0, 17.0, 1000.0):  # 1000: e^{s} alone would overflow float64
        assert resolution(s + c) == pytest.approx(r, rel=1e-12)
    assert math.isfinite(resolution(np.array([1000.0, 999.0, -np.inf])))


def test_resolution_refuses_nan():
    with pytest.raises(LexformerError):
        resolution([0.0, float("nan")])
    with pytest.raises(LexformerError):
        resolution([])


# --------------------------------------------------------------------------- empirical ŝ
def _toeplitz_scores(f: np.ndarray, B: int = 2, H: int = 3) -> torch.Tensor:
    """(B, H, T, T) with e_ij = f(i − j) + per-(b, h) noise that averages to zero; −inf above."""
    T = len(f)
    i, j = np.meshgrid(np.arange(T), np.arange(T), indexing="ij")
    base = np.where(i >= j, f[np.clip(i - j, 0, None)], -np.inf)
    offsets = np.arange(B * H, dtype=np.float64).reshape(B, H, 1, 1)
    offsets -= offsets.mean()  # zero-mean across batch and heads
    return torch.tensor(base[None, None] + offsets, dtype=torch.float32)


def test_empirical_recovers_toeplitz_function():
    T = 12
    f = np.cos(np.arange(T)) * 3 - 0.2 * np.arange(T)
    scores = _toeplitz_scores(f)
    s_hat = empirical_expected_scores([scores, (scores * 3, None)], T)
    # layer means f and 3f → average 2f
    np.testing.assert_allclose(s_hat, 2 * f, atol=1e-5)
    np.testing.assert_allclose(empirical_expected_scores([scores]), f, atol=1e-5)
    # n_tokens restricts to the leading N×N block
    np.testing.assert_allclose(empirical_expected_scores([scores], 5), f[:5], atol=1e-5)


def test_empirical_averages_over_queries():
    """ŝ[n] = 1/(N−n) Σ_{i=n}^{N−1} e_{i,i−n} for an arbitrary (non-Toeplitz) matrix."""
    T = 7
    rng = np.random.default_rng(1)
    e = rng.normal(size=(T, T))
    s_hat = empirical_expected_scores([torch.tensor(e)[None, None]])
    expected = [np.mean([e[i, i - n] for i in range(n, T)]) for n in range(T)]
    np.testing.assert_allclose(s_hat, expected, atol=1e-12)


def test_empirical_excludes_hidden_pairs():
    T = 10
    f = -0.5 * np.arange(T, dtype=np.float64)
    scores = _toeplitz_scores(f, B=1, H=1)
    # hide some pairs at distance 2 and give them a value that would spoil the mean
    scores[0, 0, 5, 3] = float("-inf")
    scores[0, 0, 7, 5] = float("-inf")
    np.testing.assert_allclose(empirical_expected_scores([scores]), f, atol=1e-6)


def test_empirical_blockwise_nan_beyond_visible_range():
    """Blocks of h = 3 (L = 6): a query sees its block and the previous one, ≤ 5 back."""
    from lexformer.attention import AttentionSpec

    T, h = 14, 3
    f = 1.0 - 0.1 * np.arange(T)
    pos = torch.arange(T)
    visible = AttentionSpec("blockwise", block=h).visible(pos, pos).numpy()
    i, j = np.meshgrid(pos.numpy(), pos.numpy(), indexing="ij")
    scores = torch.tensor(np.where(visible, f[np.clip(i - j, 0, None)], -np.inf))
    s_hat = empirical_expected_scores([scores[None, None]])
    np.testing.assert_allclose(s_hat[: 2 * h], f[: 2 * h], atol=1e-12)
    assert np.isnan(s_hat[2 * h:]).all()
    assert visible_prefix(s_hat).size == 2 * h


def test_empirical_rejects_non_square():
    with pytest.raises(LexformerError):
        empirical_expected_scores([torch.zeros(1, 1, 4, 5)])


# --------------------------------------------------------------------------- model
@pytest.fixture(scope="module")
def tiny_model():
    torch.manual_seed(0)
    cfg = ModelConfig(vocab_size=64, n_layer=2, n_head=2, d_model=32, d_ff=64,
                      train_length=16, position="xpos")
    return TransformerLM(cfg)


@pytest.fixture(scope="module")
def documents():
    rng = np.random.default_rng(0)
    # 3 docs: 2 chunks of 32, 1 chunk (+ a dropped tail), too short for any
    return [rng.integers(0, 64, size=n) for n in (64, 40, 20)]


def test_model_resolution_full(tiny_model, documents):
    tiny_model.train()
    r = model_resolution(tiny_model, documents, 32, "full", batch_size=2)
    assert tiny_model.training  # mode restored
    assert r["n_texts"] == 3 and r["length"] == 32 and r["attention"] == "full"
    assert r["s_hat"].shape == (32,) and np.isfinite(r["s_hat"]).all()
    assert math.isfinite(r["resolution"]) and r["visible_distances"] == 32
    assert r["resolution"] == pytest.approx(resolution(r["s_hat"]))
    # ŝ is the average over texts of each text's ŝ
    ids = torch.tensor(np.stack([documents[0][:32], documents[0][32:], documents[1][:32]]))
    per_text = [empirical_expected_scores(tiny_model.attention_scores(ids[k:k + 1]))
                for k in range(3)]
    np.testing.assert_allclose(r["s_hat"], np.mean(per_text, axis=0), rtol=1e-5, atol=1e-6)
    assert model_resolution(tiny_model, documents, 32, "full", max_docs=1)["n_texts"] == 2
    assert model_resolution(tiny_model, documents, 32, chunks_per_doc=1)["n_texts"] == 2


def test_model_resolution_blockwise(tiny_model, documents):
    r = model_resolution(tiny_model, documents, 32, "blockwise")
    # train_length 16 → blocks of 8: a query sees at most 15 back
    s_hat = r["s_hat"]
    assert s_hat.shape == (32,)
    assert np.isfinite(s_hat[:16]).all()
    assert np.isnan(s_hat[16:]).all()
    assert r["visible_distances"] == 16 and math.isfinite(r["resolution"])
    assert r["resolution"] == pytest.approx(resolution(s_hat[:16]))
    # inside the first two blocks blockwise equals full attention, so at distances a
    # blockwise query can see ŝ is built from the same kind of pairs; at length ≤ L it is equal
    full16 = model_resolution(tiny_model, documents, 16, "full")
    block16 = model_resolution(tiny_model, documents, 16, "blockwise")
    np.testing.assert_allclose(block16["s_hat"], full16["s_hat"], rtol=1e-5, atol=1e-6)


def test_model_resolution_no_usable_document(tiny_model):
    with pytest.raises(LexformerError):
        model_resolution(tiny_model, [np.arange(10)], 32, "full")


# --------------------------------------------------------------------------- typed results
def test_analyze_model_collects_every_mode_and_length(tiny_model, documents):
    m = analyze_model(tiny_model, documents, [16, 32], ["full", "blockwise"], step=7)
    assert m.model == "xpos" and m.head_dim == 16 and m.step == 7
    assert [(r.attention, r.length) for r in m.results] == [
        ("full", 16), ("full", 32), ("blockwise", 16), ("blockwise", 32)]
    direct = model_resolution(tiny_model, documents, 32, "blockwise")
    assert m.get("blockwise", 32).resolution == direct["resolution"]
    np.testing.assert_array_equal(m.get("blockwise", 32).s_hat, direct["s_hat"])


def test_analysis_json_round_trip_keeps_nan_and_int_keys(tiny_model, documents):
    import json

    m = analyze_model(tiny_model, documents, [32], ["blockwise"])
    result = AnalysisResult(16, analytic_resolutions(16, [32, 64]), {"xpos": m})
    text = json.dumps(result.to_json(), allow_nan=False)  # NaN would not be valid JSON
    back = AnalysisResult.from_json(json.loads(text))
    assert back.analytic == result.analytic and set(back.analytic["rope"]) == {32, 64}
    s_back, s = back.models["xpos"].get("blockwise", 32).s_hat, m.get("blockwise", 32).s_hat
    np.testing.assert_array_equal(np.isnan(s_back), np.isnan(s))
    np.testing.assert_array_equal(s_back[~np.isnan(s)], s[~np.isnan(s)])
    assert back.analytic["xpos"][64] == analytic_resolution(16, 64, 0.4)
