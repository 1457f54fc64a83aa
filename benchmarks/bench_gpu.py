"""GPU benchmarks (CUDA only): the CPU suite's questions, asked on an accelerator.

    python benchmarks/bench_gpu.py [--quick] [--out results/gpu.json]

1. XPOS transform of q, k (1, 16, T, 64): lexformer vs rotary-embedding-torch (use_xpos=True),
   fp32 and bf16, forward and forward+backward (skipped if that package is missing).
2. Position-scheme overhead in the paper's model (24 layers, d_model 1024, 16 heads) at
   L = 1024 and 4·L, bf16 inference: time ratio to `absolute`, and xpos / rope.
3. Blockwise / sliding attention vs dense-masked SDPA vs causal SDPA, n = L … 64·L (L = 1024,
   16 heads × 64, bf16): time and peak CUDA memory.
4. Per-token decoding latency after a prefill of 1k … 64k tokens with the blockwise cache.
5. Training throughput of the paper's model, batch 8 × 1024, bf16 autocast, fused AdamW,
   and its MFU against the bf16 matmul rate measured in the same script.

Timings are medians of CUDA-event-timed repetitions after warm-up; ratios come from the same
run. Prints markdown tables and writes JSON.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

from lexformer import ModelConfig, TransformerLM  # noqa: E402
from lexformer.attention import AttentionSpec, causal_attention  # noqa: E402
from lexformer.positions import XPos  # noqa: E402

DEV = "cuda"
#: --dry-run: a small model on the CPU, to check this script without a GPU
DRY = False


def cuda_time(fn, reps: int = 20, warmup: int = 3) -> float:
    """Median milliseconds of ``fn()`` timed with CUDA events."""
    if DRY:
        fn()
        t = time.perf_counter()
        fn()
        return (time.perf_counter() - t) * 1e3
    for _ in range(warmup):
        fn()
    torch.cuda.synchronize()
    times = []
    for _ in range(reps):
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        start.record()
        fn()
        end.record()
        torch.cuda.synchronize()
        times.append(start.elapsed_time(end))
    return statistics.median(times)


def table(title: str, header: list[str], rows: list[list]) -> str:
    lines = [f"### {title}", "", "| " + " | ".join(header) + " |",
             "|" + "---|" * len(header)]
    for r in rows:
        lines.append("| " + " | ".join(f"{x:.3g}" if isinstance(x, float) else str(x)
                                       for x in r) + " |")
    out = "\n".join(lines) + "\n"
    print(out, flush=True)
    return out


def bench_xpos(quick: bool) -> tuple[str, list]:
    try:
        from rotary_embedding_torch import RotaryEmbedding
    except ImportError:
        return "rotary-embedding-torch not installed: XPOS peer benchmark skipped\n", []
    rows = []
    for T in ([1024, 4096] if quick else [1024, 4096, 16384]):
        for dtype in (torch.float32, torch.bfloat16):
            for backward in (False, True):
                q0 = torch.randn(1, 16, T, 64, device=DEV, dtype=dtype, requires_grad=backward)
                k0 = torch.randn(1, 16, T, 64, device=DEV, dtype=dtype, requires_grad=backward)
                pos = torch.arange(T)
                lex, peer = XPos(64), RotaryEmbedding(dim=64, use_xpos=True).to(DEV)

                def run_lex():
                    q2, k2 = lex(q0, k0, pos, pos)
                    if backward:
                        (q2.float().sum() + k2.float().sum()).backward()

                def run_peer():
                    q2, k2 = peer.rotate_queries_and_keys(q0, k0)
                    if backward:
                        (q2.float().sum() + k2.float().sum()).backward()

                t_lex, t_peer = cuda_time(run_lex), cuda_time(run_peer)
                rows.append([T, str(dtype).replace("torch.", ""),
                             "fwd+bwd" if backward else "fwd", t_lex, t_peer, t_peer / t_lex])
    md = table("XPOS transform on GPU (1, 16, T, 64)",
               ["T", "dtype", "pass", "lexformer ms", "rotary-embedding-torch ms", "speed-up"],
               rows)
    return md, rows


def paper_model(position: str) -> TransformerLM:
    size = (dict(n_layer=1, n_head=2, d_model=64, d_ff=128) if DRY else
            dict(n_layer=24, n_head=16, d_model=1024, d_ff=4096))
    cfg = ModelConfig(vocab_size=32000, train_length=1024, position=position, **size)
    return TransformerLM(cfg).to(DEV)


def bench_positions(quick: bool) -> tuple[str, list]:
    rows = []
    models = {p: paper_model(p).eval() for p in ("absolute", "rope", "xpos", "alibi")}
    for T in (1024, 4096):
        ids = torch.randint(0, 32000, (max(1, 8192 // T), T), device=DEV)
        times = {}
        for p, m in models.items():
            def run(m=m):
                with torch.no_grad(), torch.autocast("cuda", dtype=torch.bfloat16):
                    m(ids)
            times[p] = cuda_time(run, reps=5 if quick else 10)
        for p in models:
            rows.append([T, p, ids.numel() / times[p] * 1e3, times[p] / times["absolute"],
                         times[p] / times["rope"]])
    del models
    torch.cuda.empty_cache()
    md = table("Position-scheme overhead, paper model (24 × 1024), bf16 inference",
               ["T", "scheme", "tokens/s", "time / absolute", "time / rope"], rows)
    return md, rows


def bench_attention(quick: bool) -> tuple[str, list]:
    L, H, D = 1024, 16, 64
    rows = []
    for mult in ([1, 4] if DRY else [1, 4, 16] if quick else [1, 4, 16, 64]):
        n = L * mult
        q, k, v = (torch.randn(1, H, n, D, device=DEV, dtype=torch.bfloat16) for _ in range(3))
        scheme = XPos(D)
        res = {}
        for name in ("blockwise", "sliding", "causal SDPA", "dense-masked"):
            if name == "dense-masked" and n > 16384:
                res[name] = (float("nan"), float("nan"))
                continue
            torch.cuda.empty_cache()
            torch.cuda.reset_peak_memory_stats()
            base = torch.cuda.memory_allocated()
            if name in ("blockwise", "sliding"):
                spec = AttentionSpec(name, block=L // 2, window=L)

                def fn(spec=spec):
                    causal_attention(q, k, v, scheme, spec)
            elif name == "causal SDPA":
                def fn():
                    F.scaled_dot_product_attention(q, k, v, is_causal=True)
            else:
                pos = torch.arange(n, device=DEV)
                mask = (pos[None, :] <= pos[:, None]) & (
                    pos[None, :] // (L // 2) >= pos[:, None] // (L // 2) - 1)

                def fn(mask=mask):
                    F.scaled_dot_product_attention(q, k, v, attn_mask=mask)
            t = cuda_time(fn, reps=5 if quick else 10)
            peak = (torch.cuda.max_memory_allocated() - base) / 2**20
            res[name] = (t, peak)
        dense = res["dense-masked"][0]
        for name, (t, peak) in res.items():
            rows.append([n, name, t, peak, dense / t if dense == dense else "–"])
    md = table("Attention on GPU (bf16, 16 heads × 64, L = 1024)",
               ["n", "kind", "ms", "peak MiB", "dense-masked / this"], rows)
    return md, rows


def bench_generate(quick: bool) -> tuple[str, list]:
    model = paper_model("xpos").eval()
    rows = []
    base_latency = None
    for ctx in ([1024, 8192] if quick or DRY else [1024, 4096, 16384, 65536]):
        torch.cuda.empty_cache()
        ids = torch.randint(0, 32000, (1, ctx), device=DEV)
        with torch.no_grad(), torch.autocast("cuda", dtype=torch.bfloat16):
            cache = model.new_cache("blockwise")
            model(ids, attention="blockwise", cache=cache)
            tok = ids[:, -1:]
            mem = torch.cuda.memory_allocated() / 2**20

            def step():
                model(tok, attention="blockwise", cache=cache)
            t = cuda_time(step, reps=32, warmup=4)
        base_latency = base_latency or t
        rows.append([ctx, t, t / base_latency, len(cache), mem])
    torch.cuda.empty_cache()
    md = table("Decoding with the blockwise cache, paper model (bf16)",
               ["context", "ms / token", "ratio to 1k", "cached keys / layer",
                "allocated MiB"], rows)
    return md, rows


def bench_train(quick: bool) -> tuple[str, list]:
    n = 8192
    a = torch.randn(n, n, device=DEV, dtype=torch.bfloat16)
    t_mm = cuda_time(lambda: a @ a, reps=10)
    peak = 2 * n ** 3 / (t_mm / 1e3)
    rows = []
    for position in ("xpos", "absolute"):
        model = paper_model(position).train()
        opt = torch.optim.AdamW(model.parameters(), lr=3e-4, betas=(0.9, 0.98), eps=1e-6,
                                fused=not DRY)
        batch = torch.randint(0, 32000, (8, 1025), device=DEV)

        def step(model=model, opt=opt):
            with torch.autocast("cuda", dtype=torch.bfloat16):
                loss = model(batch[:, :-1], targets=batch[:, 1:])
            loss.backward()
            opt.step()
            opt.zero_grad(set_to_none=True)
        t = cuda_time(step, reps=5 if quick else 10, warmup=3)
        tokens = 8 * 1024
        params = sum(p.numel() for p in model.parameters())
        cfg = model.config
        flops = 6 * params * tokens + 12 * cfg.n_layer * 1024 * cfg.d_model * tokens / 2
        rows.append([position, tokens / t * 1e3, flops / (t / 1e3) / 1e12,
                     flops / (t / 1e3) / peak])
        torch.cuda.empty_cache()
    md = table(f"Training step, paper model, batch 8 × 1024, bf16 autocast, fused AdamW "
               f"(bf16 matmul peak measured: {peak / 1e12:.0f} TFLOP/s)",
               ["scheme", "tokens/s", "TFLOP/s", "MFU"], rows)
    return md, rows


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--out", default=str(Path(__file__).parent / "results" / "gpu.json"))
    ap.add_argument("--md", help="also write the markdown tables here")
    ap.add_argument("--dry-run", action="store_true", help="tiny sizes on the CPU (checks the "
                    "script itself; its numbers mean nothing)")
    args = ap.parse_args()
    if args.dry_run:
        global DEV, DRY
        DEV, DRY = "cpu", True
        torch.cuda.reset_peak_memory_stats = lambda: None
        torch.cuda.max_memory_allocated = torch.cuda.memory_allocated = lambda: 0
        torch.cuda.empty_cache = lambda: None
        torch.cuda.get_device_name = lambda: "cpu (dry run)"
        torch.cuda.is_available = lambda: True
        _autocast = torch.autocast
        torch.autocast = lambda device, **kw: _autocast("cpu", **kw)
    if not torch.cuda.is_available():
        print("bench_gpu: no CUDA device; nothing to do")
        return 0
    name = torch.cuda.get_device_name()
    head = (f"GPU: {name}, torch {torch.__version__}, "
            f"{time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}\n")
    print(head)
    md, results = [head], {}
    for key, fn in (("xpos", bench_xpos), ("positions", bench_positions),
                    ("attention", bench_attention), ("generate", bench_generate),
                    ("train", bench_train)):
        t0 = time.time()
        text, rows = fn(args.quick)
        md.append(text)
        results[key] = rows
        print(f"({key}: {time.time() - t0:.0f} s)", flush=True)
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps({"device": name, "results": results}, indent=2,
                                         default=str))
    if args.md:
        Path(args.md).write_text("\n".join(md))
    return 0


if __name__ == "__main__":
    sys.exit(main())
