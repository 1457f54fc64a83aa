"""``lexformer train``: train one model at length L."""

from __future__ import annotations

import argparse


def add_parser(sub) -> None:
    from ..positions import POSITION_SCHEMES
    from ..presets import PRESETS

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
    p.set_defaults(handler=run)


def run(args) -> int:
    from ..train import TrainConfig, train

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
