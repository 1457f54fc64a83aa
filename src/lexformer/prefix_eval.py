"""Perplexity of long documents read whole: ``lexformer extend``'s protocol.

At length n a document is read as the model would read an n-token input: its first n tokens,
in one sequence, every token after the first scored (n − 1 targets). The paper's protocol
(:mod:`lexformer.evaluate`) instead cuts N tokens into chunks of every length; that costs a
full pass over N tokens per length, and a chunk of n tokens starts with no context at all.

One pass serves every length. For a method whose output at position t depends only on the
tokens up to t — causal, and not on how long the input is — the first n − 1 losses of one pass
over N tokens *are* the losses of a pass over the first n tokens (up to float rounding: the
kernels batch the work differently). Every window method and every rescaling with a factor
fixed before the input is seen is such a method; dynamic NTK (its base follows the input's
length) and the per-length oracle factor are not, and get one pass per length
(:func:`lexformer.hf.rope_scaling.length_dependent`). The tests compare both ways.

Intervals: a document of 64k tokens is one sample of text, and three of them cannot give a
useful interval over documents; so the resampling unit is a block of :data:`UNIT_TOKENS`
consecutive targets (a moving-block bootstrap over the blocks of all documents, every method
resampled with the same blocks at a length, so differences are paired). Blocks treat the
topic shared by the blocks of one document as independent: the intervals are narrower than
an interval over many documents would be, and the report says so.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch

from .evaluate import LengthResult
from .stats import perplexity_interval, resample_indices

#: targets per resampling block (see the module docstring); a power of two, so every
#: length L/4 … 16·L of a model with a power-of-two context is a whole number of blocks
UNIT_TOKENS = 1024
#: what a saved measurement must have been made with to be reused (extend's stage key)
PROTOCOL = f"prefix; one pass per document; blocks of {UNIT_TOKENS} targets"


def unit_bounds(length: int, unit: int = UNIT_TOKENS) -> list[tuple[int, int]]:
    """The target positions [a, b) of each block of an n-token prefix: positions 1 … n − 1
    (position 0 has no context), cut at multiples of ``unit`` (the first block is one
    shorter)."""
    edges = [*range(0, length, unit), length]
    return [(max(1, a), b) for a, b in zip(edges, edges[1:]) if b > max(1, a)]


def prefix_result(losses: np.ndarray, length: int, unit: int = UNIT_TOKENS) -> LengthResult:
    """The cell of ``length`` from per-target losses (n_docs, ≥ length − 1): ``losses[d, t]``
    is the NLL of token t + 1 of document d given the tokens before it."""
    losses = np.asarray(losses, dtype=np.float64)
    bounds = unit_bounds(length, unit)
    sums = [float(losses[d, a - 1:b - 1].sum()) for d in range(len(losses)) for a, b in bounds]
    counts = [b - a for _ in range(len(losses)) for a, b in bounds]
    tokens = sum(counts)
    mean = sum(sums) / tokens
    ci = (perplexity_interval(sums, counts, resample_indices(len(sums)))
          if len(sums) > 1 else None)
    return LengthResult(length=length, perplexity=float(np.exp(mean)), nll=mean, tokens=tokens,
                        documents=len(losses), ci95=ci, doc_nll=tuple(sums),
                        unit_tokens=tuple(counts))


def document_losses(model, ids: torch.Tensor, method: str) -> np.ndarray:
    """Per-target NLL (float64, (len − 1,)) of one document (1-D ids) read in one pass."""
    return model.token_nll(ids[None, :], method)[0].double().cpu().numpy()


def measure_prefixes(model, docs: Sequence[np.ndarray], lengths: Sequence[int], method: str,
                     one_pass: bool, bar=None) -> tuple[dict[int, LengthResult], np.ndarray]:
    """Every length's cell of ``method`` on ``docs`` and the per-target losses of the longest
    pass (n_docs, max(lengths) − 1). ``one_pass``: read each document once at max(lengths)
    and take the prefixes (the method does not depend on the input's length); else one pass
    per length. ``bar``: a progress bar advanced by the tokens read."""
    lengths = sorted(lengths)
    top = lengths[-1]
    tokens = [torch.as_tensor(np.asarray(d[:top], dtype=np.int64)) for d in docs]
    passes = [top] if one_pass else lengths
    losses: dict[int, np.ndarray] = {}
    for n in passes:
        rows = []
        for ids in tokens:
            rows.append(document_losses(model, ids[:n], method))
            if bar is not None:
                bar.update(n)
                bar.set_postfix(length=n)
        losses[n] = np.stack(rows)
    cells = {n: prefix_result(losses[top if one_pass else n], n) for n in lengths}
    return cells, losses[top]


def position_loss(losses: np.ndarray) -> dict[int, float]:
    """Mean NLL of the targets at positions [2^k, 2^(k+1)) (clipped to the sequence), by the
    bin's first position, over every document: where along the input a method degrades."""
    n = losses.shape[1] + 1  # positions 0 … n − 1; position t's loss is losses[:, t − 1]
    out: dict[int, float] = {}
    start = 1
    while start < n:
        end = min(2 * start, n)
        out[start] = float(losses[:, start - 1:end - 1].mean())
        start = end
    return out


__all__ = ["PROTOCOL", "UNIT_TOKENS", "document_losses", "measure_prefixes", "position_loss",
           "prefix_result", "unit_bounds"]
