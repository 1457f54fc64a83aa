"""``lexformer reproduce``: the paper's experiment in one command; ``--objective mlm``: the
bidirectional (encoder) experiment of ``docs/bidirectional.md``."""

from __future__ import annotations

from ..errors import LexformerError
from .options import HelpFormatter, int_list, name_list


def add_parser(sub) -> None:
    from ..config import DTYPES, OBJECTIVES
    from ..experiments.reproduce import DEFAULT_SCHEMES
    from ..presets import PRESETS

    p = sub.add_parser(
        "reproduce", help="the paper's experiment in one command (train, eval, analyze, report)",
        description="Train every position scheme with the same data and token budget at "
                    "length L (for each of --seeds seeds), evaluate each at L/4 … 16·L with "
                    "full and blockwise attention on the training corpus and on an "
                    "out-of-domain corpus, measure attention resolution, and write report.md "
                    "with plots beside the paper's numbers. Re-running resumes: a finished "
                    "stage is reused only if it was made with the same settings; a model "
                    "trained with other settings is refused, naming what differs. "
                    "--objective mlm runs the encoder experiment instead: every scheme trained "
                    "as a bidirectional masked-LM encoder and evaluated by masked-token loss "
                    "and accuracy at L/4 … 16·L, full and blockwise (docs/bidirectional.md).",
        formatter_class=HelpFormatter)
    p.add_argument("--objective", default="clm", choices=list(OBJECTIVES),
                   help="clm: the paper's causal experiment; mlm: bidirectional encoders")
    p.add_argument("--preset", default="tiny", choices=sorted(PRESETS),
                   help="with --objective mlm: smoke or tiny (their encoder versions)")
    p.add_argument("--corpus", default="shakespeare")
    p.add_argument("--out", help="default runs/reproduce, or runs/reproduce-mlm for mlm")
    p.add_argument("--schemes", type=name_list,
                   help="comma-separated position schemes (default "
                        f"{','.join(DEFAULT_SCHEMES)})")
    p.add_argument("--lengths", type=int_list,
                   help="comma-separated evaluation lengths (default L/4 … 16·L)")
    p.add_argument("--tokens", type=int, help="training budget per model in tokens")
    p.add_argument("--seed", type=int, default=0, help="first seed")
    p.add_argument("--seeds", type=int, default=1,
                   help="train every scheme with seeds --seed … --seed+N-1; the tables then "
                        "give the mean ± standard deviation over seeds")
    p.add_argument("--ood-corpus",
                   help="corpus for the out-of-domain table; auto (the default): milton when "
                        "training on shakespeare, else shakespeare; none: skip that stage "
                        "(causal experiment only)")
    p.add_argument("--task-samples", type=int,
                   help="copy-at-a-distance samples per distance and mode (default: 16; 4 for "
                        "the smoke preset); the copy gain's interval narrows as 1/sqrt(N)")
    p.add_argument("--dtype", choices=list(DTYPES))
    p.add_argument("--no-progress", action="store_true")
    p.set_defaults(handler=run)


def run(args) -> int:
    if args.objective == "mlm":
        return run_mlm(args)
    from ..experiments.reproduce import DEFAULT_SCHEMES, ReproduceSettings, run_pipeline
    from ..presets import MLM_PRESETS

    if args.preset in MLM_PRESETS:
        raise LexformerError(f"preset {args.preset} is a masked-LM preset; add --objective mlm")
    run_pipeline(ReproduceSettings(
        preset=args.preset, corpus=args.corpus, out=args.out or "runs/reproduce",
        schemes=list(DEFAULT_SCHEMES) if args.schemes is None else args.schemes,
        lengths=args.lengths, tokens=args.tokens, seed=args.seed, seeds=args.seeds,
        dtype=args.dtype, ood_corpus=args.ood_corpus or "auto", task_samples=args.task_samples,
        progress=not args.no_progress))
    return 0


def run_mlm(args) -> int:
    """``--objective mlm``: the encoder experiment (lexformer.experiments.encoder)."""
    from ..experiments.encoder import MLM_SCHEMES, MLMSettings, run_mlm_pipeline

    unsupported = [flag for flag, given in (("--seeds", args.seeds != 1),
                                            ("--ood-corpus", args.ood_corpus is not None),
                                            ("--task-samples", args.task_samples is not None))
                   if given]
    if unsupported:
        raise LexformerError(f"{', '.join(unsupported)}: causal experiment only; "
                             "--objective mlm trains one seed per scheme and measures "
                             "masked-token loss")
    run_mlm_pipeline(MLMSettings(
        preset=args.preset, corpus=args.corpus, out=args.out or "runs/reproduce-mlm",
        schemes=list(MLM_SCHEMES) if args.schemes is None else args.schemes,
        lengths=args.lengths, tokens=args.tokens, seed=args.seed, dtype=args.dtype,
        progress=not args.no_progress))
    return 0
