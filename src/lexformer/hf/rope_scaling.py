"""RoPE rescalings (``pi``, ``dynamic-ntk``, ``yarn``, ``llama3``) through transformers itself.

Nothing here computes frequencies: each method is a ``rope_parameters`` entry that
transformers documents (``rope_type`` ``linear``, ``dynamic``, ``yarn``, ``llama3``). A copy of
the model's config gets the entry, and a new rotary module of the model's own class is built
from that copy and swapped in for the duration of a call (the attention layers read cos/sin
from the model's rotary module, so nothing else changes). The factor is target length over
declared context L, never below 1; ``original_max_position_embeddings`` is L, and for YaRN and
Llama 3 ``max_position_embeddings`` becomes L · factor as those conventions expect (dynamic NTK
keeps L: it grows the base past L by itself).
"""

from __future__ import annotations

import contextlib
import copy
from collections.abc import Iterator

from ..errors import LexformerError
from .methods import HF_METHODS

#: method name → transformers' rope_type, from the methods' records
ROPE_TYPES = {name: m.rope_type for name, m in HF_METHODS.items() if m.rope_type is not None}
#: rope_types whose convention takes the original context and a grown max_position_embeddings
_ORIGINAL_CONTEXT = ("yarn", "llama3")


def rope_factor(target_length: int, context: int) -> float:
    """Target over declared context, at least 1 (shorter inputs need no rescaling)."""
    return max(1.0, target_length / context)


def scaled_rope_parameters(method: str, base: dict, context: int, factor: float) -> dict:
    """The ``rope_parameters`` of ``method``: the base θ (and partial-rotary fraction) kept."""
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


__all__ = ["ROPE_TYPES", "rescaled_rope", "rope_factor", "scaled_config",
           "scaled_rope_parameters"]
