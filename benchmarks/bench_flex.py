"""FlexAttention against lexformer's windowed path for blockwise causal attention (CPU).

    python benchmarks/bench_flex.py [--lengths 1024 4096] [--rounds N] [--budget S]

The tiny preset's attention shape: one sequence, 4 heads, head_dim 32, blocks of h = 128
(L = 256), no position scheme (both sides then do exactly the same attention; a rotary scheme
costs the same on both). Contenders, forward and (where flex has one) forward + backward:

* ``today``  ``causal_attention(q, k, v, NoPosition(), AttentionSpec("blockwise", 128))``:
  query blocks against unfolded key windows, one batched SDPA call (O(n·L));
* ``flex``   ``torch.compile(flex_attention)`` under the block mask built from the same mask
  function (``AttentionSpec.mask()``, :mod:`lexformer.attention.masks`), block-sparse. The
  block mask is built once per length outside the timing, as a model would per pass, and
  compilation happens in the warm-up, so the ratio is the best case for flex.

torch 2.13's FlexAttention has no backward on the CPU (``NotImplementedError``); the
benchmark checks that and then times the forward alone (inference, evaluation).

Ratios (flex / today, below 1: flex faster) are per-round paired medians
(:mod:`_common`). Results: benchmarks/results/bench_flex.json.
"""

from __future__ import annotations

import argparse
import time

import _common as C
import torch

from lexformer.attention import AttentionSpec, causal_attention
from lexformer.positions import NoPosition

H, D, BLOCK = 4, 32, 128


def contenders(T: int) -> dict:
    from torch.nn.attention.flex_attention import create_block_mask, flex_attention

    g = torch.Generator().manual_seed(0)
    q, k, v = (torch.randn(1, H, T, D, generator=g) for _ in range(3))
    qg, kg, vg = (x.clone().requires_grad_(True) for x in (q, k, v))  # the backward's own
    spec = AttentionSpec("blockwise", block=BLOCK)
    rule = spec.mask()
    block_mask = create_block_mask(lambda b, h, qi, ki: rule(qi, ki), None, None, T, T,
                                   device="cpu")
    flex = torch.compile(flex_attention, dynamic=False)
    scheme = NoPosition()

    def today(q=q, k=k, v=v):
        return causal_attention(q, k, v, scheme, spec)

    def flexed(q=q, k=k, v=v):
        return flex(q, k, v, block_mask=block_mask)

    def with_backward(fn):
        def run():
            for x in (qg, kg, vg):
                x.grad = None
            fn(qg, kg, vg).sum().backward()
        return run

    with torch.no_grad():
        t0 = time.perf_counter()
        got = flexed()  # the first call compiles
        compile_s = time.perf_counter() - t0
        want = today()
    torch.testing.assert_close(got, want, rtol=1e-4, atol=1e-5)
    print(f"T = {T}: first flex call (compilation) {compile_s:.1f} s; "
          f"max |flex − today| {float((got - want).abs().max()):.2e}")
    fns = {"today fwd": today, "flex fwd": flexed, "today fwd+bwd": with_backward(today)}
    if _flex_has_backward():
        fns["flex fwd+bwd"] = with_backward(flexed)
    return fns


def _flex_has_backward() -> bool:
    """Probed on the uncompiled function: an exception inside the compiled one would leave
    that frame to run eagerly (and slowly) from then on."""
    from torch.nn.attention.flex_attention import flex_attention

    x = torch.randn(1, 1, 128, 16, requires_grad=True)
    try:
        flex_attention(x, x, x).sum().backward()
    except NotImplementedError as e:  # torch 2.13 on a CPU
        print(f"flex fwd+bwd: {e}")
        return False
    return True


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--lengths", type=int, nargs="+", default=[1024, 4096])
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--budget", type=float, default=40.0, help="seconds per length")
    C.add_threads_arg(ap)
    args = ap.parse_args()
    C.setup(args.threads)
    rows, results = [], {}
    for T in args.lengths:
        fns = contenders(T)
        fwd = {n: f for n, f in fns.items() if n.endswith("fwd")}
        timings = {}
        with torch.no_grad():
            timings.update(C.interleaved(fwd, args.rounds, budget_s=args.budget / 2))
        bwd = {n: f for n, f in fns.items() if n.endswith("bwd")}
        timings.update(C.interleaved(bwd, args.rounds, budget_s=args.budget / 2))
        ratio_f = C.paired_ratio(timings, "flex fwd", "today fwd")
        ratio_b = (C.paired_ratio(timings, "flex fwd+bwd", "today fwd+bwd")
                   if "flex fwd+bwd" in timings else float("nan"))
        rows.append([T, timings["today fwd"]["median_s"] * 1e3, ratio_f,
                     timings["today fwd+bwd"]["median_s"] * 1e3, ratio_b])
        results[T] = {"timings": C.strip_raw(timings), "flex_over_today_fwd": ratio_f,
                      "flex_over_today_fwd_bwd": ratio_b}
    print(C.markdown_table(["T", "today fwd (ms)", "flex/today fwd", "today fwd+bwd (ms)",
                            "flex/today fwd+bwd"], rows))
    path = C.write_results("bench_flex", {"environment": C.environment(), "lengths": results})
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
