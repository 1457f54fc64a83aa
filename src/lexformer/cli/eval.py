"""``lexformer eval``: perplexity by length, with and without blockwise attention."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from .options import attention_modes, checkpoint_corpus, int_list


def add_parser(sub) -> None:
    p = sub.add_parser(
        "eval", help="perplexity by length, with and without blockwise attention",
        description="Evaluate a checkpoint with the paper's protocol: documents of at least "
                    "max(lengths) tokens, their first max(lengths) tokens split into chunks of "
                    "each length, perplexity per (attention, length).",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--checkpoint", required=True, help="run or checkpoint folder")
    p.add_argument("--corpus", help="corpus to evaluate on (default: the training corpus)")
    p.add_argument("--split", default="test", choices=["train", "validation", "test"])
    p.add_argument("--lengths", type=int_list, help="comma-separated lengths "
                   "(default: L/4 … 16·L in powers of two)")
    p.add_argument("--attention", type=attention_modes, default=["full", "blockwise"],
                   help="attention modes: full, blockwise, sliding")
    p.add_argument("--max-docs", type=int, help="use at most this many documents")
    p.add_argument("--json", help="write the results as JSON here")
    p.add_argument("--no-progress", action="store_true")
    p.set_defaults(handler=run)


def run(args) -> int:
    from ..evaluate import (
        check_lengths,
        default_lengths,
        evaluate_perplexity,
        evaluation_documents,
        format_table,
    )
    from ..checkpoint import load

    ckpt = load(args.checkpoint)
    lengths = check_lengths(args.lengths or default_lengths(ckpt.config.train_length),
                            ckpt.model)
    corpus = checkpoint_corpus(ckpt, args.corpus)
    docs = evaluation_documents(corpus, ckpt.tokenizer, args.split, lengths[-1], args.max_docs)
    results = evaluate_perplexity(ckpt.model, docs, lengths, args.attention,
                                  progress=not args.no_progress)
    print(format_table(results, title=ckpt.config.position))
    if args.json:
        out = {"checkpoint": str(ckpt.path), "corpus": corpus, "split": args.split,
               "results": {a: {str(n): v for n, v in per.items()} for a, per in results.items()}}
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json).write_text(json.dumps(out, indent=2))
    return 0
