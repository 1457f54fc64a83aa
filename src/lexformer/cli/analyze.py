"""``lexformer analyze``: attention resolution of a checkpoint."""

from __future__ import annotations

from pathlib import Path

from ..errors import LexformerError
from .options import (
    HelpFormatter,
    add_placement_options,
    attention_modes,
    check_placement,
    int_list,
)


def add_parser(sub) -> None:
    from ..config import SPLITS

    p = sub.add_parser(
        "analyze", help="attention resolution: analytic curves and a model's measured ŝ[n]",
        description="Attention resolution (paper §2.2 / Eq. 11): the analytic expectation "
                    "curves of RoPE and XPOS, and the checkpoint's expected pre-softmax score "
                    "ŝ[n] by distance at L and 2L with each attention mode, with R(ŝ). "
                    "Writes analysis.json and plots into --out.",
        formatter_class=HelpFormatter)
    p.add_argument("--model", "--checkpoint", dest="checkpoint", required=True,
                   help="a lexformer run or checkpoint folder (attention resolution reads "
                        "lexformer's own XPOS/RoPE models)")
    p.add_argument("--out", required=True, help="folder for analysis.json and the plots")
    p.add_argument("--corpus", help="text to measure on (default: the training corpus)")
    p.add_argument("--split", default="test", choices=list(SPLITS))
    p.add_argument("--attention", type=attention_modes, default=["full", "blockwise"])
    p.add_argument("--lengths", type=int_list, help="default: L,2L")
    p.add_argument("--max-docs", type=int, default=8, help="≥ 1")
    add_placement_options(p)
    p.set_defaults(handler=run)


def check_args(args) -> None:
    """Every problem with the arguments alone, before a model is loaded."""
    from ..fileio import ensure_writable_dir

    if args.max_docs < 1:
        raise LexformerError(f"--max-docs must be at least 1, got {args.max_docs}")
    if args.lengths is not None and (not args.lengths or min(args.lengths) < 2):
        raise LexformerError("--lengths must be integers ≥ 2, e.g. --lengths 64,128")
    ensure_writable_dir(args.out, "--out folder")
    check_placement(args)
    from ..models import check_lexformer_placement

    # analyze reads lexformer checkpoints only; they run on the CPU in float32
    check_lexformer_placement(args.checkpoint, args.device, args.dtype)


def run(args) -> int:
    from ..analysis import (
        AnalysisResult,
        analytic_resolutions,
        analyze_checkpoint,
        expectation_curves,
    )
    from ..checkpoint import load
    from ..evaluate import Label
    from ..fileio import atomic_write_json
    from ..plots import plot_expectation_curves, plot_expected_scores

    check_args(args)
    ckpt = load(args.checkpoint)
    L = ckpt.config.train_length
    lengths = sorted(set(args.lengths or [L, 2 * L]))
    corpus = args.corpus or ckpt.run_meta.corpus_name  # else the corpus it was trained on
    measured = analyze_checkpoint(ckpt, corpus, args.split, lengths, args.attention,
                                  args.max_docs)
    head_dim = ckpt.config.head_dim
    result = AnalysisResult(head_dim, analytic_resolutions(head_dim, [lengths[-1]]),
                            {measured.model: measured})
    # significant digits, not decimals: a trained model's R is of order 1e-4 (about 1/N), which
    # four decimals print as 0.0000 or 0.0001 (the exact values are in analysis.json)
    print(f"{'attention':<10}{'length':>8}{'R(s_hat)':>12}")
    for r in measured.results:
        print(f"{r.attention:<10}{r.length:>8}{r.resolution:>12.4g}")
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    atomic_write_json(out / "analysis.json", result.to_json())
    plot_expectation_curves(out / "expectation_curves.png",
                            expectation_curves(head_dim, max_distance=max(4096, 2 * L)))
    plot_expected_scores(out / "expected_scores.png",
                         {Label(measured.model, a): measured.get(a, lengths[-1]).s_hat
                          for a in args.attention})
    print(f"wrote {out / 'analysis.json'} and plots")
    return 0
