"""One interface for every language model that lexformer measures.

Evaluation (perplexity by length), the context-use tasks (loss by position, copy at a
distance, passkey) and the reports talk to a model only through :class:`LanguageModel`, so
the same code measures a model trained here (:class:`LexformerLM`, from a checkpoint) and a
pretrained Hugging Face model (``lexformer.hf``), each under any attention method it offers.

Conventions: token ids are int64 tensors (B, T); ``token_nll`` returns the float32 negative
log-likelihood of ``ids[:, 1:]`` given the tokens before each, shape (B, T - 1). ``score``
is the general form: the NLL of any ``targets`` (B, T) (``IGNORE_INDEX`` where nothing is
scored), so a next-token model (targets: the next tokens) and a masked-LM encoder (targets:
the masked tokens) are measured by the same code (:func:`lexformer.evaluate.evaluate_by_length`).

The models of this library also describe themselves (:class:`DescribedModel`:
``provenance()``, ``default_lengths()``); :func:`model_provenance` and
:func:`model_default_lengths` answer for any other :class:`LanguageModel` too.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, NamedTuple, Protocol, runtime_checkable

import torch

from .errors import LexformerError


@runtime_checkable
class LanguageModel(Protocol):
    """What every measured model offers. ``context_length`` is the length it was trained at
    (L for lexformer models, the declared context for pretrained ones); ``attention_methods``
    are the names accepted by ``attention=`` (the first is the model's own)."""

    name: str
    context_length: int
    attention_methods: tuple[str, ...]

    def token_nll(self, ids: torch.Tensor, attention: str) -> torch.Tensor:
        """(B, T) ids → (B, T - 1) float32 NLL of each next token (no gradient)."""
        ...

    def greedy(self, ids: torch.Tensor, max_new_tokens: int, attention: str) -> torch.Tensor:
        """(1, T) prompt → (1, max_new_tokens) greedily decoded continuation."""
        ...

    def encode(self, text: str) -> list[int]: ...

    def decode(self, ids: Sequence[int]) -> str: ...

    def max_length(self, attention: str) -> int | None:
        """Longest input this method can score (None: unbounded)."""
        ...


class TokenScores(NamedTuple):
    """What :meth:`DescribedModel.score` returns for (B, T) ids and targets."""

    nll: torch.Tensor  #: (B, T) float32 NLL of each target (0 where nothing is scored)
    correct: torch.Tensor  #: (B, T) bool: the argmax prediction is the target


@runtime_checkable
class DescribedModel(LanguageModel, Protocol):
    """A :class:`LanguageModel` that scores any targets and says what it is: every model of
    this library (:class:`LexformerLM`, :class:`lexformer.hf.HFLanguageModel`). Kept apart
    from :class:`LanguageModel` so that a model offering only the core (a test stub, another
    library's wrapper) stays one."""

    def score(self, ids: torch.Tensor, targets: torch.Tensor, attention: str) -> TokenScores:
        """(B, T) ids and targets → per-token NLL and correctness (no gradient)."""
        ...

    def provenance(self) -> dict[str, Any]:
        """What identifies the measured weights: ``model``, ``checkpoint``, ``step``,
        ``training_corpus`` (None where the model records none), ``context_length``..."""
        ...

    def default_lengths(self) -> list[int]:
        """The lengths it is evaluated at when none are asked for."""
        ...


#: sequences per forward pass are grouped so that one batch holds about this many tokens
BATCH_TOKENS = 16384
#: default top length of a pretrained model, in units of its declared context (16× a context
#: of thousands of tokens would take days on a CPU)
PRETRAINED_UP_TO = 2


def default_lengths(train_length: int, up_to: int = 16) -> list[int]:
    """L/4, L/2, L, 2L, … up to ``up_to``·L (16·L: the paper's protocol)."""
    return [train_length * 2 ** k // 4 for k in range(7)
            if train_length * 2 ** k // 4 >= 2 and 2 ** k <= 4 * up_to]


def model_default_lengths(model: LanguageModel) -> list[int]:
    """``model.default_lengths()``; for a model without it, a pretrained model's default
    (L/4 … 2·L of its context)."""
    # the method, not isinstance(DescribedModel): that also asks for every data attribute
    own = getattr(model, "default_lengths", None)
    return own() if own is not None else default_lengths(model.context_length,
                                                         up_to=PRETRAINED_UP_TO)


def model_provenance(model: LanguageModel) -> dict[str, Any]:
    """``model.provenance()``; for a model without it, its name and context only."""
    own = getattr(model, "provenance", None)
    if own is not None:
        return own()
    return {"model": model.name, "checkpoint": None, "step": None, "training_corpus": None,
            "context_length": model.context_length}


def next_token_targets(ids: torch.Tensor) -> torch.Tensor:
    """(B, T) targets of next-token scoring: ``ids[:, t + 1]`` at t, nothing at the last."""
    from .model import IGNORE_INDEX

    targets = torch.full_like(ids, IGNORE_INDEX)
    targets[:, :-1] = ids[:, 1:]
    return targets


def score_sequences(model: LanguageModel, sequences: torch.Tensor, attention: str,
                    batch_tokens: int = BATCH_TOKENS) -> torch.Tensor:
    """(n, T) int64 ids → (n, T - 1) float32 NLL on the CPU, a few sequences per pass: the
    one batching loop behind perplexity and every context-use task."""
    per_batch = max(1, batch_tokens // sequences.shape[1])
    parts = [model.token_nll(sequences[i: i + per_batch], attention).float().cpu()
             for i in range(0, len(sequences), per_batch)]
    return torch.cat(parts)


def check_attention(model: LanguageModel, attention: str) -> str:
    """``attention`` if the model offers it, else one clear error naming what it offers."""
    if attention not in model.attention_methods:
        raise LexformerError(
            f"{model.name} has no attention method {attention!r}; choose from "
            + ", ".join(model.attention_methods))
    return attention


#: why a masked-LM encoder cannot do what needs each token scored from the ones before it
_ENCODER_REFUSAL = (
    "this is a bidirectional masked-LM encoder (causal=false): perplexity, generation and the "
    "context tasks need a causal model; measure it with lexformer.mlm.evaluate_masked_lm or "
    "lexformer reproduce --objective mlm")


class LexformerLM:
    """A lexformer :class:`~lexformer.model.TransformerLM` (with its tokenizer) as a
    :class:`DescribedModel`; attention methods are the model's own modes.

    ``checkpoint`` (a :class:`lexformer.checkpoint.Checkpoint`) is where the weights came from,
    for :meth:`provenance`. ``block`` and ``window`` evaluate the model at another block size h
    of blockwise attention or window W of sliding attention: both are inference-time choices
    that no weight depends on, so the module's config is updated in place. An encoder
    (``causal=False``) is scored through :meth:`score` only.
    """

    def __init__(self, model, tokenizer=None, name: str | None = None,
                 autocast_dtype: torch.dtype | None = None, checkpoint=None,
                 block: int | None = None, window: int | None = None) -> None:
        from .config import ATTENTION_MODES

        self.model = model.eval()
        if block is not None or window is not None:
            model.config = _at_block_and_window(model.config, block, window)
        self.tokenizer = tokenizer
        self.name = name or model.config.position
        self.context_length = model.config.train_length
        self.attention_methods = tuple(ATTENTION_MODES)
        self.autocast_dtype = autocast_dtype
        self.checkpoint = checkpoint

    @classmethod
    def from_checkpoint(cls, path, name: str | None = None, block: int | None = None,
                        window: int | None = None) -> LexformerLM:
        """The model of a run or checkpoint folder (or of a loaded ``Checkpoint``)."""
        from .checkpoint import Checkpoint, load

        ckpt = path if isinstance(path, Checkpoint) else load(path)
        return cls(ckpt.model, ckpt.tokenizer, name=name or ckpt.config.position,
                   checkpoint=ckpt, block=block, window=window)

    @property
    def device(self) -> torch.device:
        return next(self.model.parameters()).device

    @property
    def step(self) -> int | None:
        return self.checkpoint.step if self.checkpoint is not None else None

    def provenance(self) -> dict[str, Any]:
        c, ckpt = self.model.config, self.checkpoint
        return {"model": self.name, "checkpoint": str(ckpt.path) if ckpt else None,
                "step": self.step,
                "training_corpus": ckpt.run_meta.corpus_name if ckpt else None,
                "context_length": self.context_length, "position": c.position,
                "causal": c.causal, "block": c.attention_block, "window": c.attention_window}

    def default_lengths(self) -> list[int]:
        """L/4 … 16·L: the paper's protocol."""
        return default_lengths(self.context_length)

    def _autocast(self):
        import contextlib

        if self.autocast_dtype is None:
            return contextlib.nullcontext()
        return torch.autocast(self.device.type, dtype=self.autocast_dtype)

    def _require_causal(self) -> None:
        if not self.model.config.causal:
            raise LexformerError(_ENCODER_REFUSAL)

    def _nll(self, ids: torch.Tensor, targets: torch.Tensor, attention: str):
        """(logits, (B, T) float32 NLL): the whole chunk in one pass, as the paper's protocol
        scores it (the same as the model's ``targets=`` path)."""
        from .model import lm_loss

        check_attention(self, attention)
        ids, targets = ids.to(self.device), targets.to(self.device)
        with self._autocast():
            logits = self.model(ids, attention=attention)
            return logits, lm_loss(logits, targets, reduction="none")

    @torch.no_grad()
    def token_nll(self, ids: torch.Tensor, attention: str) -> torch.Tensor:
        self._require_causal()
        # the last position's target is ignored, so the pass sees exactly the chunk
        _, nll = self._nll(ids, next_token_targets(ids), attention)
        return nll[:, :-1].float()

    @torch.no_grad()
    def score(self, ids: torch.Tensor, targets: torch.Tensor, attention: str) -> TokenScores:
        from .model import IGNORE_INDEX

        logits, nll = self._nll(ids, targets, attention)
        targets = targets.to(logits.device)
        return TokenScores(nll, (logits.argmax(dim=-1) == targets) & (targets != IGNORE_INDEX))

    @torch.no_grad()
    def greedy(self, ids: torch.Tensor, max_new_tokens: int, attention: str) -> torch.Tensor:
        return self.sample(ids, max_new_tokens, attention, temperature=0.0)

    @torch.no_grad()
    def sample(self, ids: torch.Tensor, max_new_tokens: int, attention: str,
               temperature: float = 1.0, top_k: int | None = None,
               generator: torch.Generator | None = None) -> torch.Tensor:
        """(1, T) prompt → (1, max_new_tokens) sampled continuation (temperature 0: greedy)."""
        from .generate import generate

        self._require_causal()
        check_attention(self, attention)
        out = generate(self.model, ids.to(self.device), max_new_tokens, temperature, top_k,
                       attention=attention, generator=generator)
        return out[:, ids.shape[1]:]

    def _need_tokenizer(self):
        if self.tokenizer is None:
            raise LexformerError(f"{self.name} has no tokenizer; cannot encode or decode text")
        return self.tokenizer

    def encode(self, text: str) -> list[int]:
        return self._need_tokenizer().encode(text)

    def decode(self, ids: Sequence[int]) -> str:
        return self._need_tokenizer().decode(list(ids))

    def max_length(self, attention: str) -> int | None:
        if self.model.config.position == "learned":
            return self.context_length  # learned positions stop at L
        return None


def check_causal(model: LanguageModel) -> LanguageModel:
    """``model`` unless it is a masked-LM encoder (one clear error then): for the measures
    that score each token from the ones before it."""
    if model_provenance(model).get("causal") is False:
        raise LexformerError(_ENCODER_REFUSAL)
    return model


@runtime_checkable
class SamplingModel(Protocol):
    """A model that samples with a temperature, beside greedy decoding (:class:`LexformerLM`)."""

    def sample(self, ids: torch.Tensor, max_new_tokens: int, attention: str,
               temperature: float = 1.0, top_k: int | None = None,
               generator: torch.Generator | None = None) -> torch.Tensor: ...


def _at_block_and_window(config, block: int | None, window: int | None):
    """``config`` with blockwise attention's h and sliding attention's W replaced."""
    import dataclasses

    for option, value in (("block", block), ("window", window)):
        if value is not None and value <= 0:
            raise LexformerError(f"attention option {option} must be positive, got {value}")
    return dataclasses.replace(config, block_size=block or config.block_size,
                               window=window or config.window)


__all__ = ["BATCH_TOKENS", "DescribedModel", "LanguageModel", "LexformerLM", "PRETRAINED_UP_TO",
           "SamplingModel", "TokenScores", "check_attention", "check_causal", "default_lengths",
           "model_default_lengths", "model_provenance", "next_token_targets", "score_sequences"]
