"""``lexformer reproduce``: the paper's experiment in one command."""

from __future__ import annotations

import argparse

from .options import int_list, name_list


def add_parser(sub) -> None:
    from ..config import DTYPES
    from ..pipeline import DEFAULT_SCHEMES
    from ..presets import PRESETS

    p = sub.add_parser(
        "reproduce", help="the paper's experiment in one command (train, eval, analyze, report)",
        description="Train every position scheme with the same data and token budget at "
                    "length L (for each of --seeds seeds), evaluate each at L/4 … 16·L with "
                    "full and blockwise attention on the training corpus and on an "
                    "out-of-domain corpus, measure attention resolution, and write report.md "
                    "with plots beside the paper's numbers. Re-running resumes: a finished "
                    "stage is reused only if it was made with the same settings; a model "
                    "trained with other settings is refused, naming what differs.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--preset", default="tiny", choices=sorted(PRESETS))
    p.add_argument("--corpus", default="shakespeare")
    p.add_argument("--out", default="runs/reproduce")
    p.add_argument("--schemes", type=name_list, default=list(DEFAULT_SCHEMES),
                   help="comma-separated position schemes")
    p.add_argument("--lengths", type=int_list,
                   help="comma-separated evaluation lengths (default L/4 … 16·L)")
    p.add_argument("--tokens", type=int, help="training budget per model in tokens")
    p.add_argument("--seed", type=int, default=0, help="first seed")
    p.add_argument("--seeds", type=int, default=1,
                   help="train every scheme with seeds --seed … --seed+N-1; the tables then "
                        "give the mean ± standard deviation over seeds")
    p.add_argument("--ood-corpus", default="auto",
                   help="corpus for the out-of-domain table; auto: milton when training on "
                        "shakespeare, else shakespeare; none: skip that stage")
    p.add_argument("--task-samples", type=int,
                   help="copy-at-a-distance samples per distance and mode (default: 16; 4 for "
                        "the smoke preset); the copy gain's interval narrows as 1/sqrt(N)")
    p.add_argument("--dtype", choices=list(DTYPES))
    p.add_argument("--no-progress", action="store_true")
    p.set_defaults(handler=run)


def run(args) -> int:
    from ..pipeline import ReproduceSettings, run_pipeline

    run_pipeline(ReproduceSettings(
        preset=args.preset, corpus=args.corpus, out=args.out, schemes=args.schemes,
        lengths=args.lengths, tokens=args.tokens, seed=args.seed, seeds=args.seeds,
        dtype=args.dtype, ood_corpus=args.ood_corpus, task_samples=args.task_samples,
        progress=not args.no_progress))
    return 0
