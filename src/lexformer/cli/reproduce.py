"""``lexformer reproduce``: the paper's experiment in one command."""

from __future__ import annotations

import argparse

from .options import int_list


def add_parser(sub) -> None:
    from ..presets import PRESETS
    from ..reproduce import DEFAULT_SCHEMES

    p = sub.add_parser(
        "reproduce", help="the paper's experiment in one command (train, eval, analyze, report)",
        description="Train every position scheme with the same data and token budget at "
                    "length L, evaluate each at L/4 … 16·L with full and blockwise attention, "
                    "measure attention resolution, and write report.md with plots beside the "
                    "paper's numbers. Re-running resumes: finished stages are skipped.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--preset", default="tiny", choices=sorted(PRESETS))
    p.add_argument("--corpus", default="shakespeare")
    p.add_argument("--out", default="runs/reproduce")
    p.add_argument("--schemes", default=",".join(DEFAULT_SCHEMES),
                   help="comma-separated position schemes")
    p.add_argument("--lengths", type=int_list,
                   help="comma-separated evaluation lengths (default L/4 … 16·L)")
    p.add_argument("--tokens", type=int, help="training budget per model in tokens")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--dtype", choices=["auto", "fp32", "bf16"])
    p.add_argument("--no-progress", action="store_true")
    p.set_defaults(handler=run)


def run(args) -> int:
    from ..reproduce import reproduce

    reproduce(preset=args.preset, corpus=args.corpus, out=args.out,
              schemes=[s.strip() for s in args.schemes.split(",") if s.strip()],
              lengths=args.lengths, tokens=args.tokens, seed=args.seed, dtype=args.dtype,
              progress=not args.no_progress)
    return 0
