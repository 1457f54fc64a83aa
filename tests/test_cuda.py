"""CUDA paths (skipped without a GPU): the same conformance claims on the device, in fp32
and bf16, plus a bf16 training step with fused AdamW and the long-length numerics."""

from __future__ import annotations

import pytest
import torch

from lexformer import ModelConfig, TransformerLM
from lexformer import reference as ref
from lexformer.attention import AttentionSpec, causal_attention
from lexformer.positions import ALiBi, NoPosition, RoPE, XPos

pytestmark = [pytest.mark.gpu,
              pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")]

SCHEMES = {"xpos": lambda: XPos(32), "rope": lambda: RoPE(32), "alibi": lambda: ALiBi(4),
           "none": lambda: NoPosition()}


@pytest.mark.parametrize("scheme", sorted(SCHEMES))
@pytest.mark.parametrize("mode", ["full", "blockwise", "sliding"])
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_attention_on_cuda_matches_fp64_reference(scheme, mode, dtype):
    L, T = 64, 64 * 9 + 5
    q, k, v = (torch.randn(2, 4, T, 32, dtype=torch.float64) for _ in range(3))
    want = ref.attention(q, k, v, scheme, mode, block=L // 2, window=L)
    spec = AttentionSpec(mode, block=L // 2, window=L)
    out = causal_attention(*(x.to("cuda", dtype) for x in (q, k, v)), SCHEMES[scheme](), spec)
    tol = 1e-4 if dtype == torch.float32 else 3e-2
    err = (out.double().cpu() - want).abs().max().item()
    assert err < tol * max(1.0, want.abs().max().item()), err


@pytest.mark.parametrize("mode", ["full", "blockwise", "sliding"])
def test_xpos_131k_tokens_on_cuda_is_finite_and_exact(mode):
    T, L = 131072, 1024
    q, k, v = (torch.randn(1, 1, T, 64, dtype=torch.float64) for _ in range(3))
    spec = AttentionSpec(mode, block=L // 2, window=L)
    for dtype, tol in ((torch.float32, 1e-4), (torch.bfloat16, 5e-2)):
        out = causal_attention(*(x.to("cuda", dtype) for x in (q, k, v)), XPos(64), spec)
        assert torch.isfinite(out).all()
        rows = [0, 511, 512, 4097, T // 2, T - 1]
        want = ref.attention_rows(q, k, v, rows, "xpos", mode, block=L // 2, window=L)
        got = out[..., rows, :].double().cpu()
        assert (got - want).abs().max().item() < tol, (dtype, mode)


@pytest.mark.parametrize("position", ["xpos", "rope", "alibi", "absolute", "none"])
@pytest.mark.parametrize("mode", ["full", "blockwise", "sliding"])
def test_model_cuda_cache_equals_full_pass_and_matches_cpu(position, mode):
    cfg = ModelConfig(vocab_size=97, n_layer=2, n_head=4, d_model=64, d_ff=128,
                      train_length=32, position=position)
    torch.manual_seed(0)
    cpu = TransformerLM(cfg).eval()
    gpu = TransformerLM(cfg).eval()
    gpu.load_state_dict(cpu.state_dict())
    gpu.cuda()
    ids = torch.randint(0, 97, (2, 150))
    with torch.no_grad():
        on_cpu = cpu(ids, attention=mode)
        full = gpu(ids.cuda(), attention=mode)
        cache = gpu.new_cache(mode)
        steps = [gpu(ids[:, :7].cuda(), attention=mode, cache=cache)]
        steps += [gpu(ids[:, t:t + 1].cuda(), attention=mode, cache=cache)
                  for t in range(7, ids.shape[1])]
        with torch.autocast("cuda", dtype=torch.bfloat16):
            bf16 = gpu(ids.cuda(), attention=mode)
    assert (full.cpu() - on_cpu).abs().max().item() < 1e-3
    assert (torch.cat(steps, 1) - full).abs().max().item() < 1e-3
    assert ((bf16.float().cpu() - on_cpu).abs().max().item()
            < 0.05 * on_cpu.abs().max().item() + 0.05)


def test_bf16_training_step_with_fused_adamw_reduces_loss():
    cfg = ModelConfig(vocab_size=128, n_layer=2, n_head=4, d_model=128, d_ff=512,
                      train_length=128, position="xpos")
    model = TransformerLM(cfg).cuda()
    opt = torch.optim.AdamW(model.parameters(), lr=3e-3, fused=True)
    batch = torch.randint(0, 128, (8, 129), device="cuda")
    losses = []
    for _ in range(30):
        with torch.autocast("cuda", dtype=torch.bfloat16):
            loss = model(batch[:, :-1], targets=batch[:, 1:])  # fp32 loss from bf16 logits
        loss.backward()
        opt.step()
        opt.zero_grad()
        losses.append(loss.item())
    assert losses[-1] < losses[0] - 1.0, losses


@pytest.mark.parametrize("cls", [XPos, RoPE])
@pytest.mark.parametrize("mode", ["full", "blockwise", "sliding"])
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_real_arithmetic_on_cuda_matches_fp64_reference(cls, mode, dtype):
    """The cos/sin path (what torch.compile runs) on the device, against float64."""
    L, T = 64, 64 * 9 + 5
    q, k, v = (torch.randn(2, 4, T, 32, dtype=torch.float64) for _ in range(3))
    name = "xpos" if cls is XPos else "rope"
    want = ref.attention(q, k, v, name, mode, block=L // 2, window=L)
    scheme = cls(32)
    scheme.arithmetic = "real"
    spec = AttentionSpec(mode, block=L // 2, window=L)
    out = causal_attention(*(x.to("cuda", dtype) for x in (q, k, v)), scheme, spec)
    tol = 1e-4 if dtype == torch.float32 else 3e-2
    err = (out.double().cpu() - want).abs().max().item()
    assert err < tol * max(1.0, want.abs().max().item()), err
