"""``torch.compile`` against eager for the training step, the way ``lexformer train --compile``
runs it.

    python benchmarks/bench_compile.py [--quick] [--batch B] [--length T] [--rounds N]
                                       [--position xpos] [--dtypes fp32 bf16]

Model: the tiny preset's shape (4 layers, d_model 256, 8 heads, d_ff 1024, vocab 4096), batch
B×T (8×256; quick 2×256). One step = ``model(x, targets=y)`` (compiled: ``torch.compile(model)``,
as the trainer wraps it), backward, ``AdamW.step()`` (not compiled), in fp32 and under bf16
autocast. Each compiled contender is compiled first, untimed: its compile time (first call,
forward and backward) is reported separately. Then all contenders are timed interleaved and
the ratio is the median over rounds of time(compiled)/time(eager) in the same round.

``--with-complex`` adds ``compiled-complex``: the compiled step with the rotary arithmetic
forced to the complex64 multiply (``arithmetic="complex"``), which inductor cannot generate
code for (it falls back to eager kernels around it): what compiling cost before the real path.

Recompiles: dynamo's graph count is read after the first step and again after every timed
step; they must be equal (one compile per shape), and graph breaks must be 0.
"""

from __future__ import annotations

import argparse
import time

import _common as C
import torch
from torch._dynamo.utils import counters

from lexformer import ModelConfig, TransformerLM

VOCAB = 4096
KINDS = ("eager", "compiled", "compiled-complex")


def build(position: str, arithmetic: str = "auto") -> TransformerLM:
    torch.manual_seed(0)
    model = TransformerLM(ModelConfig(vocab_size=VOCAB, n_layer=4, n_head=8, d_model=256,
                                      d_ff=1024, train_length=256, position=position))
    if hasattr(model.position, "arithmetic"):
        model.position.arithmetic = arithmetic
    return model.train()


def step_fn(model, opt, x, y, bf16: bool):
    def run():
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
            loss = model(x, targets=y)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        return loss.detach()
    return run


def graph_count() -> int:
    return int(counters["stats"]["unique_graphs"])


def graph_breaks() -> int:
    return int(sum(counters["graph_break"].values()))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--batch", type=int, help="sequences per step (default 8; quick 2)")
    ap.add_argument("--length", type=int, default=256)
    ap.add_argument("--rounds", type=int, help="interleaved rounds (default 7; quick 5)")
    ap.add_argument("--position", default="xpos")
    ap.add_argument("--dtypes", nargs="+", choices=["fp32", "bf16"],
                    help="default fp32, plus bf16 where the CPU computes it natively (emulated "
                         "bf16 runs ~11x slower and would take most of the benchmark's time)")
    ap.add_argument("--with-complex", action="store_true",
                    help="add the compiled step with complex rotary arithmetic")
    C.add_threads_arg(ap)
    args = ap.parse_args()
    C.setup(args.threads)
    if args.dtypes is None:
        from lexformer.distributed import native_bf16

        args.dtypes = ["fp32", "bf16"] if native_bf16(torch.device("cpu")) else ["fp32"]
    B, T = args.batch or (2 if args.quick else 8), args.length
    rounds = args.rounds or (5 if args.quick else 7)
    g = torch.Generator().manual_seed(0)
    ids = torch.randint(0, VOCAB, (B, T + 1), generator=g)
    x, y = ids[:, :-1].contiguous(), ids[:, 1:].contiguous()

    fns, compile_s, losses = {}, {}, {}
    for dt in args.dtypes:
        bf16 = dt == "bf16"
        for kind in KINDS[:3 if args.with_complex else 2]:
            model = build(args.position, "complex" if kind == "compiled-complex" else "auto")
            opt = torch.optim.AdamW(model.parameters(), lr=1e-4)
            run_model = model if kind == "eager" else torch.compile(model)
            fn = step_fn(run_model, opt, x, y, bf16)
            t0 = time.perf_counter()
            losses[f"{kind} {dt}"] = fn().item()  # compiles forward and backward if compiled
            if kind != "eager":
                compile_s[f"{kind} {dt}"] = time.perf_counter() - t0
            fns[f"{kind} {dt}"] = fn
    graphs_after_first, breaks_in_first = graph_count(), graph_breaks()
    t = C.interleaved(fns, rounds=rounds, warmup=1, min_sample_s=0.05)
    recompiled = graph_count() - graphs_after_first

    rows, summary = [], []
    for dt in args.dtypes:
        for kind in KINDS:
            name = f"{kind} {dt}"
            if name not in t:
                continue
            ratio = C.paired_ratio(t, name, f"eager {dt}")
            rows.append([name, B * T / t[name]["median_s"], ratio,
                         compile_s.get(name, float("nan")), losses[name]])
            if kind == "compiled":
                summary.append(C.target(
                    f"train step compiled/eager, {dt}, {args.position}, {B}x{T}", ratio,
                    "<= 0.9", ratio <= 0.9))
    summary.append(C.target("graphs compiled after the first step (recompiles)",
                            float(recompiled), "0", recompiled == 0))
    if not args.with_complex:  # the complex arithmetic may break graphs; it is not the default
        summary.append(C.target("graph breaks", float(breaks_in_first), "0",
                                breaks_in_first == 0))
    table = C.markdown_table(
        ["contender", "tokens/s (median)", "step time / eager", "compile s (first step)",
         "first-step loss"], rows)
    print(f"\nTraining step, {args.position}, batch {B}×{T} (ratios: per-round paired medians)\n")
    print(table)
    print()
    C.print_summary(summary)
    C.write_results("bench_compile", {
        "env": C.environment(), "quick": args.quick, "batch": B, "length": T,
        "position": args.position, "compile_s": compile_s, "graphs": graph_count(),
        "recompiles_after_first_step": recompiled, "graph_breaks": graph_breaks(),
        "timings": C.strip_raw(t), "contention": C.contention(t),
        "summary": summary, "table": table})


if __name__ == "__main__":
    main()
