"""The real-arithmetic rotary path (cos/sin tables in the compute dtype) against float64.

The conformance suites (test_positions, test_attention, test_model, test_numerics) run the
default arithmetic; this file holds the real one to the same references, bounds the error
its rounded tables add, checks that it stays in bf16 end to end, and that torch.compile
takes it whole.
"""

from __future__ import annotations

import copy
import shutil

import pytest
import torch
from torch.utils._python_dispatch import TorchDispatchMode

from lexformer import ModelConfig, TransformerLM
from lexformer import reference as ref
from lexformer.positions import RoPE, XPos
from lexformer.positions.rotary import RotaryEmbedding

D = 64
#: unit roundoff 2^−p of each storage dtype (p bits of precision: 24, 8 and 11)
UNIT_ROUNDOFF = {torch.float32: 2.0**-24, torch.bfloat16: 2.0**-8, torch.float16: 2.0**-11}
#: half the smallest subnormal: the absolute rounding error of values below the normal range
SUBNORMAL_HALF = {torch.float32: 2.0**-150, torch.bfloat16: 2.0**-134, torch.float16: 2.0**-25}


def real(scheme: RotaryEmbedding) -> RotaryEmbedding:
    scheme.arithmetic = "real"
    return scheme


def pair_magnitude(q64, k64, q_pos, k_pos, decay=True):
    """Σ_j |q'_j||k'_j| over pairs j (pair norms, float64): the scale of the bound below."""
    def norms(x, pos, is_key):
        r = ref.rotate(x, pos, decay=decay, is_key=is_key)
        return r.unflatten(-1, (-1, 2)).norm(dim=-1)
    return norms(q64, q_pos, False) @ norms(k64, k_pos, True).transpose(-1, -2)


# --------------------------------------------------------------------------- tables
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16, torch.float16])
def test_stored_tables_are_float64_rounded_once(dtype):
    """Every stored entry is the float64 value rounded once: error ≤ u·|value| (plus half a
    subnormal step where fp16 values are that small: sines near a zero, decayed keys).

    Checked over the rows the attention code can look up in that dtype (|n| ≤ half the
    largest safe span); fp16 rows beyond that overflow by design and are never used.
    """
    x = XPos(D)
    radius = min(x.max_safe_span(dtype) // 2, 4096)
    C_q, S_q, C_k, S_k = x.real_tables(range(-radius, radius + 1), torch.device("cpu"), dtype)
    n = torch.arange(-radius, radius + 1, dtype=torch.float64)[:, None]
    theta, log_zeta = x.theta(), torch.log(x.zeta())
    for sign, C, S in ((1.0, C_q, S_q), (-1.0, C_k, S_k)):
        scale = torch.exp(sign * n / 512.0 * log_zeta)
        c, s = scale * torch.cos(n * theta), scale * torch.sin(n * theta)
        for got, want in ((C, c), (S, s)):
            assert got.dtype == dtype
            bound = UNIT_ROUNDOFF[dtype] * want.abs() + SUBNORMAL_HALF[dtype]
            worst = ((got.double() - want).abs() / bound).max().item()
            assert worst <= 1.0, f"{dtype}: table error {worst:.3g} x the bound"


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16, torch.float16])
@pytest.mark.parametrize("offset", [0, 2**31 - 10_000])
def test_real_logits_within_rounding_bound(dtype, offset):
    """|logit − float64| ≤ 12·u·Σ_j |q'_j||k'_j| for inputs given in ``dtype``.

    Why 12u: each output coordinate q_a·Ĉ ± q_b·Ŝ carries the tables' rounding (u each),
    the products' (u) and the sum's (u): at most 3u(|q_a c| + |q_b s|) ≤ 3√2·u·|q'_j|, so the
    pair's error has norm ≤ 6u|q'_j|, the same for k'_j, and the logit term q'_j·k'_j is off
    by ≤ 12u|q'_j||k'_j| (the logits themselves are summed in float64 here).
    """
    q = torch.randn(2, 3, 40, D).to(dtype)
    k = torch.randn(2, 3, 50, D).to(dtype)
    q_pos = torch.arange(40) * 7 + 300 + offset
    k_pos = torch.randperm(600)[:50] + offset
    q2, k2 = real(XPos(D))(q, k, q_pos, k_pos)
    assert q2.dtype == dtype and k2.dtype == dtype
    got = q2.double() @ k2.double().transpose(-1, -2)
    q64, k64 = q.double(), k.double()
    rel_q, rel_k = q_pos - offset, k_pos - offset  # the reference at relative positions
    want = ref.rotary_logits(q64, k64, rel_q, rel_k, decay=True)
    bound = 12 * UNIT_ROUNDOFF[dtype] * pair_magnitude(q64, k64, rel_q, rel_k) + 1e-30
    worst = ((got - want).abs() / bound).max().item()
    assert worst <= 1.0, f"{dtype}: logit error {worst:.3g} x the bound"


# --------------------------------------------------------------------------- equivalence
@pytest.mark.parametrize("cls", [XPos, RoPE])
def test_real_equals_complex_on_every_entry_point(cls):
    """Queries, keys, the packed projection, ranges and gathered positions: both arithmetics
    give the same fp32 rotation up to a few fp32 roundings of each coordinate."""
    complex_, real_ = cls(D), real(cls(D))
    complex_.arithmetic = "complex"
    q = torch.randn(2, 3, 33, D)
    rel_range = range(-16, 17)
    rel_gather = torch.randperm(4000)[:33] - 2000
    for rel in (rel_range, rel_gather):
        for rotate in ("rotate_queries", "rotate_keys"):
            a = getattr(complex_, rotate)(q, rel)
            b = getattr(real_, rotate)(q, rel)
            torch.testing.assert_close(b, a, rtol=4e-6, atol=4e-6)
    qkv = torch.randn(2, 33, 3, 3, D)
    for a, b in zip(complex_.rotate_packed_qk(qkv, rel_range),
                    real_.rotate_packed_qk(qkv, rel_range)):
        torch.testing.assert_close(b, a, rtol=4e-6, atol=4e-6)


class _DtypeRecorder(TorchDispatchMode):
    """Records the dtype of every tensor an op returns."""

    def __init__(self):
        super().__init__()
        self.dtypes: set[torch.dtype] = set()

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        for t in out if isinstance(out, (tuple, list)) else (out,):
            if isinstance(t, torch.Tensor):
                self.dtypes.add(t.dtype)
        return out


def test_real_path_stays_in_bf16_forward_and_backward():
    """No fp32 (or complex) tensor is made while rotating bf16 q, k once the tables exist."""
    x = real(XPos(D))
    pos = torch.arange(64)
    warm = torch.zeros(1, 1, 64, D, dtype=torch.bfloat16)
    x(warm, warm, pos, pos)  # builds the bf16 tables (in float64, once)
    q = torch.randn(1, 2, 64, D, dtype=torch.bfloat16, requires_grad=True)
    k = torch.randn(1, 2, 64, D, dtype=torch.bfloat16, requires_grad=True)
    with _DtypeRecorder() as rec:
        q2, k2 = x(q, k, pos, pos)
        (q2 * k2).sum().backward()
    assert q.grad is not None and q.grad.dtype == torch.bfloat16
    assert rec.dtypes <= {torch.bfloat16, torch.int64, torch.bool}, rec.dtypes


def test_real_backward_is_the_transposed_rotation():
    """Gradients through the real path equal those through the complex path."""
    results = []
    for arithmetic in ("complex", "real"):
        x = XPos(D)
        x.arithmetic = arithmetic
        torch.manual_seed(3)
        q = torch.randn(1, 2, 20, D, requires_grad=True)
        k = torch.randn(1, 2, 25, D, requires_grad=True)
        q2, k2 = x(q, k, torch.arange(20) + 5, torch.arange(25))
        (q2 @ k2.transpose(-1, -2)).square().sum().backward()
        results.append((q.grad, k.grad))
    for a, b in zip(*results):
        torch.testing.assert_close(b, a, rtol=1e-5, atol=1e-5)


def test_arithmetic_must_be_known():
    x = XPos(D)
    x.arithmetic = "quaternion"
    pos = torch.arange(4)
    with pytest.raises(ValueError, match="arithmetic"):
        x(torch.randn(1, 1, 4, D), torch.randn(1, 1, 4, D), pos, pos)


# --------------------------------------------------------------------------- model level
def _model(position="xpos"):
    torch.manual_seed(0)
    cfg = ModelConfig(vocab_size=61, n_layer=2, n_head=2, d_model=16, d_ff=32,
                      train_length=16, position=position)
    model = TransformerLM(cfg).eval()
    with torch.no_grad():
        for p in model.parameters():
            if p.dim() > 1:
                p.normal_(0.0, 0.3)
    return model


@pytest.mark.parametrize("mode", ["full", "blockwise", "sliding"])
def test_real_model_matches_fp64_and_its_cache(mode):
    """The model on the real path equals the float64 model (fast path) and its own
    token-by-token KV-cache decoding, in every attention mode."""
    model = _model()
    model.position.arithmetic = "real"
    model64 = copy.deepcopy(model).double()
    x = torch.randint(0, 61, (2, 80), generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        got = model(x, attention=mode)
        want = model64(x, attention=mode)
        scale = want.abs().max().item()
        assert (got.double() - want).abs().max().item() <= 1e-5 * scale + 1e-5
        cache = model.new_cache(mode)
        steps = [model(x[:, :40], attention=mode, cache=cache)]
        steps += [model(x[:, t:t + 1], attention=mode, cache=cache) for t in range(40, 80)]
        decoded = torch.cat(steps, dim=1)
    assert (decoded - got).abs().max().item() <= 1e-5 * scale + 1e-5


@pytest.mark.slow
@pytest.mark.skipif(shutil.which("c++") is None and shutil.which("g++") is None,
                    reason="inductor needs a C++ compiler on the CPU")
def test_compiled_model_has_no_graph_break_and_matches_eager():
    """torch.compile traces the whole forward (real arithmetic: no complex tensors, table
    slices by Python integers) and gives the eager logits."""
    model = _model()
    x = torch.randint(0, 61, (2, 32), generator=torch.Generator().manual_seed(2))
    with torch.no_grad():
        eager = model(x)
    explanation = torch._dynamo.explain(model)(x)
    assert explanation.graph_break_count == 0, explanation.break_reasons
    compiled = torch.compile(model, dynamic=False)
    with torch.no_grad():
        got = compiled(x)
    torch.testing.assert_close(got, eager, rtol=1e-4, atol=1e-4)
