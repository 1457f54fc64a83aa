"""``lexformer generate``: sample text from a checkpoint."""

from __future__ import annotations

import argparse

from ..errors import LexformerError


def add_parser(sub) -> None:
    p = sub.add_parser("generate", help="sample text from a checkpoint",
                       formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--checkpoint", required=True)
    p.add_argument("--prompt", default="\n")
    p.add_argument("--max-new-tokens", type=int, default=200)
    p.add_argument("--temperature", type=float, default=0.8)
    p.add_argument("--top-k", type=int, default=50)
    p.add_argument("--attention", default="blockwise", choices=["full", "blockwise", "sliding"])
    p.add_argument("--seed", type=int, default=0)
    p.set_defaults(handler=run)


def run(args) -> int:
    import torch

    from ..checkpoint import load
    from ..generate import generate

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
