"""The attention methods a pretrained Hugging Face RoPE model can be run with (``HF_METHODS``).

Three kinds:

* ``native``: the model as loaded (``full``);
* ``window``: lexformer's own attention function, registered with transformers, decides which
  cached keys a query sees and at which relative distance (``blockwise``, ``sliding``,
  ``sinks``, ``lambda``, ``self-extend``, ``blockwise+sinks``; see :mod:`lexformer.hf.plans`);
* ``rope``: transformers' own RoPE rescalings, configured through the model's
  ``rope_parameters`` (``pi``, ``dynamic-ntk``, ``yarn``, ``llama3``; see
  :mod:`lexformer.hf.rope_scaling`).

:class:`MethodOptions` holds the knobs; any left ``None`` take defaults derived from the
model's declared context L (:func:`resolve_settings`).
"""

from __future__ import annotations

from dataclasses import dataclass, fields
from typing import Literal

from ..errors import LexformerError

MethodKind = Literal["native", "window", "rope"]


@dataclass(frozen=True)
class HFMethod:
    name: str
    kind: MethodKind
    summary: str


HF_METHODS: dict[str, HFMethod] = {m.name: m for m in (
    HFMethod("full", "native", "the model's own causal attention, unchanged"),
    HFMethod("blockwise", "window", "blocks of h (default L/2); a query sees its block and the "
             "previous one"),
    HFMethod("sliding", "window", "the last W keys (default W = L)"),
    HFMethod("sinks", "window", "StreamingLLM: S first tokens plus the recent window, positions "
             "counted inside the kept cache"),
    HFMethod("lambda", "window", "LM-Infinite: the first n_global tokens plus a local window, "
             "distances capped at L"),
    HFMethod("self-extend", "window", "SelfExtend: exact distances inside a neighbour window, "
             "grouped positions floor(j/G) beyond it"),
    HFMethod("blockwise+sinks", "window", "blockwise plus the S first tokens, placed just "
             "before each query block's window"),
    HFMethod("pi", "rope", "position interpolation (transformers rope_type 'linear'); "
             "factor = length / L, so the model unchanged up to L"),
    HFMethod("dynamic-ntk", "rope", "dynamic NTK-aware base scaling (rope_type 'dynamic'); "
             "the model unchanged up to L"),
    HFMethod("yarn", "rope", "YaRN (rope_type 'yarn'); factor = length / L, so the model "
             "unchanged up to L"),
    HFMethod("llama3", "rope", "Llama 3.1 frequency-band scaling (rope_type 'llama3'); "
             "factor = length / L, so the model unchanged up to L"),
)}


def get_method(name: str) -> HFMethod:
    """The method called ``name``, or one clear error listing the choices."""
    try:
        return HF_METHODS[name]
    except KeyError:
        raise LexformerError(f"unknown attention method {name!r} for a Hugging Face model; "
                             f"choose from {', '.join(HF_METHODS)}") from None


@dataclass(frozen=True)
class MethodOptions:
    """Knobs of the methods; ``None`` means the default for the model's declared context L.

    block: h of blockwise / blockwise+sinks (L/2). window: W of sliding (L) and the recent
    window of sinks (L − sinks). sinks: S (4). global_tokens / local_window / distance_cap:
    LM-Infinite's n_global (100, as its authors ran it), n_local (L) and distance bound (L).
    group / neighbours: SelfExtend's G (8) and neighbour window w (L/4). target_length: the
    length the RoPE rescalings aim at (factor = target / L); ``None`` takes each call's
    sequence length.
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


def resolve_settings(method: str, context: int, options: MethodOptions | None) -> WindowSettings:
    """Fill the defaults of ``options`` for a model of declared context ``context``."""
    o = options or MethodOptions()
    sinks = o.sinks if o.sinks is not None else 4
    pick = {
        "block": o.block or max(1, context // 2),
        "window": o.window or (max(1, context - sinks) if method == "sinks" else context),
        "sinks": sinks,
        "global_tokens": o.global_tokens if o.global_tokens is not None else 100,
        "local_window": o.local_window or context,
        "distance_cap": o.distance_cap or context,
        "group": o.group or 8,
        "neighbours": o.neighbours or max(1, context // 4),
    }
    for f in fields(MethodOptions):
        value = getattr(o, f.name)
        if value is not None and value <= 0 and not (f.name in ("sinks", "global_tokens")
                                                     and value == 0):
            raise LexformerError(f"attention option {f.name} must be positive, got {value}")
    settings = WindowSettings(method=method, **pick)
    _check_consistent(settings)
    return settings


def _check_consistent(s: WindowSettings) -> None:
    if s.method == "lambda" and s.local_window > s.distance_cap:
        raise LexformerError(f"lambda: local window ({s.local_window}) must not exceed the "
                             f"distance cap ({s.distance_cap})")
    if s.method == "blockwise+sinks" and s.sinks > s.block:
        raise LexformerError(f"blockwise+sinks: sinks ({s.sinks}) must not exceed the block "
                             f"({s.block})")


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


def self_extend_max_length(s: WindowSettings, context: int) -> int:
    """Longest input whose largest SelfExtend position, ⌊(T−1)/G⌋ + w − ⌊w/G⌋, stays < L."""
    w, g = s.neighbours, s.group
    return (context - 1 - w + w // g) * g + g  # largest T with ⌊(T−1)/g⌋ ≤ L − 1 − w + ⌊w/g⌋


__all__ = ["HF_METHODS", "HFMethod", "MethodOptions", "WindowSettings", "get_method",
           "parse_method_options", "resolve_settings", "self_extend_max_length"]
