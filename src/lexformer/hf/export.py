"""lexformer checkpoints as transformers models: ``lexformer export RUN --format hf OUT``.

:func:`export_hf` writes a folder that ``transformers.AutoModelForCausalLM.from_pretrained``
loads — no remote code: importing this module registers the ``lexformer`` model type with
``AutoConfig`` / ``AutoModelForCausalLM`` (:func:`register`), so any HF tool (``generate``,
pipelines, lm-evaluation-harness) can use a model trained here, in the process that imported
lexformer. The weights are lexformer's own (safetensors); :class:`LexformerForCausalLM` runs
lexformer's :class:`~lexformer.model.TransformerLM` with the attention mode saved in the
config (``full`` or ``blockwise``), so its logits are lexformer's.

``generate`` recomputes the whole sequence at every step (no transformers cache): exact for
both modes, O(n²) over a generation — fine for evaluation harnesses, not for long sampling,
where lexformer's own ``generate`` (with its bounded KV cache) is the tool.
"""

from __future__ import annotations

from pathlib import Path

import torch
from transformers import (
    AutoConfig,
    AutoModelForCausalLM,
    GenerationMixin,
    PretrainedConfig,
    PreTrainedModel,
)
from transformers.modeling_outputs import CausalLMOutput

from ..config import ModelConfig
from ..errors import LexformerError
from ..model import TransformerLM, lm_loss

MODEL_TYPE = "lexformer"
#: lexformer attention modes a causal export can run with
EXPORT_ATTENTION = ("full", "blockwise")


class LexformerConfig(PretrainedConfig):
    """transformers' view of a lexformer model: its :class:`~lexformer.config.ModelConfig`
    as a dict, and the attention mode the exported model runs with."""

    model_type = MODEL_TYPE

    def __init__(self, lexformer_model: dict | None = None, attention: str = "full",
                 **kwargs) -> None:
        self.lexformer_model = dict(lexformer_model or {})
        self.attention = attention
        if self.lexformer_model:
            cfg = ModelConfig.from_dict(self.lexformer_model)
            kwargs.setdefault("vocab_size", cfg.vocab_size)
            kwargs.setdefault("max_position_embeddings", cfg.train_length)
            kwargs.setdefault("hidden_size", cfg.d_model)
            kwargs.setdefault("num_hidden_layers", cfg.n_layer)
            kwargs.setdefault("tie_word_embeddings", cfg.tie_embeddings)
        super().__init__(**kwargs)


class LexformerForCausalLM(PreTrainedModel, GenerationMixin):
    config_class = LexformerConfig
    base_model_prefix = "lm"
    main_input_name = "input_ids"
    _supports_cache_class = False

    def __init__(self, config: LexformerConfig) -> None:
        super().__init__(config)
        if config.attention not in EXPORT_ATTENTION:
            raise LexformerError(f"attention {config.attention!r}: an exported model runs "
                                 f"with one of {', '.join(EXPORT_ATTENTION)}")
        # built on the CPU even inside transformers' meta-device init: the position schemes
        # compute their tables (XPOS's scale bounds) from real numbers when they are built
        with torch.device("cpu"):
            self.lm = TransformerLM(ModelConfig.from_dict(config.lexformer_model))
        if self.lm.config.tie_embeddings:  # one tensor, saved once (transformers v5's form)
            self._tied_weights_keys = {"lm.lm_head.weight": "lm.tok_emb.weight"}
        self.post_init()

    def _init_weights(self, module) -> None:  # the weights come from the checkpoint
        return None

    def get_input_embeddings(self):
        return self.lm.tok_emb if hasattr(self.lm, "tok_emb") else None

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor | None = None,
                labels: torch.Tensor | None = None, **kwargs) -> CausalLMOutput:
        if attention_mask is not None and not bool(attention_mask.all()):
            raise LexformerError("an exported lexformer model takes unpadded inputs only "
                                 "(the attention mask has zeros)")
        logits = self.lm(input_ids, attention=self.config.attention)
        loss = None
        if labels is not None:  # transformers' convention: labels are the inputs, shifted here
            loss = lm_loss(logits[:, :-1], labels[:, 1:])
        return CausalLMOutput(loss=loss, logits=logits)

    def prepare_inputs_for_generation(self, input_ids, attention_mask=None, **kwargs):
        return {"input_ids": input_ids, "attention_mask": attention_mask}


def register() -> None:
    """Make ``AutoConfig`` / ``AutoModelForCausalLM`` know the ``lexformer`` model type
    (idempotent)."""
    try:
        AutoConfig.register(MODEL_TYPE, LexformerConfig)
    except ValueError:  # already registered
        pass
    try:
        AutoModelForCausalLM.register(LexformerConfig, LexformerForCausalLM)
    except ValueError:
        pass


register()


def export_hf(run: str | Path, out: str | Path, attention: str = "full") -> Path:
    """Write the checkpoint at ``run`` as a transformers model folder ``out`` (config,
    safetensors weights, generation config, and the tokenizer where it is BPE)."""
    from ..checkpoint import load
    from ..fileio import ensure_writable_dir

    if attention not in EXPORT_ATTENTION:
        raise LexformerError(f"--attention {attention!r}: choose from "
                             f"{', '.join(EXPORT_ATTENTION)}")
    out = Path(out)
    if out.exists() and any(out.iterdir()):
        raise LexformerError(f"{out} is not empty; export into a new or empty folder "
                             "(nothing was changed)")
    ckpt = load(run)
    model = _as_transformers(ckpt, attention)
    ensure_writable_dir(out, "export folder")
    model.save_pretrained(out)
    _save_tokenizer(ckpt.tokenizer, out)
    return out


def _as_transformers(ckpt, attention: str) -> LexformerForCausalLM:
    if not ckpt.config.causal:
        raise LexformerError("a bidirectional encoder (causal=false) is not a causal LM; "
                             "only causal lexformer models export as AutoModelForCausalLM")
    config = LexformerConfig(lexformer_model=ckpt.config.to_dict(), attention=attention,
                             bos_token_id=None, eos_token_id=None, pad_token_id=None)
    model = LexformerForCausalLM(config)
    model.lm.load_state_dict(ckpt.model.state_dict())
    model.generation_config.use_cache = False
    return model.eval()


def in_memory(run: str | Path, attention: str = "full"):
    """(the exported model, its transformers tokenizer or None) without writing a folder."""
    from ..checkpoint import load

    ckpt = load(run)
    tokenizer = None
    if getattr(ckpt.tokenizer, "kind", None) == "bpe":
        from transformers import PreTrainedTokenizerFast

        tokenizer = PreTrainedTokenizerFast(tokenizer_object=ckpt.tokenizer._tok)
    return _as_transformers(ckpt, attention), tokenizer


def _save_tokenizer(tokenizer, out: Path) -> None:
    """The BPE tokenizer as a transformers fast tokenizer; a byte tokenizer has no
    transformers form, so the folder then holds ids only (said in a README line)."""
    if getattr(tokenizer, "kind", None) != "bpe":
        (out / "README.md").write_text("Exported from lexformer. Its byte-level tokenizer "
                                       "has no transformers form: feed token ids (UTF-8 "
                                       "bytes) directly.\n")
        return
    from transformers import PreTrainedTokenizerFast

    PreTrainedTokenizerFast(tokenizer_object=tokenizer._tok).save_pretrained(out)


__all__ = ["EXPORT_ATTENTION", "LexformerConfig", "LexformerForCausalLM", "export_hf",
           "in_memory", "register"]
