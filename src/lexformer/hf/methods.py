"""The attention methods a pretrained Hugging Face RoPE model can be run with (``HF_METHODS``).

Three kinds:

* ``native``: the model as loaded (``full``);
* ``window``: lexformer's own attention function, registered with transformers, decides which
  cached keys a query sees and at which relative distance (``blockwise``, ``sliding``,
  ``sinks``, ``lambda``, ``self-extend``, ``blockwise+sinks``; see :mod:`lexformer.hf.plans`);
* ``rope``: transformers' own RoPE rescalings, configured through the model's
  ``rope_parameters`` (``pi``, ``dynamic-ntk``, ``yarn``, ``llama3``; see
  :mod:`lexformer.hf.rope_scaling`).

Each method is one :class:`HFMethod` record holding everything about it: kind, cost class,
source paper, plan (:mod:`lexformer.hf.plans`), default knobs, consistency check, longest
input. Adding a method is one record (and, for a window method, its plan); nothing else
switches on its name. :class:`MethodOptions` holds the knobs; any left ``None`` take defaults
derived from the model's declared context L (:func:`resolve_settings`).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, fields
from typing import Literal

from ..errors import LexformerError
from . import plans, recall
from .options import MethodOptions, WindowSettings, parse_method_options
from .plans import WindowPlan

MethodKind = Literal["native", "window", "rope"]


@dataclass(frozen=True)
class HFMethod:
    """One attention method, whole.

    ``quadratic``: every key stays visible, so a chunk costs O(n²) (the model's own attention,
    the RoPE rescalings, SelfExtend) rather than O(n·window). ``source``: where the method
    comes from. ``plan``: a window method's plan. ``defaults(picked, L)``: the knobs whose
    default differs for this method, given the common defaults ``picked`` (applied where the
    option is unset). ``check(settings)``: raises on knobs that contradict each other.
    ``max_length(L, options)``: the longest input it can score (``None``: any).
    ``rope_type``: transformers' ``rope_type`` of a RoPE rescaling. ``extend_default``: part
    of ``lexformer extend``'s default run.
    """

    name: str
    kind: MethodKind
    summary: str
    source: str = "–"
    quadratic: bool = False
    plan: WindowPlan | None = None
    defaults: Callable[[dict, int], dict] | None = None
    check: Callable[[WindowSettings], None] | None = None
    max_length: Callable[[int, MethodOptions], int | None] | None = None
    rope_type: str | None = None
    extend_default: bool = False

    def longest(self, context: int, options: MethodOptions | None) -> int | None:
        """The longest input this method scores for a model of declared context L."""
        if self.max_length is None:
            return None
        return self.max_length(context, options or MethodOptions())


def _sinks_defaults(picked: dict, context: int) -> dict:
    # StreamingLLM keeps S + W = L tokens: the recent window is what the sinks leave of L
    return {"window": max(1, context - picked["sinks"])}


def _check_lambda(s: WindowSettings) -> None:
    if s.local_window > s.distance_cap:
        raise LexformerError(f"lambda: local window ({s.local_window}) must not exceed the "
                             f"distance cap ({s.distance_cap})")


def _check_blockwise_sinks(s: WindowSettings) -> None:
    if s.sinks > s.block:
        raise LexformerError(f"blockwise+sinks: sinks ({s.sinks}) must not exceed the block "
                             f"({s.block})")


def _recall_defaults(picked: dict, context: int) -> dict:
    # provisional (not yet measured): h = L/4, b = 64, and k as many blocks as the bound allows
    bound = context - 2 * picked["block"] - picked["sinks"]
    return {"block": max(1, context // 4),
            "recall_blocks": max(0, bound // picked["recall_block"])}


def _check_recall(s: WindowSettings) -> None:
    need = s.sinks + s.recall_blocks * s.recall_block + 2 * s.block
    if need > s.context:
        raise LexformerError(f"recall: sinks + recall_blocks·recall_block + 2·block = {need} "
                             f"must not exceed the declared context L ({s.context})")


def _self_extend_longest(context: int, options: MethodOptions) -> int:
    settings = resolve_settings("self-extend", context, options)
    if settings.neighbours > context:  # exact distances up to w − 1 must stay below L
        raise LexformerError(f"self-extend: the neighbour window ({settings.neighbours}) must "
                             f"not exceed the declared context L ({context})")
    return self_extend_max_length(settings, context)


def _rope_longest(context: int, options: MethodOptions) -> int | None:
    return options.target_length or None  # a fixed target: the rescaling stops there


#: how a rescaling without a fixed factor says so (:func:`lexformer.hf.rope_scaling.rope_label`)
ORACLE = "oracle: factor = length / L, so the model unchanged up to L"


def _rope(name: str, rope_type: str, summary: str, source: str, **kw) -> HFMethod:
    return HFMethod(name, "rope", summary, source, quadratic=True,
                    max_length=_rope_longest, rope_type=rope_type, **kw)


HF_METHODS: dict[str, HFMethod] = {m.name: m for m in (
    HFMethod("full", "native", "the model's own causal attention, unchanged",
             "the pretrained model as is", quadratic=True, extend_default=True),
    HFMethod("blockwise", "window", "blocks of h (default L/2); a query sees its block and the "
             "previous one", "BCA — Sun et al. 2022, arXiv 2212.10554", plan=plans.BLOCKWISE,
             extend_default=True),
    HFMethod("sliding", "window", "the last W keys (default W = L)",
             "sliding-window attention (baseline)", plan=plans.SLIDING),
    HFMethod("sinks", "window", "StreamingLLM: S first tokens plus the recent window, positions "
             "counted inside the kept cache", "StreamingLLM — Xiao et al. 2023, arXiv 2309.17453",
             plan=plans.SINKS, defaults=_sinks_defaults, extend_default=True),
    HFMethod("lambda", "window", "LM-Infinite: the first n_global tokens plus a local window, "
             "distances capped at L", "LM-Infinite — Han et al. 2023, arXiv 2308.16137",
             plan=plans.LAMBDA, check=_check_lambda),
    # a window method by mechanism, yet every key stays visible (grouped positions)
    HFMethod("self-extend", "window", "SelfExtend: exact distances inside a neighbour window, "
             "grouped positions floor(j/G) beyond it",
             "Self-Extend — Jin et al. 2024, arXiv 2401.01325", quadratic=True,
             plan=plans.SELF_EXTEND, max_length=_self_extend_longest, extend_default=True),
    HFMethod("blockwise+sinks", "window", "blockwise plus the S first tokens, placed just "
             "before each query block's window",
             "BCA (arXiv 2212.10554) with StreamingLLM sinks (arXiv 2309.17453)",
             plan=plans.BLOCKWISE_SINKS, check=_check_blockwise_sinks, extend_default=True),
    HFMethod("recall", "window", "the model itself up to L; past L, blockwise+sinks plus the "
             "k past blocks of b keys each query's Quest bound ranks highest, all placed just "
             "before the window", "block retrieval after Quest (arXiv 2406.10774) and InfLLM "
             "(arXiv 2402.04617), on BCA with StreamingLLM sinks", plan=recall.RECALL,
             defaults=_recall_defaults, check=_check_recall),
    _rope("pi", "linear", f"position interpolation (transformers rope_type 'linear'); "
          f"{ORACLE}", "PI — Chen et al. 2023, arXiv 2306.15595"),
    _rope("dynamic-ntk", "dynamic", "dynamic NTK-aware base scaling (rope_type 'dynamic'): "
          "the base grows with the length by itself; factor 1 (the NTK-aware base for the "
          "current length), so the model unchanged up to L",
          "dynamic NTK — bloc97/emozilla 2023 (reddit r/LocalLLaMA)"),
    _rope("yarn", "yarn", f"YaRN (rope_type 'yarn'); {ORACLE}",
          "YaRN — Peng et al. 2023, arXiv 2309.00071", extend_default=True),
    _rope("llama3", "llama3", f"Llama 3.1 frequency-band scaling (rope_type 'llama3'); "
          f"{ORACLE}", "Llama-3 scaling — Meta 2024"),
)}


def get_method(name: str) -> HFMethod:
    """The method called ``name``, or one clear error listing the choices."""
    try:
        return HF_METHODS[name]
    except KeyError:
        raise LexformerError(f"unknown attention method {name!r} for a Hugging Face model; "
                             f"choose from {', '.join(HF_METHODS)}") from None


def resolve_settings(method: str, context: int, options: MethodOptions | None) -> WindowSettings:
    """Fill the defaults of ``options`` for a model of declared context ``context``."""
    o = options or MethodOptions()
    record = HF_METHODS.get(method)
    sinks = o.sinks if o.sinks is not None else 4
    pick = {
        "block": o.block or max(1, context // 2),
        "window": o.window or context,
        "sinks": sinks,
        "global_tokens": o.global_tokens if o.global_tokens is not None else 100,
        "local_window": o.local_window or context,
        "distance_cap": o.distance_cap or context,
        "group": o.group or 8,
        "neighbours": o.neighbours or max(1, context // 4),
        "recall_block": o.recall_block or 64,
        "recall_blocks": o.recall_blocks or 1,
    }
    if record is not None and record.defaults is not None:
        for _ in range(2):  # a default may follow another one (recall: k from the resolved h)
            pick.update({name: value for name, value in record.defaults(pick, context).items()
                         if not getattr(o, name)})
    check_option_values(o)
    settings = WindowSettings(method=method, **pick, context=context,
                              plan=None if record is None else record.plan)
    if record is not None and record.check is not None:
        record.check(settings)
    return settings


def check_option_values(options: MethodOptions | None) -> None:
    """Refuse a knob that no model could take (each must be positive; sinks and
    global_tokens may be 0), so that it fails before a model is downloaded or loaded."""
    for f in fields(MethodOptions):
        value = getattr(options, f.name) if options is not None else None
        if value is not None and value <= 0 and not (f.name in ("sinks", "global_tokens")
                                                     and value == 0):
            raise LexformerError(f"attention option {f.name} must be positive, got {value}")


def self_extend_max_length(s: WindowSettings, context: int) -> int:
    """Longest input whose largest SelfExtend position, ⌊(T−1)/G⌋ + w − ⌊w/G⌋, stays < L."""
    w, g = s.neighbours, s.group
    return (context - 1 - w + w // g) * g + g  # largest T with ⌊(T−1)/g⌋ ≤ L − 1 − w + ⌊w/g⌋


__all__ = ["HF_METHODS", "HFMethod", "MethodOptions", "WindowSettings", "check_option_values",
           "get_method", "parse_method_options", "resolve_settings", "self_extend_max_length"]
