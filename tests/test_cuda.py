"""CUDA paths (skipped without a GPU): the same conformance claims on the device, in fp32
and bf16, plus a bf16 training step with fused AdamW and the long-length numerics, and the
pretrained models' window methods through FlexAttention against their CPU path."""

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


# --------------------------------------------------------------------------- pretrained models
# Tolerances (docs/reproducibility.md, "Tolerances in the test suite"): each float32 path is
# within rtol=1e-4, atol=2e-5 of float64, so two of them (the CPU's flash kernel, the GPU's
# FlexAttention) are within twice that of each other; bf16 weights against float32 take the
# bf16 bound (rtol=5e-2, atol=8e-2), scaled by the logits' magnitude.
HF_TOL = {"fp32": (2e-4, 4e-5), "bf16": (5e-2, 8e-2)}


@pytest.fixture(scope="module")
def tiny_hf(tmp_path_factory):
    """A 2-layer Llama with grouped-query attention (context 64), saved as a model folder."""
    transformers = pytest.importorskip("transformers")
    torch.manual_seed(0)
    config = transformers.LlamaConfig(
        vocab_size=97, hidden_size=64, intermediate_size=128, num_hidden_layers=2,
        num_attention_heads=4, num_key_value_heads=2, head_dim=16, max_position_embeddings=64,
        eos_token_id=None, bos_token_id=None, pad_token_id=None)
    model = transformers.LlamaForCausalLM(config).eval()
    with torch.no_grad():  # sharper attention, so that positions matter
        for layer in model.model.layers:
            layer.self_attn.q_proj.weight.mul_(4)
            layer.self_attn.k_proj.weight.mul_(4)
    folder = tmp_path_factory.mktemp("tiny-llama-cuda")
    model.save_pretrained(folder)
    return str(folder)


def _hf_options():
    from lexformer.hf import MethodOptions

    return MethodOptions(block=16, window=20, sinks=3, global_tokens=3, local_window=20,
                         distance_cap=24, group=3, neighbours=10)


def _logits(lm, method: str, ids: torch.Tensor) -> torch.Tensor:
    from lexformer.hf import use_method

    with torch.no_grad(), use_method(lm.model, method, lm.options, length=ids.shape[1]):
        return lm.model(input_ids=ids.to(lm.device)).logits.float().cpu()


def _window_methods():
    from lexformer.hf import HF_METHODS

    return [m for m, spec in HF_METHODS.items() if spec.kind == "window"]


@pytest.mark.parametrize("dtype", ["fp32", "bf16"])
def test_hf_window_methods_on_cuda_match_the_cpu_path(tiny_hf, dtype):
    """Every window method's logits at 150 tokens (past the context of 64) on CUDA, through
    FlexAttention, against the CPU path in float32."""
    from lexformer.hf import open_hf_model

    cpu = open_hf_model(tiny_hf, options=_hf_options())
    gpu = open_hf_model(tiny_hf, options=_hf_options(), device="cuda", dtype=dtype)
    assert gpu.model.dtype == getattr(torch, {"fp32": "float32", "bf16": "bfloat16"}[dtype])
    ids = torch.randint(0, 97, (2, 150), generator=torch.Generator().manual_seed(1))
    rtol, atol = HF_TOL[dtype]
    for method in ["full", *_window_methods()]:
        want, got = _logits(cpu, method, ids), _logits(gpu, method, ids)
        scale = max(1.0, want.abs().max().item())
        torch.testing.assert_close(got, want, rtol=rtol, atol=atol * scale, msg=method)
    nll = gpu.token_nll(ids, "blockwise")
    assert nll.device.type == "cpu" and torch.isfinite(nll).all()


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_flex_part_on_cuda_matches_explicit_scores(dtype):
    """The compiled kernel's output and lse against explicit scores on the same device."""
    from lexformer.hf import lse_attention

    g = torch.Generator().manual_seed(2)
    q, k, v = (torch.randn(1, 2, n, 16, generator=g) for n in (40, 70, 70))
    visible = torch.rand(40, 70, generator=g) > 0.5
    visible[:, 0] = True
    q, k, v, visible = (x.cuda() for x in (q, k, v, visible))
    q, k, v = q.to(dtype), k.to(dtype), v.to(dtype)
    mask = lse_attention.additive_mask(visible, dtype)
    out, lse = lse_attention.attend_part(q, k, v, 0.25, mask)
    want_out, want_lse = lse_attention.attend_part_explicit(q, k, v, 0.25, mask)
    assert lse.dtype == torch.float32 and lse.shape == (1, 2, 40)
    rtol, atol = HF_TOL["fp32" if dtype == torch.float32 else "bf16"]
    torch.testing.assert_close(out.float(), want_out.float(), rtol=rtol, atol=atol)
    torch.testing.assert_close(lse, want_lse.float(), rtol=rtol, atol=atol)


def test_hf_auto_is_bf16_spread_over_the_cuda_devices(tiny_hf):
    """--device auto --dtype auto on a CUDA machine: accelerate's device_map over the GPUs,
    bf16 (CUDA computes it natively), recorded in the provenance."""
    from lexformer.hf import open_hf_model

    lm = open_hf_model(tiny_hf, device="auto", dtype="auto")
    assert lm.model.dtype == torch.bfloat16 and lm.device.type == "cuda"
    assert getattr(lm.model, "hf_device_map", None)  # placed by accelerate
    prov = lm.provenance()
    assert prov["dtype"] == "bfloat16" and all(d.startswith("cuda") for d in prov["devices"])
    ids = torch.randint(0, 97, (1, 100), generator=torch.Generator().manual_seed(3))
    assert torch.isfinite(lm.token_nll(ids, "sinks")).all()
