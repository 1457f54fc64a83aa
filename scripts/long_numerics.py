#!/usr/bin/env python
"""XPOS attention at very long lengths: finite, and equal to an fp64 reference.

Runs ``lexformer.attention.causal_attention`` with XPOS in full, blockwise and sliding modes
at (by default) 131,072 tokens, one head of dimension 64, training length L = 1024, in fp32
and under bf16 autocast, and compares sampled query rows with the float64 reference
``lexformer.reference.attention_rows``, computed row by row. That reference places each query
at position 0 and its keys at m − p (relative invariance makes this exact), so XPOS factors
are ζ^((p−m)/B) ≤ 1 and nothing overflows, even in float64 where global positions would need
ζ_0^(±131072/512) ≈ 1e±70. Why positions are re-centred: ``docs/method.md#xpos``.

It also shows why that care is needed: a naively centred XPOS table ζ^(±(n − T/2)/B)
holds inf at this length in fp32 and bf16 (and in fp16 from ~9k tokens).

    python scripts/long_numerics.py --length 131072 --dtypes fp32,bf16
"""

from __future__ import annotations

import argparse
import time

import torch

from lexformer import reference
from lexformer.attention import AttentionSpec, causal_attention
from lexformer.positions import XPos

DTYPES = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}


def naive_table_report(T: int, head_dim: int, gamma: float, scale_base: float) -> list[str]:
    """The naive approach: one table over centred positions n − T/2, stored in a low dtype."""
    j = torch.arange(head_dim // 2, dtype=torch.float64)
    zeta = (2.0 * j / head_dim + gamma) / (1.0 + gamma)
    n = torch.arange(T, dtype=torch.float64) - T // 2
    lines = []
    for name, dt in (("fp32", torch.float32), ("bf16", torch.bfloat16), ("fp16", torch.float16)):
        # computed directly in the low dtype, as a naive implementation would
        q_tab = zeta.to(dt)[None, :] ** (n.to(torch.float32)[:, None] / scale_base).to(dt)
        k_tab = zeta.to(dt)[None, :] ** (-n.to(torch.float32)[:, None] / scale_base).to(dt)
        n_inf = int(torch.isinf(q_tab).sum() + torch.isinf(k_tab).sum())
        big = torch.isinf(q_tab).any(-1) | torch.isinf(k_tab).any(-1)
        first = int(n[big].abs().min()) if bool(big.any()) else None
        lines.append(
            f"naive centred XPOS table, T={T}, {name}: {n_inf} inf entries"
            + (f" (from |n - T/2| = {first})" if first is not None else " (none)")
            + f"; largest factor needed {float(zeta[0] ** (-(T // 2) / scale_base)):.3g}"
        )
    return lines


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--length", type=int, default=131072)
    ap.add_argument("--dtypes", default="fp32,bf16", help="comma list of fp32, bf16, fp16")
    ap.add_argument("--modes", default="full,blockwise,sliding")
    ap.add_argument("--head-dim", type=int, default=64)
    ap.add_argument("--train-length", type=int, default=1024, help="L: block L/2, window L")
    ap.add_argument("--rows", type=int, default=16, help="query rows checked against fp64")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args(argv)

    T, D, Lt = args.length, args.head_dim, args.train_length
    device = torch.device(args.device)
    gamma, scale_base, base = 0.4, 512.0, 10000.0
    torch.manual_seed(args.seed)
    q, k, v = (torch.randn(1, 1, T, D) for _ in range(3))
    g = torch.Generator().manual_seed(args.seed + 1)
    fixed = [0, Lt // 2 - 1, Lt // 2, Lt, T // 2, T - Lt // 2, T - 2, T - 1]
    extra = torch.randint(0, T, (max(0, args.rows - len(fixed)),), generator=g).tolist()
    rows = sorted({r for r in fixed + extra if 0 <= r < T})[: max(args.rows, 1)]
    scheme = XPos(D, gamma=gamma, scale_base=scale_base, base=base)

    print(f"XPOS causal attention, T={T}, 1 head, head_dim={D}, L={Lt} "
          f"(block {Lt // 2}, window {Lt}), device={device}, torch {torch.__version__}, "
          f"{torch.get_num_threads()} threads; {len(rows)} rows vs fp64 reference")
    header = f"{'mode':<10} {'dtype':<6} {'time_s':>8} {'max_abs_err':>12} " \
             f"{'max_rel_err':>12} {'finite':>7}"
    print(header)
    print("-" * len(header))
    ok = True
    refs: dict[str, torch.Tensor] = {}
    for mode in args.modes.split(","):
        spec = AttentionSpec(mode, block=Lt // 2, window=Lt)
        if mode not in refs:
            refs[mode] = reference.attention_rows(  # (1, 1, R, D)
                q, k, v, rows, "xpos", mode, spec.block, spec.window,
                gamma=gamma, scale_base=scale_base, base=base)
        want = refs[mode]
        for name in args.dtypes.split(","):
            dt = DTYPES[name]
            qd, kd, vd = (x.to(device) for x in (q, k, v))
            t0 = time.perf_counter()
            with torch.no_grad():
                if dt == torch.float32:
                    out = causal_attention(qd, kd, vd, scheme, spec)
                elif dt == torch.bfloat16:
                    with torch.autocast(device.type, dtype=torch.bfloat16):
                        out = causal_attention(qd, kd, vd, scheme, spec)
                else:
                    out = causal_attention(qd.to(dt), kd.to(dt), vd.to(dt), scheme, spec)
            if device.type == "cuda":
                torch.cuda.synchronize()
            elapsed = time.perf_counter() - t0
            finite = bool(torch.isfinite(out).all())
            got = out[..., rows, :].double().cpu()
            err = (got - want).abs()
            abs_err = float(err.max())
            rel_err = float((err.amax(-1) / want.abs().amax(-1)).max())  # per row, ∞-norm
            print(f"{mode:<10} {name:<6} {elapsed:>8.2f} {abs_err:>12.3e} {rel_err:>12.3e} "
                  f"{'yes' if finite else 'NO':>7}", flush=True)
            tol = 1e-4 if dt == torch.float32 else 1e-1
            ok &= finite and abs_err <= tol
            del out
    print()
    for line in naive_table_report(T, D, gamma, scale_base):
        print(line)
    print("\nall finite and within tolerance (fp32 1e-4, low precision 1e-1):",
          "yes" if ok else "NO")
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
