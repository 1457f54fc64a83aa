"""``lexformer lm-eval ARGS``: lm-evaluation-harness's own command line, with lexformer's model
``lexformer`` registered (lm-eval has no plugin hook for models). Every argument after
``lm-eval`` goes to lm-eval unchanged."""

from __future__ import annotations

import argparse

from ..errors import LexformerError


def add_parser(sub) -> None:
    p = sub.add_parser(
        "lm-eval", help="run lm-evaluation-harness with lexformer's models and methods",
        description="lm-evaluation-harness's command line with the model 'lexformer' "
                    "registered: --model lexformer --model_args pretrained=PATH_OR_smollm2,"
                    "method=blockwise+sinks,max_length=32768 (--help after lm-eval shows "
                    "lm-eval's own options).", add_help=False)
    p.add_argument("args", nargs=argparse.REMAINDER)
    p.set_defaults(handler=run)


def run(args) -> int:
    try:
        from ..lm_eval_model import main
    except ImportError as e:
        raise LexformerError(f"lexformer lm-eval needs lm-evaluation-harness (pip install "
                             f"'lm-eval==0.4.13'): {e}") from None
    return main(args.args)
