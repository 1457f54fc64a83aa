"""Turning a model specification (a path or a name) into a :class:`LanguageModel`.

``open_model(spec)`` tries each registered :class:`ModelSource` in order and opens the spec
with the first that recognises it: a pretrained Hugging Face model (a model folder, a
``.gguf`` file, or a built-in name such as ``smollm2``; :mod:`lexformer.hf`), then a lexformer
run or checkpoint folder. Recognising a spec never imports transformers; opening a
Hugging Face model without it installed fails with one line naming the ``hf`` extra. More
sources register themselves with :func:`register_source` without any change to the commands
that call :func:`open_model`.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, fields, replace
from pathlib import Path
from typing import Any

from .errors import LexformerError, hub_hint
from .lm import LanguageModel, LexformerLM


@dataclass(frozen=True)
class ModelSource:
    """A kind of model: ``matches(spec)`` says whether ``spec`` is one (cheaply: no weights
    read), ``open(spec, method_options)`` loads it (``method_options``: the knobs of the
    model's attention methods, :class:`lexformer.hf.MethodOptions`, or None). A device or
    dtype other than the default is passed as ``open(spec, method_options, device=,
    dtype=)`` (names of :mod:`lexformer.hf.placement`)."""

    name: str
    description: str
    matches: Callable[[str], bool]
    open: Callable[[str, Any], LanguageModel]


def _is_lexformer_folder(spec: str) -> bool:
    from .checkpoint import has_checkpoint

    return has_checkpoint(spec)


#: the method options a lexformer model takes (its blockwise h and sliding W); the others
#: are knobs of methods only pretrained models offer
LEXFORMER_OPTIONS = ("block", "window")


def _open_lexformer(spec: str, method_options: Any = None, device: str | None = None,
                    dtype: Any = None) -> LanguageModel:
    check_lexformer_placement(spec, device, dtype)
    chosen = {} if method_options is None else {
        f.name: getattr(method_options, f.name) for f in fields(method_options)
        if getattr(method_options, f.name) is not None}
    other = [name for name in chosen if name not in LEXFORMER_OPTIONS]
    if other:
        raise LexformerError(f"{spec} is a lexformer model: its method options are "
                             f"{' and '.join(LEXFORMER_OPTIONS)} only, got {', '.join(other)}")
    return LexformerLM.from_checkpoint(spec, **chosen)


def check_lexformer_placement(spec: str, device: str | None, dtype: Any) -> None:
    """A lexformer model is evaluated on the CPU in float32, as before --device and --dtype
    existed (its training runs choose their own); another choice is refused, not ignored."""
    if device is None and dtype is None:
        return
    from .hf.placement import resolve_placement

    if not resolve_placement(device, dtype).is_default:
        raise LexformerError(f"{spec} is a lexformer model: it is evaluated on the CPU in "
                             "float32 (--device and --dtype apply to pretrained models)")


MODEL_SOURCES: list[ModelSource] = [
    ModelSource("lexformer", "a lexformer run or checkpoint folder", _is_lexformer_folder,
                _open_lexformer),
]

def register_source(source: ModelSource, first: bool = False) -> None:
    """Add ``source`` (replacing one of the same name); ``first`` tries it before the others."""
    MODEL_SOURCES[:] = [s for s in MODEL_SOURCES if s.name != source.name]
    MODEL_SOURCES.insert(0, source) if first else MODEL_SOURCES.append(source)


# ---------------------------------------------------------------- registration point
# Further sources call ``register_source(ModelSource(...))``; ``open_model`` tries them in
# the order of MODEL_SOURCES. The pretrained Hugging Face models are registered here.


def require_transformers() -> None:
    """Fail with one line (not an ImportError traceback) when transformers is missing or
    cannot be imported."""
    try:
        import transformers  # noqa: F401
    except ImportError as e:
        raise LexformerError(f"opening a Hugging Face model needs transformers ({e}): "
                             "install lexformer[hf] (pip install 'lexformer[hf]')") from None


def _is_hf(spec: str) -> bool:
    # lexformer.hf.loading imports no transformers: recognising a spec stays cheap
    from .hf.loading import is_hf_spec

    return is_hf_spec(spec)


def _open_hf(spec: str, method_options: Any = None, device: str | None = None,
             dtype: Any = None) -> LanguageModel:
    """A Hugging Face model folder, ``.gguf`` file or built-in name, through
    :func:`lexformer.hf.open_hf_model`."""
    require_transformers()
    from .hf import open_hf_model

    return open_hf_model(spec, options=method_options, device=device, dtype=dtype)


# Tried first: a transformers folder also holds config.json and model.safetensors, all that
# lexformer's checkpoint test looks for; its config.json names a model_type, a lexformer
# one never does.
register_source(ModelSource(
    "hf", "a Hugging Face model folder (config.json with a model_type), a .gguf file, or a "
    "built-in pretrained model (smollm2)", _is_hf, _open_hf), first=True)


def open_model(spec: str | Path, method_options: Any = None, *, device: str | None = None,
               dtype: Any = None, **options: int) -> LanguageModel:
    """The model that ``spec`` names, from the first source that recognises it.

    ``method_options`` (a :class:`lexformer.hf.MethodOptions`), or the same knobs as keywords
    (``open_model(path, block=64)``), tune the attention methods: any of them for a pretrained
    model; ``block`` (h of blockwise) and ``window`` (W of sliding) for a lexformer one.
    ``device``, ``dtype``: where and in which precision (:mod:`lexformer.hf.placement`;
    None: the CPU in float32)."""
    spec = str(spec)
    if options:
        method_options = _with_options(method_options, options)
    placement = {k: v for k, v in (("device", device), ("dtype", dtype)) if v is not None}
    for source in MODEL_SOURCES:
        if source.matches(spec):
            return source.open(spec, method_options, **placement)
    if not Path(spec).exists():
        raise LexformerError(f"model not found: {spec} does not exist" + hub_hint(spec))
    raise LexformerError(
        f"{spec} is not a model lexformer can open; expected "
        + "; or ".join(s.description for s in MODEL_SOURCES))


def _with_options(method_options: Any, options: dict[str, int]):
    """``method_options`` (or the defaults) with the keyword ``options`` set."""
    from .hf.methods import MethodOptions

    known = [f.name for f in fields(MethodOptions)]
    unknown = sorted(set(options) - set(known))
    if unknown:
        raise LexformerError(f"unknown method option(s) {', '.join(unknown)}; known: "
                             + ", ".join(known))
    return replace(method_options or MethodOptions(), **options)


__all__ = ["LEXFORMER_OPTIONS", "MODEL_SOURCES", "ModelSource", "check_lexformer_placement",
           "open_model", "register_source", "require_transformers"]
