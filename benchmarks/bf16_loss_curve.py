"""bf16 autocast on the CPU: its speed-up and its effect on the loss curve.

    python benchmarks/bf16_loss_curve.py [--steps 150] [--position xpos]

Trains the `tiny` preset twice from the same seed on the same batches, fp32 and bf16
autocast, for the first --steps steps of the tiny schedule (same learning-rate curve as the
full run), and prints tokens/s of each, the speed-up, and the training/validation losses side
by side. Runs one after the other (not interleaved), so the speed-up is only as good as the
machine's quiet; the loss comparison is exact.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

from lexformer.presets import from_preset
from lexformer.train import train  # noqa: E402


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--steps", type=int, default=150)
    ap.add_argument("--position", default="xpos")
    ap.add_argument("--out", default=str(Path(__file__).parent / "results" / "bf16_loss.json"))
    args = ap.parse_args()
    runs = {}
    with tempfile.TemporaryDirectory() as tmp:
        for dtype in ("fp32", "bf16"):
            cfg = from_preset("tiny", position=args.position, dtype=dtype,
                                          eval_interval=50)
            t0 = time.perf_counter()
            train(cfg, Path(tmp) / dtype, progress=False, stop_after_steps=args.steps)
            seconds = time.perf_counter() - t0
            lines = [json.loads(x) for x in
                     (Path(tmp) / dtype / "metrics.jsonl").read_text().splitlines()]
            runs[dtype] = {"seconds": seconds,
                           "tokens_per_s": args.steps * cfg.batch_size * cfg.train_length / seconds,
                           "loss": [x["loss"] for x in lines],
                           "val": {x["step"]: x["val_loss"] for x in lines if "val_loss" in x}}
    f, b = runs["fp32"], runs["bf16"]
    print(f"tiny preset, {args.position}, first {args.steps} steps of the schedule")
    print(f"fp32 {f['tokens_per_s']:,.0f} tokens/s, bf16 {b['tokens_per_s']:,.0f} tokens/s: "
          f"bf16 speed-up {b['tokens_per_s'] / f['tokens_per_s']:.2f}x")
    print("| step | train loss fp32 | train loss bf16 | val loss fp32 | val loss bf16 |")
    print("|---|---|---|---|---|")
    for step in sorted(f["val"]):
        i = step - 1
        print(f"| {step} | {f['loss'][i]:.4f} | {b['loss'][i]:.4f} | {f['val'][step]:.4f} | "
              f"{b['val'][step]:.4f} |")
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(runs, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
