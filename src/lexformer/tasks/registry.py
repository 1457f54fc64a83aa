"""The task registry and the one entry point the CLI and the pipeline call."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from ..errors import LexformerError
from ..lm import LanguageModel, check_attention
from .copying import copy_at_distance, plan_copy
from .passkey import passkey_accuracy, resolve_lengths
from .position_loss import plan_position_loss, position_loss
from .results import TaskResults
from .ruler.core import RULER_TASKS
from .ruler.scores import resolve_ruler_lengths, ruler_data, ruler_scores
from .settings import TaskSettings

#: (model, attention, documents, settings, show_progress) → one attention method's results
TaskRunner = Callable[[LanguageModel, str, Sequence[np.ndarray], TaskSettings, bool], Any]
#: (model, attention, documents, settings) → None, or a LexformerError; scores nothing
TaskCheck = Callable[[LanguageModel, str, Sequence[np.ndarray], TaskSettings], Any]


@dataclass(frozen=True)
class Task:
    name: str
    summary: str
    result_field: str  # the TaskResults attribute that holds this task's results
    needs_documents: bool
    check: TaskCheck
    run: TaskRunner


def _check_position_loss(model, attention, documents, s: TaskSettings):
    plan_position_loss(model, documents, attention, s.length)


def _position_loss(model, attention, documents, s: TaskSettings, show: bool):
    return position_loss(model, documents, attention, s.length, show)


def _check_copy(model, attention, documents, s: TaskSettings):
    plan_copy(model, documents, attention, s.distances, s.span, s.prefix)


def _copy(model, attention, documents, s: TaskSettings, show: bool):
    return copy_at_distance(model, documents, attention, s.distances, s.span, s.prefix,
                            s.samples, s.seed, show)


def _check_passkey(model, attention, documents, s: TaskSettings):
    resolve_lengths(model, attention, s.passkey_lengths)


def _passkey(model, attention, documents, s: TaskSettings, show: bool):
    return passkey_accuracy(model, attention, s.passkey_lengths, s.depths, s.trials, s.seed,
                            show)


def _check_ruler(model, attention, documents, s: TaskSettings):
    resolve_ruler_lengths(model, attention, s.ruler_tasks, s.ruler_lengths)


def _ruler(model, attention, documents, s: TaskSettings, show: bool):
    tasks = s.ruler_tasks or tuple(RULER_TASKS)
    lengths = resolve_ruler_lengths(model, attention, tasks, s.ruler_lengths)
    return ruler_scores(model, attention, tasks, lengths, s.ruler_samples, s.seed, show,
                        ruler_data())


TASKS: dict[str, Task] = {
    task.name: task for task in (
        Task("position-loss", "mean token loss by position, in log-spaced bins",
             "position_loss", True, _check_position_loss, _position_loss),
        Task("copy", "loss recovered on a span repeated d tokens later", "copy", True,
             _check_copy, _copy),
        Task("passkey", "retrieval of a pass key hidden in filler text", "passkey", False,
             _check_passkey, _passkey),
        Task("ruler", "RULER's 13 synthetic retrieval, tracking and aggregation tasks",
             "ruler", False, _check_ruler, _ruler),
    )
}


def check_task_names(names: Sequence[str]) -> list[str]:
    """``names`` in registry order, or one error naming the unknown ones."""
    unknown = [n for n in names if n not in TASKS]
    if unknown or not names:
        raise LexformerError(f"unknown task(s) {', '.join(unknown) or '(none)'}; choose from "
                             + ", ".join(TASKS))
    return [n for n in TASKS if n in set(names)]


def run_tasks(model: LanguageModel, names: Sequence[str], attentions: Sequence[str],
              documents: Sequence[np.ndarray] = (), settings: TaskSettings | None = None,
              progress: bool = True, **overrides: Any) -> TaskResults:
    """Run the named tasks under every attention method; ``overrides`` are
    :class:`TaskSettings` fields (e.g. ``distances=[64, 128]``) applied on ``settings``.

    Every name, attention method and setting is checked before any scoring starts.
    """
    names = check_task_names(names)
    settings = dataclasses.replace(settings or TaskSettings(), **overrides)
    if not attentions:
        raise LexformerError("give at least one attention method, e.g. full,blockwise")
    for attention in attentions:
        check_attention(model, attention)
    if any(TASKS[n].needs_documents for n in names) and not len(documents):
        raise LexformerError(f"task(s) {', '.join(n for n in names if TASKS[n].needs_documents)}"
                             " need evaluation documents, and none were given")
    for name in names:
        for attention in attentions:
            TASKS[name].check(model, attention, documents, settings)
    results = TaskResults()
    for name in names:
        task = TASKS[name]
        per_attention = getattr(results, task.result_field)
        for attention in attentions:
            per_attention[attention] = task.run(model, attention, documents, settings, progress)
    return results


__all__ = ["TASKS", "Task", "check_task_names", "run_tasks"]
