"""The fast paths of lexformer.hf's window attention against their slow, obvious references.

* :func:`lexformer.hf.lse_attention.attend_part` (PyTorch's fused CPU kernel with its
  log-sum-exp) against explicit scores, and :func:`merge_parts` against one softmax over
  all the keys;
* :func:`lexformer.hf.windowed.window_attention` (chunks cut into fused-kernel pieces merged
  by log-sum-exp) against one explicit softmax over every branch of every query at once,
  the engine's former path, in float64 on random tensors: every method, chunk sizes that do
  and do not divide the blocks, a bounded cache, one-token decoding, a batch of two, and
  with the fused kernel switched off (the path of other devices).

Model-level exactness against the dense per-pair reference lives in ``test_hf.py``.
"""

from __future__ import annotations

import pytest
import torch

from lexformer.hf import lse_attention, windowed
from lexformer.hf.methods import HF_METHODS, MethodOptions, resolve_settings
from lexformer.hf.plans import branches, first_needed, prefix_tokens, query_chunks
from lexformer.hf.rotation import rotate_by

CONTEXT = 64
OPTIONS = MethodOptions(block=16, window=20, sinks=3, global_tokens=3, local_window=20,
                        distance_cap=24, group=3, neighbours=10)
# position-only plans; recall chooses keys by content and has its own tests (test_recall.py)
WINDOW_METHODS = [m for m, spec in HF_METHODS.items()
                  if spec.kind == "window" and spec.plan.build is not None]
HQ, HKV, D = 6, 2, 8  # grouped-query attention, 3 query heads per key head
SCALE = D ** -0.5
INV_FREQ = 1.0 / (10000 ** (torch.arange(0, D, 2, dtype=torch.float64) / D))
TOL = 1e-12  # float64 throughout: both sides differ by summation order only


def qkv(n_q: int, n_k: int, batch: int = 1, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    # × 2: sharper attention, so that a wrong key or position changes the output
    q = 2 * torch.randn(batch, HQ, n_q, D, generator=g, dtype=torch.float64)
    k = 2 * torch.randn(batch, HKV, n_k, D, generator=g, dtype=torch.float64)
    v = torch.randn(batch, HKV, n_k, D, generator=g, dtype=torch.float64)
    return q, k, v


# --------------------------------------------------------------------------- references
def explicit_window_attention(q, k, v, settings, q_start, inv_freq=INV_FREQ):
    """All queries at once, all branches under one explicit softmax, over an unbounded
    cache (key j at index j): the obvious form of what the engine computes."""
    B, _, Tq, _ = q.shape
    pos = torch.arange(q_start, q_start + Tq)
    qg = q.view(B, HKV, HQ // HKV, Tq, D)
    scores, values = [], []
    for b in branches(settings, pos):
        qb = qg if b.q_shift is None else rotate_by(qg, b.q_shift, inv_freq)
        kb = k[..., b.lo:b.hi, :]
        if b.k_shift is not None:
            kb = rotate_by(kb, b.k_shift, inv_freq)
        s = (qb @ kb[:, :, None].transpose(-1, -2)) * SCALE  # (B, Hkv, G, Tq, m)
        scores.append(s.masked_fill(~b.mask, float("-inf")))
        values.append(v[:, :, None, b.lo:b.hi, :])
    probs = torch.softmax(torch.cat(scores, dim=-1), dim=-1)
    out, used = 0, 0
    for val in values:
        m = val.shape[-2]
        out = out + probs[..., used:used + m] @ val
        used += m
    return out.reshape(B, HQ, Tq, D)


def bounded(k, settings, next_position: int):
    """What a bounded cache holds before the query at ``next_position``: the prefix and
    the keys from first_needed on."""
    keep = first_needed(settings, next_position)
    return torch.cat((k[..., :prefix_tokens(settings), :], k[..., keep:, :]), dim=-2)


# --------------------------------------------------------------------------- kernel pieces
@pytest.mark.parametrize("causal", [False, True])
def test_fused_part_with_lse_matches_explicit_scores(causal):
    q, k, v = qkv(12, 12 if causal else 30, seed=1)
    q, k, v = q[:, :HKV], k, v
    mask = None
    if not causal:
        visible = torch.rand(12, 30, generator=torch.Generator().manual_seed(2)) > 0.5
        visible[:, 0] = True  # every row sees a key
        mask = lse_attention.additive_mask(visible, torch.float64)
    q = q.transpose(1, 2).contiguous().transpose(1, 2)  # strided, as transformers passes it
    out, lse = lse_attention.attend_part(q, k, v, SCALE, mask, causal)
    want_out, want_lse = lse_attention.attend_part_explicit(q, k, v, SCALE, mask, causal)
    assert out.dtype == torch.float64 and lse.shape == (1, HKV, 12)
    assert (out - want_out).abs().max().item() <= TOL
    assert (lse - want_lse).abs().max().item() <= TOL


def test_merging_parts_is_one_softmax():
    q, k, v = qkv(9, 40, seed=3)
    q = q[:, :HKV]
    visible = torch.rand(9, 40, generator=torch.Generator().manual_seed(4)) > 0.3
    visible[:, 25] = True
    visible[2, :25] = False  # row 2 sees nothing in the first part: weight 0 there
    mask = lse_attention.additive_mask(visible, torch.float64)
    first = lse_attention.attend_part_explicit(q, k[..., :25, :], v[..., :25, :], SCALE,
                                               mask[:, :25])
    first = (first[0], first[1].masked_fill(~visible[:, :25].any(1), float("-inf")))
    second = lse_attention.attend_part_explicit(q, k[..., 25:, :], v[..., 25:, :], SCALE,
                                                mask[:, 25:])
    want, _ = lse_attention.attend_part_explicit(q, k, v, SCALE, mask)
    got = lse_attention.merge_parts([first, second])
    assert torch.isfinite(got).all()
    assert (got - want).abs().max().item() <= TOL


# --------------------------------------------------------------------------- the engine
@pytest.mark.parametrize("method", WINDOW_METHODS)
@pytest.mark.parametrize("max_chunk", [7, 16, 1024])
def test_engine_matches_one_explicit_softmax(method, max_chunk, monkeypatch):
    monkeypatch.setattr(windowed, "MAX_CHUNK", max_chunk)  # 7 cuts blocks of 16 unevenly
    settings = resolve_settings(method, CONTEXT, OPTIONS)
    q, k, v = qkv(150, 150, batch=2, seed=5)
    got = windowed.window_attention(q, k, v, settings, SCALE, INV_FREQ)
    want = explicit_window_attention(q, k, v, settings, 0)
    assert got.shape == q.shape
    assert (got - want).abs().max().item() <= TOL


@pytest.mark.parametrize("method", [m for m in WINDOW_METHODS if m != "self-extend"])
@pytest.mark.parametrize("n_new", [1, 9])
def test_engine_on_a_bounded_cache(method, n_new):
    """Decoding one token, or a few, after 140 tokens: queries at 140.. over the keys a
    bounded cache still holds give what they give over the whole cache."""
    settings = resolve_settings(method, CONTEXT, OPTIONS)
    start = 140
    q, k, v = qkv(n_new, start + n_new, seed=6)
    held_k, held_v = bounded(k, settings, start), bounded(v, settings, start)
    assert held_k.shape[-2] < k.shape[-2]  # keys were dropped
    got = windowed.window_attention(q, held_k, held_v, settings, SCALE, INV_FREQ, start)
    want = explicit_window_attention(q, k, v, settings, start)
    assert (got - want).abs().max().item() <= TOL


@pytest.mark.parametrize("method", WINDOW_METHODS)
def test_engine_without_the_fused_kernel(method, monkeypatch):
    """The path of devices without PyTorch's CPU kernel: explicit scores per piece."""
    monkeypatch.setattr(lse_attention, "_FLASH_CPU", None)
    settings = resolve_settings(method, CONTEXT, OPTIONS)
    q, k, v = qkv(100, 100, seed=7)
    got = windowed.window_attention(q, k, v, settings, SCALE, INV_FREQ)
    want = explicit_window_attention(q, k, v, settings, 0)
    assert (got - want).abs().max().item() <= TOL


def test_engine_in_float32_stays_close_to_float64():
    settings = resolve_settings("sinks", CONTEXT, OPTIONS)
    q, k, v = qkv(150, 150, seed=8)
    want = explicit_window_attention(q, k, v, settings, 0)
    got = windowed.window_attention(q.float(), k.float(), v.float(), settings, SCALE,
                                    INV_FREQ.float())
    assert got.dtype == torch.float32
    assert (got.double() - want).abs().max().item() <= 1e-5  # float32 rounding of D = 8 sums


@pytest.mark.parametrize("method", ["blockwise", "blockwise+sinks", "sinks"])
@pytest.mark.parametrize("start,stop,max_chunk", [(0, 150, 7), (5, 70, 16), (33, 34, 512)])
def test_query_chunks_tile_the_queries(method, start, stop, max_chunk):
    settings = resolve_settings(method, CONTEXT, OPTIONS)
    chunks = query_chunks(settings, start, stop, max_chunk)
    assert [p for c in chunks for p in c] == list(range(start, stop))
    assert all(0 < len(c) <= max_chunk for c in chunks)
    if method.startswith("blockwise"):  # never across a block boundary
        assert all(c[0] // 16 == c[-1] // 16 for c in chunks)


# --------------------------------------------------------------------------- bounded cache
@pytest.mark.parametrize("method", [m for m in WINDOW_METHODS if m != "self-extend"])
def test_window_cache_returns_prefix_and_visible_tail(method):
    """Tokens fed one by one and in chunks (the in-place appends, the re-buffering, the
    prefix moving forward, keys replaced from outside as beam search does): every step
    gets the prefix and a contiguous tail of exactly the keys fed, covering all it sees."""
    from lexformer.hf.cache import WindowLayer
    from lexformer.hf.plans import reach

    settings = resolve_settings(method, CONTEXT, OPTIONS)
    layer = WindowLayer(settings)
    _, k, v = qkv(1, 400, seed=9)
    prefix = prefix_tokens(settings)
    end = 0
    for step, n in enumerate([30, 1, 1, 5, *[1] * 80, 40, *[1] * 60, 3, *[1] * 30]):
        if step == 50:  # beam reordering replaces the tensors
            layer.keys, layer.values = layer.keys.clone(), layer.values.clone()
        keys, values = layer.update(k[..., end:end + n, :], v[..., end:end + n, :])
        end += n
        evicted = end - keys.shape[-2]
        kept = list(range(min(prefix, end))) + list(range(min(prefix, end) + evicted, end))
        assert torch.equal(keys, k[..., kept, :]) and torch.equal(values, v[..., kept, :])
        assert evicted == 0 or prefix + evicted <= first_needed(settings, end - n)
        assert layer.get_seq_length() == end
        # nothing held beyond the prefix and what this step's first query can see
        assert layer.keys.shape[-2] <= prefix + end - first_needed(settings, end - n)
        assert layer.keys.shape[-2] <= prefix + reach(settings, end) + n


# --------------------------------------------------------------------------- the plan
@pytest.mark.parametrize("method", WINDOW_METHODS)
def test_plan_masks_only_narrow_bands(method, monkeypatch):
    """Chunks follow the blocks, so only bands no wider than a chunk need a mask (blockwise
    none at all: a rectangle every query sees, then a causal square)."""
    monkeypatch.setattr(windowed, "MAX_CHUNK", 8)
    settings = resolve_settings(method, CONTEXT, OPTIONS)
    plan = windowed._build_plan(settings, 0, 150, 150, INV_FREQ, torch.float64,
                                torch.device("cpu"))
    masked = [p.visible.shape for c in plan for b in c.branches for p in b.pieces
              if p.visible is not None]
    assert all(rows <= 8 and cols <= 8 for rows, cols in masked)
    if method == "blockwise":
        assert masked == []
        assert any(p.causal for c in plan for b in c.branches for p in b.pieces)


def test_plan_is_shared_by_layers_and_follows_the_frequencies(monkeypatch):
    settings = resolve_settings("sinks", CONTEXT, OPTIONS)
    built = []
    build = windowed._build_plan
    monkeypatch.setattr(windowed, "_build_plan", lambda *a: built.append(a) or build(*a))
    q, k, v = qkv(40, 40, seed=10)
    inv_freq = INV_FREQ.clone()
    first = windowed.window_attention(q, k, v, settings, SCALE, inv_freq)
    again = windowed.window_attention(q, k, v, settings, SCALE, inv_freq)  # the next layer
    assert len(built) == 1 and torch.equal(first, again)
    inv_freq.mul_(0.5)  # changed in place (as a dynamic RoPE would): the plan is rebuilt
    changed = windowed.window_attention(q, k, v, settings, SCALE, inv_freq)
    assert len(built) == 2
    want = explicit_window_attention(q, k, v, settings, 0, inv_freq)
    assert (changed - want).abs().max().item() <= TOL


# --------------------------------------------------------------------------- FlexAttention
# The CUDA path (attend_part_flex) runs here uncompiled: FlexAttention's forward on the CPU
# evaluates the same block mask and returns the same lse, so its logic is checked without a
# GPU; tests/test_cuda.py runs the compiled kernel against the CPU path.
@pytest.fixture
def quiet_flex():
    """FlexAttention warns once that it runs unfused without torch.compile: here on purpose."""
    import warnings

    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="flex_attention called without torch.compile")
        yield


@pytest.mark.parametrize("dtype, tol", [(torch.float64, TOL), (torch.float32, 2e-6)])
@pytest.mark.parametrize("case", ["mask", "causal", "mask+causal", "none"])
def test_flex_part_matches_explicit_scores(dtype, tol, case, quiet_flex):
    """Output and lse, rows that see no key included (lse −inf, output 0). float32: both
    sides round the same D-term dot products and one softmax, a few u of |out| ≤ max|v|."""
    q, k, v = (x.to(dtype) for x in qkv(12, 12 if "causal" in case else 30, seed=8))
    q = q[:, :HKV]
    mask = None
    if "mask" in case:
        visible = torch.rand(12, k.shape[-2], generator=torch.Generator().manual_seed(9)) > 0.5
        visible[:, 0] = True
        visible[4] = False  # a row that sees nothing
        mask = lse_attention.additive_mask(visible, dtype)
    causal = "causal" in case
    out, lse = lse_attention.attend_part_flex(q, k, v, SCALE, mask, causal, compiled=False)
    want_out, want_lse = lse_attention.attend_part_explicit(q, k, v, SCALE, mask, causal)
    assert out.dtype == dtype and lse.dtype == dtype and lse.shape == (1, HKV, 12)
    assert torch.equal(torch.isneginf(lse), torch.isneginf(want_lse))
    seen = torch.isfinite(want_lse)
    assert (out - want_out).abs().max().item() <= tol
    assert (lse[seen] - want_lse[seen]).abs().max().item() <= tol


@pytest.mark.parametrize("method", WINDOW_METHODS)
def test_engine_through_flex_attention(method, monkeypatch, quiet_flex):
    """Every window method with every piece through FlexAttention (as on CUDA)."""
    def flex(q, k, v, scale, mask=None, causal=False):
        return lse_attention.attend_part_flex(q, k, v, scale, mask, causal, compiled=False)

    monkeypatch.setattr(windowed, "attend_part", flex)
    settings = resolve_settings(method, CONTEXT, OPTIONS)
    q, k, v = qkv(100, 100, seed=10)
    got = windowed.window_attention(q, k, v, settings, SCALE, INV_FREQ)
    want = explicit_window_attention(q, k, v, settings, 0)
    assert (got - want).abs().max().item() <= TOL
