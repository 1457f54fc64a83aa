"""``lexformer reproduce``: the paper's experiment in one command; ``--objective mlm``: the
bidirectional (encoder) experiment of ``docs/bidirectional.md``. The options are the fields
of the experiments' settings (:class:`lexformer.experiments.common.TrainedSettings`); an
option left out keeps the chosen experiment's default."""

from __future__ import annotations

from ..errors import LexformerError
from .options import HelpFormatter, add_dataclass_options, overrides_from_args


def add_parser(sub) -> None:
    from ..config import OBJECTIVES
    from ..experiments.encoder import MLMSettings
    from ..experiments.reproduce import ReproduceSettings

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
    add_dataclass_options(p, ReproduceSettings, show_defaults=True)
    add_dataclass_options(p, MLMSettings, show_defaults=True)
    p.set_defaults(handler=run)


def run(args) -> int:
    if args.objective == "mlm":
        return run_mlm(args)
    from ..experiments.reproduce import ReproduceSettings, run_pipeline
    from ..presets import MLM_PRESETS

    settings = ReproduceSettings(**overrides_from_args(args, ReproduceSettings))
    if settings.preset in MLM_PRESETS:
        raise LexformerError(f"preset {settings.preset} is a masked-LM preset; add "
                             "--objective mlm")
    run_pipeline(settings)
    return 0


def run_mlm(args) -> int:
    """``--objective mlm``: the encoder experiment (lexformer.experiments.encoder)."""
    from ..experiments.encoder import MLMSettings, run_mlm_pipeline

    run_mlm_pipeline(MLMSettings(**overrides_from_args(args, MLMSettings)))
    return 0
