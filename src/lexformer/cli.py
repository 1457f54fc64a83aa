"""``lexformer`` command line: a thin layer over the library's typed functions.

Every user error (bad path, unknown name, impossible length) prints one line
``lexformer: error: ...`` and exits with code 2; nothing already on disk is overwritten.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from .errors import LexformerError

EXAMPLES = """\
examples:
  lexformer reproduce                       # the paper's experiment, ~45 min on 2 CPU cores
  lexformer reproduce --preset smoke --out runs/smoke   # the same pipeline in a few minutes
  lexformer train --preset tiny --position xpos --out runs/xpos
  torchrun --nproc_per_node=2 -m lexformer train --preset smoke --out runs/ddp
  lexformer eval --checkpoint runs/xpos --lengths 64,128,256,512,1024 --attention full,blockwise
  lexformer analyze --checkpoint runs/xpos --out runs/xpos/analysis
  lexformer generate --checkpoint runs/xpos --prompt "ROMEO." --max-new-tokens 200
"""


def _ints(text: str) -> list[int]:
    try:
        return [int(x) for x in text.split(",") if x.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"expected comma-separated integers, got {text!r}") from None


def _names(text: str) -> list[str]:
    return [x.strip() for x in text.split(",") if x.strip()]


def _modes(text: str) -> list[str]:
    """Comma-separated attention modes, checked at parse time (before any work)."""
    from .attention import ATTENTION_MODES

    modes = _names(text)
    bad = [m for m in modes if m not in ATTENTION_MODES]
    if bad or not modes:
        raise argparse.ArgumentTypeError(
            f"unknown attention mode(s) {', '.join(bad) or '(none)'}; choose from "
            + ", ".join(ATTENTION_MODES))
    return modes


def _checkpoint_corpus(ckpt, override: str | None) -> str:
    """The corpus to evaluate on: --corpus, else the one the checkpoint was trained on."""
    return override or ckpt.meta.get("corpus", {}).get("name", "shakespeare")


def _add_train(sub) -> None:
    from .positions import POSITION_SCHEMES
    from .presets import PRESETS

    p = sub.add_parser(
        "train", help="train one model at length L",
        description="Train a language model with one position scheme on a corpus at the "
                    "preset's training length L. Writes checkpoints (model.safetensors, "
                    "config.json, tokenizer.json, train_state.pt) and metrics.jsonl into --out. "
                    "Ctrl-C saves a checkpoint and exits; --resume continues exactly. Under "
                    "torchrun the same command trains with DDP.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--preset", default="smoke", choices=sorted(PRESETS),
                   help="model size and token budget")
    p.add_argument("--position", default="xpos", choices=sorted(POSITION_SCHEMES),
                   help="position scheme")
    p.add_argument("--corpus", default="shakespeare",
                   help="built-in corpus (shakespeare, milton, sword) or a path: a .txt file, a "
                        "folder of .txt files, or a .jsonl file with a 'text' field")
    p.add_argument("--out", required=True, help="run folder")
    p.add_argument("--resume", action="store_true", help="continue the run in --out")
    p.add_argument("--tokens", type=int, help="training budget in tokens (overrides preset)")
    p.add_argument("--batch-size", type=int, help="sequences per optimizer step (global)")
    p.add_argument("--grad-accum", type=int, help="micro-steps per optimizer step")
    p.add_argument("--lr", type=float, help="peak learning rate")
    p.add_argument("--schedule", choices=["cosine", "linear", "polynomial"])
    p.add_argument("--train-length", type=int, help="training length L (overrides preset)")
    p.add_argument("--tokenizer", choices=["bpe", "bytes"], help="byte-level BPE or raw bytes")
    p.add_argument("--vocab-size", type=int, help="BPE vocabulary size")
    p.add_argument("--dtype", choices=["auto", "fp32", "bf16"],
                   help="bf16 autocast (auto: bf16 on CUDA, fp32 on CPU)")
    p.add_argument("--compile", action="store_true", help="torch.compile the model")
    p.add_argument("--seed", type=int)
    p.add_argument("--threads", type=int, help="torch CPU threads")
    p.add_argument("--device", help="cpu, cuda, cuda:1 (default: cuda if available)")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")


def _cmd_train(args) -> int:
    from .train import TrainConfig, train

    model = {"train_length": args.train_length} if args.train_length else {}
    cfg = TrainConfig.from_preset(
        args.preset, position=args.position, corpus=args.corpus, tokens=args.tokens,
        batch_size=args.batch_size, grad_accum=args.grad_accum, lr=args.lr,
        schedule=args.schedule, tokenizer=args.tokenizer, vocab_size=args.vocab_size,
        dtype=args.dtype, compile=args.compile or None, seed=args.seed, threads=args.threads,
        model=model)
    summary = train(cfg, args.out, resume=args.resume, progress=not args.no_progress,
                    device=args.device)
    import os

    if int(os.environ.get("RANK", "0")) == 0:
        state = "stopped early (resume with --resume)" if summary["stopped_early"] else "done"
        print(f"{state}: step {summary['step']}/{summary['total_steps']}, loss "
              f"{summary['loss']:.4f}, {summary['tokens_per_s']:,.0f} tokens/s, "
              f"checkpoint in {summary['out_dir']}")
    return 0


def _add_eval(sub) -> None:
    p = sub.add_parser(
        "eval", help="perplexity by length, with and without blockwise attention",
        description="Evaluate a checkpoint with the paper's protocol: documents of at least "
                    "max(lengths) tokens, their first max(lengths) tokens split into chunks of "
                    "each length, perplexity per (attention, length).",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--checkpoint", required=True, help="run or checkpoint folder")
    p.add_argument("--corpus", help="corpus to evaluate on (default: the training corpus)")
    p.add_argument("--split", default="test", choices=["train", "validation", "test"])
    p.add_argument("--lengths", type=_ints, help="comma-separated lengths "
                   "(default: L/4 … 16·L in powers of two)")
    p.add_argument("--attention", type=_modes, default=["full", "blockwise"],
                   help="attention modes: full, blockwise, sliding")
    p.add_argument("--max-docs", type=int, help="use at most this many documents")
    p.add_argument("--json", help="write the results as JSON here")
    p.add_argument("--no-progress", action="store_true")


def default_lengths(train_length: int) -> list[int]:
    """L/4, L/2, L, 2L, 4L, 8L, 16L."""
    return [train_length * 2 ** k // 4 for k in range(7) if train_length * 2 ** k // 4 >= 2]


def _cmd_eval(args) -> int:
    from .checkpoint import load
    from .evaluate import check_lengths, evaluate_perplexity, format_table
    from .reproduce import evaluation_documents

    ckpt = load(args.checkpoint)
    lengths = check_lengths(args.lengths or default_lengths(ckpt.config.train_length),
                            ckpt.model)
    corpus = _checkpoint_corpus(ckpt, args.corpus)
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


def _add_generate(sub) -> None:
    p = sub.add_parser("generate", help="sample text from a checkpoint",
                       formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--checkpoint", required=True)
    p.add_argument("--prompt", default="\n")
    p.add_argument("--max-new-tokens", type=int, default=200)
    p.add_argument("--temperature", type=float, default=0.8)
    p.add_argument("--top-k", type=int, default=50)
    p.add_argument("--attention", default="blockwise", choices=["full", "blockwise", "sliding"])
    p.add_argument("--seed", type=int, default=0)


def _cmd_generate(args) -> int:
    import torch

    from .checkpoint import load
    from .generate import generate

    ckpt = load(args.checkpoint)
    if ckpt.tokenizer is None:
        raise LexformerError(f"{ckpt.path} has no tokenizer.json; cannot encode a prompt")
    ids = ckpt.tokenizer.encode(args.prompt)
    if not ids:
        raise LexformerError("the prompt encodes to no tokens; give a non-empty --prompt")
    g = torch.Generator().manual_seed(args.seed)
    out = generate(ckpt.model, torch.tensor([ids]), args.max_new_tokens, args.temperature,
                   args.top_k, attention=args.attention, generator=g)
    print(ckpt.tokenizer.decode(out[0].tolist()))
    return 0


def _add_analyze(sub) -> None:
    p = sub.add_parser(
        "analyze", help="attention resolution: analytic curves and a model's measured ŝ[n]",
        description="Attention resolution (paper §2.2 / Eq. 11): the analytic expectation "
                    "curves of RoPE and XPOS, and the checkpoint's expected pre-softmax score "
                    "ŝ[n] by distance at L and 2L with each attention mode, with R(ŝ). "
                    "Writes analysis.json and plots into --out.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--checkpoint", required=True)
    p.add_argument("--out", required=True, help="folder for analysis.json and the plots")
    p.add_argument("--corpus", help="text to measure on (default: the training corpus)")
    p.add_argument("--split", default="test", choices=["train", "validation", "test"])
    p.add_argument("--attention", type=_modes, default=["full", "blockwise"])
    p.add_argument("--lengths", type=_ints, help="default: L,2L")
    p.add_argument("--max-docs", type=int, default=8)


def _cmd_analyze(args) -> int:
    import numpy as np

    from .analysis import analytic_resolution, model_resolution
    from .checkpoint import load
    from .plots import plot_expectation_curves, plot_expected_scores
    from .reproduce import evaluation_documents

    ckpt = load(args.checkpoint)
    L = ckpt.config.train_length
    lengths = args.lengths or [L, 2 * L]
    corpus = _checkpoint_corpus(ckpt, args.corpus)
    docs = evaluation_documents(corpus, ckpt.tokenizer, args.split, max(lengths), args.max_docs)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    result = {"analytic": {name: analytic_resolution(ckpt.config.head_dim, max(lengths), g)
                           for name, g in (("rope", None), ("xpos", 0.4))},
              "model": {}}
    curves = {}
    print(f"{'attention':<10}{'length':>8}{'R(s_hat)':>12}")
    for a in args.attention:
        for n in lengths:
            r = model_resolution(ckpt.model, docs, n, a)
            result["model"][f"{a}@{n}"] = {
                "resolution": float(r["resolution"]),
                "s_hat": [None if not np.isfinite(x) else float(x) for x in r["s_hat"]]}
            curves[f"{ckpt.config.position} / {a} @ {n}"] = r["s_hat"]
            print(f"{a:<10}{n:>8}{r['resolution']:>12.4f}")
    (out / "analysis.json").write_text(json.dumps(result, indent=2))
    plot_expectation_curves(out / "expectation_curves.png", head_dim=ckpt.config.head_dim,
                            max_distance=max(4096, 2 * L))
    plot_expected_scores(out / "expected_scores.png", curves)
    print(f"wrote {out / 'analysis.json'} and plots")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="lexformer",
        description="Length-extrapolatable Transformers (XPOS + blockwise causal attention): "
                    "train at length L, evaluate far beyond it, and reproduce the paper.",
        epilog=EXAMPLES, formatter_class=argparse.RawDescriptionHelpFormatter)
    from . import __version__

    parser.add_argument("--version", action="version", version=f"lexformer {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    _add_train(sub)
    _add_eval(sub)
    _add_generate(sub)
    from .reproduce import add_cli as add_reproduce

    add_reproduce(sub)
    _add_analyze(sub)
    return parser


COMMANDS = {"train": _cmd_train, "eval": _cmd_eval, "generate": _cmd_generate,
            "analyze": _cmd_analyze}


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help()
        return 2
    try:
        handler = COMMANDS.get(args.command) or args.handler
        return handler(args) or 0
    except LexformerError as e:
        print(f"lexformer: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("lexformer: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
