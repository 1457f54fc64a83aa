"""Bidirectional XPOS against causal XPOS, side by side: the attention call and a training step.

    python benchmarks/bench_bidirectional.py [--quick] [--rounds N] [--threads N]

Two measurements, each with its contenders interleaved round by round (``_common.interleaved``;
ratio = median over rounds of the within-round time ratio):

* **attention**, forward + backward of one attention call on a packed (B, T, 3, H, D)
  projection, H = 4, D = 32 (the tiny preset's heads), B·T = 4,096 tokens, full attention, at
  T = 256 (the training length) and 1,024:
  ``causal_xpos`` (``causal_attention_packed``: SDPA with is_causal), ``bidir_xpos``
  (``bidirectional_attention_packed``; on a CPU two fused causal calls, behind and ahead,
  merged by log-sum-exp), ``bidir_xpos_logits`` (the same maths through the explicit logits,
  the path of blockwise windows, GPUs and dropout) and ``bidir_rope`` (non-causal SDPA), the
  cost of bidirectional attention without the decay;
* **train step**, forward with targets, backward, ``AdamW.step()`` of the tiny preset's model
  (4 layers, d_model 128, 4 heads, d_ff 512, vocab 4,096), 16 × 256 tokens, fp32:
  a causal XPOS model on next tokens and bidirectional XPOS and RoPE encoders on 15 % masked
  tokens (the targets' ignore mask is the only difference in the loss).

The issue's target: bidirectional XPOS costs at most ~2× causal XPOS.
"""

from __future__ import annotations

import argparse
import contextlib

import _common as C
import numpy as np
import torch

import lexformer.attention.bidirectional as encoder_attention
from lexformer import ModelConfig, TransformerLM
from lexformer.attention import AttentionSpec, causal_attention_packed
from lexformer.attention.bidirectional import bidirectional_attention_packed
from lexformer.mlm import mask_tokens
from lexformer.positions import RoPE, XPos

HEADS, HEAD_DIM, VOCAB = 4, 32, 4096


@contextlib.contextmanager
def explicit_logits():
    """Bidirectional XPOS through its explicit logits instead of the fused calls."""
    saved = encoder_attention.FLASH_MIN_LENGTH
    encoder_attention.FLASH_MIN_LENGTH = 1 << 62
    try:
        yield
    finally:
        encoder_attention.FLASH_MIN_LENGTH = saved


def attention_fns(T: int, tokens: int) -> dict:
    B = max(1, tokens // T)
    g = torch.Generator().manual_seed(0)
    qkv = torch.randn(B, T, 3, HEADS, HEAD_DIM, generator=g, requires_grad=True)
    xpos, rope = XPos(HEAD_DIM), RoPE(HEAD_DIM)
    causal, bidir = AttentionSpec("full"), AttentionSpec("full", causal=False)

    def run(attend, scheme, spec, explicit=False):
        def fn():
            with explicit_logits() if explicit else contextlib.nullcontext():
                out = attend(qkv, scheme, spec)
            out.sum().backward()
            qkv.grad = None
        return fn

    return {"causal_xpos": run(causal_attention_packed, xpos, causal),
            "bidir_xpos": run(bidirectional_attention_packed, xpos, bidir),
            "bidir_xpos_logits": run(bidirectional_attention_packed, xpos, bidir, True),
            "bidir_rope": run(bidirectional_attention_packed, rope, bidir)}


def step_fns(batch: int, T: int) -> dict:
    g = np.random.default_rng(0)
    ids = torch.from_numpy(g.integers(0, VOCAB - 1, size=(batch, T + 1)))
    next_x, next_y = ids[:, :-1].contiguous(), ids[:, 1:].contiguous()
    mlm_x, mlm_y = mask_tokens(ids[:, :-1], VOCAB - 1, VOCAB - 1, g)
    fns = {}
    for name, position, causal in (("causal_xpos", "xpos", True), ("bidir_xpos", "xpos", False),
                                   ("bidir_rope", "rope", False)):
        torch.manual_seed(0)
        model = TransformerLM(ModelConfig(vocab_size=VOCAB, n_layer=4, n_head=HEADS,
                                          d_model=HEADS * HEAD_DIM, d_ff=512, train_length=T,
                                          position=position, causal=causal)).train()
        opt = torch.optim.AdamW(model.parameters(), lr=1e-4)
        x, y = (next_x, next_y) if causal else (mlm_x, mlm_y)

        def fn(model=model, opt=opt, x=x, y=y):
            loss = model(x, targets=y)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
        fns[name] = fn
    return fns


def measure(fns: dict, rounds: int) -> tuple[dict, dict]:
    t = C.interleaved(fns, rounds=rounds, warmup=1, min_sample_s=0.05)
    return t, {name: C.paired_ratio(t, name, "causal_xpos") for name in fns}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--quick", action="store_true", help="T = 256 only, fewer rounds")
    ap.add_argument("--rounds", type=int, help="interleaved rounds (default 7; quick 5)")
    C.add_threads_arg(ap)
    args = ap.parse_args()
    C.setup(args.threads)
    rounds = args.rounds or (5 if args.quick else 7)
    results, summary, rows = {}, [], []
    for T in ((256,) if args.quick else (256, 1024)):
        t, ratios = measure(attention_fns(T, 4096), rounds)
        results[f"attention_T{T}"] = {"timings": C.strip_raw(t), "contention": C.contention(t),
                                      "ratios": ratios}
        rows += [[f"attention fwd+bwd, T={T}", name, t[name]["median_s"] * 1e3, ratios[name]]
                 for name in t]
        summary.append(C.target(f"attention bidir_xpos/causal_xpos, T={T}",
                                ratios["bidir_xpos"], "<= 2", ratios["bidir_xpos"] <= 2.0))
    t, ratios = measure(step_fns(16, 256), rounds)
    results["train_step_T256"] = {"timings": C.strip_raw(t), "contention": C.contention(t),
                                  "ratios": ratios}
    rows += [["train step 16×256", name, t[name]["median_s"] * 1e3, ratios[name]]
             for name in t]
    summary.append(C.target("train step bidir_xpos/causal_xpos, 16x256", ratios["bidir_xpos"],
                            "<= 2", ratios["bidir_xpos"] <= 2.0))
    table = C.markdown_table(["measurement", "contender", "ms (median)", "time / causal_xpos"],
                             rows)
    print("\nfp32, ratios: per-round paired medians\n")
    print(table + "\n")
    C.print_summary(summary)
    C.write_results("bench_bidirectional", {"env": C.environment(), "quick": args.quick,
                                            "results": results, "summary": summary,
                                            "table": table})


if __name__ == "__main__":
    main()
