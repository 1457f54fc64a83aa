"""The context-use options of ``lexformer eval``: ``--task`` and the knobs of each task.

``lexformer eval`` measures perplexity by default; ``--task`` adds (or replaces it with) the
tasks of :mod:`lexformer.tasks` — ``position-loss``, ``copy``, ``passkey``, ``ruler`` — under
the same attention modes, on the same corpus and split. Task documents are the split's
documents that hold at least the longest evaluation length (and, for copy, the prefix, the
span and the longest distance). Every value is checked before any model is scored.
"""

from __future__ import annotations

import argparse
import itertools
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from ..errors import LexformerError
from .options import int_list, name_list, seed_type

if TYPE_CHECKING:
    from ..tasks import TaskSettings

PERPLEXITY = "perplexity"

#: task option (argparse dest) → the task it belongs to
OPTION_TASK = {"distances": "copy", "span": "copy", "samples": "copy",
               "passkey_lengths": "passkey", "depths": "passkey", "trials": "passkey",
               "ruler_tasks": "ruler", "ruler_lengths": "ruler", "ruler_samples": "ruler"}
RULER = "ruler"


class TaskNames(list):
    """The ``--task`` names (a list, perplexity first, then the registry's order) and, in
    ``ruler``, the RULER tasks named after ``ruler:`` (None: not named there)."""

    ruler: list[str] | None = None


def _ruler_names(names: list[str]) -> list[str]:
    from ..tasks.ruler import RULER_TASKS

    bad = [n for n in names if n not in RULER_TASKS]
    if bad or not names:
        raise argparse.ArgumentTypeError(
            f"unknown RULER task(s) {', '.join(bad) or '(none)'}; choose from "
            + ", ".join(RULER_TASKS))
    return [n for n in RULER_TASKS if n in names]


def _split_ruler(names: list[str]) -> tuple[list[str], list[str] | None]:
    """``ruler:a,b,passkey`` → (tasks with ``ruler``, [a, b]): the RULER names run from
    ``ruler:`` up to the next name that is not a RULER task."""
    from ..tasks.ruler import RULER_TASKS

    tasks, picked, i = [], None, 0
    while i < len(names):
        name, i = names[i], i + 1
        if not name.startswith(RULER + ":"):
            tasks.append(name)
            continue
        run = list(itertools.takewhile(lambda n: n in RULER_TASKS, names[i:]))
        picked = (picked or []) + _ruler_names([name.split(":", 1)[1].strip(), *run])
        tasks.append(RULER)
        i += len(run)
    return tasks, picked


def ruler_task_list(text: str) -> list[str]:
    return _ruler_names(name_list(text))


def task_names(text: str) -> TaskNames:
    """Comma-separated task names, checked at parse time, in a fixed order (perplexity
    first, then the registry's); ``ruler:a,b`` runs RULER's tasks a and b."""
    from ..tasks import TASKS

    known = (PERPLEXITY, *TASKS)
    names, ruler = _split_ruler(name_list(text))
    bad = [n for n in names if n not in known]
    if bad or not names:
        raise argparse.ArgumentTypeError(
            f"unknown task(s) {', '.join(bad) or '(none)'}; choose from {', '.join(known)} "
            "(ruler:TASK,... picks RULER tasks)")
    chosen = TaskNames(n for n in known if n in names)
    chosen.ruler = ruler
    return chosen


def float_list(text: str) -> list[float]:
    try:
        return [float(x) for x in text.split(",") if x.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"expected comma-separated numbers, got {text!r}") from None


def add_task_options(p: argparse.ArgumentParser) -> None:
    """``--task`` and the task knobs; a knob left out keeps the task's default (the options
    are absent from the namespace, so a knob given for a task not run can be refused)."""
    g = p.add_argument_group(
        "context-use tasks",
        "position-loss: mean token loss by position in log-spaced bins, over chunks of "
        "max(--lengths) tokens. copy: how much of a span's loss is recovered when it repeats "
        "d tokens later (gain 0: context unused, 1: exact copy); its text holds L/2 + span + "
        "the longest distance tokens of one document. passkey: retrieval of a 5-digit key "
        "hidden at a depth in filler text (needs the model's tokenizer). ruler: RULER's 13 "
        "synthetic tasks (needle-in-a-haystack variants, variable tracking, word extraction, "
        "QA; data fetched once with pip). L is the model's "
        "training (context) length; the tasks run on --corpus/--split under every --attention "
        "method.")
    g.add_argument("--task", type=task_names, default=PERPLEXITY,
                   help="comma-separated: perplexity, position-loss, copy, passkey, ruler "
                        "(ruler:TASK,... for some of RULER's tasks)")
    keep = argparse.SUPPRESS
    g.add_argument("--distances", type=int_list, default=keep,
                   help="copy distances in tokens (default: L/8, L/4, …, 16·L)")
    g.add_argument("--span", type=int, default=keep, help="copied span in tokens (default 32)")
    g.add_argument("--samples", type=int, default=keep,
                   help="copy samples per distance (default 16)")
    g.add_argument("--passkey-lengths", type=int_list, default=keep,
                   help="passkey prompt lengths in tokens (default: L/2, L, …, 16·L)")
    g.add_argument("--depths", type=float_list, default=keep,
                   help="passkey key depths in [0, 1] (default 0,0.25,0.5,0.75,1)")
    g.add_argument("--trials", type=int, default=keep,
                   help="passkey prompts per (length, depth) (default 10)")
    g.add_argument("--ruler-tasks", type=ruler_task_list, default=keep,
                   help="RULER tasks to run (default: all 13; also --task ruler:a,b)")
    g.add_argument("--ruler-lengths", type=int_list, default=keep,
                   help="RULER prompt lengths in tokens, including the tokens to generate "
                        "(default: --lengths when given, else L/2, L, …, 16·L, those the "
                        "model can score)")
    g.add_argument("--ruler-samples", type=int, default=keep,
                   help="RULER prompts per (task, length) (default 10)")
    g.add_argument("--seed", type=seed_type, default=0,
                   help="seed of the copy positions, the pass keys and the RULER samples")
    g.add_argument("--plots", metavar="DIR",
                   help="write the task figures (position-loss.png, copy-gain.png, "
                        "passkey.png, ruler.png) here; without it they go beside --json as "
                        "<json name>.<figure>.png, and without --json nowhere")


def task_settings(args: argparse.Namespace) -> TaskSettings:
    """The :class:`~lexformer.tasks.TaskSettings` the options ask for (checked)."""
    from ..tasks import TaskSettings

    given = {k: getattr(args, k) for k in OPTION_TASK if hasattr(args, k)}
    named = getattr(args.task, "ruler", None)
    if named is not None:  # ruler:a,b and --ruler-tasks together run both lists
        given["ruler_tasks"] = [*named, *given.get("ruler_tasks", ())]
    for key in ("distances", "passkey_lengths", "depths", "ruler_tasks", "ruler_lengths"):
        if key in given:
            given[key] = tuple(given[key])
    return TaskSettings(seed=args.seed, **given)


def check_task_args(args: argparse.Namespace) -> None:
    """Every problem with the task options alone, before a model is loaded."""
    from ..fileio import ensure_writable_dir

    unused = [k for k, task in OPTION_TASK.items() if hasattr(args, k) and task not in args.task]
    if unused:
        option = "--" + unused[0].replace("_", "-")
        raise LexformerError(f"{option} applies to the {OPTION_TASK[unused[0]]} task; add it "
                             f"to --task (now {','.join(args.task)})")
    task_settings(args)
    if args.plots and args.task == [PERPLEXITY]:
        raise LexformerError("--plots holds the figures of position-loss, copy, passkey or "
                             "ruler; add one of them to --task")
    if args.plots:
        ensure_writable_dir(args.plots, "--plots folder")


@dataclass
class TaskPlan:
    """The tasks to run, checked against the model: names, settings, documents."""

    names: list[str]
    settings: TaskSettings
    documents: list[np.ndarray]


def longest_distance(settings: TaskSettings, context_length: int) -> int:
    from ..tasks import default_distances

    return max(settings.distances or default_distances(context_length))


def document_length(names: list[str], settings: TaskSettings, context_length: int,
                    top: int) -> int:
    """Tokens each task document must hold: the longest evaluation length, and for copy the
    prefix, the span and the longest distance (the copied text must be real text)."""
    if "copy" not in names:
        return top
    prefix = settings.prefix if settings.prefix is not None else max(1, context_length // 2)
    return max(top, prefix + settings.span + longest_distance(settings, context_length))


def plan_tasks(args: argparse.Namespace, model, corpus: str, top: int) -> TaskPlan | None:
    """Documents and every task check (no scoring); None when only perplexity is asked."""
    import dataclasses

    from ..evaluate import evaluation_documents
    from ..tasks import TASKS

    names = [n for n in args.task if n != PERPLEXITY]
    if not names:
        return None
    settings = dataclasses.replace(task_settings(args), length=top)
    if RULER in names and settings.ruler_lengths is None and args.lengths is not None:
        # `eval --task ruler --lengths 4096,16384` asks RULER at those lengths
        settings = dataclasses.replace(settings, ruler_lengths=tuple(args.lengths))
    documents: list[np.ndarray] = []
    if any(TASKS[n].needs_documents for n in names):
        need = document_length(names, settings, model.context_length, top)
        try:
            documents = evaluation_documents(corpus, model, args.split, need, args.max_docs)
        except LexformerError as e:
            if need == top or "no document has" not in str(e):
                raise
            raise LexformerError(
                f"copy up to distance {longest_distance(settings, model.context_length)} "
                f"needs documents of {need} tokens (prefix + span + distance) and no "
                f"{args.split} document of {corpus} holds that many; give smaller "
                "--distances") from None
    for attention in args.attention:  # each check also refuses a method the model lacks
        for name in names:
            TASKS[name].check(model, attention, documents, settings)
    return TaskPlan(names, settings, documents)


def plot_folder(args: argparse.Namespace) -> tuple[Path, str] | None:
    """(folder, file-name prefix) of the task figures, or None for no figures."""
    if args.plots:
        return Path(args.plots), ""
    if args.json:
        return Path(args.json).parent, Path(args.json).stem + "."
    return None


def run_planned_tasks(args: argparse.Namespace, model, plan: TaskPlan) -> dict[str, Any]:
    """Score the planned tasks, print their tables, draw their figures; returns the JSON
    fields ``tasks`` and ``task_settings``."""
    from ..tasks import run_tasks
    from ..tasks.tables import format_task_tables

    results = run_tasks(model, plan.names, args.attention, plan.documents, plan.settings,
                        progress=not args.no_progress)
    print(format_task_tables(results))
    target = plot_folder(args)
    if target is not None:
        from ..tasks.plots import plot_task_results

        for path in plot_task_results(results, target[0], model.context_length, target[1]):
            print(f"wrote {path}")
    return {"tasks": results.to_json(), "task_settings": _settings_json(plan.settings)}


def _settings_json(settings: TaskSettings) -> dict[str, Any]:
    from dataclasses import asdict

    return {k: list(v) if isinstance(v, tuple) else v for k, v in asdict(settings).items()}


__all__ = ["PERPLEXITY", "TaskPlan", "add_task_options", "check_task_args", "plan_tasks",
           "run_planned_tasks", "task_names", "task_settings"]
