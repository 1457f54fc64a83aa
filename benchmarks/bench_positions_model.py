"""Cost of each position scheme inside the model: inference forward and training step.

    python benchmarks/bench_positions_model.py [--quick] [--tokens N] [--rounds N]

The same model (4 layers, d_model 256, 8 heads, d_ff 1024, vocab 4096, full causal attention)
with ``absolute`` (sinusoidal), ``rope``, ``xpos`` and ``alibi`` positions, at L = 256 and
4·L = 1024, with the batch chosen so that a step holds ``--tokens`` tokens (8192 by default:
32×256 and 8×1024). Two passes:

* inference: ``model(ids)`` under ``torch.no_grad()`` in eval mode;
* training step: forward, cross-entropy, backward, ``AdamW.step()``.

ALiBi builds its bias once per forward pass and hands it to SDPA's fused CPU kernel with
``is_causal=True``; its training step carries the target alibi/absolute ≤ 1.3
(``bench_alibi.py`` compares it with the previous per-layer path).

All eight (scheme, length) contenders of a pass are timed interleaved; ratios are medians over
rounds of the per-round ratio time(scheme)/time(absolute) (and xpos/rope) at the same length.
"""

from __future__ import annotations

import argparse
import time

import _common as C
import torch

from lexformer import ModelConfig, TransformerLM

SCHEMES = ("absolute", "rope", "xpos", "alibi")
VOCAB = 4096


def build(scheme: str, L: int) -> TransformerLM:
    torch.manual_seed(0)
    cfg = ModelConfig(vocab_size=VOCAB, n_layer=4, n_head=8, d_model=256, d_ff=1024,
                      train_length=256, position=scheme)
    return TransformerLM(cfg)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--tokens", type=int, help="tokens per step (default 8192; quick 1024)")
    ap.add_argument("--rounds-infer", type=int, help="interleaved rounds, inference (default 5)")
    ap.add_argument("--rounds-train", type=int, help="interleaved rounds, training (default 3)")
    ap.add_argument("--lengths", type=int, nargs="+", default=[256, 1024])
    C.add_threads_arg(ap)
    args = ap.parse_args()
    C.setup(args.threads)
    tokens = args.tokens or (1024 if args.quick else 8192)
    rounds = {"inference": args.rounds_infer or 5,
              "train step": args.rounds_train or 3}
    # wall-time caps per pass: past them no new round starts (at least 3 rounds always run)
    budgets = {"inference": 6.0 if args.quick else 40.0,
               "train step": 8.0 if args.quick else 60.0}

    g = torch.Generator().manual_seed(0)
    data = {}
    for T in args.lengths:
        B = max(1, tokens // T)
        ids = torch.randint(0, VOCAB, (B, T + 1), generator=g)
        data[T] = (ids[:, :-1].contiguous(), ids[:, 1:].contiguous())

    models = {(s, T): build(s, T) for s in SCHEMES for T in args.lengths}
    # (training the same instances after inference is fine: inference runs under no_grad)
    opts = {key: torch.optim.AdamW(m.parameters(), lr=1e-4) for key, m in models.items()}

    def infer(key):
        model, (x, _) = models[key], data[key[1]]

        def run():
            model.eval()
            with torch.no_grad():
                model(x)
        return run

    def train(key):
        model, opt, (x, y) = models[key], opts[key], data[key[1]]

        def run():
            model.train()
            loss = model(x, targets=y)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
        return run

    results, rows, summary = {}, [], []
    for pass_name, maker in (("inference", infer), ("train step", train)):
        schemes = SCHEMES
        fns = {f"{s}@{T}": maker((s, T)) for T in args.lengths for s in schemes}
        t0 = time.perf_counter()
        t = C.interleaved(fns, rounds=rounds[pass_name], warmup=1, min_sample_s=0.05,
                          budget_s=budgets[pass_name])
        results[pass_name] = {"timings": C.strip_raw(t), "contention": C.contention(t),
                              "ratios": {}}
        for T in args.lengths:
            ntok = data[T][0].numel()
            for s in schemes:
                key = f"{s}@{T}"
                r_abs = C.paired_ratio(t, key, f"absolute@{T}")
                results[pass_name]["ratios"][key] = {"vs_absolute": r_abs}
                rows.append([pass_name, T, data[T][0].shape[0], s,
                             ntok / t[key]["median_s"], r_abs,
                             C.paired_ratio(t, key, f"rope@{T}") if s == "xpos" else float("nan")])
            xa = C.paired_ratio(t, f"xpos@{T}", f"absolute@{T}")
            xr = C.paired_ratio(t, f"xpos@{T}", f"rope@{T}")
            results[pass_name]["ratios"][f"xpos@{T}"]["vs_rope"] = xr
            if pass_name == "inference":
                summary.append(C.target(f"inference xpos/absolute, T={T}", xa, "<= 1.03",
                                        xa <= 1.03))
            else:
                summary.append(C.target(f"train step xpos/absolute, T={T}", xa, "(info)", None))
            summary.append(C.target(f"{pass_name} xpos/rope, T={T}", xr, "<= 1.01", xr <= 1.01))
            aa = C.paired_ratio(t, f"alibi@{T}", f"absolute@{T}")
            train = pass_name == "train step"
            summary.append(C.target(f"{pass_name} alibi/absolute, T={T}", aa,
                                    "<= 1.3" if train else "(info)",
                                    aa <= 1.3 if train else None))
        print(f"{pass_name}: {time.perf_counter() - t0:.0f} s, contention {C.contention(t)}",
              flush=True)

    table = C.markdown_table(
        ["pass", "T", "batch", "scheme", "tokens/s (median)", "time / absolute", "xpos / rope"],
        rows)
    print("\nPosition-scheme overhead in the model (ratios: per-round paired medians)\n")
    print(table)
    print()
    C.print_summary(summary)
    C.write_results("bench_positions_model", {
        "env": C.environment(), "quick": args.quick, "tokens_per_step": tokens,
        "rounds": rounds, "results": results, "summary": summary, "table": table})


if __name__ == "__main__":
    main()
