"""Copy at a distance: does the model recover a span of text it saw d tokens earlier?

Each sample is a window of real text (all documents end to end, cut at a seeded offset),
followed by a repeat of a span from inside it::

    [ prefix: P tokens ][ span: k tokens ][ gap: d tokens ][ span again: k tokens ]

The span and the gap are the text that follows the prefix, so the gap is the span's natural
continuation. ``d`` (the *distance*) is the number of tokens between the end of the first
occurrence and the start of the repeat; a token of the repeat is d + k tokens after its
copy. The first occurrence sits after P tokens of context (default L/2) so that it is not
scored with less context than a model normally has; the repeat has the same text before it
plus the span and the gap.

Each sample has a *control*: the same sequence with the first occurrence replaced by another
span of k tokens of the text (drawn from the same seed, not overlapping the copied span), so
the repeat has the same left context in both except for what it could copy.

Scores are mean NLLs over span tokens 2 … k (nothing announces that a repeat starts, so its
first token cannot be copied and is left out): ``loss_first`` of the first occurrence,
``loss_repeat`` of the repeat, ``loss_control`` of the same tokens in the control, and
``gain = 1 − loss_repeat / loss_control`` (ratio of means pooled over the samples). The gain
is exactly 0 when the model does not use the first occurrence (it then scores the repeat the
same in both sequences) and about 1 for an exact copier. Comparing with ``loss_first``
instead, as earlier versions did, reads below 0 for a model that cannot see the span at all:
the repeat follows the gap, not the span's natural left context, so it is harder to predict
than the first occurrence even with nothing copied. Every attention method sees the same
samples (positions depend only on the seed and the distance); the control costs one more
scored sequence per sample.

What to expect under blockwise attention: one layer sees less than L tokens back, so a
one-layer model cannot copy once d + k ≥ L; stacked layers relay information one window per
layer, so a deep model's reach (and its gain) can extend to about n_layer · L.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
import torch

from ..errors import LexformerError
from ..lm import LanguageModel, check_attention
from .results import CopyScore
from .scoring import fits, progress, require_fit, score_sequences, token_pool
from .settings import DEFAULT_SAMPLES, DEFAULT_SPAN, default_distances


def _text_needed(prefix: int, span: int, distance: int) -> int:
    # the window, and room for a control span that does not overlap the copied one (a span
    # start is blocked for 2·span − 1 starts around the copied one)
    return max(prefix + span + distance, 3 * span - 1)


def _require_text(pool_size: int, prefix: int, span: int, distance: int) -> None:
    needed = _text_needed(prefix, span, distance)
    if needed > pool_size:
        raise LexformerError(
            f"copy at distance {distance} needs {needed} tokens of text (prefix {prefix} + span "
            f"{span} + distance, and room for a control span beside the copied one), but the "
            f"documents hold {pool_size}; give more documents or smaller distances")


def _pair(pool: np.ndarray, prefix: int, span: int, distance: int, samples: int,
          seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """(samples, prefix + 2·span + distance) windows plus repeat, and the same rows with each
    first occurrence replaced by a control span: another span of the text, not overlapping
    the copied one."""
    window = prefix + span + distance
    _require_text(len(pool), prefix, span, distance)
    rng = np.random.default_rng([seed, distance])
    starts = rng.integers(0, len(pool) - window + 1, size=samples)
    rows = np.stack([np.concatenate([pool[s: s + window], pool[s + prefix: s + prefix + span]])
                     for s in starts])
    # drawn after the windows, so the windows are those earlier versions scored; a start u
    # past the blocked run [lo, hi] of overlapping starts is shifted over it
    copied = starts + prefix
    lo = np.maximum(0, copied - span + 1)
    hi = np.minimum(len(pool) - span, copied + span - 1)
    blocked = hi - lo + 1
    u = rng.integers(0, len(pool) - span + 1 - blocked)
    controls = rows.copy()
    for row, c in zip(controls, np.where(u < lo, u, u + blocked)):
        row[prefix: prefix + span] = pool[c: c + span]
    return torch.from_numpy(rows), torch.from_numpy(controls)


def copy_sequences(pool: np.ndarray, prefix: int, span: int, distance: int, samples: int,
                   seed: int) -> torch.Tensor:
    """(samples, prefix + 2·span + distance) int64: windows of ``pool`` plus the repeat."""
    return _pair(pool, prefix, span, distance, samples, seed)[0]


def control_sequences(pool: np.ndarray, prefix: int, span: int, distance: int, samples: int,
                      seed: int) -> torch.Tensor:
    """:func:`copy_sequences` with each first occurrence replaced by its control span."""
    return _pair(pool, prefix, span, distance, samples, seed)[1]


def copy_score(nll: torch.Tensor, prefix: int, span: int, distance: int,
               control: torch.Tensor | None = None) -> CopyScore:
    """Score (samples, T − 1) NLLs of :func:`copy_sequences` (column j predicts token j+1)
    against those of :func:`control_sequences`; without ``control`` the gain is nan (the
    first occurrence's loss is no baseline for it, see the module docstring)."""
    # span tokens 2…k of the first occurrence are tokens prefix+1 … prefix+span−1
    first = nll[:, prefix: prefix + span - 1].double().mean().item()
    repeat_start = prefix + span + distance
    repeat = nll[:, repeat_start: repeat_start + span - 1].double().mean().item()
    base = (math.nan if control is None
            else control[:, repeat_start: repeat_start + span - 1].double().mean().item())
    gain = 1.0 - repeat / base if base > 0 else math.nan
    return CopyScore(gain=gain, loss_first=first, loss_repeat=repeat, samples=nll.shape[0],
                     loss_control=base)


def resolve_distances(model: LanguageModel, attention: str, pool_size: int, prefix: int,
                      span: int, distances: Sequence[int] | None) -> list[int]:
    """Explicit distances are checked (one clear error); the defaults (L/8 … 16·L) keep those
    that fit both the model's limit and the text."""
    def length(d: int) -> int:
        return prefix + 2 * span + d

    if distances is None:
        keep = [d for d in default_distances(model.context_length)
                if fits(model, attention, length(d))
                and _text_needed(prefix, span, d) <= pool_size]
        if not keep:
            raise LexformerError(f"no default copy distance fits {model.name} with {attention} "
                                 f"attention and {pool_size} tokens of text")
        return keep
    bad = [d for d in distances if d <= 0]
    if bad:
        raise LexformerError(f"copy distances must be positive, got {bad[0]}")
    for d in distances:
        require_fit(model, attention, length(d), f"copy at distance {d} (with prefix {prefix} "
                                                 f"and span {span})")
        _require_text(pool_size, prefix, span, d)
    return sorted(set(distances))


def plan_copy(model: LanguageModel, documents: Sequence[np.ndarray], attention: str,
              distances: Sequence[int] | None = None, span: int = DEFAULT_SPAN,
              prefix: int | None = None) -> tuple[np.ndarray, int, list[int]]:
    """Check everything before scoring: (token pool, prefix, distances to run)."""
    check_attention(model, attention)
    if span < 2:
        raise LexformerError(f"copy span must be at least 2 tokens, got {span}")
    prefix = max(1, model.context_length // 2) if prefix is None else prefix
    pool = token_pool(documents)
    return pool, prefix, resolve_distances(model, attention, len(pool), prefix, span,
                                           distances)


def copy_at_distance(model: LanguageModel, documents: Sequence[np.ndarray], attention: str,
                     distances: Sequence[int] | None = None, span: int = DEFAULT_SPAN,
                     prefix: int | None = None, samples: int = DEFAULT_SAMPLES, seed: int = 0,
                     show_progress: bool = False) -> dict[int, CopyScore]:
    """``{distance: CopyScore}`` of ``model`` under ``attention``."""
    pool, prefix, distances = plan_copy(model, documents, attention, distances, span, prefix)
    scores: dict[int, CopyScore] = {}
    for d in progress(distances, show_progress, f"copy {attention}"):
        # both sets in one call, so they share the batches of lexformer.lm.score_sequences
        nll = score_sequences(model, torch.cat(_pair(pool, prefix, span, d, samples, seed)),
                              attention)
        scores[d] = copy_score(nll[:samples], prefix, span, d, control=nll[samples:])
    return scores


__all__ = ["control_sequences", "copy_at_distance", "copy_score", "copy_sequences", "plan_copy",
           "resolve_distances"]
