"""``lexformer eval``: perplexity by length, with and without blockwise attention."""

from __future__ import annotations

import argparse
from pathlib import Path

from ..errors import LexformerError
from .options import attention_modes, int_list


def add_parser(sub) -> None:
    from ..config import SPLITS

    p = sub.add_parser(
        "eval", help="perplexity by length, with and without blockwise attention",
        description="Evaluate a model with the paper's protocol: documents of at least "
                    "max(lengths) tokens, their first max(lengths) tokens split into chunks of "
                    "each length, perplexity per (attention, length) with a 95 %% paired-"
                    "bootstrap interval over documents (printed as ± half its width).",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--checkpoint", required=True,
                   help="the model: a lexformer run or checkpoint folder")
    p.add_argument("--corpus", help="corpus to evaluate on (default: the training corpus)")
    p.add_argument("--split", default="test", choices=list(SPLITS))
    p.add_argument("--lengths", type=int_list, help="comma-separated lengths "
                   "(default: L/4 … 16·L in powers of two)")
    p.add_argument("--attention", type=attention_modes, default=["full", "blockwise"],
                   help="attention modes: full, blockwise, sliding")
    p.add_argument("--max-docs", type=int, help="use at most this many documents (≥ 1)")
    p.add_argument("--json", help="write the results as JSON here")
    p.add_argument("--no-progress", action="store_true")
    p.set_defaults(handler=run)


def check_args(args) -> None:
    """Every problem with the arguments alone, before a model is loaded."""
    from ..evaluate import check_lengths
    from ..fileio import ensure_writable_file

    if args.max_docs is not None and args.max_docs < 1:
        raise LexformerError(f"--max-docs must be at least 1, got {args.max_docs}")
    if args.lengths is not None:
        check_lengths(args.lengths)
    if args.json:
        ensure_writable_file(args.json, "--json file")


def training_corpus(model, override: str | None) -> str:
    """--corpus, else the corpus the model was trained on."""
    if override:
        return override
    corpus = getattr(model, "training_corpus", None)
    if not corpus:
        raise LexformerError(f"{model.name} does not record a training corpus; pass --corpus")
    return corpus


def run(args) -> int:
    from ..evaluate import check_lengths, default_lengths, evaluate_model, format_table
    from ..fileio import atomic_write_json
    from ..models import open_model

    check_args(args)
    model = open_model(args.checkpoint)
    lengths = check_lengths(args.lengths if args.lengths is not None
                            else default_lengths(model.context_length), model, args.attention)
    checkpoint = getattr(model, "checkpoint", None)
    result = evaluate_model(model, training_corpus(model, args.corpus), args.split, lengths,
                            args.attention, max_docs=args.max_docs,
                            progress=not args.no_progress,
                            checkpoint=str(checkpoint.path) if checkpoint else args.checkpoint,
                            step=getattr(model, "step", None))
    print(format_table(result.results, title=model.name))
    print("± is half the width of the 95 % paired-bootstrap interval over "
          f"{result.results[args.attention[0]][lengths[-1]].documents} documents")
    if args.json:
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        atomic_write_json(args.json, result.to_json())
    return 0
