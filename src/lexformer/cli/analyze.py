"""``lexformer analyze``: attention resolution of a checkpoint."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from .options import attention_modes, checkpoint_corpus, int_list


def add_parser(sub) -> None:
    p = sub.add_parser(
        "analyze", help="attention resolution: analytic curves and a model's measured ŝ[n]",
        description="Attention resolution (paper §2.2 / Eq. 11): the analytic expectation "
                    "curves of RoPE and XPOS, and the checkpoint's expected pre-softmax score "
                    "ŝ[n] by distance at L and 2L with each attention mode, with R(ŝ). "
                    "Writes analysis.json and plots into --out.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--checkpoint", required=True)
    p.add_argument("--out", required=True, help="folder for analysis.json and the plots")
    p.add_argument("--corpus", help="text to measure on (default: the training corpus)")
    p.add_argument("--split", default="test", choices=["train", "validation", "test"])
    p.add_argument("--attention", type=attention_modes, default=["full", "blockwise"])
    p.add_argument("--lengths", type=int_list, help="default: L,2L")
    p.add_argument("--max-docs", type=int, default=8)
    p.set_defaults(handler=run)


def run(args) -> int:
    import numpy as np

    from ..evaluate import evaluation_documents
    from ..analysis import analytic_resolution, model_resolution
    from ..checkpoint import load
    from ..plots import plot_expectation_curves, plot_expected_scores

    ckpt = load(args.checkpoint)
    L = ckpt.config.train_length
    lengths = args.lengths or [L, 2 * L]
    corpus = checkpoint_corpus(ckpt, args.corpus)
    docs = evaluation_documents(corpus, ckpt.tokenizer, args.split, max(lengths), args.max_docs)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    result = {"analytic": {name: analytic_resolution(ckpt.config.head_dim, max(lengths), g)
                           for name, g in (("rope", None), ("xpos", 0.4))},
              "model": {}}
    curves = {}
    print(f"{'attention':<10}{'length':>8}{'R(s_hat)':>12}")
    for a in args.attention:
        for n in lengths:
            r = model_resolution(ckpt.model, docs, n, a)
            result["model"][f"{a}@{n}"] = {
                "resolution": float(r["resolution"]),
                "s_hat": [None if not np.isfinite(x) else float(x) for x in r["s_hat"]]}
            curves[f"{ckpt.config.position} / {a} @ {n}"] = r["s_hat"]
            print(f"{a:<10}{n:>8}{r['resolution']:>12.4f}")
    (out / "analysis.json").write_text(json.dumps(result, indent=2))
    plot_expectation_curves(out / "expectation_curves.png", head_dim=ckpt.config.head_dim,
                            max_distance=max(4096, 2 * L))
    plot_expected_scores(out / "expected_scores.png", curves)
    print(f"wrote {out / 'analysis.json'} and plots")
    return 0
