"""RULER scored over samples: one :class:`RulerCell` per (task, length) and method."""

from __future__ import annotations

from collections.abc import Sequence

from ...errors import LexformerError
from ...lm import LanguageModel, check_attention
from ..results import RulerCell
from ..scoring import fits, progress, require_fit
from ..settings import DEFAULT_RULER_SAMPLES, default_passkey_lengths
from .core import (
    DRAWS,
    RULER_TASKS,
    build_sample,
    generate_answer,
    sample_rng,
    score_answer,
    task_of,
)
from .data import RulerData, load_ruler_data

_LOADED: dict[object, RulerData] = {}


def ruler_data() -> RulerData:
    """The RULER data, loaded once per process by :func:`load_ruler_data` (looked up here at
    call time, so tests monkeypatch ``lexformer.tasks.ruler.scores.load_ruler_data``)."""
    loader = load_ruler_data
    if loader not in _LOADED:
        _LOADED.clear()
        _LOADED[loader] = loader()
    return _LOADED[loader]


def bare_tokens(task: str, encode, length: int, data: RulerData, seed: int = 0) -> int:
    """Tokens of the fixed text of ``task``'s first sample at ``length`` (no haystack) plus
    the tokens to generate, drawn as :func:`build_sample` draws it (a draw too long for
    ``length`` is replaced by the next): the shortest length the sample can be asked at."""
    spec = task_of(task)
    rng = sample_rng(seed, spec.name, length, 0)
    for _ in range(DRAWS):
        draft = spec.generator(rng, data, length, None)
        bare = len(encode(draft.text(0))) + spec.tokens
        if bare <= length:
            break
    return bare


def check_ruler(model: LanguageModel, attention: str, tasks: Sequence[str],
                lengths: Sequence[int], data: RulerData | None = None) -> None:
    """Every refusal before anything is scored: an unknown task or method, a bad length, a
    length the method cannot score with the tokens to generate, or one the fixed text of a
    task alone exceeds (``data`` defaults to :func:`ruler_data`)."""
    check_attention(model, attention)
    if not tasks:
        raise LexformerError("give at least one RULER task; choose from "
                             + ", ".join(RULER_TASKS))
    specs = [task_of(t) for t in tasks]
    bad = [n for n in lengths if int(n) < 1]
    if bad or not lengths:
        raise LexformerError(f"RULER lengths must be positive integers, got "
                             f"{', '.join(map(str, bad)) or '(none)'}")
    data = data if data is not None else ruler_data()
    for task in specs:
        for n in map(int, lengths):
            require_fit(model, attention, n, f"RULER {task.name} at length {n} (including "
                        f"its {task.tokens} tokens to generate)")
            bare = bare_tokens(task.name, model.encode, n, data)
            if bare > n:
                raise LexformerError(
                    f"RULER {task.name} at length {n} is too short: its fixed text alone is "
                    f"{bare} tokens with the {task.tokens} to generate")


def resolve_ruler_lengths(model: LanguageModel, attention: str,
                          tasks: Sequence[str] | None, lengths: Sequence[int] | None,
                          data: RulerData | None = None) -> list[int]:
    """The lengths to run: explicit ones checked (one clear error); the defaults (passkey's,
    L/2 … 16·L) keep those the model can score that hold every task's fixed text."""
    tasks = list(tasks or RULER_TASKS)
    if lengths is not None:
        check_ruler(model, attention, tasks, lengths, data)
        return sorted(set(map(int, lengths)))
    check_attention(model, attention)
    data = data if data is not None else ruler_data()
    keep = [n for n in default_passkey_lengths(model.context_length)
            if fits(model, attention, n)
            and all(bare_tokens(t, model.encode, n, data) <= n for t in tasks)]
    if not keep:
        raise LexformerError(f"no default RULER length fits {model.name} with {attention} "
                             "attention; give --ruler-lengths")
    return keep


def ruler_scores(model: LanguageModel, attention: str, tasks: Sequence[str],
                 lengths: Sequence[int], samples: int, seed: int = 0,
                 show_progress: bool = False, data: RulerData | None = None
                 ) -> dict[str, dict[int, RulerCell]]:
    """``{task: {length: RulerCell}}`` of ``model`` under ``attention``; sample i of a
    (task, length) is the same for every method and model (seeded by seed, task, length, i)."""
    if samples < 1:
        raise LexformerError(f"RULER samples must be at least 1, got {samples}")
    data = data if data is not None else ruler_data()
    check_ruler(model, attention, tasks, lengths, data)
    grid: dict[str, dict[int, RulerCell]] = {task_of(t).name: {} for t in tasks}
    cells = [(task_of(t), int(n)) for t in tasks for n in sorted(set(lengths))]
    for task, n in progress(cells, show_progress, f"ruler {attention}"):
        scores = []
        for i in range(samples):
            sample = build_sample(task, model.encode, n, sample_rng(seed, task.name, n, i), data)
            answer = generate_answer(model, attention, task, sample)
            scores.append(score_answer(task, answer, sample.answers))
        grid[task.name][n] = RulerCell.of(scores, seed)
    return grid


__all__ = ["DEFAULT_RULER_SAMPLES", "RulerCell", "bare_tokens", "check_ruler",
           "resolve_ruler_lengths", "ruler_data", "ruler_scores"]
