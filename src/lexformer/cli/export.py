"""``lexformer export``: a lexformer checkpoint as a model folder other tools load."""

from __future__ import annotations

from ..errors import LexformerError
from .options import HelpFormatter

FORMATS = ("hf",)


def add_parser(sub) -> None:
    p = sub.add_parser(
        "export", help="write a checkpoint as a Hugging Face transformers model folder",
        description="Write RUN (a lexformer run or checkpoint folder) to OUT as a transformers "
                    "model folder: AutoModelForCausalLM.from_pretrained(OUT) loads it in any "
                    "process that has imported lexformer.hf.export (no remote code), with "
                    "lexformer's own logits; generate, pipelines and lm-evaluation-harness "
                    "can then use it.",
        formatter_class=HelpFormatter)
    p.add_argument("run", help="a lexformer run or checkpoint folder")
    p.add_argument("out", help="a new or empty folder")
    p.add_argument("--format", default="hf", choices=FORMATS)
    p.add_argument("--attention", default="full", choices=("full", "blockwise"),
                   help="the attention mode the exported model runs with")
    p.set_defaults(handler=run)


def run(args) -> int:
    from ..checkpoint import resolve_checkpoint_dir

    resolve_checkpoint_dir(args.run)  # a missing run: one line, before transformers loads
    try:
        from ..hf.export import export_hf
    except ImportError as e:
        raise LexformerError(f"export --format hf needs transformers (pip install "
                             f"'lexformer[hf]'): {e}") from None
    print(export_hf(args.run, args.out, attention=args.attention))
    return 0
