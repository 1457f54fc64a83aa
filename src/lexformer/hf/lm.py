"""A pretrained Hugging Face RoPE model as a :class:`lexformer.lm.LanguageModel`.

Every call runs under one of ``HF_METHODS`` (:func:`lexformer.hf.patch.use_method`) and
restores the model afterwards. Scoring computes logits a slice of positions at a time, so a
32k-token input never holds a (32k × vocabulary) logit tensor; the loss itself is
``lexformer.model.lm_loss``, the library's one cross-entropy.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict
from typing import Any

import torch

from ..errors import LexformerError
from ..lm import PRETRAINED_UP_TO, TokenScores, check_attention, default_lengths
from .methods import HF_METHODS, MethodOptions, get_method, resolve_settings
from .patch import rotary_owner, use_method

#: positions whose logits are computed at once when scoring
LOGIT_SLICE = 1024


class HFLanguageModel:
    """``model`` (a transformers causal LM with rotary attention) under any of HF_METHODS.

    ``context_length`` is the declared context (``max_position_embeddings``); ``options``
    tunes the methods (defaults follow from it).
    """

    def __init__(self, model, tokenizer=None, name: str = "hf",
                 options: MethodOptions | None = None) -> None:
        rotary_owner(model)  # fails clearly for a model without RoPE
        self.model = model.eval()
        self.tokenizer = tokenizer
        self.name = name
        self.options = options or MethodOptions()
        self.context_length = int(model.config.max_position_embeddings)
        if self.context_length < 2:  # every method's defaults (h = L/2, W = L…) derive from it
            raise LexformerError(f"{name} declares a context of {self.context_length} tokens "
                                 "(max_position_embeddings in its config); a model needs at "
                                 "least 2")
        self.attention_methods = tuple(HF_METHODS)
        for method in HF_METHODS:  # bad options fail now, not in the middle of a sweep
            if get_method(method).kind == "window":
                resolve_settings(method, self.context_length, self.options)

    @property
    def device(self) -> torch.device:
        """Where inputs go: the input embedding's device (the first of several when
        accelerate spreads the model; its hooks move activations from there on)."""
        return self.model.get_input_embeddings().weight.device

    @torch.no_grad()
    def token_nll(self, ids: torch.Tensor, attention: str) -> torch.Tensor:
        check_attention(self, attention)
        ids = ids.to(self.device)
        with use_method(self.model, attention, self.options, length=ids.shape[1]):
            hidden = self.model.base_model(input_ids=ids, use_cache=False).last_hidden_state
        head = self.model.get_output_embeddings()
        hidden, targets = hidden[:, :-1], ids[:, 1:]  # the last position predicts nothing
        pieces = [_slice_nll(head(hidden[:, s:s + LOGIT_SLICE]), targets[:, s:s + LOGIT_SLICE])
                  for s in range(0, targets.shape[1], LOGIT_SLICE)]
        return torch.cat(pieces, dim=1) if pieces else torch.zeros(ids.shape[0], 0)

    @torch.no_grad()
    def score(self, ids: torch.Tensor, targets: torch.Tensor, attention: str) -> TokenScores:
        """NLL and correctness of ``targets[:, t]`` as the token after ``ids[:, : t + 1]``
        (:meth:`lexformer.lm.DescribedModel.score`), logits a slice at a time."""
        from ..model import IGNORE_INDEX

        check_attention(self, attention)
        ids, targets = ids.to(self.device), targets.to(self.device)
        with use_method(self.model, attention, self.options, length=ids.shape[1]):
            hidden = self.model.base_model(input_ids=ids, use_cache=False).last_hidden_state
        head = self.model.get_output_embeddings()
        nll, correct = [], []
        for s in range(0, ids.shape[1], LOGIT_SLICE):
            logits = head(hidden[:, s:s + LOGIT_SLICE])
            wanted = targets[:, s:s + LOGIT_SLICE].to(logits.device)
            nll.append(_slice_nll(logits, wanted))
            correct.append(((logits.argmax(dim=-1) == wanted) & (wanted != IGNORE_INDEX)).cpu())
        return TokenScores(torch.cat(nll, dim=1), torch.cat(correct, dim=1))

    def provenance(self) -> dict[str, Any]:
        return {"model": self.name, "checkpoint": None, "step": None, "training_corpus": None,
                "context_length": self.context_length, "causal": True,
                "method_options": asdict(self.options), **self.placement()}

    def placement(self) -> dict[str, Any]:
        """Where the weights are and their dtype: ``device`` (the inputs'), ``devices`` (every
        one holding weights, more than one when accelerate spread the model) and ``dtype``."""
        devices = sorted({str(p.device) for p in self.model.parameters()})
        return {"device": str(self.device), "devices": devices,
                "dtype": str(self.model.dtype).removeprefix("torch.")}

    def default_lengths(self) -> list[int]:
        """L/4 … 2·L of the declared context L (16·L would take days on a CPU)."""
        return default_lengths(self.context_length, up_to=PRETRAINED_UP_TO)

    @torch.no_grad()
    def greedy(self, ids: torch.Tensor, max_new_tokens: int, attention: str) -> torch.Tensor:
        return self._generate(ids, attention, self._greedy_config(max_new_tokens))

    @torch.no_grad()
    def sample(self, ids: torch.Tensor, max_new_tokens: int, attention: str,
               temperature: float = 1.0, top_k: int | None = None,
               generator: torch.Generator | None = None) -> torch.Tensor:
        """Sampled continuation (temperature 0: :meth:`greedy`), through transformers' own
        sampler; seeded from ``generator`` (its seed), the global RNG left as it was."""
        if temperature == 0:
            return self.greedy(ids, max_new_tokens, attention)
        config = self._greedy_config(max_new_tokens)
        config.do_sample, config.temperature, config.top_k = True, temperature, top_k or 0
        seed = generator.initial_seed() if generator is not None else torch.initial_seed()
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            return self._generate(ids, attention, config)

    def _generate(self, ids: torch.Tensor, attention: str, config) -> torch.Tensor:
        check_attention(self, attention)
        ids = ids.to(self.device)
        total = ids.shape[1] + config.max_new_tokens
        with use_method(self.model, attention, self.options, length=total):
            out = self.model.generate(ids, attention_mask=torch.ones_like(ids),
                                      generation_config=config,
                                      cache=self._generation_cache(attention))
        return out[:, ids.shape[1]:].cpu()

    def _generation_cache(self, attention: str):
        """A bounded cache for the window methods that allow one, else None (transformers'
        default, which keeps every key)."""
        if get_method(attention).kind != "window":
            return None
        from .cache import window_cache

        settings = resolve_settings(attention, self.context_length, self.options)
        return window_cache(self.model, settings)

    def _greedy_config(self, max_new_tokens: int):
        """Plain argmax for exactly ``max_new_tokens`` (no stop at end-of-text)."""
        from transformers import GenerationConfig

        own = self.model.generation_config
        pad = own.pad_token_id if own.pad_token_id is not None else own.eos_token_id
        pad = pad[0] if isinstance(pad, list) else pad
        return GenerationConfig(max_new_tokens=max_new_tokens, do_sample=False, use_cache=True,
                                eos_token_id=None, pad_token_id=0 if pad is None else int(pad))

    @property
    def corpus_tokenizer(self):
        """The tokenizer as :func:`lexformer.data.tokenize_corpus` takes it (cached by its
        JSON; no special tokens added), for :func:`lexformer.evaluate.evaluation_documents`."""
        from .tokenizer import corpus_tokenizer

        return corpus_tokenizer(self._need_tokenizer())

    def _need_tokenizer(self):
        if self.tokenizer is None:
            raise LexformerError(f"{self.name} has no tokenizer; cannot encode or decode text")
        return self.tokenizer

    def encode(self, text: str) -> list[int]:
        return list(self._need_tokenizer().encode(text, add_special_tokens=False))

    def decode(self, ids: Sequence[int]) -> str:
        return self._need_tokenizer().decode(list(ids))

    def max_length(self, attention: str) -> int | None:
        """None where the method scores any length; SelfExtend stops where its grouped
        positions would pass L; a RoPE rescaling with a fixed target stops there (each
        method's record says: :meth:`lexformer.hf.methods.HFMethod.longest`)."""
        return get_method(check_attention(self, attention)).longest(self.context_length,
                                                                    self.options)


def _slice_nll(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """Token NLL of one slice of logits, on the CPU (where the callers' statistics live),
    the targets moved to the logits' device (the head's: the last one of a spread model)."""
    from ..model import lm_loss

    return lm_loss(logits, targets.to(logits.device), reduction="none").cpu()


def open_hf_model(spec: str, options: MethodOptions | None = None, cache_dir=None,
                  dtype: torch.dtype | str | None = None,
                  device: str | None = None) -> HFLanguageModel:
    """Load ``spec`` (model folder, ``.gguf`` file, built-in name; ``hf:`` prefix optional)
    on ``device`` in ``dtype`` (:mod:`lexformer.hf.placement`; None: the CPU in float32),
    both checked before anything is fetched or loaded."""
    from .loading import load_pretrained, resolve_source
    from .placement import resolve_placement

    placement = resolve_placement(device, dtype)
    source = resolve_source(spec, cache_dir)
    model, tokenizer = load_pretrained(source, placement.torch_dtype, placement.device_map())
    return HFLanguageModel(model, tokenizer, name=source.name, options=options)


__all__ = ["HFLanguageModel", "open_hf_model"]
