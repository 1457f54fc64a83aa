"""Blockwise and sliding attention vs dense attention: time and peak memory against n.

    python benchmarks/bench_attention.py [--quick] [--max-mult M] [--dense-max N] [--rounds N]

One sequence, 8 heads, head_dim 32, XPOS, L = 256 (blocks of h = L/2 = 128, sliding window
W = L = 256), n = L, 2L, …, 64·L (quick: up to 16·L). Contenders, all including the XPOS
rotation of q and k:

* ``blockwise``  lexformer ``causal_attention(q, k, v, XPos(32), AttentionSpec("blockwise"))``;
* ``sliding``    the same with ``AttentionSpec("sliding")``;
* ``dense``      XPOS over the whole sequence, then one SDPA call with an explicit boolean
  n×n mask of the same blockwise pattern (the mask is built once per n, outside the timing);
* ``causal``     XPOS over the whole sequence, then SDPA with ``is_causal=True`` (full
  attention, more work than blockwise: shown for contrast).

Dense runs while an n×n float32 matrix is under 4 GiB (n ≤ 16384; SDPA on CPU turns the
boolean mask into a float one of that size).

Time: contenders interleaved per n; speed-ups are per-round paired medians.

Memory: a fresh subprocess (no timing runs in it) runs every contender once at n = L to
load code, then for each n allocates q, k, v (and the dense mask) and for each contender:
``malloc_trim`` (freed heap pages back to the OS), reset the kernel's peak-RSS mark
(``/proc/self/clear_refs`` = 5), run, read ``VmHWM`` − ``VmRSS`` before the run. That is
the peak *additional* resident memory of the call (its working memory and its output) as the
OS saw it (the larger of two calls); the inputs and the prebuilt mask are not counted.
"""

from __future__ import annotations

import argparse
import json
import math
import subprocess
import sys

import _common as C
import torch
import torch.nn.functional as F

from lexformer.attention import AttentionSpec, causal_attention
from lexformer.positions import XPos

L, H, D = 256, 8, 32
BLOCK, WINDOW = L // 2, L
CONTENDERS = ("blockwise", "sliding", "dense", "causal")


def make_inputs(n: int, dense: bool):
    g = torch.Generator().manual_seed(0)
    q, k, v = (torch.randn(1, H, n, D, generator=g) for _ in range(3))
    pos = torch.arange(n)
    mask = AttentionSpec("blockwise", block=BLOCK).visible(pos, pos) if dense else None
    return q, k, v, pos, mask


def contender_fns(q, k, v, pos, mask):
    xpos = XPos(D)
    block = AttentionSpec("blockwise", block=BLOCK, window=WINDOW)
    slide = AttentionSpec("sliding", block=BLOCK, window=WINDOW)
    fns = {
        "blockwise": lambda: causal_attention(q, k, v, xpos, block),
        "sliding": lambda: causal_attention(q, k, v, xpos, slide),
    }
    if mask is not None:
        def dense():
            q2, k2 = xpos(q, k, pos, pos)
            return F.scaled_dot_product_attention(q2, k2, v, attn_mask=mask)
        fns["dense"] = dense

    def causal():
        q2, k2 = xpos(q, k, pos, pos)
        return F.scaled_dot_product_attention(q2, k2, v, is_causal=True)
    fns["causal"] = causal
    return fns


def memory_worker(cases: list[tuple[int, bool]]) -> None:
    """Run in a fresh process: peak additional RSS of one call of each contender at each n."""
    C.setup()
    result = {}
    with torch.no_grad():
        warm = contender_fns(*make_inputs(L, True))
        for fn in warm.values():
            fn()
        del warm
        for n, dense in cases:
            fns = contender_fns(*make_inputs(n, dense))
            out = {}
            for name, fn in fns.items():
                out[name] = 0
                for _ in range(2):  # the larger of two calls: page reuse can hide some
                    C.malloc_trim()
                    ok = C.reset_peak_rss()
                    base = C.proc_status_kib("VmRSS")
                    y = fn()
                    peak = C.proc_status_kib("VmHWM") if ok else C.proc_status_kib("VmRSS")
                    out[name] = max(out[name], (peak - base) * 1024)
                    del y
            result[n] = out
            del fns
    print(json.dumps(result))


def measure_memory(cases: list[tuple[int, bool]]) -> dict[int, dict]:
    spec = ",".join(f"{n}:{int(d)}" for n, d in cases)
    res = subprocess.run([sys.executable, __file__, "--memory-worker", spec],
                         capture_output=True, text=True)
    if res.returncode:
        sys.exit(f"memory worker failed:\n{res.stderr}")
    return {int(n): m for n, m in json.loads(res.stdout.strip().splitlines()[-1]).items()}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--max-mult", type=int, help="largest n as a multiple of L (default 64)")
    ap.add_argument("--dense-max", type=int, default=16384, help="largest n for dense (16384)")
    ap.add_argument("--rounds", type=int)
    ap.add_argument("--memory-worker", help=argparse.SUPPRESS)
    C.add_threads_arg(ap)
    args = ap.parse_args()
    if args.memory_worker:
        memory_worker([(int(n), d == "1") for n, d in
                       (c.split(":") for c in args.memory_worker.split(","))])
        return
    C.setup(args.threads)
    max_mult = args.max_mult or (16 if args.quick else 64)
    rounds = args.rounds or (3 if args.quick else 5)
    budget = 1.0 if args.quick else 4.0
    sizes = [L * m for m in (2 ** i for i in range(int(math.log2(max_mult)) + 1))]

    # Sanity: blockwise equals dense-masked attention (same pattern, same XPOS logits).
    q, k, v, pos, mask = make_inputs(4 * L, True)
    fns = contender_fns(q, k, v, pos, mask)
    with torch.no_grad():
        parity = float((fns["blockwise"]() - fns["dense"]()).abs().max())
    print(f"blockwise vs dense-masked output, n={4 * L}: max |diff| = {parity:.2e}")

    def use_dense(n):
        return n <= args.dense_max and n * n * 4 < 4 * 2 ** 30

    memory = measure_memory([(n, use_dense(n)) for n in sizes])
    results, rows = [], []
    for n in sizes:
        dense = use_dense(n)
        fns = contender_fns(*make_inputs(n, dense))
        with torch.no_grad():
            t = C.interleaved(fns, rounds=rounds, budget_s=budget, min_sample_s=0.02)
        del fns
        mem = memory[n]
        rec = {"n": n, "n_over_L": n // L, "timings": C.strip_raw(t), "peak_rss_delta": mem,
               "contention": C.contention(t)}
        rec["dense_over_blockwise"] = C.paired_ratio(t, "dense", "blockwise") if dense else None
        rec["causal_over_blockwise"] = C.paired_ratio(t, "causal", "blockwise")
        rec["dense_over_sliding"] = C.paired_ratio(t, "dense", "sliding") if dense else None
        results.append(rec)
        nan = float("nan")
        rows.append([n, n // L]
                    + [t[c]["median_s"] * 1e3 if c in t else nan for c in CONTENDERS]
                    + [rec["dense_over_blockwise"] or nan, rec["causal_over_blockwise"]]
                    + [mem[c] / 2 ** 20 if c in mem else nan for c in CONTENDERS])
        print(f"n={n}: blockwise {t['blockwise']['median_s'] * 1e3:.1f} ms, "
              f"dense/blockwise {rec['dense_over_blockwise']}, {rec['contention']}", flush=True)

    # Memory growth: least-squares log-log slope of peak memory over the three largest n
    # (1 = linear, 2 = quadratic); single pairs are at the mercy of allocator page reuse.
    fit = results[-3:]

    def slope(name):
        pts = [(math.log(r["n"]), math.log(r["peak_rss_delta"][name])) for r in fit
               if r["peak_rss_delta"].get(name, 0) > 0]
        if len(pts) < 2:
            return float("nan")
        mx = sum(x for x, _ in pts) / len(pts)
        my = sum(y for _, y in pts) / len(pts)
        return (sum((x - mx) * (y - my) for x, y in pts)
                / sum((x - mx) ** 2 for x, _ in pts))

    slopes = {c: slope(c) for c in CONTENDERS}
    at16 = next((r for r in results if r["n"] == 16 * L), None)
    summary = []
    for c in ("blockwise", "sliding"):
        summary.append(C.target(
            f"{c} peak-memory growth exponent, n={fit[0]['n']}…{fit[-1]['n']}",
            slopes[c], "<= 1.2 (linear in n)", slopes[c] <= 1.2))
    if at16 and at16["dense_over_blockwise"]:
        s = at16["dense_over_blockwise"]
        summary.append(C.target("dense-masked / blockwise time at n = 16·L", s, ">= 5", s >= 5))

    table = C.markdown_table(
        ["n", "n/L", "blockwise ms", "sliding ms", "dense-masked ms", "causal SDPA ms",
         "dense / blockwise", "causal / blockwise", "blockwise MiB", "sliding MiB",
         "dense MiB", "causal MiB"], rows)
    print("\nAttention (1×8 heads×n×32, XPOS): median time; peak additional RSS per call\n")
    print(table)
    print("\nmemory growth exponents (log-log least-squares slope, three largest n): "
          + ", ".join(f"{c} {v:.2f}" for c, v in slopes.items()))
    C.print_summary(summary)
    C.write_results("bench_attention", {
        "env": C.environment(), "quick": args.quick, "sizes": sizes,
        "parity_blockwise_vs_dense_max_abs": parity, "results": results,
        "memory_growth_exponent": slopes, "summary": summary, "table": table})


if __name__ == "__main__":
    main()
