"""Position schemes against the paper's formulas, public implementations and invariances."""

from __future__ import annotations

import math
import sys
import types

import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

from lexformer import LexformerError, ModelConfig
from lexformer import reference as ref
from lexformer.positions import (
    POSITION_SCHEMES,
    ALiBi,
    LearnedPosition,
    RoPE,
    SinusoidalPosition,
    XPos,
    alibi_slopes,
    build_position_scheme,
)

D = 64


def logits(scheme, q, k, q_pos, k_pos):
    q2, k2 = scheme(q, k, q_pos, k_pos)
    return (q2.double() @ k2.double().transpose(-1, -2))


def assert_logits_close(got, q, k, q_pos, k_pos, decay, rtol=1e-5, atol=1e-6, **kw):
    """|got − ref| ≤ rtol·Σ_j|q'_j||k'_j| + atol: fp32 rounding relative to the magnitude."""
    want = ref.rotary_logits(q, k, q_pos, k_pos, decay=decay, **kw)
    mag = ref.rotary_logit_magnitude(q, k, q_pos, k_pos, decay=decay, **kw)
    err = (got.double() - want).abs()
    bound = rtol * mag + atol
    worst = (err / bound).max().item()
    assert worst <= 1.0, f"logit error {err.max().item():.3g} exceeds tolerance (x{worst:.3g})"


def qk(B=2, H=3, Tq=37, Tk=41, d=D, dtype=torch.float32):
    return torch.randn(B, H, Tq, d, dtype=dtype), torch.randn(B, H, Tk, d, dtype=dtype)


# --------------------------------------------------------------------------- constants
def test_xpos_constants_are_the_papers():
    x = XPos(D)
    assert x.gamma == 0.4 and x.scale_base == 512.0
    torch.testing.assert_close(x.zeta(), torch.tensor(ref.xpos_zeta(D), dtype=torch.float64))
    torch.testing.assert_close(x.theta(), torch.tensor(ref.rope_theta(D), dtype=torch.float64))
    # rotary-embedding-torch / torchscale write ζ as (arange(0, d, 2) + 0.4 d) / (1.4 d)
    public = (torch.arange(0, D, 2, dtype=torch.float64) + 0.4 * D) / (1.4 * D)
    torch.testing.assert_close(x.zeta(), public)
    assert math.isclose(x.zeta()[0].item(), 0.4 / 1.4)  # fastest decay ≈ 0.286
    torch.testing.assert_close(RoPE(D).zeta(), torch.ones(D // 2, dtype=torch.float64))


def test_registry_names_and_kinds():
    assert set(POSITION_SCHEMES) == {"xpos", "rope", "alibi", "absolute", "learned", "none"}
    for name in POSITION_SCHEMES:
        cfg = ModelConfig(vocab_size=11, n_layer=1, n_head=2, d_model=16, d_ff=16,
                          train_length=8, position=name)
        scheme = build_position_scheme(cfg)
        assert scheme.kind in ("rotary", "bias", "additive", "none")
    assert type(build_position_scheme(ModelConfig(position="xpos"))) is XPos
    assert type(build_position_scheme(ModelConfig(position="rope"))) is RoPE


@pytest.mark.parametrize("bad", [0, -2, 7])
def test_rotary_needs_even_positive_head_dim(bad):
    with pytest.raises(ValueError, match="even head dimension"):
        XPos(bad)
    with pytest.raises(ValueError, match="even head dimension"):
        RoPE(bad)


def test_xpos_rejects_bad_gamma_and_scale_base():
    with pytest.raises(ValueError, match="gamma"):
        XPos(D, gamma=0.0)
    with pytest.raises(ValueError, match="scale_base"):
        XPos(D, scale_base=-1.0)


# --------------------------------------------------------------------------- vs the loop
@pytest.mark.parametrize("offset", [0, 1000])
def test_xpos_logits_match_paper_loop(offset):
    q, k = qk()
    q_pos = torch.arange(37) * 7 + offset + 3   # spread, not aligned with the keys
    k_pos = torch.randperm(300)[:41] + offset
    got = logits(XPos(D), q, k, q_pos, k_pos)
    assert_logits_close(got, q, k, q_pos, k_pos, decay=True)


def test_rope_logits_match_paper_loop():
    q, k = qk()
    q_pos = torch.arange(37) * 11 + 5
    k_pos = torch.randperm(500)[:41]
    got = logits(RoPE(D), q, k, q_pos, k_pos)
    assert_logits_close(got, q, k, q_pos, k_pos, decay=False)


def test_xpos_logits_depend_on_distance_like_the_paper():
    """With all-ones q, k the logit at distance n is 2·Σ_j cos(nθ_j) ζ_j^(n/B), twice the
    analytic curve of docs/method.md#attention-resolution."""
    x = XPos(D)
    n = torch.arange(0, 2000, 37)
    q = torch.ones(1, 1, len(n), D)
    k = torch.ones(1, 1, 1, D)
    got = logits(x, q, k, n, torch.zeros(1, dtype=torch.int64))[0, 0, :, 0]
    zeta = torch.tensor(ref.xpos_zeta(D), dtype=torch.float64)
    theta = torch.tensor(ref.rope_theta(D), dtype=torch.float64)
    nd = n.double()[:, None]
    want = 2 * (torch.cos(nd * theta) * zeta ** (nd / 512)).sum(-1)
    torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-4)


def test_rotary_rotates_interleaved_pairs():
    """One pair at a time: q = e_{2j} at position n, key e_{2j} at 0 gives cos(nθ_j)·ζ^(n/B)."""
    x = XPos(8)
    for j in range(4):
        q = torch.zeros(1, 1, 1, 8)
        q[..., 2 * j] = 1.0
        k = q.clone()
        k2_other = torch.zeros(1, 1, 1, 8)
        k2_other[..., 2 * j + 1] = 1.0
        n = torch.tensor([100])
        zero = torch.tensor([0])
        theta = 10000 ** (-2 * j / 8)
        zeta = (2 * j / 8 + 0.4) / 1.4
        got = logits(x, q, k, n, zero).item()
        assert math.isclose(got, math.cos(100 * theta) * zeta ** (100 / 512), abs_tol=1e-6)
        # partner coordinate: q' = [cos, sin]·ζ, so q'·e_{2j+1} = sin(nθ)ζ^(n/B)
        got = logits(x, q, k2_other, n, zero).item()
        assert math.isclose(got, math.sin(100 * theta) * zeta ** (100 / 512), abs_tol=1e-6)


# --------------------------------------------------------------------------- public code
def test_xpos_matches_rotary_embedding_torch():
    ret = pytest.importorskip("rotary_embedding_torch")
    T = 200
    q, k = qk(Tq=T, Tk=T)
    public = ret.RotaryEmbedding(dim=D, use_xpos=True, xpos_scale_base=512,
                                 cache_if_possible=False)
    pq, pk = public.rotate_queries_and_keys(q, k)
    theirs = pq.double() @ pk.double().transpose(-1, -2)
    pos = torch.arange(T)
    ours = logits(XPos(D), q, k, pos, pos)
    mag = ref.rotary_logit_magnitude(q, k, pos, pos, decay=True)
    assert ((ours - theirs).abs() <= 1e-4 * mag + 1e-5).all()
    assert_logits_close(theirs, q, k, pos, pos, decay=True, rtol=1e-4)  # and the loop agrees


def test_rope_matches_rotary_embedding_torch():
    ret = pytest.importorskip("rotary_embedding_torch")
    T = 300
    q, k = qk(Tq=T, Tk=T)
    public = ret.RotaryEmbedding(dim=D, cache_if_possible=False)
    pq, pk = public.rotate_queries_or_keys(q), public.rotate_queries_or_keys(k)
    theirs = pq.double() @ pk.double().transpose(-1, -2)
    pos = torch.arange(T)
    ours = logits(RoPE(D), q, k, pos, pos)
    mag = ref.rotary_logit_magnitude(q, k, pos, pos, decay=False)
    assert ((ours - theirs).abs() <= 1e-4 * mag + 1e-5).all()


def _import_torchscale_xpos():
    try:
        from torchscale.component.xpos_relative_position import XPOS
    except ImportError:
        # some torchscale modules want timm only for drop_path: stub it and retry
        if "timm.models.layers" not in sys.modules:
            timm = types.ModuleType("timm")
            models = types.ModuleType("timm.models")
            layers = types.ModuleType("timm.models.layers")
            layers.drop_path = lambda x, drop_prob=0.0, training=False: x
            timm.models, models.layers = models, layers
            sys.modules.update({"timm": timm, "timm.models": models,
                                "timm.models.layers": layers})
        try:
            from torchscale.component.xpos_relative_position import XPOS
        except ImportError:
            pytest.skip("torchscale is not importable")
    return XPOS


def test_xpos_matches_torchscale_reference_code():
    XPOS = _import_torchscale_xpos()
    B, H, T = 2, 3, 150
    q, k = qk(B=B, H=H, Tq=T, Tk=T)
    ts = XPOS(D, scale_base=512)
    tq = ts(q.reshape(B * H, T, D), downscale=False).reshape(B, H, T, D)
    tk = ts(k.reshape(B * H, T, D), downscale=True).reshape(B, H, T, D)
    theirs = tq.double() @ tk.double().transpose(-1, -2)
    pos = torch.arange(T)
    ours = logits(XPos(D), q, k, pos, pos)
    mag = ref.rotary_logit_magnitude(q, k, pos, pos, decay=True)
    assert ((ours - theirs).abs() <= 1e-4 * mag + 1e-5).all()


# --------------------------------------------------------------------------- invariance
OFFSETS = [0, 1, 1000, 2**20, 2**31 - 10_000]


def _relative_check(scheme, offset, q, k):
    q_pos = torch.arange(q.shape[-2]) * 3 + 17
    k_pos = torch.arange(k.shape[-2]) * 2
    base = logits(scheme, q, k, q_pos, k_pos)
    shifted = logits(scheme, q, k, q_pos + offset, k_pos + offset)
    scale = base.abs().max()
    assert torch.isfinite(shifted).all()
    assert (shifted - base).abs().max() <= 1e-5 * scale


@pytest.mark.parametrize("offset", OFFSETS)
@pytest.mark.parametrize("cls", [XPos, RoPE])
def test_rotary_logits_invariant_to_common_offset(cls, offset):
    q, k = qk(B=1, H=2, Tq=50, Tk=60)
    _relative_check(cls(D), offset, q, k)


@pytest.mark.parametrize("offset", OFFSETS)
def test_alibi_bias_invariant_to_common_offset_exactly(offset):
    a = ALiBi(8)
    q_pos = torch.arange(20) * 3 + 17
    k_pos = torch.arange(30) * 2
    assert torch.equal(a(q_pos + offset, k_pos + offset), a(q_pos, k_pos))


@given(offset=st.integers(min_value=0, max_value=2**31))
def test_relative_invariance_property(offset):
    torch.manual_seed(1)
    q, k = qk(B=1, H=1, Tq=20, Tk=24, d=16)
    _relative_check(XPos(16), offset, q, k)
    _relative_check(RoPE(16), offset, q, k)
    a = ALiBi(4)
    q_pos, k_pos = torch.arange(20) + 5, torch.arange(24)
    assert torch.equal(a(q_pos + offset, k_pos + offset), a(q_pos, k_pos))


def test_offset_invariance_also_matches_the_loop_far_out():
    """Far from the origin the library still equals the loop at the *relative* positions."""
    q, k = qk(B=1, H=1, Tq=30, Tk=30)
    off = 2**31 - 10_000
    pos = torch.arange(30) * 5
    got = logits(XPos(D), q, k, pos + off, pos + off)
    assert_logits_close(got, q, k, pos, pos, decay=True)


# --------------------------------------------------------------------------- ALiBi
def test_alibi_slopes_are_the_papers():
    assert alibi_slopes(8).tolist() == [1 / 2, 1 / 4, 1 / 8, 1 / 16, 1 / 32, 1 / 64, 1 / 128,
                                        1 / 256]
    for H in (1, 2, 4, 6, 12, 16):
        torch.testing.assert_close(alibi_slopes(H).double(),
                                   torch.tensor(ref.alibi_slopes(H), dtype=torch.float64))


def test_alibi_bias_matches_reference_and_is_toeplitz():
    a = ALiBi(8)
    pos = torch.arange(40)
    bias = a(pos, pos)
    assert bias.shape == (8, 40, 40)
    torch.testing.assert_close(bias.double(), ref.alibi_bias(8, pos, pos), rtol=0, atol=0)
    for d in range(-39, 40):  # constant along every diagonal
        diag = torch.diagonal(bias, offset=d, dim1=-2, dim2=-1)
        assert (diag == diag[:, :1]).all()
    assert (bias.diagonal(dim1=-2, dim2=-1) == 0).all()
    # rectangular (decode): one query at 39 against all keys is the last row
    assert torch.equal(a(pos[-1:], pos), bias[:, -1:, :])


def test_positions_dtype_and_shape_are_checked():
    q, k = qk(B=1, H=1, Tq=4, Tk=4)
    ipos = torch.arange(4)
    for bad in (ipos.float(), ipos.to(torch.bfloat16), ipos.half(), ipos.double()):
        with pytest.raises(ValueError, match="integer tensor of positions"):
            XPos(D)(q, k, bad, ipos)
        with pytest.raises(ValueError, match="integer tensor of positions"):
            RoPE(D)(q, k, ipos, bad)
        with pytest.raises(ValueError, match="integer tensor of positions"):
            ALiBi(2)(bad, ipos)
        with pytest.raises(ValueError, match="integer tensor of positions"):
            SinusoidalPosition(16)(bad)
    with pytest.raises(ValueError, match="1-D"):
        XPos(D)(q, k, ipos[None], ipos)
    # int32 positions are fine and equal int64 ones
    torch.testing.assert_close(logits(XPos(D), q, k, ipos.int(), ipos.int()),
                               logits(XPos(D), q, k, ipos, ipos))


# --------------------------------------------------------------------------- tables
@pytest.mark.parametrize("cls", [XPos, RoPE])
def test_short_table_consistent_with_long_table(cls):
    """Logits at 0..T are the top-left block of those at 0..2T (and of a grown table)."""
    T = 300
    q, k = qk(B=1, H=2, Tq=2 * T, Tk=2 * T)
    pos = torch.arange(2 * T)
    short = logits(cls(D), q[..., :T, :], k[..., :T, :], pos[:T], pos[:T])
    long = logits(cls(D), q, k, pos, pos)[..., :T, :T]
    scale = long.abs().max()
    assert (short - long).abs().max() <= 1e-5 * scale
    # the same module: a table grown from radius 1024 to > 5000 gives identical values
    s = cls(D)
    rel = torch.arange(-100, 100)
    small = s.rotate_queries(q[..., :200, :], rel), s.rotate_keys(k[..., :200, :], rel)
    s.rotate_queries(torch.randn(1, 1, 1, D), torch.tensor([6000]))
    grown = s.rotate_queries(q[..., :200, :], rel), s.rotate_keys(k[..., :200, :], rel)
    assert torch.equal(small[0], grown[0]) and torch.equal(small[1], grown[1])


@pytest.mark.parametrize("cls", [XPos, RoPE])
def test_bf16_inputs_give_bf16_outputs_close_to_fp32(cls):
    q, k = qk(B=1, H=2, Tq=100, Tk=100)
    pos = torch.arange(100)
    q2, k2 = cls(D)(q.bfloat16(), k.bfloat16(), pos, pos)
    assert q2.dtype == torch.bfloat16 and k2.dtype == torch.bfloat16
    got = q2.double() @ k2.double().transpose(-1, -2)
    mag = ref.rotary_logit_magnitude(q, k, pos, pos, decay=cls is XPos)
    want = ref.rotary_logits(q, k, pos, pos, decay=cls is XPos)
    assert ((got - want).abs() <= 2e-2 * mag + 1e-3).all()  # a few bf16 ulps of each term


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
@pytest.mark.parametrize("offset", [0, 2**20])
def test_1024_positions_give_1024_distinct_rotations(dtype, offset):
    """Positions never pass through fp16/bf16 (bf16 positions collapse to 513 values)."""
    x = XPos(D)
    pos = torch.arange(1024) + offset
    q = torch.ones(1, 1, 1024, D, dtype=dtype)
    q2, _ = x(q, q[..., :1, :], pos, pos[:1])
    assert torch.unique(q2[0, 0].float(), dim=0).shape[0] == 1024
    # and the angles are right: logits against a key at the first position match the loop
    k = torch.ones(1, 1, 1, D)
    got = logits(x, torch.ones(1, 1, 1024, D), k, pos, pos[:1])
    assert_logits_close(got, torch.ones(1, 1, 1024, D), k, pos - offset, pos[:1] - offset,
                        decay=True)


# --------------------------------------------------------------------------- absolute
def test_sinusoidal_equals_closed_form():
    d = 16
    pos = torch.tensor([0, 1, 2, 7, 100, 1023, 10**6, 2**31 - 1])
    scheme = SinusoidalPosition(d)
    assert scheme.scale.item() == pytest.approx(d ** -0.5)  # learned, starts at d^(-1/2)
    with torch.no_grad():
        scheme.scale.fill_(1.0)
    got = scheme(pos)
    assert got.shape == (len(pos), d) and got.dtype == torch.float32
    want = torch.empty(len(pos), d, dtype=torch.float64)
    for r, n in enumerate(pos.tolist()):
        for i in range(d // 2):
            want[r, 2 * i] = math.sin(n / 10000 ** (2 * i / d))
            want[r, 2 * i + 1] = math.cos(n / 10000 ** (2 * i / d))
    torch.testing.assert_close(got.double(), want, rtol=0, atol=1e-6)


def test_sinusoidal_needs_even_d_model():
    with pytest.raises(ValueError):
        SinusoidalPosition(15)


def test_learned_positions_beyond_train_length_raise():
    lp = LearnedPosition(16, 8)
    assert lp(torch.arange(16)).shape == (16, 8)
    with pytest.raises(LexformerError, match="0..15"):
        lp(torch.arange(17))
    with pytest.raises(LexformerError):
        lp(torch.tensor([-1]))
    assert not LearnedPosition.extrapolates and XPos.extrapolates


@pytest.mark.parametrize("cls", [XPos, RoPE])
def test_tables_first_built_under_inference_mode_still_train(cls):
    """Evaluating under torch.inference_mode() first must not poison the cached tables."""
    scheme = cls(D)
    q = torch.randn(1, 2, 10, D)
    pos = torch.arange(10)
    with torch.inference_mode():
        scheme(q, q, pos, pos)
    q2 = q.clone().requires_grad_()
    a, b = scheme(q2, q2, pos, pos)
    (a.sum() + b.sum()).backward()
    assert q2.grad is not None and torch.isfinite(q2.grad).all()
