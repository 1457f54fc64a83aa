"""XPOS transform of q and k: lexformer vs the public implementations, plus logits parity.

    python benchmarks/bench_xpos_peers.py [--quick] [--lengths 1024 4096 ...] [--rounds N]
                                          [--compiled]

Contenders, each doing what it does on every call of a forward pass (tables included):

* ``lexformer``   ``XPos(64)(q, k, q_pos, k_pos)``, the default (``arithmetic="auto"``: in
  eager mode one complex64 multiply by tables cached by the module);
* ``lex_real``    the same call with ``arithmetic="real"`` in eager mode: cos/sin tables in the
  input's dtype, ``q·C + swap(q)·S`` in three passes (for information: the path
  ``torch.compile`` takes);
* ``lex_compiled`` (with ``--compiled``) ``torch.compile`` of that call: the real path fused
  into one kernel forward and one backward (compiled once per case, untimed);
* ``rotary_emb``  rotary-embedding-torch ``RotaryEmbedding(dim=64, use_xpos=True)
  .rotate_queries_and_keys(q, k)`` (its own cache holds tables up to 8192 positions and
  recomputes them per call beyond that, as it does for a user);
* ``x_transformers``  what ``Attention`` does with ``rotary_xpos=True``: ``RotaryEmbedding(64,
  use_xpos=True)(arange(T))`` → freqs, scale (computed per forward), then
  ``apply_rotary_pos_emb(q, freqs, scale)`` and ``apply_rotary_pos_emb(k, freqs, scale**-1)``
  (its ``Decoder`` rotates only ``dim_head // 2`` coordinates by default; we rotate all 64 to
  do the same work as the others);
* ``torchscale``  ``XPOS(64)`` on (B·H, T, D): q with ``downscale=False``, k with ``True``;
* ``floor``       one complex multiply of q and one of k by a precomputed (T, 32) complex64
  table (fp32 data; the least any table-based rotation can do).

Passes: forward, and forward+backward. The backward pass back-propagates fixed random
cotangents g_q, g_k (that is, of Σ g_q·q2 + Σ g_k·k2, a weighted sum of the outputs); with
``--sum-backward`` it is literally ``(q2.sum() + k2.sum()).backward()``, whose gradient is a
stride-0 expanded tensor that no training step produces and that lexformer's
``view_as_complex`` must first copy (+26% on lexformer's fp32 fwd+bwd at T = 4096, measured).
Inputs (1, 8, T, 64) in fp32 and bf16.

Contenders are timed interleaved; speed-up over a peer = median over rounds of
time(peer)/time(lexformer) in the same round, and the reported speed-up is the smallest of
these over the three peers (the best peer). Times in the table are per-contender medians.

All four implementations rotate *interleaved* pairs (2j, 2j+1) with θ_j = 10000^(−2j/d) and
ζ_j = (2j/d + 0.4)/1.4, scale base 512, so q2 @ k2ᵀ agree without permuting coordinates
(x-transformers' ``rotate_half`` here reshapes ``(d r) -> d r`` with r = 2: interleaved too).
Parity is checked in fp32 on 64 query rows spread over the sequence against all keys, as
max over rows of max|Δ| / max|reference| in that row, against lexformer and against an
independent float64 evaluation of the XPOS logits (``lexformer.reference``).
"""

from __future__ import annotations

import argparse

import _common as C
import torch

C.install_timm_stub()

from rotary_embedding_torch import RotaryEmbedding as REmb  # noqa: E402
from torchscale.component.xpos_relative_position import XPOS as TSXPOS  # noqa: E402
from x_transformers.x_transformers import RotaryEmbedding as XTRotary  # noqa: E402
from x_transformers.x_transformers import apply_rotary_pos_emb as xt_apply  # noqa: E402

from lexformer import reference  # noqa: E402
from lexformer.positions import XPos  # noqa: E402

H, D = 8, 64
PEERS = ("rotary_emb", "x_transformers", "torchscale")


def contenders(T: int, compiled: bool = False):
    lex = XPos(D)
    lex_real = XPos(D)
    lex_real.arithmetic = "real"
    remb = REmb(dim=D, use_xpos=True)
    xt = XTRotary(D, use_xpos=True)
    ts = TSXPOS(D)
    pos = torch.arange(T)
    half = D // 2
    j = torch.arange(half, dtype=torch.float64)
    table = torch.polar(torch.ones(T, half, dtype=torch.float64),
                        pos[:, None].double() * 10000.0 ** (-2 * j / D)).to(torch.complex64)

    def f_lex(q, k):
        return lex(q, k, pos, pos)

    def f_lex_real(q, k):
        return lex_real(q, k, pos, pos)

    def f_remb(q, k):
        return remb.rotate_queries_and_keys(q, k)

    def f_xt(q, k):
        freqs, scale = xt(torch.arange(q.shape[-2]))
        return xt_apply(q, freqs, scale), xt_apply(k, freqs, scale ** -1.0)

    def f_ts(q, k):
        B, Hh, Tt, Dd = q.shape
        q2 = ts(q.reshape(B * Hh, Tt, Dd), downscale=False)
        k2 = ts(k.reshape(B * Hh, Tt, Dd), downscale=True)
        return q2.view(B, Hh, Tt, Dd), k2.view(B, Hh, Tt, Dd)

    def f_floor(q, k):
        # q, k here are complex-able real views (..., T, 32, 2) fp32
        qc, kc = torch.view_as_complex(q), torch.view_as_complex(k)
        return torch.view_as_real(qc * table), torch.view_as_real(kc * table)

    fns = {"lexformer": f_lex, "lex_real": f_lex_real, "rotary_emb": f_remb,
           "x_transformers": f_xt, "torchscale": f_ts, "floor": f_floor}
    if compiled:
        fns["lex_compiled"] = torch.compile(f_lex, dynamic=False)
    return fns


def reference_logits(q, k, rows):
    """float64 XPOS logits q'_n · k'_m for query rows ``rows`` against all keys."""
    return reference.rotary_logits(q[..., rows, :], k, rows.tolist(), range(q.shape[-2]),
                                   decay=True)


def rel_err(a, ref):
    a, ref = a.double(), ref.double()
    row_max = ref.abs().amax(-1).clamp_min(1e-300)
    return float(((a - ref).abs().amax(-1) / row_max).max())


def parity(T: int, fns) -> dict:
    g = torch.Generator().manual_seed(1)
    q = torch.randn(1, H, T, D, generator=g)
    k = torch.randn(1, H, T, D, generator=g)
    rows = torch.linspace(0, T - 1, 64).round().long()
    ref64 = reference_logits(q, k, rows)
    out = {}
    lex_logits = None
    for name in ("lexformer", "lex_real") + PEERS:
        with torch.no_grad():
            q2, k2 = fns[name](q, k)
        logits = q2[..., rows, :].double() @ k2.double().transpose(-1, -2)
        if name == "lexformer":
            lex_logits = logits
        out[name] = {"vs_float64": rel_err(logits, ref64),
                     "vs_lexformer": rel_err(logits, lex_logits)}
    return out


def bench_case(T, dtype, backward, fns, rounds, budget, sum_backward=False):
    g = torch.Generator().manual_seed(0)
    q = torch.randn(1, H, T, D, generator=g).to(dtype)
    k = torch.randn(1, H, T, D, generator=g).to(dtype)
    qf = torch.randn(1, H, T, D // 2, 2, generator=g)
    kf = torch.randn(1, H, T, D // 2, 2, generator=g)
    if backward:
        for x in (q, k, qf, kf):
            x.requires_grad_(True)
    # Cotangents: fixed random gradients for q2 and k2 in the output dtype of each contender
    # (torchscale returns fp32 for bf16 inputs).
    cot = {}

    def cotangents(name, q2, k2):
        if name not in cot:
            cg = torch.Generator().manual_seed(2)
            cot[name] = (torch.randn(q2.shape, generator=cg).to(q2.dtype),
                         torch.randn(k2.shape, generator=cg).to(k2.dtype))
        return cot[name]

    def make(name):
        fn = fns[name]
        a, b = (qf, kf) if name == "floor" else (q, k)
        if not backward:
            def run():
                with torch.no_grad():
                    fn(a, b)
        elif sum_backward:
            def run():
                a.grad = b.grad = None
                q2, k2 = fn(a, b)
                (q2.sum() + k2.sum()).backward()
        else:
            def run():
                a.grad = b.grad = None
                q2, k2 = fn(a, b)
                torch.autograd.backward((q2, k2), cotangents(name, q2, k2))
        return run

    runs = {name: make(name) for name in fns}
    if "lex_compiled" in runs:
        runs["lex_compiled"]()  # compile (forward, and backward if timed) before any timing
    return C.interleaved(runs, rounds=rounds, budget_s=budget, min_sample_s=0.01, min_rounds=5)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--lengths", type=int, nargs="+")
    ap.add_argument("--rounds", type=int)
    ap.add_argument("--compiled", action="store_true",
                    help="add torch.compile of lexformer's call (real arithmetic, fused)")
    ap.add_argument("--sum-backward", action="store_true",
                    help="backward of q2.sum() + k2.sum() instead of fixed random cotangents")
    C.add_threads_arg(ap)
    args = ap.parse_args()
    C.setup(args.threads)
    lengths = args.lengths or ([1024, 4096] if args.quick else [1024, 2048, 4096, 8192, 16384])
    rounds = args.rounds or (7 if args.quick else 15)
    budget = 0.5 if args.quick else 2.0  # seconds per case before stopping at ≥5 rounds

    results, rows = [], []
    parities = {}
    for T in lengths:
        fns = contenders(T, args.compiled)
        lex_names = [n for n in ("lexformer", "lex_real", "lex_compiled") if n in fns]
        parities[T] = parity(T, fns)
        for dtype in (torch.float32, torch.bfloat16):
            for backward in (False, True):
                t = bench_case(T, dtype, backward, fns, rounds, budget, args.sum_backward)
                lex = t["lexformer"]["median_s"]
                per_peer = {p: C.paired_ratio(t, p, "lexformer") for p in PEERS}
                best_peer = min(per_peer, key=per_peer.get)
                speedup = per_peer[best_peer]
                rec = {"T": T, "dtype": str(dtype).split(".")[1],
                       "pass": "fwd+bwd" if backward else "fwd", "timings": C.strip_raw(t),
                       "contention": C.contention(t),
                       "speedup_per_peer": per_peer,
                       "best_peer": best_peer, "speedup_vs_best_peer": speedup,
                       "lexformer_over_floor": C.paired_ratio(t, "lexformer", "floor"),
                       "over_floor": {n: C.paired_ratio(t, n, "floor") for n in lex_names},
                       "best_peer_speedup": {n: C.paired_ratio(t, best_peer, n)
                                             for n in lex_names}}
                results.append(rec)
                rows.append([T, rec["dtype"], rec["pass"]]
                            + [t[n]["median_s"] * 1e3 if n in t else float("nan")
                               for n in ("lexformer", "lex_real", "lex_compiled") + PEERS
                               + ("floor",)]
                            + [best_peer, speedup, rec["lexformer_over_floor"]]
                            + [rec["over_floor"].get(n, float("nan"))
                               for n in ("lex_real", "lex_compiled")]
                            + [rec["best_peer_speedup"].get("lex_compiled", float("nan"))])
                print(f"T={T} {rec['dtype']} {rec['pass']}: lexformer {lex * 1e3:.2f} ms, "
                      f"best peer {best_peer} {t[best_peer]['median_s'] * 1e3:.2f} ms, "
                      f"speed-up {speedup:.2f}x; {rec['contention']['quiet_rounds']}/"
                      f"{rec['contention']['rounds']} quiet rounds", flush=True)

    table = C.markdown_table(
        ["T", "dtype", "pass", "lexformer ms", "lex real ms", "lex compiled ms",
         "rotary-emb-torch ms", "x-transformers ms", "torchscale ms", "floor ms", "best peer",
         "speed-up (best peer / lex)", "lex / floor", "real / floor", "compiled / floor",
         "best peer / compiled"], rows)
    ptable = C.markdown_table(
        ["T", "impl", "max rel diff vs float64", "max rel diff vs lexformer"],
        [[T, n, p[n]["vs_float64"], p[n]["vs_lexformer"]]
         for T, p in parities.items() for n in p])
    print("\nMedian times per call (q and k of (1, 8, T, 64)); speed-up = best peer / lexformer\n")
    print(table)
    print("\nLogits parity, fp32 inputs (no coordinate permutation needed: all interleaved)\n")
    print(ptable)
    summary = []
    for dt in ("float32", "bfloat16"):
        for p in ("fwd", "fwd+bwd"):
            worst = min((r for r in results if r["dtype"] == dt and r["pass"] == p),
                        key=lambda r: r["speedup_vs_best_peer"])
            v = worst["speedup_vs_best_peer"]
            summary.append(C.target(
                f"XPOS q,k {dt} {p}: min over T of speed-up vs best peer (at T={worst['T']}, "
                f"{worst['best_peer']})", v, ">= 4", v >= 4))
    # the public call's overhead over one bare complex multiply (fp32 forward), at the length
    # the target names (T = 4096) or the nearest measured one
    T_floor = min(lengths, key=lambda T: abs(T - 4096))
    for r in results:
        if r["T"] == T_floor and r["dtype"] == "float32" and r["pass"] == "fwd":
            v = r["lexformer_over_floor"]
            summary.append(C.target(f"XPOS public call fp32 fwd / bare complex multiply, "
                                    f"T={T_floor}", v, "<= 1.3", v <= 1.3))
    print()
    C.print_summary(summary)
    C.write_results("bench_xpos_peers", {
        "env": C.environment(), "quick": args.quick, "lengths": lengths,
        "backward": "q2.sum() + k2.sum()" if args.sum_backward else "random cotangents",
        "results": results,
        "parity": {str(k): v for k, v in parities.items()},
        "summary": summary,
        "table": table, "parity_table": ptable})


if __name__ == "__main__":
    main()
