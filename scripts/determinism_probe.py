"""What makes two training runs with the same seed differ? Train the ``smoke`` preset under
controlled variations and print the final loss and a hash of the weights for each.

    python scripts/determinism_probe.py [--out runs/determinism] [--dtypes fp32,bf16]

Variations: the same command twice (must be bit-identical), another torch thread count, and
oneDNN capped to an older instruction set (``ONEDNN_MAX_CPU_ISA=AVX``) — a stand-in for a
CPU of another kind, whose kernels round differently. The results and what they mean are in
``docs/reproducibility.md``. Takes a few minutes on 2 cores (10 trainings of ~60 steps).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

VARIATIONS = {
    "2 threads (run A)": {"OMP_NUM_THREADS": "2"},
    "2 threads (run B)": {"OMP_NUM_THREADS": "2"},
    "1 thread": {"OMP_NUM_THREADS": "1"},
    "2 threads, oneDNN ISA <= AVX": {"OMP_NUM_THREADS": "2", "ONEDNN_MAX_CPU_ISA": "AVX"},
}


def weights_hash(run: Path) -> str:
    from safetensors.torch import load_file

    state = load_file(str(run / "checkpoint" / "model.safetensors"))
    digest = hashlib.sha256()
    for name in sorted(state):
        digest.update(state[name].numpy().tobytes())
    return digest.hexdigest()[:16]


def train_once(out: Path, dtype: str, env: dict[str, str]) -> tuple[float, float | None, str]:
    if out.exists():
        shutil.rmtree(out)
    cmd = [sys.executable, "-m", "lexformer", "train", "--preset", "smoke", "--out", str(out),
           "--dtype", dtype, "--no-progress"]
    subprocess.run(cmd, check=True, env=dict(os.environ, **env), capture_output=True)
    last = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()
            if line.strip()][-1]
    return last["loss"], last.get("val_loss"), weights_hash(out)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", default="runs/determinism", help="folder for the runs")
    parser.add_argument("--dtypes", default="fp32,bf16", help="comma-separated: fp32, bf16")
    args = parser.parse_args()
    print(f"{'dtype':<6}{'variation':<32}{'final loss':>12}{'val loss':>10}  weights sha256")
    for dtype in args.dtypes.split(","):
        for i, (name, env) in enumerate(VARIATIONS.items()):
            loss, val, digest = train_once(Path(args.out) / f"{dtype}-{i}", dtype, env)
            print(f"{dtype:<6}{name:<32}{loss:>12.5f}{val or float('nan'):>10.5f}  {digest}",
                  flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
