"""Bidirectional XPOS and the encoder attention modes against float64 references written from
the definitions: per pair j, the logit of a query at n and a key at m is the RoPE rotation by
(n − m) times ζ_j^(|n−m|/B) (``docs/bidirectional.md``)."""

from __future__ import annotations

import math

import pytest
import torch

from lexformer import LexformerError, ModelConfig, TransformerLM
from lexformer import reference as ref
from lexformer.attention import AttentionSpec
from lexformer.attention.bidirectional import (
    attend_bidirectional,
    attend_bidirectional_eager,
    bidirectional_attention,
)
from lexformer.config import TrainConfig
from lexformer.positions import ALiBi, NoPosition, RoPE, XPos, build_position_scheme

F64 = torch.float64
H, D = 2, 8
BLOCK = 8  # h of blockwise (L = 16)
SCHEMES = ("xpos", "rope", "alibi", "none")


def make_scheme(name: str, heads: int = H, head_dim: int = D, **kw):
    return {"xpos": lambda: XPos(head_dim, **kw), "rope": lambda: RoPE(head_dim),
            "alibi": lambda: ALiBi(heads, symmetric=True), "none": NoPosition}[name]()


def qkv(T, B=2, heads=H, d=D, dtype=torch.float32, scale=2.0, Tq=None):
    Tq = T if Tq is None else Tq
    return (torch.randn(B, heads, Tq, d, dtype=dtype) * scale,
            torch.randn(B, heads, T, d, dtype=dtype) * scale,
            torch.randn(B, heads, T, d, dtype=dtype))


# --------------------------------------------------------------------------- references
def ref_logits(q, k, q_pos, k_pos, scheme: str, gamma=0.4, scale_base=512.0):
    """(…, Tq, Tk) float64 logits with the symmetric decay, applied pair by pair.

    The RoPE rotation comes from :func:`lexformer.reference.rotate` (ζ = 1); each pair's
    contribution q'_j·k'_j is then multiplied by ζ_j^(|n−m|/B) for xpos, directly.
    """
    d = q.shape[-1]
    q_pos, k_pos = [int(p) for p in q_pos], [int(p) for p in k_pos]
    qr = ref.rotate(q, q_pos, decay=False, is_key=False) if scheme in ("xpos", "rope") \
        else q.to(F64)
    kr = ref.rotate(k, k_pos, decay=False, is_key=True) if scheme in ("xpos", "rope") \
        else k.to(F64)
    distance = torch.tensor([[abs(n - m) for m in k_pos] for n in q_pos], dtype=F64)
    out = torch.zeros(*torch.broadcast_shapes(q.shape[:-2], k.shape[:-2]), len(q_pos),
                      len(k_pos), dtype=F64)
    for j, zeta in enumerate(ref.xpos_zeta(d, gamma)):
        pair = qr[..., 2 * j:2 * j + 2] @ kr[..., 2 * j:2 * j + 2].transpose(-1, -2)
        out = out + (pair * zeta ** (distance / scale_base) if scheme == "xpos" else pair)
    out = out / math.sqrt(d)
    if scheme == "alibi":
        slopes = torch.tensor(ref.alibi_slopes(q.shape[-3]), dtype=F64)
        out = out - slopes[:, None, None] * distance
    return out


def ref_visible(q_pos, k_pos, mode: str, block: int = BLOCK) -> torch.Tensor:
    return torch.tensor([[mode == "full" or abs(int(m) // block - int(n) // block) <= 1
                          for m in k_pos] for n in q_pos])


def ref_attention(q, k, v, scheme: str, mode: str, q_pos=None, k_pos=None, **kw):
    q_pos = range(q.shape[-2]) if q_pos is None else q_pos
    k_pos = range(k.shape[-2]) if k_pos is None else k_pos
    s = ref_logits(q, k, q_pos, k_pos, scheme, **kw)
    s = s.masked_fill(~ref_visible(q_pos, k_pos, mode), float("-inf"))
    return torch.softmax(s, dim=-1) @ v.to(F64)


def magnitude(q, k, q_pos, k_pos):
    """Σ_j |q'_j||k'_j| / √d: the scale against which fp32 rounding of a logit is judged."""
    qr = ref.rotate(q, q_pos, decay=False, is_key=False).abs()
    kr = ref.rotate(k, k_pos, decay=False, is_key=True).abs()
    return (qr @ kr.transpose(-1, -2)) / math.sqrt(q.shape[-1])


# --------------------------------------------------------------------------- scores
POSITION_CASES = {
    "self": (range(0, 40), range(0, 40)),
    "queries inside keys": (range(10, 20), range(0, 50)),
    "keys all behind": (range(30, 35), range(0, 12)),
    "keys all ahead": (range(0, 6), range(20, 31)),
    "far from the origin": (range(100_000, 100_030), range(99_990, 100_050)),
}


@pytest.mark.parametrize("case", POSITION_CASES)
def test_bidirectional_xpos_scores_match_per_pair_reference(case):
    q_pos, k_pos = POSITION_CASES[case]
    q, k, _ = qkv(len(k_pos), Tq=len(q_pos), d=16)
    qp, kp = torch.tensor(list(q_pos)), torch.tensor(list(k_pos))
    got = XPos(16).scores(q, k, qp, kp, causal=False)
    want = ref_logits(q, k, q_pos, k_pos, "xpos")
    assert got.shape == want.shape and got.dtype == torch.float32
    # fp32 rotation tables: rounding of order 1e-6 of each logit's magnitude
    err = (got.double() - want).abs()
    assert (err <= 2e-6 * magnitude(q, k, q_pos, k_pos) + 1e-6).all(), err.max()


def test_bidirectional_xpos_scores_any_key_order():
    """Keys given in a shuffled order (the gathered-positions path) give the same logits."""
    q_pos, k_pos = range(10, 30), range(0, 45)
    q, k, _ = qkv(45, Tq=20, d=16)
    perm = torch.randperm(45)
    got = XPos(16).scores(q, k[..., perm, :], torch.tensor(list(q_pos)),
                          torch.tensor(list(k_pos))[perm], causal=False)
    want = ref_logits(q, k, q_pos, k_pos, "xpos")[..., perm]
    torch.testing.assert_close(got.double(), want, rtol=1e-5, atol=1e-5)


def test_bidirectional_decay_is_symmetric_and_causal_side_is_xpos():
    """Key at n − t and key at n + t get the same decay; keys behind the query get exactly
    the ordinary (causal) XPOS logits."""
    xpos, T = XPos(16), 33
    q, k, _ = qkv(T, B=1, heads=1, d=16)
    pos = torch.arange(T)
    bidir = xpos.scores(q, k, pos, pos, causal=False)
    causal = xpos.scores(q, k, pos, pos, causal=True)
    behind = pos[None, :] <= pos[:, None]
    torch.testing.assert_close(bidir[..., behind], causal[..., behind], rtol=1e-6, atol=1e-6)
    assert torch.isneginf(causal[..., ~behind]).all()
    # all-ones q, k: the logit depends on |n − m| only
    ones = torch.ones(1, 1, T, 16)
    s = xpos.scores(ones, ones, pos, pos, causal=False)[0, 0]
    n = T // 2
    for t in range(1, n + 1):
        torch.testing.assert_close(s[n, n - t], s[n, n + t], rtol=1e-6, atol=1e-6)
    # the decay makes far keys smaller than RoPE's on both sides
    rope = RoPE(16).scores(ones, ones, pos, pos, causal=False)[0, 0]
    assert s[n, 0] < rope[n, 0] and s[n, -1] < rope[n, -1]


def test_rope_scores_bidirectional_is_the_unmasked_product():
    q, k, _ = qkv(24, d=16)
    pos = torch.arange(24)
    got = RoPE(16).scores(q, k, pos, pos, causal=False)
    torch.testing.assert_close(got.double(), ref_logits(q, k, pos, pos, "rope"),
                               rtol=1e-5, atol=1e-5)
    causal = RoPE(16).scores(q, k, pos, pos)
    want = ref.rotary_logits(q, k, pos, pos, decay=False) / 4.0
    hidden = pos[None, :] > pos[:, None]
    assert torch.isneginf(causal[..., hidden]).all()
    torch.testing.assert_close(causal[..., ~hidden].double(), want[..., ~hidden],
                               rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("offset", [1, 12_345, 2**31 - 4096, 2**31, 2**40])
@pytest.mark.parametrize("causal", [False, True])
def test_scores_are_relative_invariant_bit_for_bit(offset, causal):
    """Positions are centred in int64 before any float is formed: an offset of up to 2^31
    and beyond gives bit-identical logits."""
    xpos = XPos(16)
    q, k, _ = qkv(50, Tq=30, d=16)
    q_pos, k_pos = torch.arange(10, 40), torch.arange(0, 50)
    base = xpos.scores(q, k, q_pos, k_pos, causal=causal)
    shifted = xpos.scores(q, k, q_pos + offset, k_pos + offset, causal=causal)
    assert torch.equal(base, shifted)
    perm = torch.randperm(50)  # the tensor-positions path too
    base = xpos.scores(q, k[..., perm, :], q_pos, k_pos[perm], causal=causal)
    shifted = xpos.scores(q, k[..., perm, :], q_pos + offset, k_pos[perm] + offset,
                          causal=causal)
    assert torch.equal(base, shifted)


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_scores_finite_at_long_lengths(dtype):
    """One query against 300k keys on both sides (ζ_0^(150k/512) would overflow any float)
    and a chunk of queries far out: finite, and the far keys' logits decay to ~0."""
    xpos, n_keys = XPos(16), 300_000
    q, k, _ = qkv(n_keys, B=1, heads=1, Tq=1, d=16, dtype=dtype, scale=1.0)
    s = xpos.scores(q, k, torch.tensor([n_keys // 2]), torch.arange(n_keys), causal=False)
    assert torch.isfinite(s).all()
    assert s[..., :100].abs().max() < 1e-3 and s[..., -100:].abs().max() < 1e-3


# --------------------------------------------------------------------------- attention
LENGTHS = [5, BLOCK, 2 * BLOCK, 2 * BLOCK + 1, 3 * BLOCK, 41, 8 * BLOCK]


@pytest.fixture(params=["fused", "explicit"])
def xpos_path(request, monkeypatch):
    """Both implementations of full bidirectional XPOS: the two fused causal calls merged by
    log-sum-exp (the CPU default) and the explicit logits (blockwise, GPUs, dropout)."""
    import lexformer.attention.bidirectional as ea

    if request.param == "explicit":
        monkeypatch.setattr(ea, "FLASH_MIN_LENGTH", 1 << 62)
    elif ea._cpu_flash_ops() is None:
        pytest.skip("this torch has no fused CPU attention with log-sum-exp")
    else:  # the tests' short inputs too
        monkeypatch.setattr(ea, "FLASH_MIN_LENGTH", 2)
    return request.param


def test_cpu_full_xpos_takes_the_fused_path(monkeypatch):
    import lexformer.attention.bidirectional as ea

    if ea._cpu_flash_ops() is None:
        pytest.skip("this torch has no fused CPU attention with log-sum-exp")
    calls = []
    real = ea.TwoSidedAttention.apply
    monkeypatch.setattr(ea.TwoSidedAttention, "apply",
                        lambda *a: calls.append(1) or real(*a))
    spec = AttentionSpec("full", causal=False)
    for T in (ea.FLASH_MIN_LENGTH - 1, ea.FLASH_MIN_LENGTH):
        q, k, v = qkv(T, B=1, heads=1)
        bidirectional_attention(q, k, v, XPos(D), spec)
    assert calls == [1]  # from FLASH_MIN_LENGTH on


@pytest.mark.parametrize("T", LENGTHS)
@pytest.mark.parametrize("mode", ["full", "blockwise"])
@pytest.mark.parametrize("scheme", SCHEMES)
def test_fast_path_matches_dense_reference(scheme, mode, T, xpos_path):
    q, k, v = qkv(T)
    spec = AttentionSpec(mode, block=BLOCK, causal=False)
    out = bidirectional_attention(q, k, v, make_scheme(scheme), spec)
    assert out.shape == q.shape and out.dtype == q.dtype
    torch.testing.assert_close(out.double(), ref_attention(q, k, v, scheme, mode),
                               rtol=1e-4, atol=2e-5)


@pytest.mark.parametrize("mode", ["full", "blockwise"])
@pytest.mark.parametrize("scheme", SCHEMES)
def test_general_and_eager_paths_match_reference(scheme, mode):
    T = 29
    q, k, v = qkv(T)
    pos = torch.arange(T)
    spec = AttentionSpec(mode, block=BLOCK, causal=False)
    want = ref_attention(q, k, v, scheme, mode)
    sch = make_scheme(scheme)
    torch.testing.assert_close(attend_bidirectional(q, k, v, pos, pos, sch, spec).double(),
                               want, rtol=1e-4, atol=2e-5)
    out, (scores, probs) = attend_bidirectional_eager(q, k, v, pos, pos, sch, spec)
    torch.testing.assert_close(out.double(), want, rtol=1e-4, atol=2e-5)
    visible = ref_visible(pos, pos, mode)
    assert torch.isneginf(scores[..., ~visible]).all()
    torch.testing.assert_close(scores[..., visible].double(),
                               ref_logits(q, k, pos, pos, scheme)[..., visible],
                               rtol=1e-4, atol=1e-5)
    torch.testing.assert_close(probs.sum(-1), torch.ones_like(probs.sum(-1)))


def test_chunked_full_xpos_matches_reference(monkeypatch):
    """Past the chunk threshold each query chunk is centred on itself; same numbers."""
    import lexformer.attention.bidirectional as ea

    monkeypatch.setattr(ea, "XPOS_CHUNK_THRESHOLD", 16)
    monkeypatch.setattr(ea, "XPOS_CHUNK", 7)
    q, k, v = qkv(45)
    out = bidirectional_attention(q, k, v, XPos(D), AttentionSpec("full", causal=False))
    torch.testing.assert_close(out.double(), ref_attention(q, k, v, "xpos", "full"),
                               rtol=1e-4, atol=2e-5)


def test_small_scale_base_chunks_by_safe_span():
    """B = 4 makes ζ^(n/B) overflow fp32 within ~400 tokens: the chunking follows the
    scheme's safe span and the result still matches the reference."""
    q, k, v = qkv(600, B=1, heads=1, scale=0.5)
    scheme = XPos(D, scale_base=4.0)
    out = bidirectional_attention(q, k, v, scheme, AttentionSpec("full", causal=False))
    assert torch.isfinite(out).all()
    rows = [0, 1, 299, 300, 599]
    want = ref_attention(q[..., rows, :], k, v, "xpos", "full", q_pos=rows, scale_base=4.0)
    torch.testing.assert_close(out[..., rows, :].double(), want, rtol=1e-4, atol=2e-5)


@pytest.mark.parametrize("mode", ["full", "blockwise"])
@pytest.mark.parametrize("scheme", SCHEMES)
def test_gradients_match_reference(scheme, mode, xpos_path):
    T = 3 * BLOCK + 3
    q, k, v = (x.requires_grad_() for x in qkv(T, B=1))
    weight = torch.randn(1, H, T, D)
    spec = AttentionSpec(mode, block=BLOCK, causal=False)
    (bidirectional_attention(q, k, v, make_scheme(scheme), spec) * weight).sum().backward()
    q64, k64, v64 = (x.detach().double().requires_grad_() for x in (q, k, v))
    (ref_attention(q64, k64, v64, scheme, mode) * weight.double()).sum().backward()
    for got, want in ((q.grad, q64.grad), (k.grad, k64.grad), (v.grad, v64.grad)):
        torch.testing.assert_close(got.double(), want, rtol=1e-3, atol=1e-4)


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
@pytest.mark.parametrize("mode,T", [("full", 4096), ("full", 9000), ("blockwise", 16_384)])
def test_long_input_finite_and_exact_on_sampled_rows(dtype, mode, T):
    """Full attention over 4k tokens (one fused pass on a CPU) and 9k (past the safe span of
    ~8.3k: query chunks, each centred on itself), blockwise over 16k, in fp32 and bf16:
    finite, and rows at both ends and in the middle equal the float64 reference computed row
    by row (positions relative to each query)."""
    h = 256
    q, k, v = qkv(T, B=1, heads=1, d=16, dtype=dtype, scale=1.0)
    out = bidirectional_attention(q, k, v, XPos(16), AttentionSpec(mode, block=h, causal=False))
    assert torch.isfinite(out.float()).all()
    for p in (0, 1, T // 2, T - 1):
        keys = [m for m in range(T) if mode == "full" or abs(m // h - p // h) <= 1]
        idx = torch.tensor(keys)
        s = ref_logits(q[..., p:p + 1, :], k[..., idx, :], [0], [m - p for m in keys], "xpos")
        want = torch.softmax(s, dim=-1) @ v[..., idx, :].double()
        tol = 2e-2 if dtype == torch.bfloat16 else 1e-4
        torch.testing.assert_close(out[..., p:p + 1, :].double(), want, rtol=tol, atol=tol)


def test_blockwise_never_builds_an_n_by_n_matrix(monkeypatch):
    """The windowed path's softmax inputs are (windows, H, h, 3h), never (…, T, T)."""
    import lexformer.attention.bidirectional as ea

    seen = []
    real = ea.bidirectional_logits

    def spy(scheme, q, k, q_rel, k_rel):
        out = real(scheme, q, k, q_rel, k_rel)
        seen.append(tuple(out.shape[-2:]))
        return out

    monkeypatch.setattr(ea, "bidirectional_logits", spy)
    T, h = 4096, 64
    q, k, v = qkv(T, B=1, heads=1)
    bidirectional_attention(q, k, v, XPos(D), AttentionSpec("blockwise", block=h, causal=False))
    assert seen == [(h, 3 * h)]


# --------------------------------------------------------------------------- specs, ALiBi
def test_encoder_visibility_and_refusals():
    pos = torch.arange(40)
    spec = AttentionSpec("blockwise", block=BLOCK, causal=False)
    assert torch.equal(spec.visible(pos, pos), ref_visible(pos, pos, "blockwise"))
    assert spec.visible(pos, pos).equal(spec.visible(pos, pos).T)  # symmetric
    assert AttentionSpec("full", causal=False).visible(pos, pos).all()
    with pytest.raises(LexformerError, match="sliding attention is causal only"):
        AttentionSpec("sliding", causal=False)


def test_symmetric_alibi_bias():
    q_pos, k_pos = torch.arange(5, 12), torch.arange(0, 20)
    got = ALiBi(4, symmetric=True)(q_pos, k_pos)
    slopes = torch.tensor(ref.alibi_slopes(4), dtype=F64)
    distance = (q_pos[:, None] - k_pos[None, :]).abs().double()
    torch.testing.assert_close(got.double(), -slopes[:, None, None] * distance)
    causal = ALiBi(4)(q_pos, k_pos)  # the causal bias is unchanged where keys are behind
    behind = k_pos[None, :] <= q_pos[:, None]
    assert torch.equal(got[:, behind], causal[:, behind])


def test_registry_builds_bidirectional_schemes():
    for position in ("xpos", "rope", "alibi", "absolute", "learned", "none"):
        cfg = ModelConfig(position=position, causal=False, n_head=4, d_model=64)
        scheme = build_position_scheme(cfg)
        if position == "alibi":
            assert scheme.symmetric
    assert not build_position_scheme(ModelConfig(position="alibi")).symmetric


# --------------------------------------------------------------------------- model, config
def encoder(position="xpos", n_layer=2) -> TransformerLM:
    torch.manual_seed(0)
    return TransformerLM(ModelConfig(vocab_size=50, n_layer=n_layer, n_head=2, d_model=16,
                                     d_ff=32, train_length=16, position=position,
                                     causal=False)).eval()


@pytest.mark.parametrize("position", ["xpos", "rope", "alibi", "absolute", "learned", "none"])
def test_encoder_sees_both_sides_and_eager_equals_fast(position):
    model = encoder(position)
    ids = torch.randint(0, 50, (2, 16))
    changed = ids.clone()
    changed[:, -1] = (ids[:, -1] + 1) % 50
    with torch.no_grad():
        a, b = model(ids), model(changed)
        # the first token's output depends on the last token: attention looks ahead
        assert not torch.allclose(a[:, 0], b[:, 0])
        for attention in ("full", "blockwise"):
            fast = model(ids, attention=attention)
            eager, inter = model.forward_with_intermediates(ids, attention=attention)
            torch.testing.assert_close(fast, eager, rtol=1e-4, atol=1e-5)
            assert len(inter) == 2


def test_encoder_blockwise_is_local():
    """One layer, blockwise: a token 2 blocks away or more changes nothing; full does."""
    model = encoder("xpos", n_layer=1)
    ids = torch.randint(0, 50, (1, 64))
    changed = ids.clone()
    changed[0, 40] = (ids[0, 40] + 1) % 50  # block 5 (h = 8); query 0 is in block 0
    with torch.no_grad():
        block_a, block_b = model(ids, "blockwise"), model(changed, "blockwise")
        full_a, full_b = model(ids), model(changed)
    assert torch.equal(block_a[0, :24], block_b[0, :24])  # blocks 0–2 cannot see block 5
    assert not torch.equal(block_a[0, 32:48], block_b[0, 32:48])
    assert not torch.allclose(full_a[0, 0], full_b[0, 0])


def test_encoder_trains_under_bf16_autocast():
    model = encoder("xpos").train()
    ids = torch.randint(0, 50, (2, 64))
    with torch.autocast("cpu", dtype=torch.bfloat16):
        loss = model(ids, attention="full", targets=ids)
    loss.backward()
    assert torch.isfinite(loss)
    assert all(torch.isfinite(p.grad).all() for p in model.parameters() if p.grad is not None)


def test_encoder_has_no_kv_cache():
    with pytest.raises(LexformerError, match="cannot decode incrementally"):
        encoder().new_cache()


def test_config_causal_and_objective_round_trip_and_old_configs_load():
    cfg = TrainConfig(model=ModelConfig(causal=False), objective="mlm")
    assert TrainConfig.from_dict(cfg.to_dict()) == cfg
    old = TrainConfig().to_dict()  # a config written before the two fields existed
    del old["objective"], old["model"]["causal"]
    loaded = TrainConfig.from_dict(old)
    assert loaded.objective == "clm" and loaded.model.causal
    old_model = ModelConfig().to_dict()
    del old_model["causal"]
    assert ModelConfig.from_dict(old_model) == ModelConfig()


def test_config_refuses_mismatched_objective():
    with pytest.raises(LexformerError, match="model.causal must be false"):
        TrainConfig(objective="mlm")
    with pytest.raises(LexformerError, match="train it with objective mlm"):
        TrainConfig(model=ModelConfig(causal=False))
    with pytest.raises(LexformerError, match="objective"):
        TrainConfig(objective="bert")
