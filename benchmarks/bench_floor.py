"""One perplexity pass of a pretrained model under a method, against its matmul floor.

    python benchmarks/bench_floor.py [--tokens 32768] [--model smollm2]
                                     [--method blockwise+sinks] [--dtypes fp32,bf16]
                                     [--threads T]

A perplexity pass is matmul-bound, so its floor is its FLOPs over the rate at which this
machine multiplies matrices of the model's own shapes, in the same dtype, measured in the
same run (just before and just after the pass; the faster of the two is used, so the floor is
what the machine showed it can do):

* weights: 2 · (parameters inside matmuls: every ``nn.Linear`` of the model, the LM head
  included, the embedding lookup not) · N;
* attention: 4 · head_dim · (visible query/key pairs) · query heads · layers (Q·Kᵀ and the
  weighted sum of V, 2 FLOPs a multiply-add each). The pairs are counted exactly from the
  method's own plan (:func:`lexformer.hf.plans.branches`, the masks the engine scores) chunk
  by chunk; a method without a plan (``full``, the RoPE rescalings) sees N(N+1)/2 pairs.

The matmul rate: for each distinct linear shape (in → out), ``tokens × in @ in × out`` with
tokens = min(N, 2048), repeated for at least 0.3 s; the rate is the model's FLOPs over the
time its matmuls took at those rates (each shape weighted by how often the model has it).

Printed per dtype: the pass's time, its floor and their ratio, against the targets of issue
21 (≤ 1.5× the fp32 floor; ≤ 2× the bf16 floor where bf16 is native). bf16 runs by default
only where the CPU computes it natively (:func:`lexformer.distributed.native_bf16`). The
token ids are random (seeded): the time of a pass does not depend on the text. The pass is
run once (after a short warm-up pass): at 32k tokens it takes minutes.
"""

from __future__ import annotations

import argparse
import json
import time
from collections import Counter
from pathlib import Path

import _common as C
import torch

from lexformer.distributed import native_bf16
from lexformer.evaluate import document_nll
from lexformer.hf.lm import open_hf_model
from lexformer.hf.methods import resolve_settings
from lexformer.hf.plans import branches, query_chunks

DTYPES = {"fp32": torch.float32, "bf16": torch.bfloat16}
RATE_TOKENS = 2048
RATE_SECONDS = 0.3
WARMUP_TOKENS = 512


def linear_shapes(model) -> Counter:
    """(in, out) → how many ``nn.Linear`` of that shape the model holds (LM head included)."""
    return Counter((m.in_features, m.out_features) for m in model.modules()
                   if isinstance(m, torch.nn.Linear))


def visible_pairs(method: str, context: int, options, n: int, chunk: int = 1024) -> int:
    """Query/key pairs the method lets attend in a pass of ``n`` tokens, from its plan."""
    settings = resolve_settings(method, context, options)
    if settings.plan is None:  # every earlier key visible
        return n * (n + 1) // 2
    total = 0
    for rows in query_chunks(settings, 0, n, chunk):
        q_pos = torch.arange(rows.start, rows.stop, dtype=torch.int64)
        total += sum(int(b.mask.sum()) for b in branches(settings, q_pos))
    return total


def pass_flops(model, shapes: Counter, pairs: int, n: int) -> dict:
    config = model.config
    heads, layers = config.num_attention_heads, config.num_hidden_layers
    head_dim = getattr(config, "head_dim", None) or config.hidden_size // heads
    params = sum(count * i * o for (i, o), count in shapes.items())
    weights = 2 * params * n
    attention = 4 * head_dim * pairs * heads * layers
    return {"params_in_matmuls": params, "weights": weights, "attention": attention,
            "total": weights + attention, "head_dim": head_dim, "heads": heads,
            "layers": layers}


def matmul_rate(shapes: Counter, dtype: torch.dtype, tokens: int) -> dict:
    """FLOP/s of the model's linear shapes at ``tokens`` rows, weighted by their counts."""
    per_shape, flops, seconds = {}, 0.0, 0.0
    for (i, o), count in sorted(shapes.items()):
        x = torch.randn(tokens, i).to(dtype)
        w = torch.randn(o, i).to(dtype)
        torch.nn.functional.linear(x, w)  # warm-up
        reps, t0 = 0, time.perf_counter()
        while reps == 0 or time.perf_counter() - t0 < RATE_SECONDS:
            torch.nn.functional.linear(x, w)
            reps += 1
        t = (time.perf_counter() - t0) / reps
        per_shape[f"{tokens}x{i}@{i}x{o}"] = 2 * tokens * i * o / t
        flops += count * 2 * tokens * i * o
        seconds += count * t
    return {"flops_per_s": flops / seconds, "per_shape": per_shape}


@torch.no_grad()
def timed_pass(lm, method: str, ids: torch.Tensor) -> tuple[float, float]:
    """(seconds, mean NLL) of one perplexity pass of ``ids`` (1, N) as one chunk."""
    t0 = time.perf_counter()
    nll = document_nll(lm, ids, ids.shape[1], method)
    return time.perf_counter() - t0, float(nll[0]) / (ids.shape[1] - 1)


def measure_dtype(lm, name: str, method: str, ids, shapes, flops) -> dict:
    dtype = DTYPES[name]
    lm.model.to(dtype)
    tokens = min(ids.shape[1], RATE_TOKENS)
    before = matmul_rate(shapes, dtype, tokens)
    timed_pass(lm, method, ids[:, :min(WARMUP_TOKENS, ids.shape[1])])
    seconds, nll = timed_pass(lm, method, ids)
    after = matmul_rate(shapes, dtype, tokens)
    rate = max(before["flops_per_s"], after["flops_per_s"])
    floor = flops["total"] / rate
    print(f"{name}: pass {seconds:.2f} s, floor {floor:.2f} s ({rate / 1e9:.0f} GFLOP/s; "
          f"before {before['flops_per_s'] / 1e9:.0f}, after {after['flops_per_s'] / 1e9:.0f})"
          f", ratio {seconds / floor:.2f}, mean NLL {nll:.4f}", flush=True)
    return {"seconds": seconds, "floor_s": floor, "ratio": seconds / floor,
            "flops_per_s": rate, "rate_before": before, "rate_after": after, "mean_nll": nll}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--tokens", type=int, default=32768, help="tokens in the pass (32768)")
    ap.add_argument("--model", default="smollm2",
                    help="smollm2, a Hugging Face model folder or a .gguf file")
    ap.add_argument("--method", default="blockwise+sinks", help="any lexformer.hf method")
    ap.add_argument("--dtypes", default=None,
                    help="comma-separated of fp32,bf16 (default: fp32, and bf16 where native)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", default=None,
                    help="JSON results file (default: benchmarks/results/bench_floor.json)")
    C.add_threads_arg(ap)
    args = ap.parse_args()
    C.setup(args.threads)
    native = native_bf16(torch.device("cpu"))
    dtypes = (args.dtypes.split(",") if args.dtypes else ["fp32", *(["bf16"] if native else [])])
    unknown = [d for d in dtypes if d not in DTYPES]
    if unknown or args.tokens < 2:
        ap.error(f"--dtypes takes {', '.join(DTYPES)} (got {unknown}); --tokens >= 2")
    lm = open_hf_model(args.model)
    n = args.tokens
    shapes = linear_shapes(lm.model)
    t0 = time.perf_counter()
    pairs = visible_pairs(args.method, lm.context_length, lm.options, n)
    count_s = time.perf_counter() - t0
    flops = pass_flops(lm.model, shapes, pairs, n)
    print(f"{lm.name} (L = {lm.context_length}), {args.method}, {n} tokens, "
          f"{torch.get_num_threads()} thread(s), bf16 native: {native}")
    print(f"FLOPs {flops['total'] / 1e9:,.1f} G = weights {flops['weights'] / 1e9:,.1f} G "
          f"({flops['params_in_matmuls']:,} params in matmuls) + attention "
          f"{flops['attention'] / 1e9:,.1f} G ({pairs:,} visible pairs, counted in "
          f"{count_s:.1f} s)", flush=True)
    ids = torch.randint(0, lm.model.config.vocab_size, (1, n),
                        generator=torch.Generator().manual_seed(args.seed))
    results = {d: measure_dtype(lm, d, args.method, ids, shapes, flops) for d in dtypes}
    limits = {"fp32": 1.5, "bf16": 2.0}
    rows, summary = [], []
    for d, r in results.items():
        rows.append([d, r["seconds"], r["floor_s"], r["ratio"], r["flops_per_s"] / 1e9])
        summary.append(C.target(f"{args.method} pass of {n} tokens / its {d} floor", r["ratio"],
                                f"<= {limits[d]:g}", r["ratio"] <= limits[d]))
    print(C.markdown_table(["dtype", "pass s", "floor s", "pass / floor", "matmul GFLOP/s"],
                           rows))
    C.print_summary(summary)
    payload = {"environment": C.environment(), "model": lm.name, "context": lm.context_length,
               "method": args.method, "tokens": n, "visible_pairs": pairs, "flops": flops,
               "bf16_native": native, "summary": summary, "dtypes": results}
    if args.out:
        path = Path(args.out)
        path.write_text(json.dumps(payload, indent=2, default=str) + "\n")
    else:
        path = C.write_results("bench_floor", payload)
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
