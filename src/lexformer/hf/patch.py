"""Run a transformers RoPE model under any of ``HF_METHODS`` without forking its code.

Window methods register an attention function with transformers' ``AttentionInterface``
(one per model and settings) and select it with ``model.set_attn_implementation``; the
model's own code then calls it with the rotated queries and the whole key/value cache, so
``model(...)`` and ``model.generate(...)`` (with its KV cache) both run the method. Because
the name is not a registered *mask* implementation, transformers builds no mask at all for
it (no n×n tensor); the engine (:mod:`lexformer.hf.windowed`) derives visibility from
positions. Inputs must be unpadded: keys sit at positions 0..n−1 of the sequence (a
bounded cache, :mod:`lexformer.hf.cache`, holds the visible part of them).

RoPE rescalings swap the model's rotary module (:mod:`lexformer.hf.rope_scaling`); ``full``
changes nothing. :func:`patch_model` applies a method until its ``restore`` is called;
:func:`use_method` does the same for a ``with`` block.
"""

from __future__ import annotations

import contextlib
import weakref
from collections.abc import Callable, Iterator

from ..errors import LexformerError
from .methods import MethodOptions, WindowSettings, get_method, resolve_settings
from .rope_scaling import chosen_factor, rescaled_rope
from .windowed import window_attention


def rotary_owner(model):
    """The submodule holding the model's rotary embedding (``rotary_emb`` with ``inv_freq``)."""
    base = getattr(model, "base_model", model)
    rotary = getattr(base, "rotary_emb", None)
    if rotary is None or not hasattr(rotary, "inv_freq"):
        raise LexformerError(
            f"{type(model).__name__} has no rotary position embedding; lexformer.hf supports "
            "RoPE models such as Llama, Mistral, Qwen2 and SmolLM")
    return base


def _attention_function(owner, settings: WindowSettings) -> Callable:
    owner_ref = weakref.ref(owner)  # the registry is global: do not keep the model alive

    def lexformer_window_attention(module, query, key, value, attention_mask, scaling=None,
                                   dropout=0.0, **kwargs):
        live = owner_ref()
        if live is None:
            raise LexformerError("this lexformer attention belongs to a model that is gone")
        position_ids = kwargs.get("position_ids")  # absolute; a bounded cache holds fewer keys
        q_start = int(position_ids[0, 0]) if position_ids is not None else None
        out = window_attention(query, key, value, settings,
                               scaling if scaling is not None else module.scaling,
                               live.rotary_emb.inv_freq, q_start)
        return out.transpose(1, 2).contiguous(), None

    return lexformer_window_attention


def register_window_attention(model, settings: WindowSettings) -> str:
    """Register the attention function of ``settings`` for ``model``; returns its name."""
    from transformers import AttentionInterface

    owner = rotary_owner(model)
    name = f"lexformer-{settings.method}-{id(owner):x}-{abs(hash(settings)):x}"
    AttentionInterface.register(name, _attention_function(owner, settings))
    return name


def patch_model(model, method: str, options: MethodOptions | None = None,
                length: int | None = None) -> Callable[[], None]:
    """Make ``model`` attend with ``method``; returns the function that undoes it.

    ``length`` is the length the call will reach (prompt plus new tokens); the RoPE
    rescalings use it for their per-length oracle factor unless ``options`` fix the factor
    (:func:`lexformer.hf.rope_scaling.chosen_factor`).
    """
    kind = get_method(method).kind
    if kind == "native":
        return lambda: None
    context = model.config.max_position_embeddings
    if kind == "rope":
        factor = chosen_factor(method, options, length, context)
        stack = contextlib.ExitStack()
        stack.enter_context(rescaled_rope(model, rotary_owner(model), method, factor))
        return stack.close
    settings = resolve_settings(method, context, options)
    if not model._can_set_attn_implementation():
        raise LexformerError(f"{type(model).__name__} does not route attention through "
                             "transformers' AttentionInterface; window methods need it")
    previous = model.config._attn_implementation
    model.set_attn_implementation(register_window_attention(model, settings))
    undo_generate = _bounded_generate(model, settings)
    padding_check = rotary_owner(model).register_forward_pre_hook(  # the base model: every
        _refuse_padding(method), with_kwargs=True)  # path to the attention goes through it

    def restore() -> None:
        padding_check.remove()
        undo_generate()
        model.set_attn_implementation(previous)

    return restore


def _refuse_padding(method: str) -> Callable:
    """A forward pre-hook that refuses a padded batch in one line: the window engine takes
    every row's keys at positions 0 … n − 1, so a padded row would be scored wrongly without
    an error (a batch of unpadded rows of one length is fine)."""
    def hook(module, args, kwargs):
        mask = kwargs.get("attention_mask")
        if mask is not None and hasattr(mask, "all") and mask.dim() == 2 and not bool(mask.all()):
            raise LexformerError(f"{method} does not take padded batches yet (the attention "
                                 "mask has zeros): run one sequence at a time, e.g. "
                                 "batch_size=1, or rows of one length without padding")
        return None

    return hook


#: the names under which transformers' generate takes a cache (``cache`` in v5, the older ones
#: still accepted); a call that passes any of them keeps its own
_CACHE_KWARGS = ("cache", "past_key_values")


def _bounded_generate(model, settings: WindowSettings) -> Callable[[], None]:
    """While patched, a plain ``model.generate(...)`` gets the method's bounded cache
    (:func:`lexformer.hf.cache.window_cache`: only the keys the method can still see) unless
    the call brings a cache of its own; a method that can need any key (SelfExtend) keeps
    transformers' default. Returns the undo."""
    import functools

    from .cache import window_cache

    if window_cache(model, settings) is None:
        return lambda: None
    own = model.__dict__.get("generate")  # an instance attribute someone set before us
    unbound = type(model).generate

    @functools.wraps(unbound)
    def generate(*args, **kwargs):
        if not any(kwargs.get(name) is not None for name in _CACHE_KWARGS):
            kwargs["cache"] = window_cache(model, settings)
        return (own or functools.partial(unbound, model))(*args, **kwargs)

    model.generate = generate

    def undo() -> None:
        if own is None:
            model.__dict__.pop("generate", None)
        else:
            model.generate = own

    return undo


@contextlib.contextmanager
def use_method(model, method: str, options: MethodOptions | None = None,
               length: int | None = None) -> Iterator[None]:
    """``with use_method(model, "sinks"): model(ids)`` — the method for the block only."""
    restore = patch_model(model, method, options, length)
    try:
        yield
    finally:
        restore()


__all__ = ["patch_model", "register_window_attention", "rotary_owner", "use_method"]
