"""Token-by-token generation with a KV cache: per-token latency and memory against context.

    python benchmarks/bench_generate.py [--quick] [--contexts 1024 4096 ...] [--full-max N]

Small model: 2 layers, d_model 128, 4 heads, d_ff 512, vocab 4096, XPOS, L = 256 (blockwise
blocks of 128, sliding window 256). Modes: ``blockwise``, ``sliding`` and, for contrast,
``full`` (up to ``--full-max`` tokens of context, 16384 by default).

Each mode runs in a fresh subprocess:

1. one sequence is carried from 0 to the largest context: random tokens are fed through the
   cache in chunks of 512 (the prefill is not what is measured), and at each context c
   (1k, 4k, 16k, 64k; quick: 1k, 4k, 8k) 32 tokens are generated greedily one by one, with
   the peak RSS (``VmHWM`` after resetting it) while doing so and the RSS after; then the
   cache is copied (a snapshot) for step 2. Snapshots held are subtracted from the RSS
   figures (their exact tensor bytes); the cache's own tensor bytes are reported too;
2. per-token latency: the snapshots at every context are advanced token by token, greedily
   (``model(next_id, cache=cache)`` + argmax: what ``lexformer.generate`` does per token),
   interleaved: each round runs a few tokens at each context in turn; a round's latency is the
   median of its tokens, and latency(c)/latency(1k) is the median over rounds of the
   per-round ratio.
"""

from __future__ import annotations

import argparse
import copy
import gc
import json
import statistics
import subprocess
import sys
import time

import _common as C
import torch

from lexformer import ModelConfig, TransformerLM

CHUNK = 512
VOCAB = 4096


def worker(mode: str, contexts: list[int], rounds: int, per_round: int) -> dict:
    C.setup()
    torch.manual_seed(0)
    cfg = ModelConfig(vocab_size=VOCAB, n_layer=2, n_head=4, d_model=128, d_ff=512,
                      train_length=256, position="xpos")
    model = TransformerLM(cfg).eval()
    g = torch.Generator().manual_seed(0)
    cache = model.new_cache(mode)
    snaps, mem = {}, {}
    held = 0

    def step(c, tok):
        return model(tok, attention=mode, cache=c)[:, -1].argmax(-1, keepdim=True)

    with torch.no_grad():
        tok = None
        for c in contexts:
            while cache.next_pos < c:
                n = min(CHUNK, c - cache.next_pos)
                ids = torch.randint(0, VOCAB, (1, n), generator=g)
                tok = model(ids, attention=mode, cache=cache)[:, -1].argmax(-1, keepdim=True)
            gc.collect()
            C.malloc_trim()
            ok = C.reset_peak_rss()
            for _ in range(32):
                tok = step(cache, tok)
            peak = C.proc_status_kib("VmHWM" if ok else "VmRSS") * 1024
            gc.collect()
            C.malloc_trim()
            rss = C.proc_status_kib("VmRSS") * 1024
            mem[c] = {"rss_bytes": rss - held, "peak_rss_generating_bytes": peak - held,
                      "cache_bytes": cache.nbytes(), "cached_keys": len(cache),
                      "snapshot_bytes_subtracted": held}
            snaps[c] = (copy.deepcopy(cache), tok.clone())
            held += cache.nbytes()

        # Interleaved per-token latency across contexts.
        for c, (sc, t) in snaps.items():  # warm-up
            snaps[c] = (sc, step(sc, t))
        round_medians: dict[int, list[float]] = {c: [] for c in contexts}
        all_tokens: dict[int, list[float]] = {c: [] for c in contexts}
        stall = []
        for r in range(rounds):
            order = contexts[r % len(contexts):] + contexts[: r % len(contexts)]
            p0, w0 = C.psi_cpu_stall_us(), time.perf_counter()
            for c in order:
                sc, t = snaps[c]
                times = []
                for _ in range(per_round):
                    t0 = time.perf_counter()
                    t = step(sc, t)
                    times.append(time.perf_counter() - t0)
                snaps[c] = (sc, t)
                round_medians[c].append(statistics.median(times))
                all_tokens[c] += times
            p1, w1 = C.psi_cpu_stall_us(), time.perf_counter()
            stall.append((p1 - p0) / 1e6 / (w1 - w0) if p0 is not None else float("nan"))
    base = contexts[0]
    quiet = [i for i, x in enumerate(stall) if x <= C.CONTENDED_STALL]
    used = quiet if len(quiet) >= C.MIN_QUIET else list(range(len(stall)))
    lat = {}
    for c in contexts:
        lat[c] = {
            "median_ms": statistics.median(all_tokens[c]) * 1e3,
            "ratio_to_first": statistics.median(
                round_medians[c][i] / round_medians[base][i] for i in used),
            "tokens_timed": len(all_tokens[c]),
        }
    contention = {"rounds": len(stall), "quiet_rounds": len(quiet),
                  "median_stall": statistics.median(stall),
                  "ratios_from": "quiet rounds" if len(quiet) >= C.MIN_QUIET else "all rounds"}
    return {"mode": mode, "latency": lat, "memory": mem, "contention": contention}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--contexts", type=int, nargs="+")
    ap.add_argument("--full-max", type=int, default=16384,
                    help="largest context for the full-attention contrast (16384)")
    ap.add_argument("--modes", nargs="+", default=["blockwise", "sliding", "full"])
    ap.add_argument("--rounds", type=int)
    ap.add_argument("--worker", help=argparse.SUPPRESS)
    C.add_threads_arg(ap)
    args = ap.parse_args()
    contexts = args.contexts or ([1024, 4096, 8192] if args.quick
                                 else [1024, 4096, 16384, 65536])
    rounds = args.rounds or (6 if args.quick else 10)
    per_round = 8
    if args.worker:
        print(json.dumps(worker(args.worker, contexts, rounds, per_round)))
        return
    C.setup(args.threads)

    results = {}
    for mode in args.modes:
        ctx = [c for c in contexts if mode != "full" or c <= args.full_max]
        cmd = [sys.executable, __file__, "--worker", mode, "--rounds", str(rounds),
               "--contexts", *map(str, ctx)]
        t0 = time.perf_counter()
        res = subprocess.run(cmd, capture_output=True, text=True)
        if res.returncode:
            sys.exit(f"{mode} worker failed:\n{res.stderr}")
        results[mode] = json.loads(res.stdout.strip().splitlines()[-1])
        print(f"{mode}: {time.perf_counter() - t0:.0f} s, contention "
              f"{results[mode]['contention']}", flush=True)

    rows, summary = [], []
    for mode, r in results.items():
        lat, mem = r["latency"], r["memory"]
        first = next(iter(mem))
        for c in lat:
            m = mem[c]
            rows.append([mode, int(c), lat[c]["median_ms"], lat[c]["ratio_to_first"],
                         m["rss_bytes"] / 2 ** 20, (m["rss_bytes"] - mem[first]["rss_bytes"])
                         / 2 ** 20, m["peak_rss_generating_bytes"] / 2 ** 20,
                         m["cache_bytes"] / 2 ** 10, m["cached_keys"]])
        if mode in ("blockwise", "sliding"):
            last = list(lat)[-1]
            ratio = lat[last]["ratio_to_first"]
            summary.append(C.target(f"{mode}: latency at {last} / at {first} tokens", ratio,
                                    "<= 1.10", ratio <= 1.10))
            growth = (mem[last]["rss_bytes"] - mem[first]["rss_bytes"]) / 2 ** 20
            const_cache = mem[last]["cache_bytes"] == mem[first]["cache_bytes"]
            summary.append(C.target(
                f"{mode}: RSS growth {first}→{last} tokens (MiB)", growth,
                "constant (< 4 MiB growth, same cache size)", growth < 4 and const_cache,
                cache_bytes_first=mem[first]["cache_bytes"],
                cache_bytes_last=mem[last]["cache_bytes"]))

    table = C.markdown_table(
        ["mode", "context", "ms / token (median)", "latency / at 1k", "RSS MiB",
         "RSS Δ vs 1k MiB", "peak RSS generating MiB", "cache KiB", "cached keys"], rows)
    print("\nPer-token latency and memory while generating (latency ratios: paired medians)\n")
    print(table)
    print()
    C.print_summary(summary)
    C.write_results("bench_generate", {
        "env": C.environment(), "quick": args.quick, "contexts": contexts, "rounds": rounds,
        "tokens_per_round": per_round, "results": results, "summary": summary,
        "table": table})


if __name__ == "__main__":
    main()
