"""``lexformer generate``: sample text from a checkpoint."""

from __future__ import annotations

from ..errors import LexformerError
from .options import HelpFormatter, add_placement_options, check_placement, seed_type


def add_parser(sub) -> None:
    from ..config import ATTENTION_MODES

    p = sub.add_parser("generate", help="sample text from a checkpoint",
                       description="Continue --prompt. --temperature 0 is greedy decoding; "
                                   "--max-new-tokens 0 prints the prompt unchanged.",
                       formatter_class=HelpFormatter)
    p.add_argument("--checkpoint", required=True,
                   help="the model: a lexformer run or checkpoint folder")
    p.add_argument("--prompt", default="\n")
    p.add_argument("--max-new-tokens", type=int, default=200, help="≥ 0")
    p.add_argument("--temperature", type=float, default=0.8, help="≥ 0 (0: greedy)")
    p.add_argument("--top-k", type=int, default=50, help="≥ 1: sample among the k likeliest")
    p.add_argument("--attention", default="blockwise", choices=list(ATTENTION_MODES))
    p.add_argument("--seed", type=seed_type, default=0)
    add_placement_options(p)
    p.set_defaults(handler=run)


def check_args(args) -> None:
    import math

    if args.max_new_tokens < 0:
        raise LexformerError(f"--max-new-tokens must be >= 0, got {args.max_new_tokens}")
    if not math.isfinite(args.temperature) or args.temperature < 0:
        raise LexformerError(f"--temperature must be >= 0 (0 is greedy), got {args.temperature}")
    if args.top_k < 1:
        raise LexformerError(f"--top-k must be at least 1, got {args.top_k}")
    check_placement(args)


def run(args) -> int:
    import torch

    from ..lm import SamplingModel, check_attention, check_causal
    from ..models import open_model

    check_args(args)
    model = check_causal(open_model(args.checkpoint, device=args.device, dtype=args.dtype))
    check_attention(model, args.attention)
    ids = model.encode(args.prompt)
    if not ids:
        raise LexformerError("the prompt encodes to no tokens; give a non-empty --prompt")
    prompt = torch.tensor([ids])
    if isinstance(model, SamplingModel):
        g = torch.Generator().manual_seed(args.seed)
        out = model.sample(prompt, args.max_new_tokens, args.attention, args.temperature,
                           args.top_k, generator=g)[0]
    elif args.temperature == 0:
        out = model.greedy(prompt, args.max_new_tokens, args.attention)[0]
    else:
        raise LexformerError(f"{model.name} supports greedy decoding only: pass --temperature 0")
    print(args.prompt + model.decode(out.tolist()))
    return 0
