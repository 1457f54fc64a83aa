"""RULER's 13 tasks: the registry, sample fitting, RULER's scoring and the scored grid."""

from __future__ import annotations

import random
import re
import zlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np

from ...errors import LexformerError
from ...lm import LanguageModel
from . import generators as g
from .data import RulerData, load_ruler_data

#: (rng, data, length, depth) → the sample's draft
Generator = Callable[[random.Random, RulerData, int, "float | None"], g.Draft]


@dataclass(frozen=True)
class RulerTask:
    """One of RULER's tasks: ``tokens`` is RULER's tokens_to_generate, ``metric`` its
    ``string_match_all`` ("all") or ``string_match_part`` ("part")."""

    name: str
    summary: str
    tokens: int
    generator: Generator
    metric: str


def _niah(haystack: str, key: str, value: str, keys: int = 1, values: int = 1,
          queries: int = 1) -> Generator:
    cfg = g.NiahConfig(haystack, key, value, keys, values, queries)
    return lambda rng, data, length, depth: g.niah(cfg, rng, data, depth)


_TASKS = (
    ("niah_single_1", "one number under a word key, in repeated filler",
     _niah("repeat", "words", "numbers")),
    ("niah_single_2", "one number under a word key, in essays", _niah("essay", "words", "numbers")),
    ("niah_single_3", "one uuid under a word key, in essays", _niah("essay", "words", "uuids")),
    ("niah_multikey_1", "one of 4 word keys' numbers, in essays",
     _niah("essay", "words", "numbers", keys=4)),
    ("niah_multikey_2", "one word key's number among distractor needles",
     _niah("needle", "words", "numbers")),
    ("niah_multikey_3", "one uuid key's uuid among distractor needles",
     _niah("needle", "uuids", "uuids")),
    ("niah_multivalue", "all 4 numbers of one word key, in essays",
     _niah("essay", "words", "numbers", values=4)),
    ("niah_multiquery", "the numbers of 4 word keys, in essays",
     _niah("essay", "words", "numbers", keys=4, queries=4)),
)
RULER_TASKS: dict[str, RulerTask] = {
    **{name: RulerTask(name, summary, 128, gen, "all") for name, summary, gen in _TASKS},
    "vt": RulerTask("vt", "variables bound to a value through a 4-hop chain", 30,
                    lambda rng, data, length, depth: g.variable_tracking(rng), "all"),
    "cwe": RulerTask("cwe", "the 10 most common words of a numbered list", 120,
                     lambda rng, data, length, depth: g.common_words(rng, data, length), "all"),
    "fwe": RulerTask("fwe", "the 3 most frequent coded words (Zipf, alpha 2)", 50,
                     lambda rng, data, length, depth: g.frequent_words(rng, length), "all"),
    "qa_1": RulerTask("qa_1", "a SQuAD question over its paragraph among distractors", 32,
                      lambda rng, data, length, depth: g.question_answering(rng, data.squad),
                      "part"),
    "qa_2": RulerTask("qa_2", "a HotpotQA question over its paragraphs among distractors", 32,
                      lambda rng, data, length, depth: g.question_answering(rng, data.hotpotqa),
                      "part"),
}


#: draws of a sample before a length is refused: a draw whose fixed text alone (a QA
#: question's gold documents, long uuid keys) is too long is replaced by the next one
DRAWS = 20


@dataclass(frozen=True)
class RulerSample:
    """One prompt: ``ids`` has at most ``length - task.tokens`` tokens; ``depth`` is where
    the (first) needle sits as a fraction of the haystack (None without one); ``units`` the
    haystack units it holds."""

    text: str
    ids: list[int]
    answers: list[str]
    depth: float | None
    units: int = 0


def in_ruler_order(names) -> list[str]:
    """``names`` (each once) in RULER's order, names it does not know last (as given): saved
    JSON comes back with its keys sorted."""
    names = list(dict.fromkeys(names))
    order = {n: i for i, n in enumerate(RULER_TASKS)}
    return sorted(names, key=lambda n: order.get(n, len(order)))


def task_of(task: str | RulerTask) -> RulerTask:
    if isinstance(task, RulerTask):
        return task
    if task not in RULER_TASKS:
        raise LexformerError(f"unknown RULER task {task!r}; choose from {', '.join(RULER_TASKS)}")
    return RULER_TASKS[task]


def sample_rng(seed: int, task: str, length: int, index: int) -> random.Random:
    """The random source of one sample: the same for every attention method and model."""
    state = np.random.SeedSequence([seed, zlib.crc32(task.encode()), length, index])
    return random.Random(int(state.generate_state(2, np.uint64)[0]))


def _fit(draft: g.Draft, encode: Callable[[str], list[int]], budget: int
         ) -> tuple[int, list[int]] | None:
    """The most haystack units whose prompt has at most ``budget`` tokens (None when even
    none is too long): grow by doubling, then bisect."""
    ids = encode(draft.text(0))
    if len(ids) > budget:
        return None
    good, bad = 0, None
    step = 1
    while bad is None:
        n = min(good + step, draft.max_units)
        if n == good:
            return good, ids
        trial = encode(draft.text(n))
        if len(trial) > budget:
            bad = n
        else:
            good, ids, step = n, trial, step * 2
    while bad - good > 1:
        mid = (good + bad) // 2
        trial = encode(draft.text(mid))
        if len(trial) > budget:
            bad = mid
        else:
            good, ids = mid, trial
    return good, ids


def build_sample(task: str | RulerTask, encode: Callable[[str], list[int]], length: int,
                 rng: random.Random | int, data: RulerData, depth: float | None = None
                 ) -> RulerSample:
    """The longest prompt of ``task`` whose tokens plus the tokens to generate are at most
    ``length`` (RULER's max_seq_length); ``rng`` is a Random or a seed. ``depth`` in [0, 1]
    puts the (first) needle of a niah task there instead of at one of RULER's depths."""
    task = task_of(task)
    if depth is not None and not 0.0 <= depth <= 1.0:
        raise LexformerError(f"RULER needle depth must lie in [0, 1], got {depth}")
    rng = rng if isinstance(rng, random.Random) else random.Random(rng)
    for _ in range(DRAWS):
        draft = task.generator(rng, data, length, depth)
        fitted = _fit(draft, encode, length - task.tokens)
        if fitted is not None:
            break
    else:
        bare = len(encode(draft.text(0)))
        raise LexformerError(f"RULER {task.name} at length {length} is too short: its fixed "
                             f"text alone is {bare} tokens plus {task.tokens} to generate")
    units, ids = fitted
    return RulerSample(draft.text(units), ids, list(draft.answers), draft.depth(units), units)


_CONTROL = re.compile(r"[\x00-\x1f]")


def score_answer(task: str | RulerTask, generated_text: str, answers: Sequence[str]) -> float:
    """RULER's metric on one prediction (0 … 1, not RULER's percent): the fraction of the
    answers found in it ("all") or whether any is ("part"); case-insensitive substrings,
    after RULER's clean-up (strip, control characters to newlines)."""
    task = task_of(task)
    if not answers:
        raise LexformerError("RULER scoring needs at least one expected answer")
    text = _CONTROL.sub("\n", generated_text.strip()).strip().lower()
    found = [a.lower() in text for a in answers]
    return sum(found) / len(found) if task.metric == "all" else float(any(found))


def generate_answer(model: LanguageModel, attention: str, task: RulerTask,
                    sample: RulerSample) -> str:
    import torch

    ids = torch.tensor([sample.ids], dtype=torch.int64)
    out = model.greedy(ids, task.tokens, attention)[0].tolist()
    return model.decode(out)


__all__ = ["DRAWS", "RULER_TASKS", "RulerSample", "RulerTask", "build_sample",
           "generate_answer", "in_ruler_order", "load_ruler_data", "sample_rng",
           "score_answer", "task_of"]
