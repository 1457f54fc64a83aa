"""RoPE rescalings (``pi``, ``dynamic-ntk``, ``yarn``, ``llama3``) through transformers itself.

Nothing here computes frequencies: each method is a ``rope_parameters`` entry that
transformers documents (``rope_type`` ``linear``, ``dynamic``, ``yarn``, ``llama3``). A copy of
the model's config gets the entry, and a new rotary module of the model's own class is built
from that copy and swapped in for the duration of a call (the attention layers read cos/sin
from the model's rotary module, so nothing else changes).

The factor (:func:`chosen_factor`): ``rope_factor`` where the options fix it, the same at every
length, as a deployment sets it before the input is seen. Without it, dynamic NTK takes 1 (its
rule grows the base with the length by itself, so factor 1 is the NTK-aware base for the
current length; length / L would count the length twice) and the others the per-length
*oracle* max(1, length / L), which no deployment has (:func:`rope_label` names it).
``original_max_position_embeddings`` is L, and for YaRN and Llama 3 ``max_position_embeddings``
becomes L · factor as those conventions expect (dynamic NTK keeps L).

The model's own ``rope_parameters`` are kept: a native ``default`` RoPE takes the rescaling as
is, a native ``linear`` one (PI) composes with ``pi`` (the factors multiply: two position
interpolations are one); any other native scaling (``llama3``, ``yarn``, …) with a rescaling
is refused in one line, since stacking two frequency maps has no definition.
"""

from __future__ import annotations

import contextlib
import copy
import dataclasses
import math
from collections.abc import Iterator

from ..errors import LexformerError
from .methods import HF_METHODS, ORACLE
from .options import MethodOptions

#: method name → transformers' rope_type, from the methods' records
ROPE_TYPES = {name: m.rope_type for name, m in HF_METHODS.items() if m.rope_type is not None}
#: rope_types whose convention takes the original context and a grown max_position_embeddings
_ORIGINAL_CONTEXT = ("yarn", "llama3")
#: rope_types whose factor is a constant of the method, not a length ratio (dynamic NTK grows
#: the base with the sequence length itself): factor 1 gives θ · s^(d/(d−2)) at s = length / L
_OWN_LENGTH_RULE = {"dynamic": 1.0}


def rope_factor(target_length: int, context: int) -> float:
    """Target over declared context, at least 1 (shorter inputs need no rescaling)."""
    return max(1.0, target_length / context)


def fixed_factor(method: str, options: MethodOptions | None) -> float | None:
    """The factor of ``method`` when it does not depend on the input's length, else ``None``
    (the per-length oracle): ``options.rope_factor``, or the method's own constant."""
    if options is not None and options.rope_factor is not None:
        return float(options.rope_factor)
    return _OWN_LENGTH_RULE.get(ROPE_TYPES[method])


def length_dependent(method: str, options: MethodOptions | None) -> bool:
    """Does ``method`` compute other outputs for the first n tokens of a longer input than for
    those n tokens alone? True for dynamic NTK (its base follows the input's length) and for
    a rescaling whose factor follows the length (the per-length oracle); False for every other
    method, whose losses on a prefix can be read off one longer pass
    (:mod:`lexformer.prefix_eval`)."""
    if method not in ROPE_TYPES:
        return False
    if ROPE_TYPES[method] in _OWN_LENGTH_RULE:
        return True
    return fixed_factor(method, options) is None and not (options and options.target_length)


def chosen_factor(method: str, options: MethodOptions | None, length: int | None,
                  context: int) -> float:
    """The factor ``method`` runs at for an input of ``length`` tokens (module docstring)."""
    fixed = fixed_factor(method, options)
    if fixed is not None:
        return fixed
    target = options.target_length if options and options.target_length else length
    if target is None:
        raise LexformerError(f"{method}: give a target length (options.target_length) or a "
                             "fixed factor (options.rope_factor)")
    return rope_factor(target, context)


def deployed_options(method: str, options: MethodOptions | None, context: int, longest: int,
                     factor: int | None = None, oracle: bool = False) -> MethodOptions | None:
    """The options ``method`` is deployed with for inputs up to ``longest`` tokens: for a
    rescaling whose factor would follow the input's length (pi, yarn, llama3) one factor
    fixed before any input — ``factor``, else ``options.rope_factor``, else ``longest / L``
    rounded up — so that its cost at short lengths shows; ``oracle`` keeps the per-length
    factor. Other methods (dynamic NTK adapts to the length by itself) get ``options``."""
    if oracle or method not in ROPE_TYPES or fixed_factor(method, None) is not None:
        return options
    base = options or MethodOptions()
    chosen = factor or base.rope_factor or max(1, math.ceil(longest / context))
    return dataclasses.replace(base, rope_factor=chosen)


def rope_label(method: str, options: MethodOptions | None) -> str:
    """How tables and figures name a rescaling: ``"yarn (factor 8)"`` where the factor is
    fixed, ``"yarn (oracle factor)"`` where it is length / L; other methods: the name."""
    if method not in ROPE_TYPES:
        return method
    fixed = fixed_factor(method, options)
    if fixed is None:
        target = options.target_length if options and options.target_length else None
        return f"{method} (factor {target} / L)" if target else f"{method} (oracle factor)"
    return f"{method} (factor {fixed:g})"


def rope_summary(method: str, options: MethodOptions | None) -> str:
    """The method record's summary, its oracle clause replaced where ``options`` fix the
    factor (the record itself says "oracle: factor = length / L")."""
    summary = HF_METHODS[method].summary
    if method not in ROPE_TYPES or options is None or options.rope_factor is None:
        return summary
    head = summary.split(f"; {ORACLE}")[0].split(": the base grows")[0]
    return f"{head}; factor {options.rope_factor:g}, fixed: the same at every length"


def _native_composed(method: str, base: dict, factor: float) -> float:
    """The factor once the model's own scaling is composed in; refuses undefined pairs."""
    native = base.get("rope_type", "default")
    if native == "default":
        return factor
    if native == "linear" and ROPE_TYPES[method] == "linear":
        return factor * float(base.get("factor", 1.0))  # positions divided twice: one PI
    raise LexformerError(f"{method}: the model already scales RoPE natively (rope_type "
                         f"{native!r}); {method} on top of it is undefined — use full or a "
                         "window method")


def scaled_rope_parameters(method: str, base: dict, context: int, factor: float) -> dict:
    """The ``rope_parameters`` of ``method``: the base θ (and partial-rotary fraction) kept,
    the model's own scaling composed in or refused (:func:`_native_composed`)."""
    factor = _native_composed(method, base, factor)
    params = {key: base[key] for key in ("rope_theta", "partial_rotary_factor") if key in base}
    rope_type = ROPE_TYPES[method]
    params.update(rope_type=rope_type, factor=float(factor))
    if rope_type in _ORIGINAL_CONTEXT:
        params["original_max_position_embeddings"] = context
    if rope_type == "llama3":
        params.update(low_freq_factor=1.0, high_freq_factor=4.0)  # Llama 3.1's published values
    return params


def scaled_config(config, method: str, factor: float):
    """A copy of ``config`` whose ``rope_parameters`` select ``method`` at ``factor``."""
    base = getattr(config, "rope_parameters", None)
    if not isinstance(base, dict) or "rope_theta" not in base:
        raise LexformerError(f"{method}: the model config has no flat rope_parameters to rescale")
    context = config.max_position_embeddings
    new = copy.deepcopy(config)
    new.rope_parameters = scaled_rope_parameters(method, base, context, factor)
    if ROPE_TYPES[method] in _ORIGINAL_CONTEXT:
        new.max_position_embeddings = int(round(context * factor))
    new.validate_rope()
    return new


def check_rescalable(config, method: str) -> None:
    """Refuse, before any input is scored, a rescaling the model's config cannot take (no flat
    ``rope_parameters``, or a native scaling it does not compose with); other methods pass."""
    if method in ROPE_TYPES:
        scaled_config(config, method, 1.0)


@contextlib.contextmanager
def rescaled_rope(model, rotary_owner, method: str, factor: float) -> Iterator[object]:
    """Swap ``rotary_owner.rotary_emb`` for one built with ``method`` at ``factor``."""
    original = rotary_owner.rotary_emb
    config = scaled_config(model.config, method, factor)
    replacement = type(original)(config=config).to(original.inv_freq.device)
    rotary_owner.rotary_emb = replacement
    try:
        yield replacement
    finally:
        rotary_owner.rotary_emb = original


__all__ = ["ROPE_TYPES", "check_rescalable", "chosen_factor", "fixed_factor", "length_dependent",
           "rescaled_rope", "rope_factor", "rope_label", "rope_summary", "scaled_config",
           "scaled_rope_parameters"]
