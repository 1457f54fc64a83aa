"""torch.profiler breakdown of the workloads behind the suite's targets: where time goes.

    python benchmarks/profile_ops.py [train|train_bf16|infer|xpos|xpos_bf16_bwd|generate]
        [--steps N] [--rows N] [--trace out.json]

* ``train``          lexformer training step of bench_train_throughput (batch 8×512, fp32);
* ``train_bf16``     the same under bf16 autocast;
* ``infer``          inference forward of bench_positions_model (xpos, 32×256);
* ``xpos``           XPos(64) on q, k of (1, 8, 4096, 64), fp32, forward and backward;
* ``xpos_bf16_bwd``  the same in bf16;
* ``generate``       40 blockwise decoding steps of bench_generate's small model.

Prints the top ops by self CPU time (2 threads). Absolute times are as noisy as the machine;
the shares are what to read.
"""

from __future__ import annotations

import argparse

import _common as C
import torch
from torch.profiler import ProfilerActivity, profile

from lexformer import ModelConfig, TransformerLM
from lexformer.positions import XPos


def workload(name: str, batch: int):
    g = torch.Generator().manual_seed(0)
    if name in ("train", "train_bf16", "infer"):
        T = 512 if name != "infer" else 256
        B = batch if name != "infer" else 32
        model = TransformerLM(ModelConfig(vocab_size=4096, n_layer=4, n_head=8, d_model=256,
                                          d_ff=1024, train_length=T, position="xpos"))
        ids = torch.randint(0, 4096, (B, T + 1), generator=g)
        x, y = ids[:, :-1], ids[:, 1:]
        if name == "infer":
            model.eval()

            def run():
                with torch.no_grad():
                    model(x)
            return run
        opt = torch.optim.AdamW(model.parameters(), lr=1e-4)

        def run():
            with torch.autocast("cpu", dtype=torch.bfloat16, enabled=name == "train_bf16"):
                loss = model(x, targets=y)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
        return run
    if name in ("xpos", "xpos_bf16_bwd"):
        dtype = torch.bfloat16 if name == "xpos_bf16_bwd" else torch.float32
        q = torch.randn(1, 8, 4096, 64, generator=g).to(dtype).requires_grad_()
        k = torch.randn(1, 8, 4096, 64, generator=g).to(dtype).requires_grad_()
        gq, gk = torch.randn_like(q), torch.randn_like(k)  # cotangents, as bench_xpos_peers
        xp, pos = XPos(64), torch.arange(4096)

        def run():
            q.grad = k.grad = None
            q2, k2 = xp(q, k, pos, pos)
            torch.autograd.backward((q2, k2), (gq, gk))
        return run
    if name == "generate":
        model = TransformerLM(ModelConfig(vocab_size=4096, n_layer=2, n_head=4, d_model=128,
                                          d_ff=512, train_length=256, position="xpos")).eval()
        cache = model.new_cache("blockwise")
        with torch.no_grad():
            model(torch.randint(0, 4096, (1, 1024), generator=g), attention="blockwise",
                  cache=cache)
        tok = torch.zeros(1, 1, dtype=torch.long)

        def run():
            nonlocal tok
            with torch.no_grad():
                for _ in range(40):
                    tok = model(tok, attention="blockwise", cache=cache)[:, -1].argmax(
                        -1, keepdim=True)
        return run
    raise SystemExit(f"unknown workload {name}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("workload", nargs="?", default="train")
    ap.add_argument("--steps", type=int, default=2)
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--rows", type=int, default=25)
    ap.add_argument("--trace", help="also write a Chrome trace here")
    C.add_threads_arg(ap)
    args = ap.parse_args()
    C.setup(args.threads)
    run = workload(args.workload, args.batch)
    run()  # warm-up
    with profile(activities=[ProfilerActivity.CPU], record_shapes=True) as prof:
        for _ in range(args.steps):
            run()
    print(prof.key_averages().table(sort_by="self_cpu_time_total", row_limit=args.rows))
    if args.trace:
        prof.export_chrome_trace(args.trace)


if __name__ == "__main__":
    main()
