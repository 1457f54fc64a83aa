"""``lexformer train``: train one model at length L.

The options that set the run come from the fields of :class:`lexformer.config.TrainConfig`
(and :class:`~lexformer.config.RuntimeOptions`) that carry option metadata; an option left
out keeps the preset's value.
"""

from __future__ import annotations

from ..presets import from_preset

RUNTIME = "runtime."


def add_parser(sub) -> None:
    from ..config import RuntimeOptions, TrainConfig
    from ..presets import PRESETS
    from .options import HelpFormatter, add_dataclass_options

    p = sub.add_parser(
        "train", help="train one model at length L",
        description="Train a language model with one position scheme on a corpus at the "
                    "preset's training length L. Writes checkpoints (model.safetensors, "
                    "config.json, tokenizer.json, train_state.pt) and metrics.jsonl into --out. "
                    "Ctrl-C saves a checkpoint and exits; --resume continues exactly. Under "
                    "torchrun the same command trains with DDP. --objective mlm trains a "
                    "bidirectional encoder on BERT-style masked tokens, with one id more than "
                    "the tokenizer for [MASK] (docs/bidirectional.md).",
        formatter_class=HelpFormatter)
    p.add_argument("--preset", default="smoke", choices=sorted(PRESETS),
                   help="model size and token budget")
    p.add_argument("--out", required=True, help="run folder")
    p.add_argument("--resume", action="store_true", help="continue the run in --out")
    add_dataclass_options(p, TrainConfig)
    add_dataclass_options(p, RuntimeOptions, RUNTIME)
    p.add_argument("--no-progress", action="store_true", help="no progress bars")
    p.set_defaults(handler=run)


def run(args) -> int:
    from ..config import RuntimeOptions, TrainConfig
    from ..distributed import is_main_process
    from ..train import train
    from .options import overrides_from_args

    overrides = overrides_from_args(args, TrainConfig)
    if overrides.get("objective") == "mlm":  # masked-LM training is for an encoder
        overrides["model.causal"] = False
    cfg = from_preset(args.preset, **overrides)
    runtime = RuntimeOptions(**overrides_from_args(args, RuntimeOptions, RUNTIME),
                             progress=not args.no_progress)
    summary = train(cfg, args.out, resume=args.resume, progress=runtime.progress,
                    device=runtime.device, threads=runtime.threads)
    if not is_main_process():
        return 0
    if summary.already_finished:
        print(f"nothing to do: {summary.out_dir} already finished its {summary.total_steps} "
              f"steps (step {summary.step})")
        return 0
    state = "stopped early (resume with --resume)" if summary.stopped_early else "done"
    loss = "n/a" if summary.loss is None else f"{summary.loss:.4f}"
    print(f"{state}: step {summary.step}/{summary.total_steps}, loss {loss}, "
          f"{summary.tokens_per_s:,.0f} tokens/s, checkpoint in {summary.out_dir}")
    return 0
