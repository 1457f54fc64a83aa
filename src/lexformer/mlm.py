"""Masked-language-model objective (BERT-style) for bidirectional models: masking, training
batches, and masked-token loss and accuracy by length (``docs/bidirectional.md``).

Masking, as in BERT (Devlin et al., 2019): every token is chosen with probability 0.15; a
chosen token is replaced by [MASK] 80 % of the time, by a uniformly drawn token 10 % of the
time, and left as it is 10 % of the time. The loss is the cross-entropy of the original token
at the chosen positions only (``IGNORE_INDEX`` elsewhere), so :func:`lexformer.model.lm_loss`
and the model's ``targets=`` path serve both objectives unchanged.

The [MASK] id. lexformer's tokenizers have no special tokens (byte-level BPE and bytes encode
any text losslessly and nothing else), so a masked-LM model gets one id more than its
tokenizer: ``mask_id = tokenizer.vocab_size``, the model's last id (:func:`mask_token_id`).
No text ever encodes to it, so it is never a target and never drawn as a random replacement;
``tokenizer.json`` is saved unchanged, and the checkpoint's ``config.json`` records
``mask_token_id`` beside ``train.objective = "mlm"``.

Determinism. The masks of training step s are drawn from ``numpy.random.default_rng([seed,
s, MASK_STREAM])`` over the whole global batch, and each rank keeps its own rows, like the
window starts of :class:`~lexformer.data.BatchSampler`: a resumed run continues the same
stream, and DDP ranks together see exactly what one process sees. Since ranks and gradient
accumulation micro-steps hold different numbers of masked tokens, the training loss is each
batch's summed NLL divided by the masked tokens of the whole optimizer step
(:meth:`MaskedBatchSampler.loss_scale`), so DDP and ``grad_accum`` give the gradient of the
one-process mean.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from .config import ModelConfig
from .errors import LexformerError
from .model import IGNORE_INDEX, lm_loss

MASK_RATE = 0.15
#: of the chosen tokens: replaced by [MASK], by a random token, left unchanged
MASK_SPLIT = (0.8, 0.1, 0.1)
#: third seed word of the masks' generator, so they never share a stream with the windows
MASK_STREAM = 0x4D4C4D  # "MLM"
#: seed of the masks of the validation windows and of the evaluation documents: the same for
#: every model and every training seed, so their numbers compare the same masked tokens
EVAL_MASK_SEED = 0
#: tokens per forward pass in evaluation; the (batch, length, vocab) float32 logits are
#: materialised (for the accuracy), ~130 MB at a vocabulary of 4,097
EVAL_BATCH_TOKENS = 8192


def mask_token_id(config: ModelConfig) -> int:
    """The [MASK] id of a masked-LM model: its last id (the tokenizer's vocabulary size)."""
    if config.causal:
        raise LexformerError("a causal model has no [MASK] token; masked-LM models are "
                             "trained with lexformer train --objective mlm")
    return config.vocab_size - 1


def mask_tokens(
    tokens: np.ndarray | torch.Tensor,
    mask_id: int,
    vocab_size: int,
    rng: np.random.Generator,
    rate: float = MASK_RATE,
) -> tuple[torch.Tensor, torch.Tensor]:
    """BERT masking of ``tokens`` (B, T): (inputs, targets), both int64 (B, T).

    ``vocab_size``: the text tokens (ids 0 … vocab_size−1) random replacements are drawn from;
    ``mask_id`` lies outside them. Targets hold the original token where one was chosen and
    ``IGNORE_INDEX`` elsewhere. Draws three arrays of ``rng`` in a fixed order.
    """
    tokens = torch.as_tensor(np.asarray(tokens), dtype=torch.int64)
    shape = tuple(tokens.shape)
    chosen = torch.from_numpy(rng.random(shape) < rate)
    action = torch.from_numpy(rng.random(shape))
    random_ids = torch.from_numpy(rng.integers(0, vocab_size, size=shape, dtype=np.int64))
    to_mask = chosen & (action < MASK_SPLIT[0])
    to_random = chosen & (action >= MASK_SPLIT[0]) & (action < MASK_SPLIT[0] + MASK_SPLIT[1])
    inputs = torch.where(to_mask, torch.full_like(tokens, mask_id), tokens)
    inputs = torch.where(to_random, random_ids, inputs)
    targets = torch.where(chosen, tokens, torch.full_like(tokens, IGNORE_INDEX))
    return inputs, targets


class MaskedBatchSampler:
    """Masked-LM batches from a :class:`~lexformer.data.BatchSampler`: the first ``seq_len``
    tokens of each window, masked (module docstring: one mask stream per (seed, step))."""

    def __init__(self, windows, mask_id: int, vocab_size: int, rate: float = MASK_RATE) -> None:
        self.windows, self.mask_id, self.vocab_size, self.rate = windows, mask_id, vocab_size, rate

    @property
    def step(self) -> int:
        return self.windows.step

    def batch_at(self, step: int) -> tuple[torch.Tensor, torch.Tensor]:
        """This rank's (inputs, targets), each (batch_size, seq_len), at ``step``."""
        w = self.windows
        rng = np.random.default_rng([w.seed, int(step), MASK_STREAM])
        # masks for the whole global batch, then this rank's rows (the data rows are the
        # sampler's own slice of the same global batch)
        global_tokens = np.zeros((w.global_batch_size, w.seq_len), dtype=np.int64)
        rows = slice(w.rank * w.batch_size, (w.rank + 1) * w.batch_size)
        global_tokens[rows] = w.batch_at(step)[:, :-1].numpy()
        inputs, targets = mask_tokens(global_tokens, self.mask_id, self.vocab_size, rng,
                                      self.rate)
        return inputs[rows], targets[rows]

    def global_masked(self, step: int) -> int:
        """Masked tokens in the whole global batch of ``step`` (all ranks)."""
        w = self.windows
        rng = np.random.default_rng([w.seed, int(step), MASK_STREAM])
        # the first draw of mask_tokens: which tokens are chosen
        return int((rng.random((w.global_batch_size, w.seq_len)) < self.rate).sum())

    def loss_scale(self, micro_steps: int) -> float:
        """The factor that turns this rank's summed NLL of each of the next ``micro_steps``
        batches into its share of the mean over every masked token of those batches on all
        ranks: world · micro_steps / (masked tokens). DDP averages gradients over ranks and
        the trainer divides by the micro-steps, so the gradient is exactly that of the
        global mean, as in one process with the whole batch."""
        masked = sum(self.global_masked(self.step + i) for i in range(micro_steps))
        return self.windows.world_size * micro_steps / max(masked, 1)

    def next_batch(self) -> tuple[torch.Tensor, torch.Tensor]:
        batch = self.batch_at(self.windows.step)
        self.windows.step += 1
        return batch

    def state_dict(self) -> dict[str, int]:
        return self.windows.state_dict()

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.windows.load_state_dict(state)


def masked_training(sampler, val_windows: torch.Tensor | None, tokenizer_vocab: int):
    """What the trainer swaps in for ``--objective mlm``: the masked sampler, the masked
    validation pair (or None) and the model's vocabulary (the tokenizer's plus [MASK])."""
    mask_id = tokenizer_vocab
    masked = MaskedBatchSampler(sampler, mask_id, tokenizer_vocab)
    val = None
    if val_windows is not None:
        rng = np.random.default_rng([EVAL_MASK_SEED, MASK_STREAM])
        val = mask_tokens(val_windows[:, :-1], mask_id, tokenizer_vocab, rng)
    return masked, val, tokenizer_vocab + 1


# --------------------------------------------------------------------------- evaluation
@dataclass
class MaskedLengthResult:
    """Masked-token loss and accuracy of one model, one attention mode, one length.

    ``doc_nll``, ``doc_correct`` and ``doc_masked`` hold each document's summed NLL, correct
    predictions and masked tokens, for the bootstrap over documents; every length scores the
    same masked tokens of the same documents.
    """

    length: int
    loss: float
    accuracy: float
    masked: int
    documents: int
    loss_ci95: tuple[float, float] | None = None
    doc_nll: tuple[float, ...] = ()
    doc_correct: tuple[int, ...] = ()
    doc_masked: tuple[int, ...] = ()

    def to_json(self) -> dict[str, Any]:
        return {"loss": self.loss, "accuracy": self.accuracy, "masked": self.masked,
                "documents": self.documents,
                "loss_ci95": list(self.loss_ci95) if self.loss_ci95 is not None else None,
                "doc_nll": list(self.doc_nll), "doc_correct": list(self.doc_correct),
                "doc_masked": list(self.doc_masked)}

    @classmethod
    def from_json(cls, length: int | str, data: Mapping[str, Any]) -> MaskedLengthResult:
        ci = data.get("loss_ci95")
        return cls(length=int(length), loss=float(data["loss"]),
                   accuracy=float(data["accuracy"]), masked=int(data["masked"]),
                   documents=int(data["documents"]),
                   loss_ci95=(float(ci[0]), float(ci[1])) if ci else None,
                   doc_nll=tuple(float(x) for x in data.get("doc_nll", ())),
                   doc_correct=tuple(int(x) for x in data.get("doc_correct", ())),
                   doc_masked=tuple(int(x) for x in data.get("doc_masked", ())))


@dataclass
class MaskedLMResult:
    """``results[attention][length]`` of one model, with the weights it measured."""

    model: str
    corpus: str
    split: str
    results: dict[str, dict[int, MaskedLengthResult]]
    step: int | None = None
    seconds: float | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def lengths(self) -> list[int]:
        return sorted({n for per in self.results.values() for n in per})

    def to_json(self) -> dict[str, Any]:
        return {"model": self.model, "corpus": self.corpus, "split": self.split,
                "step": self.step, "seconds": self.seconds, "lengths": self.lengths,
                **self.extra,
                "results": {a: {str(n): r.to_json() for n, r in per.items()}
                            for a, per in self.results.items()}}

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> MaskedLMResult:
        known = {"model", "corpus", "split", "step", "seconds", "lengths", "results"}
        return cls(model=str(data["model"]), corpus=str(data["corpus"]),
                   split=str(data["split"]),
                   results={a: {int(n): MaskedLengthResult.from_json(n, r)
                                for n, r in per.items()}
                            for a, per in data["results"].items()},
                   step=data.get("step"), seconds=data.get("seconds"),
                   extra={k: v for k, v in data.items() if k not in known})


def loss_interval(doc_nll: Sequence[float], doc_masked: Sequence[int],
                  indices: np.ndarray | None) -> tuple[float, float] | None:
    """Percentile bootstrap 95 % interval of Σ nll / Σ masked over documents (None for one
    document: nothing to resample)."""
    if indices is None or len(doc_nll) < 2:
        return None
    nll, masked = np.asarray(doc_nll), np.asarray(doc_masked, dtype=np.float64)
    values = nll[indices].sum(axis=1) / np.maximum(masked[indices].sum(axis=1), 1.0)
    lo, hi = np.percentile(values, [2.5, 97.5])
    return float(lo), float(hi)


@torch.no_grad()
def _score_chunks(model, inputs: torch.Tensor, targets: torch.Tensor, attention: str,
                  batch_tokens: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-chunk summed NLL (float64) and correct predictions over the masked tokens of
    (n, length) chunks, each a standalone sequence."""
    device = next(model.parameters()).device
    per_batch = max(1, batch_tokens // inputs.shape[1])
    nll, correct = [], []
    for i in range(0, len(inputs), per_batch):
        x, t = inputs[i: i + per_batch].to(device), targets[i: i + per_batch].to(device)
        logits = model(x, attention=attention)
        scored = t != IGNORE_INDEX
        nll.append(lm_loss(logits, t, reduction="none").double().sum(dim=1).cpu())
        correct.append(((logits.argmax(dim=-1) == t) & scored).sum(dim=1).cpu())
    return torch.cat(nll), torch.cat(correct)


def masked_documents(documents: Sequence[np.ndarray], mask_id: int, vocab_size: int,
                     seed: int = EVAL_MASK_SEED) -> tuple[torch.Tensor, torch.Tensor]:
    """The documents (each N tokens) masked once: (inputs, targets), each (n_docs, N).

    Masked once at full length and only then cut into chunks, so every evaluation length
    scores the same tokens under the same corruption; only the context around them changes.
    """
    tokens = np.stack([np.asarray(d, dtype=np.int64) for d in documents])
    return mask_tokens(tokens, mask_id, vocab_size, np.random.default_rng([seed, MASK_STREAM]))


def evaluate_masked_lm(
    model,
    documents: Sequence[np.ndarray],
    lengths: Sequence[int],
    attentions: Sequence[str] = ("full", "blockwise"),
    progress: bool = False,
    batch_tokens: int = EVAL_BATCH_TOKENS,
) -> dict[str, dict[int, MaskedLengthResult]]:
    """Masked-token loss and accuracy of an encoder ``{attention: {length: result}}``.

    ``documents`` hold exactly N = max(lengths) tokens each; every length must divide N. The
    documents are masked once (:func:`masked_documents`) and cut into standalone chunks of
    each length.
    """
    from .evaluate import check_lengths
    from .stats import resample_indices

    config = model.config
    mask_id = mask_token_id(config)
    lengths = check_lengths(lengths)
    top = lengths[-1]
    if config.position == "learned" and top > config.train_length:
        raise LexformerError(f"the 'learned' scheme cannot be evaluated past its training "
                             f"length {config.train_length}; got {top}")
    docs = list(documents)
    if not docs or any(len(d) != top for d in docs):
        raise LexformerError(f"every evaluation document must hold exactly {top} tokens")
    inputs, targets = masked_documents(docs, mask_id, mask_id)
    doc_masked = (targets != IGNORE_INDEX).sum(dim=1).numpy()
    if doc_masked.sum() == 0:
        raise LexformerError("no token of the evaluation documents was masked")
    indices = resample_indices(len(docs)) if len(docs) > 1 else None
    was_training = model.training
    model.eval()
    bar = None
    if progress:
        from tqdm.auto import tqdm

        bar = tqdm(total=len(attentions) * len(lengths), desc="mlm eval", leave=False)
    results: dict[str, dict[int, MaskedLengthResult]] = {}
    try:
        for attention in attentions:
            for n in lengths:
                nll, correct = _score_chunks(model, inputs.reshape(-1, n),
                                             targets.reshape(-1, n), attention, batch_tokens)
                doc_nll = nll.reshape(len(docs), top // n).sum(dim=1).numpy()
                doc_correct = correct.reshape(len(docs), top // n).sum(dim=1).numpy()
                total = int(doc_masked.sum())
                results.setdefault(attention, {})[n] = MaskedLengthResult(
                    length=n, loss=float(doc_nll.sum()) / total,
                    accuracy=float(doc_correct.sum()) / total, masked=total,
                    documents=len(docs), loss_ci95=loss_interval(doc_nll, doc_masked, indices),
                    doc_nll=tuple(float(x) for x in doc_nll),
                    doc_correct=tuple(int(x) for x in doc_correct),
                    doc_masked=tuple(int(x) for x in doc_masked))
                if bar is not None:
                    bar.update(1)
    finally:
        if bar is not None:
            bar.close()
        model.train(was_training)
    return results


__all__ = ["EVAL_BATCH_TOKENS", "EVAL_MASK_SEED", "MASK_RATE", "MASK_SPLIT",
           "MaskedBatchSampler", "MaskedLMResult", "MaskedLengthResult", "evaluate_masked_lm",
           "loss_interval", "mask_token_id", "mask_tokens", "masked_documents",
           "masked_training"]
