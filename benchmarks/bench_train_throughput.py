"""Training-step throughput: lexformer vs x-transformers, fp32 and bf16 autocast, and MFU.

    python benchmarks/bench_train_throughput.py [--quick] [--batch B] [--rounds N] [--xt-flash]

Model: 4 layers, d_model 256, 8 heads, d_ff 1024, vocab 4096; batch B×512 (B = 8; quick 2);
one step = forward, cross-entropy, backward, ``AdamW.step()``; fp32 weights, 2 threads.

Contenders, interleaved round by round:

* ``lexformer fp32``   ``TransformerLM(ModelConfig(position="xpos", train_length=512))``, full
  causal attention;
* ``x-transformers fp32``  ``TransformerWrapper(num_tokens=4096, max_seq_len=512,
  attn_layers=Decoder(dim=256, depth=4, heads=8, rotary_xpos=True))`` with its defaults
  (untied output projection, non-flash attention, xpos rotating dim_head/2 coordinates);
  ``--xt-flash`` adds a variant with ``attn_flash=True``;
* ``lexformer bf16``   the lexformer step with the forward under
  ``torch.autocast("cpu", dtype=torch.bfloat16)``;
* ``matmul fp32`` / ``matmul bf16``: 2048×2048 @ 2048×2048, the machine's matmul rate.

MFU. Model FLOPs per step = 6·N·tokens + 6·n_layer·T·d_model·tokens, where N counts the
weights of every matmul (q/k/v/out projections, both FFN layers, the output projection over
the vocabulary; not the embedding lookup, biases or norms) and the attention term is
QKᵀ and PV (2·2·T·d_model per token per layer forward, ×3 for forward+backward) halved for
the causal mask. (The PaLM convention, 12·n_layer·T·d_model without halving, is in the JSON
as well.) MFU = achieved model FLOP/s / fp32 matmul FLOP/s, both measured in the same round,
median over rounds. bf16 MFU is against the bf16 matmul rate.
"""

from __future__ import annotations

import argparse

import _common as C
import torch
from torch import nn

from lexformer import ModelConfig, TransformerLM
from lexformer.model import lm_loss

VOCAB, T, N_LAYER, D_MODEL = 4096, 512, 4, 256


def matmul_params(model: nn.Module) -> int:
    """Weights of every nn.Linear (the output projection counted even if tied)."""
    return sum(m.weight.numel() for m in model.modules() if isinstance(m, nn.Linear))


def step_fn(model, opt, x, y, autocast=False):
    def run():
        model.train()
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=autocast):
            logits = model(x)
        # lm_loss rather than model(x, targets=y): the x-transformers contender returns
        # logits only, and both sides must pay for the same loss
        loss = lm_loss(logits, y)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
    return run


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--batch", type=int)
    ap.add_argument("--rounds", type=int)
    ap.add_argument("--xt-flash", action="store_true")
    ap.add_argument("--bf16", choices=["auto", "on", "off"], default="auto",
                    help="time the bf16 autocast step: auto = only where the CPU computes bf16 "
                         "natively (emulated bf16 is ~11x slower and would take most of the "
                         "run)")
    C.add_threads_arg(ap)
    args = ap.parse_args()
    C.setup(args.threads)
    from lexformer.distributed import native_bf16

    with_bf16 = args.bf16 == "on" or (args.bf16 == "auto" and native_bf16(torch.device("cpu")))
    from x_transformers import Decoder, TransformerWrapper

    B = args.batch or (2 if args.quick else 8)
    rounds = args.rounds or (5 if args.quick else 8)
    budget = 10.0 if args.quick else 60.0
    g = torch.Generator().manual_seed(0)
    ids = torch.randint(0, VOCAB, (B, T + 1), generator=g)
    x, y = ids[:, :-1].contiguous(), ids[:, 1:].contiguous()
    tokens = x.numel()

    def adamw(m):
        return torch.optim.AdamW(m.parameters(), lr=1e-4)

    torch.manual_seed(0)
    lex = TransformerLM(ModelConfig(vocab_size=VOCAB, n_layer=N_LAYER, n_head=8,
                                    d_model=D_MODEL, d_ff=1024, train_length=T,
                                    position="xpos"))
    torch.manual_seed(0)
    xt = TransformerWrapper(num_tokens=VOCAB, max_seq_len=T,
                            attn_layers=Decoder(dim=D_MODEL, depth=N_LAYER, heads=8,
                                                rotary_xpos=True))
    fns = {
        "lexformer fp32": step_fn(lex, adamw(lex), x, y),
        "x-transformers fp32": step_fn(xt, adamw(xt), x, y),
    }
    models = {"lexformer fp32": lex, "x-transformers fp32": xt}
    if with_bf16:
        lex_bf = TransformerLM(lex.config)
        lex_bf.load_state_dict(lex.state_dict())
        fns["lexformer bf16"] = step_fn(lex_bf, adamw(lex_bf), x, y, autocast=True)
        models["lexformer bf16"] = lex_bf
    if args.xt_flash:
        torch.manual_seed(0)
        xtf = TransformerWrapper(num_tokens=VOCAB, max_seq_len=T,
                                 attn_layers=Decoder(dim=D_MODEL, depth=N_LAYER, heads=8,
                                                     rotary_xpos=True, attn_flash=True))
        fns["x-transformers fp32 flash"] = step_fn(xtf, adamw(xtf), x, y)
        models["x-transformers fp32 flash"] = xtf
    n = 2048
    a32, b32 = torch.randn(n, n), torch.randn(n, n)
    a16, b16 = a32.bfloat16(), b32.bfloat16()
    fns["matmul fp32"] = lambda: a32 @ b32
    if with_bf16:
        fns["matmul bf16"] = lambda: a16 @ b16

    t = C.interleaved(fns, rounds=rounds, warmup=1, min_sample_s=0.2, budget_s=budget,
                      min_rounds=min(5, rounds))
    mm_flops = 2 * n ** 3
    attn_causal = 6 * N_LAYER * T * D_MODEL * tokens
    attn_palm = 12 * N_LAYER * T * D_MODEL * tokens

    def mfu(name, mm, attn):
        f = 6 * matmul_params(models[name]) * tokens + attn
        s, m = t[name]["raw_s"], t[mm]["raw_s"]
        return C.statistics.median((f / s[i]) / (mm_flops / m[i])
                                   for i in C.rounds_used(t, name))

    rows, per = [], {}
    for name in models:
        mm = "matmul bf16" if "bf16" in name else "matmul fp32"
        per[name] = {
            "tokens_per_s": tokens / t[name]["median_s"],
            "time_over_lexformer_fp32": C.paired_ratio(t, name, "lexformer fp32"),
            "matmul_params": matmul_params(models[name]),
            "params": sum(p.numel() for p in models[name].parameters()),
            "mfu": mfu(name, mm, attn_causal),
            "mfu_palm_attention": mfu(name, mm, attn_palm),
            "mfu_against": mm,
        }
        rows.append([name, tokens / t[name]["median_s"], per[name]["time_over_lexformer_fp32"],
                     per[name]["matmul_params"] / 1e6, 100 * per[name]["mfu"], mm])
    rate32 = mm_flops / t["matmul fp32"]["median_s"] / 1e9
    rate16 = mm_flops / t["matmul bf16"]["median_s"] / 1e9 if with_bf16 else float("nan")
    speedup = C.paired_ratio(t, "x-transformers fp32", "lexformer fp32")
    mfu32 = per["lexformer fp32"]["mfu"]
    summary = [
        C.target("lexformer / x-transformers tokens/s, fp32", speedup, ">= 2.5", speedup >= 2.5),
        C.target("lexformer fp32 MFU", mfu32, ">= 0.55", mfu32 >= 0.55),
    ]
    if with_bf16:
        bf16_gain = C.paired_ratio(t, "lexformer fp32", "lexformer bf16")
        summary.append(C.target("lexformer bf16 autocast / fp32 tokens/s", bf16_gain, "(info)",
                                None))
    table = C.markdown_table(
        ["contender", "tokens/s (median)", "step time / lexformer fp32", "matmul params (M)",
         "MFU %", "MFU against"], rows)
    print(f"\nTraining step, batch {B}×{T}, AdamW, {torch.get_num_threads()} threads; matmul "
          f"2048³: fp32 {rate32:.0f} GFLOP/s, bf16 {rate16:.0f} GFLOP/s (medians)\n")
    print(table)
    print(f"\ncontention: {C.contention(t)}")
    C.print_summary(summary)
    C.write_results("bench_train_throughput", {
        "env": C.environment(), "quick": args.quick, "batch": [B, T], "tokens": tokens,
        "timings": C.strip_raw(t), "contention": C.contention(t), "per_contender": per,
        "matmul_gflops": {"fp32": rate32, "bf16": rate16},
        "flops_formula": "6*N_matmul*tokens + 6*n_layer*T*d_model*tokens (causal-halved "
                         "attention); PaLM variant uses 12*n_layer*T*d_model",
        "summary": summary, "table": table})


if __name__ == "__main__":
    main()
