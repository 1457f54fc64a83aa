"""lexformer's models and methods inside lm-evaluation-harness: the model name ``lexformer``.

    lexformer lm-eval --model lexformer \\
        --model_args pretrained=smollm2,method=blockwise+sinks,max_length=32768 --tasks ...

lm-eval finds models only in its own registry (no plugin entry point for models), so
importing this module registers ``lexformer`` there, and ``lexformer lm-eval ARGS`` is
lm-eval's own command line run after that import; in Python, ``import lexformer.lm_eval_model``
before ``lm_eval.simple_evaluate(model="lexformer", ...)``.

``pretrained``: a Hugging Face model folder, a ``.gguf`` file, ``smollm2`` (all through
lexformer's own loader: offline, no remote code), or a lexformer run or checkpoint (through
:mod:`lexformer.hf.export`, with ``method`` full or blockwise). ``method``: any of
``lexformer.hf.HF_METHODS`` for a pretrained model, applied with
:func:`lexformer.hf.patch_model` for the whole evaluation. ``max_length``: lm-eval cuts every
input to it, so without it no method is run past the model's declared context; the default
is that context. Method knobs: the ``MethodOptions`` fields (``sinks=4,block=2048``...).

Batches: loglikelihood requests (right-padded by lm-eval, no attention mask: causal rows are
exact) batch; ``generate_until`` pads on the left, which the window methods refuse in one line
— use ``batch_size=1`` for generation tasks with them.
"""

from __future__ import annotations

import dataclasses
import sys

from lm_eval.api.registry import register_model
from lm_eval.models.huggingface import HFLM

from .errors import LexformerError

#: model_args that belong to lexformer, not to HFLM
_OWN = ("method",)


def _method_options(kwargs: dict):
    """The MethodOptions fields among ``kwargs`` (removed from it), or None."""
    from .hf.options import MethodOptions

    names = {f.name for f in dataclasses.fields(MethodOptions)}
    picked = {k: int(kwargs.pop(k)) for k in list(kwargs) if k in names}
    return MethodOptions(**picked) if picked else None


def _load(pretrained: str, method: str, options, dtype, device):
    """(transformers model, transformers tokenizer, restore) for ``pretrained``."""
    from .hf.loading import is_hf_spec

    if is_hf_spec(pretrained):
        from .hf import open_hf_model, patch_model

        lm = open_hf_model(pretrained, options=options, dtype=dtype, device=device)
        if method not in lm.attention_methods:
            raise LexformerError(f"method {method!r}: choose from "
                                 + ", ".join(lm.attention_methods))
        restore = patch_model(lm.model, method, options)
        return lm.model, lm.tokenizer, restore
    from .hf.export import EXPORT_ATTENTION, in_memory

    if method not in EXPORT_ATTENTION:
        raise LexformerError(f"method {method!r}: a lexformer checkpoint runs with "
                             + " or ".join(EXPORT_ATTENTION))
    model, tokenizer = in_memory(pretrained, method)
    return model, tokenizer, lambda: None


@register_model("lexformer")
class LexformerHarnessLM(HFLM):
    """lm-eval's HF model class around a model lexformer loaded and patched (module docstring)."""

    def __init__(self, pretrained: str, method: str = "full", max_length: int | None = None,
                 dtype: str | None = None, device: str | None = "cpu", **kwargs) -> None:
        import torch

        options = _method_options(kwargs)
        if str(device).startswith("cuda") and not torch.cuda.is_available():
            device = "cpu"  # lm-eval's own default is cuda:0; a machine without one runs here
        model, tokenizer, self._restore = _load(str(pretrained), method, options, dtype,
                                                device)
        if tokenizer is None:
            raise LexformerError(f"{pretrained} has no tokenizer; lm-eval needs one")
        context = int(model.config.max_position_embeddings)
        special = [tokenizer.bos_token_id, tokenizer.eos_token_id]
        if all(t is None for t in special):  # lm-eval needs a prefix token for empty contexts
            kwargs.setdefault("prefix_token_id", 0)
        super().__init__(pretrained=model, tokenizer=tokenizer, batch_size=kwargs.pop(
            "batch_size", 1), max_length=int(max_length or context), **kwargs)
        self.lexformer_method = method


def main(argv: list[str] | None = None) -> int:
    """``lexformer lm-eval ARGS``: lm-eval's command line with ``lexformer`` registered."""
    from lm_eval.__main__ import cli_evaluate

    sys.argv = ["lm_eval", *(argv if argv is not None else sys.argv[1:])]
    cli_evaluate()
    return 0


__all__ = ["LexformerHarnessLM", "main"]
