"""XPOS far beyond where naive tables overflow: finite, and equal to the fp64 reference.

A naively centred XPOS table ζ^(±(n − T/2)/B) overflows fp16 (65504) at ~9k tokens and
fp32/bf16 at ~72k (docs/method.md#xpos). These tests run the attention paths at such lengths
with a tiny head dimension (ζ_0 = γ/(1+γ) whatever d is) and compare sampled rows with the
row-wise fp64 reference ``lexformer.reference.attention_rows``, which uses positions relative
to each query (exact at any length).
"""

from __future__ import annotations

import math

import pytest
import torch

from lexformer import reference as ref
from lexformer.attention import FULL_CHUNK_THRESHOLD, AttentionSpec, attend, causal_attention
from lexformer.positions import ALiBi, NoPosition, RoPE, XPos

D = 8
ZETA0 = 0.4 / 1.4


def make_scheme(name):
    return {"xpos": lambda: XPos(D), "rope": lambda: RoPE(D), "alibi": lambda: ALiBi(1),
            "none": NoPosition}[name]()


def qkv(T, scale=2.0):
    return (torch.randn(1, 1, T, D) * scale, torch.randn(1, 1, T, D) * scale,
            torch.randn(1, 1, T, D))


def sample_rows(T, extra=()):
    g = torch.Generator().manual_seed(T)
    rows = {0, 1, T // 2, T - 2, T - 1, *extra}
    rows.update(torch.randint(0, T, (6,), generator=g).tolist())
    return sorted(r for r in rows if 0 <= r < T)


def naive_centred_factor_max(T: int) -> float:
    """Largest XPOS factor of a table over centred positions −T/2 … T/2 (float64)."""
    return ZETA0 ** (-(T / 2) / 512)


TOL = {torch.float32: dict(rtol=1e-4, atol=2e-5), torch.bfloat16: dict(rtol=5e-2, atol=8e-2),
       torch.float16: dict(rtol=1e-2, atol=1e-2)}


# --------------------------------------------------------------------------- windowed
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16, torch.float16])
@pytest.mark.parametrize("mode", ["blockwise", "sliding"])
def test_xpos_windowed_at_32L_finite_and_exact(mode, dtype):
    Lt = 640
    T = 32 * Lt  # 20480 tokens
    assert naive_centred_factor_max(T) > 65504  # a naive fp16 table would hold inf here
    spec = AttentionSpec(mode, block=Lt // 2, window=Lt)
    q, k, v = qkv(T)
    if dtype == torch.bfloat16:
        with torch.autocast("cpu", dtype=torch.bfloat16):
            out = causal_attention(q, k, v, XPos(D), spec)
    else:
        out = causal_attention(q.to(dtype), k.to(dtype), v.to(dtype), XPos(D), spec)
    assert torch.isfinite(out).all()
    rows = sample_rows(T, extra=(Lt // 2 - 1, Lt // 2, Lt, 3 * Lt // 2 + 1, T - Lt // 2))
    want = ref.attention_rows(q, k, v, rows, "xpos", mode, spec.block, spec.window)
    torch.testing.assert_close(out[..., rows, :].double(), want, **TOL[dtype])


# --------------------------------------------------------------------------- full, chunked
@pytest.mark.parametrize("T", [FULL_CHUNK_THRESHOLD, FULL_CHUNK_THRESHOLD + 37])
@pytest.mark.parametrize("scheme", ["xpos", "rope", "alibi", "none"])
def test_full_mode_around_chunk_threshold(scheme, T):
    q, k, v = qkv(T)
    out = causal_attention(q, k, v, make_scheme(scheme), AttentionSpec("full"))
    assert torch.isfinite(out).all()
    rows = sample_rows(T, extra=(1023, 1024, T - 1025))
    want = ref.attention_rows(q, k, v, rows, scheme, "full", 1, 1)
    torch.testing.assert_close(out[..., rows, :].double(), want, **TOL[torch.float32])


def test_full_chunked_bf16_autocast():
    T = FULL_CHUNK_THRESHOLD + 37
    q, k, v = qkv(T)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = causal_attention(q, k, v, XPos(D), AttentionSpec("full"))
    assert torch.isfinite(out).all()
    rows = sample_rows(T)
    want = ref.attention_rows(q, k, v, rows, "xpos", "full", 1, 1)
    torch.testing.assert_close(out[..., rows, :].double(), want, **TOL[torch.bfloat16])


# --------------------------------------------------------------------------- decoding
@pytest.mark.parametrize("mode", ["full", "blockwise", "sliding"])
def test_decode_step_far_out(mode):
    """One query at position 20000 against a (trimmed) cache: factors re-centred on the
    query stay ≤ 1 for past keys, so it is finite and exact."""
    P, Lt = 20000, 512
    spec = AttentionSpec(mode, block=Lt // 2, window=Lt)
    q, k, v = qkv(P + 1)
    first = spec.first_visible(P)
    out = attend(q[..., P:, :], k[..., first:, :], v[..., first:, :], torch.tensor([P]),
                 torch.arange(first, P + 1), XPos(D), spec)
    assert torch.isfinite(out).all()
    want = ref.attention_rows(q, k, v, [P], "xpos", mode, spec.block, spec.window)
    torch.testing.assert_close(out.double(), want, **TOL[torch.float32])


# --------------------------------------------------------------------------- far positions
@pytest.mark.parametrize("cls", [XPos, RoPE])
def test_rotary_at_offset_near_int32_limit_is_finite(cls):
    off = 2**31 - 100_000
    T = 1000
    q, k, _ = qkv(T)
    pos = torch.arange(T)
    q2, k2 = cls(D)(q, k, pos + off, pos + off)
    assert torch.isfinite(q2).all() and torch.isfinite(k2).all()
    q0, k0 = cls(D)(q, k, pos, pos)
    far = q2 @ k2.transpose(-1, -2)
    near = q0 @ k0.transpose(-1, -2)
    assert (far - near).abs().max() <= 1e-5 * near.abs().max()
    # beyond int32 too: positions are int64 throughout
    q3, k3 = cls(D)(q, k, pos + 2**40, pos + 2**40)
    assert (q3 @ k3.transpose(-1, -2) - near).abs().max() <= 1e-5 * near.abs().max()


def test_naive_table_is_what_overflows():
    """Sanity of the premise: the centred factor at these lengths, in each dtype."""
    assert math.isinf(torch.tensor(naive_centred_factor_max(20480), dtype=torch.float16))
    assert math.isfinite(torch.tensor(naive_centred_factor_max(20480), dtype=torch.float32))
    assert math.isinf(torch.tensor(naive_centred_factor_max(131072), dtype=torch.float32))
    assert math.isinf(torch.tensor(naive_centred_factor_max(131072), dtype=torch.bfloat16))


# --------------------------------------------------------------------------- known bugs
def test_full_mode_small_scale_base_stays_finite():
    T = 4096
    q, k, v = qkv(T, scale=1.0)
    out = causal_attention(q, k, v, XPos(D, scale_base=16), AttentionSpec("full"))
    assert torch.isfinite(out).all()


def test_full_mode_fp16_at_chunk_threshold_stays_finite():
    T = FULL_CHUNK_THRESHOLD
    q, k, v = qkv(T, scale=2.0)
    out = causal_attention(q.half(), k.half(), v.half(), XPos(D), AttentionSpec("full"))
    assert torch.isfinite(out).all()
