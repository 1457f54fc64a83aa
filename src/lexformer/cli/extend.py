"""``lexformer extend``: length-extension methods compared on a pretrained model."""

from __future__ import annotations

from pathlib import Path

from .eval import method_options_type
from .options import HelpFormatter, int_list, name_list


def add_parser(sub) -> None:
    from ..experiments.extend import (
        DEFAULT_CORPUS,
        DEFAULT_FULL_UP_TO,
        DEFAULT_MAX_DOCS,
        DEFAULT_METHODS,
        DEFAULT_SCALES,
    )

    scales = ", ".join(f"{k:g}" for k in DEFAULT_SCALES)
    p = sub.add_parser(
        "extend", help="compare length-extension methods on a pretrained model",
        description="Perplexity of a pretrained model (default: SmolLM2-135M) by length under "
                    "several length-extension methods, one resumable stage per method "
                    "(OUT/eval/<method>.json, reused only when the settings match), then "
                    "OUT/report.md with the table, a plot, time and memory per method.",
        formatter_class=HelpFormatter)
    p.add_argument("--model", default="smollm2",
                   help="a Hugging Face model folder, a .gguf file, or smollm2")
    p.add_argument("--methods", type=name_list,
                   help="comma-separated attention methods of the model (any of lexformer.hf."
                        f"HF_METHODS; default: {','.join(DEFAULT_METHODS)}, those the model "
                        "offers)")
    p.add_argument("--lengths", type=int_list,
                   help=f"comma-separated lengths (default: the declared context L × {scales})")
    p.add_argument("--corpus", default=DEFAULT_CORPUS, help="corpus of held-out documents")
    p.add_argument("--out", default="runs/extend", help="output folder")
    p.add_argument("--max-docs", type=int, default=DEFAULT_MAX_DOCS,
                   help="documents to evaluate on (the first that hold max(lengths) tokens)")
    p.add_argument("--full-up-to", type=float, default=DEFAULT_FULL_UP_TO,
                   help="run methods that keep every key visible (full, RoPE rescalings, "
                        "self-extend; O(n²)) only up to this multiple of L")
    p.add_argument("--method-options", type=method_options_type, metavar="NAME=N,...",
                   help="knobs of the methods, e.g. block=2048,sinks=4")
    p.add_argument("--no-progress", action="store_true")
    p.set_defaults(handler=run)


def run(args) -> int:
    from ..experiments.extend import ExtendSettings, run_extend

    report = run_extend(ExtendSettings(
        model=args.model, methods=args.methods, lengths=args.lengths, corpus=args.corpus,
        out=Path(args.out), max_docs=args.max_docs, full_up_to=args.full_up_to,
        method_options=args.method_options, progress=not args.no_progress))
    print(report)
    return 0
