"""Turning a model specification (a path or a name) into a :class:`LanguageModel`.

``open_model(spec)`` tries each registered :class:`ModelSource` in order and opens the spec
with the first that recognises it. Today there is one source, a lexformer run or checkpoint
folder. Other sources (a Hugging Face model folder, a GGUF file, a named pretrained model)
register themselves with :func:`register_source` — see the marked registration point below —
without any change to the commands that call :func:`open_model`.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from .errors import LexformerError
from .lm import LanguageModel, LexformerLM


@dataclass(frozen=True)
class ModelSource:
    """A kind of model: ``matches(spec)`` says whether ``spec`` is one (cheaply: no weights
    read), ``open(spec)`` loads it."""

    name: str
    description: str
    matches: Callable[[str], bool]
    open: Callable[[str], LanguageModel]


class CheckpointLM(LexformerLM):
    """A :class:`LexformerLM` opened from a checkpoint folder, which keeps that checkpoint
    (path, step, training corpus) for provenance."""

    def __init__(self, checkpoint) -> None:
        super().__init__(checkpoint.model, checkpoint.tokenizer, name=checkpoint.config.position)
        self.checkpoint = checkpoint

    @property
    def step(self) -> int | None:
        return self.checkpoint.meta.get("step")

    @property
    def training_corpus(self) -> str | None:
        return self.checkpoint.meta.get("corpus", {}).get("name")


def _is_lexformer_folder(spec: str) -> bool:
    from .checkpoint import has_checkpoint

    return has_checkpoint(spec)


def _open_lexformer(spec: str) -> LanguageModel:
    from .checkpoint import load

    return CheckpointLM(load(spec))


MODEL_SOURCES: list[ModelSource] = [
    ModelSource("lexformer", "a lexformer run or checkpoint folder", _is_lexformer_folder,
                _open_lexformer),
]

# ---------------------------------------------------------------- registration point
# Further sources (``lexformer.hf``: "hf-folder", "gguf", "smollm2") call
# ``register_source(ModelSource(...))`` from their own module; ``open_model`` tries them in
# the order of MODEL_SOURCES. Nothing else in this module needs to change.


def register_source(source: ModelSource, first: bool = False) -> None:
    """Add ``source`` (replacing one of the same name); ``first`` tries it before the others."""
    MODEL_SOURCES[:] = [s for s in MODEL_SOURCES if s.name != source.name]
    MODEL_SOURCES.insert(0, source) if first else MODEL_SOURCES.append(source)


def open_model(spec: str | Path) -> LanguageModel:
    """The model that ``spec`` names, from the first source that recognises it."""
    spec = str(spec)
    for source in MODEL_SOURCES:
        if source.matches(spec):
            return source.open(spec)
    if not Path(spec).exists():
        raise LexformerError(f"model not found: {spec} does not exist")
    raise LexformerError(
        f"{spec} is not a model lexformer can open; expected "
        + "; or ".join(s.description for s in MODEL_SOURCES))


__all__ = ["CheckpointLM", "MODEL_SOURCES", "ModelSource", "open_model", "register_source"]
