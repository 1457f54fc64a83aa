"""What bf16 costs a pretrained model in perplexity, and what it saves in time, side by side.

    python benchmarks/bench_dtype.py [--model smollm2] [--corpus sword-long] [--tokens 8192]
                                     [--docs 3] [--method full] [--threads T]

The model is loaded twice, in float32 and in bfloat16 (``open_hf_model(dtype=...)``); both
score the first N tokens of the same held-out documents, one document per pass, under the same
method. Printed per dtype: the perplexity, the pass time; then the perplexity ratio bf16 / fp32
with a paired bootstrap interval over blocks of 1,024 targets (the same blocks for both,
``lexformer.prefix_eval``) and the speed ratio. ``extend`` and ``eval`` take bf16 under
``--dtype auto`` where the CPU computes it natively; this is the number that says what that
choice changes.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import _common as C
import numpy as np
import torch

from lexformer.evaluate import evaluation_documents
from lexformer.hf.lm import open_hf_model
from lexformer.prefix_eval import document_losses, prefix_result
from lexformer.stats import resample_indices


def score(model_spec: str, dtype: str, docs, method: str) -> tuple[np.ndarray, float]:
    lm = open_hf_model(model_spec, dtype=dtype)
    lm.token_nll(torch.as_tensor(np.asarray(docs[0][:256], dtype=np.int64))[None], method)
    start = time.perf_counter()
    losses = np.stack([document_losses(lm, torch.as_tensor(np.asarray(d, dtype=np.int64)),
                                       method) for d in docs])
    return losses, time.perf_counter() - start


def ratio_interval(a, b, counts) -> tuple[float, float]:
    """95 % paired bootstrap interval of ppl(a) / ppl(b) over blocks (same blocks for both)."""
    a, b, counts = map(np.asarray, (a, b, counts))
    idx = resample_indices(a.size)
    ratios = np.exp(a[idx].sum(1) / counts[idx].sum(1) - b[idx].sum(1) / counts[idx].sum(1))
    lo, hi = np.percentile(ratios, [2.5, 97.5])
    return float(lo), float(hi)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model", default="smollm2")
    p.add_argument("--corpus", default="sword-long")
    p.add_argument("--tokens", type=int, default=8192)
    p.add_argument("--docs", type=int, default=3)
    p.add_argument("--method", default="full")
    C.add_threads_arg(p)
    p.add_argument("--out", type=Path, default=None, help="also write the figures as JSON")
    args = p.parse_args()
    C.setup(args.threads)
    probe = open_hf_model(args.model)
    docs = evaluation_documents(args.corpus, probe, "test", args.tokens, args.docs)
    del probe
    cells, times = {}, {}
    for dtype in ("fp32", "bf16"):
        losses, times[dtype] = score(args.model, dtype, docs, args.method)
        cells[dtype] = prefix_result(losses, args.tokens)
        print(f"{dtype}: perplexity {cells[dtype].perplexity:.4f} on {len(docs)} × "
              f"{args.tokens} tokens, {times[dtype]:.1f} s")
    a, b = cells["bf16"], cells["fp32"]
    lo, hi = ratio_interval(a.doc_nll, b.doc_nll, a.unit_tokens)
    ratio = a.perplexity / b.perplexity
    print(f"bf16 / fp32 perplexity: {ratio:.4f} (95 % paired interval {lo:.4f} … {hi:.4f}); "
          f"time bf16 / fp32: {times['bf16'] / times['fp32']:.2f}")
    env = C.environment()
    print(f"machine: {env['cpu']}, {env['threads']} threads, torch {env['torch']}, load "
          f"{env['loadavg_1_5_15min'][0]:.1f}, {env['date']}")
    if args.out:
        args.out.write_text(json.dumps({
            "model": args.model, "corpus": args.corpus, "tokens": args.tokens,
            "documents": len(docs), "method": args.method,
            "perplexity": {k: c.perplexity for k, c in cells.items()}, "seconds": times,
            "ratio": ratio, "ratio_ci95": [lo, hi], "environment": env}, indent=2))


if __name__ == "__main__":
    main()
