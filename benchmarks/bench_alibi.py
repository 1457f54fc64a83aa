"""ALiBi's training step against absolute positions, with the previous ALiBi path side by side.

    python benchmarks/bench_alibi.py [--quick] [--length T] [--batch B] [--rounds N]

Model: 4 layers, d_model 256, 8 heads, d_ff 1024, vocab 4096 (the tiny preset's shape), full
causal attention, one step = forward with targets, backward, ``AdamW.step()``, fp32. Contenders,
interleaved round by round, same weights and batch:

* ``absolute``     sinusoidal positions: SDPA with ``is_causal=True``, no mask;
* ``alibi``        the library's ALiBi path: the (1, H, T, T) bias built once per forward pass
  and given to SDPA together with ``is_causal=True`` (the fused CPU kernel, skipping the blocks
  above the diagonal);
* ``alibi_before`` the path this replaced, reproduced here: a (H, T, T) bias built in every
  layer, −inf filled where hidden, given to SDPA as a 3-D float mask (which the CPU dispatcher
  sends to the unfused math kernel).

Ratio = median over rounds of time(contender)/time(absolute) in the same round. The outputs of
``alibi`` and ``alibi_before`` are compared once (max |Δ loss|).
"""

from __future__ import annotations

import argparse
import contextlib

import _common as C
import torch

from lexformer import ModelConfig, TransformerLM
from lexformer.attention import causal as attention_module

VOCAB = 4096


def build(scheme: str) -> TransformerLM:
    torch.manual_seed(0)
    return TransformerLM(ModelConfig(vocab_size=VOCAB, n_layer=4, n_head=8, d_model=256,
                                     d_ff=1024, train_length=256, position=scheme))


def _previous_full_with_bias(q, k, v, scheme, dropout_p, memo):
    """The ALiBi path before this change: per-layer bias, −inf filled, 3-D float mask."""
    T = q.shape[-2]
    pos = torch.arange(T)
    visible = torch.ones(T, T, dtype=torch.bool, device=q.device).tril()
    mask = scheme(pos, pos).to(q.device, q.dtype).masked_fill(~visible, float("-inf"))
    return attention_module._sdpa(q, k, v, attn_mask=mask, dropout_p=dropout_p)


@contextlib.contextmanager
def previous_alibi_path():
    current = attention_module._full_with_bias
    attention_module._full_with_bias = _previous_full_with_bias
    try:
        yield
    finally:
        attention_module._full_with_bias = current


def step_fn(model, opt, x, y, before=False):
    def run():
        with previous_alibi_path() if before else contextlib.nullcontext():
            loss = model(x, targets=y)
            opt.zero_grad(set_to_none=True)
            loss.backward()
        opt.step()
        return loss.detach()
    return run


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--length", type=int, default=1024)
    ap.add_argument("--batch", type=int, help="sequences per step (default 4; quick 1)")
    ap.add_argument("--rounds", type=int, help="interleaved rounds (default 7; quick 5)")
    C.add_threads_arg(ap)
    args = ap.parse_args()
    C.setup(args.threads)
    T, B = args.length, args.batch or (1 if args.quick else 4)
    rounds = args.rounds or (5 if args.quick else 7)
    g = torch.Generator().manual_seed(0)
    ids = torch.randint(0, VOCAB, (B, T + 1), generator=g)
    x, y = ids[:, :-1].contiguous(), ids[:, 1:].contiguous()

    models = {"absolute": build("absolute"), "alibi": build("alibi"),
              "alibi_before": build("alibi")}
    for m in models.values():
        m.train()
    opts = {name: torch.optim.AdamW(m.parameters(), lr=1e-4) for name, m in models.items()}
    with torch.no_grad():
        now = models["alibi"](x, targets=y).item()
        with previous_alibi_path():
            before = models["alibi_before"](x, targets=y).item()
    fns = {name: step_fn(m, opts[name], x, y, before=name == "alibi_before")
           for name, m in models.items()}
    t = C.interleaved(fns, rounds=rounds, warmup=1, min_sample_s=0.05)
    ratios = {name: C.paired_ratio(t, name, "absolute") for name in fns}
    speedup = C.paired_ratio(t, "alibi_before", "alibi")
    rows = [[name, B * T / t[name]["median_s"], ratios[name]] for name in fns]
    table = C.markdown_table(["contender", "tokens/s (median)", "step time / absolute"], rows)
    print(f"\nTraining step, batch {B}×{T}, fp32 (ratios: per-round paired medians)\n")
    print(table)
    print(f"\nprevious/new ALiBi step: {speedup:.2f}x; |Δ loss| new vs previous path: "
          f"{abs(now - before):.2e}\n")
    summary = [C.target(f"train step alibi/absolute, T={T}", ratios["alibi"], "<= 1.3",
                        ratios["alibi"] <= 1.3),
               C.target(f"train step alibi (previous path)/absolute, T={T}",
                        ratios["alibi_before"], "(info)", None)]
    C.print_summary(summary)
    C.write_results("bench_alibi", {
        "env": C.environment(), "quick": args.quick, "batch": B, "length": T,
        "timings": C.strip_raw(t), "contention": C.contention(t), "ratios": ratios,
        "previous_over_new": speedup, "loss_difference": abs(now - before),
        "summary": summary, "table": table})


if __name__ == "__main__":
    main()
