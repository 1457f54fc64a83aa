"""``lexformer generate``: continue a prompt with a lexformer checkpoint or a pretrained model,
under any of the model's attention methods."""

from __future__ import annotations

from ..errors import LexformerError
from .options import HelpFormatter, add_placement_options, check_placement, seed_type


def add_parser(sub) -> None:
    p = sub.add_parser("generate", help="continue a prompt (lexformer or pretrained model)",
                       description="Continue --prompt. --temperature 0 is greedy decoding; "
                                   "--max-new-tokens 0 prints the prompt unchanged. Every "
                                   "option is checked before the model loads.",
                       formatter_class=HelpFormatter)
    p.add_argument("--model", "--checkpoint", dest="checkpoint", required=True,
                   help="a lexformer run or checkpoint folder, a Hugging Face model folder, a "
                        ".gguf file, or smollm2")
    p.add_argument("--prompt", default="\n")
    p.add_argument("--max-new-tokens", type=int, default=200, help="≥ 0")
    p.add_argument("--temperature", type=float, default=0.8, help="≥ 0 (0: greedy)")
    p.add_argument("--top-k", type=int, default=50, help="≥ 1: sample among the k likeliest")
    p.add_argument("--attention", default=None, metavar="METHOD",
                   help="an attention method of the model (lexformer: "
                        f"{', '.join(_lexformer_modes())}; pretrained: any of lexformer.hf's "
                        "methods, e.g. full, sinks, blockwise+sinks, yarn; default: blockwise "
                        "for a lexformer model, full for a pretrained one)")
    p.add_argument("--seed", type=seed_type, default=0)
    add_placement_options(p)
    p.set_defaults(handler=run)


def _lexformer_modes() -> list[str]:
    from ..config import ATTENTION_MODES

    return list(ATTENTION_MODES)


def check_args(args) -> None:
    import math

    from ..hf.methods import HF_METHODS

    if args.max_new_tokens < 0:
        raise LexformerError(f"--max-new-tokens must be >= 0, got {args.max_new_tokens}")
    if not math.isfinite(args.temperature) or args.temperature < 0:
        raise LexformerError(f"--temperature must be >= 0 (0 is greedy), got {args.temperature}")
    if args.top_k < 1:
        raise LexformerError(f"--top-k must be at least 1, got {args.top_k}")
    known = [*_lexformer_modes(), *(m for m in HF_METHODS if m not in _lexformer_modes())]
    if args.attention is not None and args.attention not in known:
        raise LexformerError(f"unknown attention method {args.attention!r}; choose from "
                             + ", ".join(known))
    check_placement(args)


def run(args) -> int:
    import torch

    from ..lm import SamplingModel, check_attention, check_causal
    from ..models import open_model

    check_args(args)
    model = check_causal(open_model(args.checkpoint, device=args.device, dtype=args.dtype))
    if args.attention is None:  # the paper's mode for lexformer's own, the model as is else
        from ..hf.lm import HFLanguageModel

        args.attention = "full" if isinstance(model, HFLanguageModel) else "blockwise"
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
