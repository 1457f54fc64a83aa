"""``lexformer extend``: length-extension methods compared on a pretrained model. The
options are the fields of :class:`lexformer.experiments.extend.ExtendSettings`."""

from __future__ import annotations

from .options import HelpFormatter, add_dataclass_options, overrides_from_args


def add_parser(sub) -> None:
    from ..experiments.extend import ExtendSettings

    p = sub.add_parser(
        "extend", help="compare length-extension methods on a pretrained model",
        description="Perplexity of a pretrained model (default: SmolLM2-135M) by length under "
                    "several length-extension methods, one resumable stage per method "
                    "(OUT/eval/<method>.json, reused only when the settings match), then "
                    "OUT/report.md with the table, a plot, time and memory per method.",
        formatter_class=HelpFormatter)
    add_dataclass_options(p, ExtendSettings, show_defaults=True)
    p.set_defaults(handler=run)


def run(args) -> int:
    from ..experiments.extend import ExtendSettings, run_extend

    print(run_extend(ExtendSettings(**overrides_from_args(args, ExtendSettings))))
    return 0
