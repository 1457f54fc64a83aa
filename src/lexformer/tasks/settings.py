"""The knobs of the context-use tasks, in one validated dataclass.

``None`` means "the default for this model": values the user leaves unset adapt to what the
model can score (e.g. a learned-position model stops at L), while values the user sets are
checked and refused with one clear error if the model or the text cannot hold them.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from ..config import MAX_SEED
from ..errors import LexformerError

DEFAULT_SPAN = 32
DEFAULT_SAMPLES = 16
DEFAULT_TRIALS = 10
DEFAULT_DEPTHS: tuple[float, ...] = (0.0, 0.25, 0.5, 0.75, 1.0)
DEFAULT_RULER_SAMPLES = 10


def default_distances(context_length: int) -> list[int]:
    """Copy distances L/8, L/4, …, 16·L (those ≥ 1)."""
    return sorted({context_length * 2 ** k // 8 for k in range(8)} - {0})


def default_passkey_lengths(context_length: int) -> list[int]:
    """Passkey prompt lengths L/2, L, 2L, …, 16·L."""
    return [context_length * 2 ** k // 2 for k in range(6)]


def _positive_ints(name: str, values: tuple[int, ...] | None) -> tuple[int, ...] | None:
    if values is None:
        return None
    values = tuple(int(v) for v in values)
    bad = [v for v in values if v <= 0]
    if bad or not values:
        raise LexformerError(f"{name} must be positive integers, got "
                             f"{', '.join(map(str, bad)) or '(none)'}")
    return tuple(sorted(set(values)))


def _ruler_names(names: tuple[str, ...] | None) -> tuple[str, ...] | None:
    """RULER task names in RULER's order, or one error naming the unknown ones."""
    if names is None:
        return None
    from .ruler.core import RULER_TASKS

    unknown = [n for n in names if n not in RULER_TASKS]
    if unknown or not names:
        raise LexformerError(f"unknown RULER task(s) {', '.join(unknown) or '(none)'}; choose "
                             f"from {', '.join(RULER_TASKS)}")
    return tuple(n for n in RULER_TASKS if n in set(names))


@dataclass(frozen=True)
class TaskSettings:
    """``length``: chunk length of position-loss (default: the documents' length).
    ``distances``, ``span``, ``prefix``, ``samples``: copy (``prefix`` tokens of real text
    before the first occurrence, default L/2). ``passkey_lengths``, ``depths``, ``trials``:
    passkey. ``seed`` fixes every sampled position and pass key."""

    length: int | None = None
    distances: tuple[int, ...] | None = None
    span: int = DEFAULT_SPAN
    prefix: int | None = None
    samples: int = DEFAULT_SAMPLES
    passkey_lengths: tuple[int, ...] | None = None
    depths: tuple[float, ...] = DEFAULT_DEPTHS
    trials: int = DEFAULT_TRIALS
    ruler_tasks: tuple[str, ...] | None = None
    ruler_lengths: tuple[int, ...] | None = None
    ruler_samples: int = DEFAULT_RULER_SAMPLES
    seed: int = 0

    def __post_init__(self) -> None:
        set_ = object.__setattr__  # frozen: normalise in place once
        set_(self, "distances", _positive_ints("copy distances", self.distances))
        set_(self, "passkey_lengths", _positive_ints("passkey lengths", self.passkey_lengths))
        set_(self, "ruler_lengths", _positive_ints("RULER lengths", self.ruler_lengths))
        set_(self, "ruler_tasks", _ruler_names(self.ruler_tasks))
        if self.length is not None and self.length < 2:
            raise LexformerError(f"position-loss length must be at least 2, got {self.length}")
        if self.span < 2:
            raise LexformerError(f"copy span must be at least 2 tokens, got {self.span}")
        if self.prefix is not None and self.prefix < 1:
            raise LexformerError(f"copy prefix must be at least 1 token, got {self.prefix}")
        if self.samples < 1 or self.trials < 1 or self.ruler_samples < 1:
            raise LexformerError("samples, trials and RULER samples must be at least 1")
        if not 0 <= self.seed <= MAX_SEED:
            raise LexformerError(f"task seed must lie in 0 … {MAX_SEED}, got {self.seed}")
        depths = tuple(sorted({float(d) for d in self.depths}))
        if not depths or any(not (math.isfinite(d) and 0.0 <= d <= 1.0) for d in depths):
            raise LexformerError(f"passkey depths must lie in [0, 1], got {self.depths}")
        set_(self, "depths", depths)


__all__ = ["DEFAULT_DEPTHS", "DEFAULT_RULER_SAMPLES", "DEFAULT_SAMPLES", "DEFAULT_SPAN",
           "DEFAULT_TRIALS", "TaskSettings", "default_distances", "default_passkey_lengths"]
