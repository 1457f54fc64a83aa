"""``lexformer eval``: perplexity by length, with and without blockwise attention."""

from __future__ import annotations

import argparse
from pathlib import Path

from ..errors import LexformerError
from .eval_tasks import PERPLEXITY, add_task_options, check_task_args, plan_tasks, run_planned_tasks
from .options import (
    HelpFormatter,
    add_placement_options,
    check_placement,
    int_list,
    name_list,
)

#: the corpus a model without a training corpus (a pretrained one) is evaluated on
PRETRAINED_DEFAULT_CORPUS = "shakespeare"


def add_parser(sub) -> None:
    from ..config import ALL_SPLIT, EVAL_SPLITS

    p = sub.add_parser(
        "eval", help="perplexity by length, with and without blockwise attention",
        description="Evaluate a model with the paper's protocol: documents of at least "
                    "max(lengths) tokens, their first max(lengths) tokens split into chunks of "
                    "each length, perplexity per (attention, length) with a 95 % paired-"
                    "bootstrap interval over documents (printed as ± half its width). "
                    "--task adds (or replaces it with) the context-use tasks: loss by position, "
                    "copy at a distance, passkey retrieval.",
        formatter_class=HelpFormatter)
    p.add_argument("--model", "--checkpoint", dest="model", required=True,
                   help="the model: a lexformer run or checkpoint folder, a Hugging Face model "
                        "folder, a .gguf file, or smollm2 (--checkpoint is the same option)")
    p.add_argument("--method-options", type=method_options_type, metavar="NAME=N,...",
                   help="knobs of the attention methods, e.g. block=2048,window=4096,sinks=4 "
                        "(see lexformer.hf.MethodOptions); a lexformer model takes block (h "
                        "of blockwise) and window (W of sliding)")
    p.add_argument("--corpus", help="corpus to evaluate on (default: the training corpus; "
                   f"{PRETRAINED_DEFAULT_CORPUS} for a pretrained model)")
    p.add_argument("--split", choices=list(EVAL_SPLITS),
                   help=f"the documents to score (default: test for a built-in corpus or the "
                        f"model's training corpus; {ALL_SPLIT} for --corpus PATH: every file or "
                        f".jsonl record of yours whole, none cut into parts)")
    p.add_argument("--lengths", type=int_list, help="comma-separated lengths "
                   "(default: L/4 … 16·L in powers of two; L/4 … 2·L for a pretrained model)")
    p.add_argument("--attention", type=name_list, default=["full", "blockwise"],
                   help="comma-separated attention methods the model offers (lexformer: full, "
                        "blockwise, sliding; pretrained: the lexformer.hf.HF_METHODS names)")
    p.add_argument("--max-docs", type=int, help="use at most this many documents (≥ 1)")
    p.add_argument("--json", help="write the results as JSON here")
    p.add_argument("--no-progress", action="store_true")
    add_placement_options(p)
    add_task_options(p)
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
    if args.corpus and args.split:  # `all` on a built-in corpus, before a model is loaded
        from ..data import check_split

        check_split(args.corpus, args.split)
    if args.method_options is not None:  # before a pretrained model is downloaded or loaded
        from ..hf.methods import check_option_values

        check_option_values(args.method_options)
    check_placement(args)
    check_task_args(args)


def method_options_type(text: str):
    """argparse type of --method-options (shared with ``lexformer extend``)."""
    from ..hf.methods import parse_method_options

    try:
        return parse_method_options(text)
    except LexformerError as e:
        raise argparse.ArgumentTypeError(str(e)) from None


def training_corpus(model, override: str | None) -> str:
    """--corpus, else the corpus the model was trained on; a model that records none (a
    pretrained one) is evaluated on PRETRAINED_DEFAULT_CORPUS, whose test split holds the
    long documents the protocol needs."""
    from ..lm import model_provenance

    if override:
        return override
    provenance = model_provenance(model)
    if provenance.get("checkpoint") and not provenance.get("training_corpus"):
        raise LexformerError(f"{model.name} does not record a training corpus; pass --corpus")
    return provenance.get("training_corpus") or PRETRAINED_DEFAULT_CORPUS


def evaluation_split(args, corpus: str) -> str:
    """--split, else every document whole for the user's files given by --corpus, else the
    held-out test split (a model's own training corpus: its train part was trained on)."""
    from ..data import default_split

    if args.split:
        return args.split
    return default_split(corpus) if args.corpus else "test"


def open_checked_model(args):
    """The model of --model with every --attention name checked against the methods it
    offers (one line naming them otherwise), before any evaluation work."""
    from ..lm import check_attention, check_causal
    from ..models import open_model

    if not args.attention:
        raise LexformerError("--attention names no method")
    model = check_causal(open_model(args.model, args.method_options, device=args.device,
                                    dtype=args.dtype))
    for attention in args.attention:
        check_attention(model, attention)
    return model


def _default_lengths(model) -> list[int]:
    """L/4 … 16·L for a model trained here; L/4 … 2·L for a pretrained one, whose context runs
    to thousands of tokens: 16× it would take days on a CPU (each model's own rule)."""
    from ..lm import model_default_lengths

    return model_default_lengths(model)


def _placement(provenance: dict) -> dict:
    """The device and dtype a pretrained model ran on (a lexformer one records none)."""
    return {k: provenance[k] for k in ("device", "devices", "dtype") if k in provenance}


def run(args) -> int:
    from ..evaluate import check_lengths, evaluate_model, format_table
    from ..fileio import atomic_write_json
    from ..lm import model_provenance

    check_args(args)
    model = open_checked_model(args)
    lengths = check_lengths(args.lengths if args.lengths is not None
                            else _default_lengths(model), model, args.attention)
    provenance = model_provenance(model)
    corpus = training_corpus(model, args.corpus)
    args.split = evaluation_split(args, corpus)
    tasks = plan_tasks(args, model, corpus, lengths[-1])  # checks every task before any work
    output = {"model": model.name, "corpus": corpus, "split": args.split,
              "checkpoint": provenance.get("checkpoint") or args.model,
              "step": provenance.get("step")}
    if PERPLEXITY in args.task:
        result = evaluate_model(model, corpus, args.split, lengths,
                                args.attention, max_docs=args.max_docs,
                                progress=not args.no_progress,
                                checkpoint=output["checkpoint"], step=output["step"])
        print(format_table(result.results, title=model.name))
        print("± is half the width of the 95 % paired-bootstrap interval over "
              f"{result.results[args.attention[0]][lengths[-1]].documents} documents")
        output = result.to_json()
    output.update(_placement(provenance))
    if tasks is not None:
        output.update(run_planned_tasks(args, model, tasks))
    if args.json:
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        atomic_write_json(args.json, output)
    return 0
