"""The knobs of the Hugging Face attention methods (:class:`MethodOptions`), as given and as
resolved for one model (:class:`WindowSettings`); :mod:`lexformer.hf.methods` holds the methods
themselves and fills in the defaults."""

from __future__ import annotations

from dataclasses import dataclass, field, fields
from typing import TYPE_CHECKING

from ..errors import LexformerError

if TYPE_CHECKING:  # for the annotation only: plans imports this module
    from .plans import WindowPlan


@dataclass(frozen=True)
class MethodOptions:
    """Knobs of the methods; ``None`` means the default for the model's declared context L.

    block: h of blockwise / blockwise+sinks (L/2). window: W of sliding (L) and the recent
    window of sinks (L − sinks). sinks: S (4). global_tokens / local_window / distance_cap:
    LM-Infinite's n_global (100, as its authors ran it), n_local (L) and distance bound (L).
    group / neighbours: SelfExtend's G (8) and neighbour window w (L/4). target_length: the
    length the RoPE rescalings aim at (factor = target / L); ``None`` takes each call's
    sequence length (the per-length oracle). rope_factor: the rescalings' factor, fixed before
    the input is seen and the same at every length (dynamic-ntk: its constant, default 1).
    recall_block / recall_blocks: b and k of ``recall`` (the size of a past block and how many
    of them each query recalls; defaults 64 and as many as S + k·b + 2h ≤ L allows).
    """

    block: int | None = None
    window: int | None = None
    sinks: int | None = None
    global_tokens: int | None = None
    local_window: int | None = None
    distance_cap: int | None = None
    group: int | None = None
    neighbours: int | None = None
    target_length: int | None = None
    rope_factor: int | None = None
    recall_block: int | None = None
    recall_blocks: int | None = None


@dataclass(frozen=True)
class WindowSettings:
    """Resolved knobs of a window method (all positive integers)."""

    method: str
    block: int
    window: int
    sinks: int
    global_tokens: int
    local_window: int
    distance_cap: int
    group: int
    neighbours: int
    recall_block: int = 64
    recall_blocks: int = 0
    #: the model's declared context L (0: not given; ``recall`` needs it)
    context: int = 0
    #: the method's plan (:class:`lexformer.hf.plans.WindowPlan`), filled in by
    #: :func:`lexformer.hf.methods.resolve_settings` from the method's record; not part of the
    #: settings' identity (equality, hash): the name already says which plan it is
    plan: WindowPlan | None = field(default=None, compare=False, repr=False)



def parse_method_options(text: str) -> MethodOptions:
    """``"block=2048,window=4096"`` → ``MethodOptions(block=2048, window=4096)``; an unknown
    name or a non-integer value is one clear error naming the known options."""
    names = [f.name for f in fields(MethodOptions)]
    values: dict[str, int] = {}
    for item in filter(None, (x.strip() for x in text.split(","))):
        key, sep, value = item.partition("=")
        key = key.strip().replace("-", "_")
        if not sep or key not in names:
            raise LexformerError(f"bad method option {item!r}: expected NAME=INTEGER with NAME "
                                 f"one of {', '.join(names)}")
        try:
            values[key] = int(value)
        except ValueError:
            raise LexformerError(f"method option {key} needs an integer, got {value!r}") from None
    return MethodOptions(**values)


__all__ = ["MethodOptions", "WindowSettings", "parse_method_options"]
