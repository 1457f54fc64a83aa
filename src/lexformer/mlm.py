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

from collections.abc import Sequence
from typing import Any

import numpy as np
import torch

from .config import ModelConfig
from .errors import LexformerError
from .evaluate import MaskedLengthResult, MaskedLMResult, loss_interval
from .model import IGNORE_INDEX

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
# The result types and the loop are the library's one evaluation by length
# (lexformer.evaluate): an encoder is scored on its masked targets through the same protocol
# as a causal model on its next tokens. The names stay importable from here.


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

    ``model``: a masked-LM :class:`~lexformer.model.TransformerLM` (or its
    :class:`~lexformer.lm.LexformerLM`). ``documents`` hold exactly N = max(lengths) tokens
    each; every length must divide N. The documents are masked once
    (:func:`masked_documents`) and cut into standalone chunks of each length
    (:func:`lexformer.evaluate.evaluate_by_length`).
    """
    from .evaluate import check_lengths, evaluate_by_length
    from .lm import LexformerLM

    lm = model if isinstance(model, LexformerLM) else None
    module = lm.model if lm is not None else model
    config = module.config
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
    if int((targets != IGNORE_INDEX).sum()) == 0:
        raise LexformerError("no token of the evaluation documents was masked")
    was_training = module.training
    try:
        return evaluate_by_length(lm or LexformerLM(module), inputs, lengths, attentions,
                                  targets=targets, progress=progress, batch_tokens=batch_tokens)
    finally:
        module.train(was_training)


__all__ = ["EVAL_BATCH_TOKENS", "EVAL_MASK_SEED", "MASK_RATE", "MASK_SPLIT",
           "MaskedBatchSampler", "MaskedLMResult", "MaskedLengthResult", "evaluate_masked_lm",
           "loss_interval", "mask_token_id", "mask_tokens", "masked_documents",
           "masked_training"]
