"""Retrieval beside perplexity in ``lexformer extend``: RULER's tasks per method, one stage each.

Perplexity cannot tell whether a method uses what lies far back: a window method that
forgets it can still predict the next word of a novel well. So every method of the run is
also scored on RULER's synthetic tasks (:mod:`lexformer.tasks.ruler`) at a few lengths past
the declared context; every method sees the same seeded samples at a length, so two methods
are compared sample by sample (a paired bootstrap over samples). A method whose every key
stays visible runs them only as far as ``--full-up-to``, as for perplexity.

A stage is saved to ``eval/<method>.ruler.json`` with its key (model, options, tasks,
lengths, samples, seed, the data's source) and reused only on an equal key.
"""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from .reporting import table
from .stages import JsonCodec, Stage, machine_load

#: the tasks of extend's default run: RULER's retrieval tasks that lm-evaluation-harness also
#: runs without a download (one needle in repeated filler; a needle among needles, with number
#: and with UUID values; variable tracking), so the two can check each other; all 13 with
#: ``--ruler-tasks all``
DEFAULT_RULER_TASKS = ("niah_single_1", "niah_multikey_2", "niah_multikey_3", "vt")
#: RULER's lengths as multiples of L (2× and 4× the context)
DEFAULT_RULER_SCALES = (2.0, 4.0)
#: one sample per task and length: what the default run's budget (≤ 60 min on a 2-core CPU,
#: where one 16k-token prompt costs about a minute per method) leaves after perplexity; the
#: intervals say how little one sample tells — ``--preset long`` takes 10
DEFAULT_EXTEND_RULER_SAMPLES = 1


@dataclass
class RetrievalRecord:
    """One method's RULER scores: ``cells[task][length]`` (a ``tasks.ruler.RulerCell``)."""

    method: str
    cells: dict[str, dict[int, Any]]
    seconds: float
    stop_reason: str = ""
    reused: bool = False
    load_average: float | None = None  # the 1-minute load average when the stage ended

    @property
    def lengths(self) -> list[int]:
        return sorted({n for per in self.cells.values() for n in per})


def _record_json(record: RetrievalRecord) -> dict[str, Any]:
    return {"method": record.method, "stage_seconds": record.seconds,
            "stop_reason": record.stop_reason, "load_average": record.load_average,
            "ruler": {task: {str(n): cell.to_json() for n, cell in per.items()}
                      for task, per in record.cells.items()}}


def _record_from_json(data: dict[str, Any]) -> RetrievalRecord:
    from ..tasks.ruler import RulerCell

    cells = {task: {int(n): RulerCell.from_json(cell) for n, cell in per.items()}
             for task, per in data["ruler"].items()}
    return RetrievalRecord(str(data["method"]), cells, float(data["stage_seconds"]),
                           str(data.get("stop_reason", "")), reused=True,
                           load_average=data.get("load_average"))


RETRIEVAL_CODEC = JsonCodec(_record_json, _record_from_json, key_field="settings")


def retrieval_key(base: Mapping[str, Any], tasks: Sequence[str], lengths: Sequence[int],
                  samples: int, seed: int) -> dict[str, Any]:
    """What a saved RULER stage must match: the perplexity stage's model, options and
    protocol-free fields, plus the tasks, lengths, samples, seed and the data's source."""
    from ..tasks.ruler.data import RULER_WHEEL, WORDS_WHEEL

    keep = {k: v for k, v in base.items() if k in ("model", "method_options")}
    data = [f"{w.package}=={w.version}@{w.sha256[:16]}" for w in (RULER_WHEEL, WORDS_WHEEL)]
    return {**keep, "ruler_tasks": list(tasks), "ruler_lengths": list(lengths),
            "ruler_samples": samples, "seed": seed, "ruler_data": data}


def retrieval_stage(model, method: str, tasks: Sequence[str], lengths: list[int], stop: str,
                    samples: int, seed: int, path: Path, key: dict[str, Any], progress: bool,
                    before=None) -> Stage[RetrievalRecord]:
    """Score ``method`` on ``tasks`` at ``lengths`` into ``path`` (or reuse it); ``before``
    points the model at the method's options first."""
    from ..tasks.ruler import ruler_scores

    def compute() -> RetrievalRecord:
        if before is not None:
            before()
        t0 = time.time()
        cells = ruler_scores(model, method, tasks, lengths, samples, seed=seed,
                             show_progress=progress)
        seconds = time.time() - t0
        return RetrievalRecord(method, cells, seconds, stop, load_average=machine_load())

    return Stage("", f"RULER {method} at {', '.join(map(str, lengths))}", compute, key=key,
                 codec=RETRIEVAL_CODEC, path=path,
                 reused=f"    RULER {method}: already scored with these settings, reused")


# --------------------------------------------------------------------------- summaries
def mean_score(record: RetrievalRecord, length: int) -> float | None:
    """The mean over tasks of the mean score over samples at ``length`` (None: not run)."""
    here = [per[length].score for per in record.cells.values() if length in per]
    return float(np.mean(here)) if here else None


def per_sample(record: RetrievalRecord, length: int) -> np.ndarray | None:
    """Every (task, sample) score at ``length`` in a fixed order (tasks sorted), or None."""
    tasks = sorted(t for t, per in record.cells.items() if length in per)
    if not tasks:
        return None
    return np.concatenate([np.asarray(record.cells[t][length].per_sample, dtype=np.float64)
                           for t in tasks])


def paired_difference(a: np.ndarray, b: np.ndarray, seed: int = 0
                      ) -> tuple[float, tuple[float, float]]:
    """Mean score of a minus b over the same (task, sample) items, with a 95 % percentile
    bootstrap interval over items (both resampled together: the interval of the mean of the
    per-item differences, :func:`lexformer.stats.mean_interval`); one item: (−inf, inf)."""
    from ..stats import mean_interval

    diff = a - b
    if diff.size < 2:
        return float(diff.mean()), (-np.inf, np.inf)
    return float(diff.mean()), mean_interval(diff, seed)





# --------------------------------------------------------------------------- report
def _score_cell(cell) -> str:
    lo, hi = cell.ci95
    return f"{cell.score:.2f} ({lo:.2f}–{hi:.2f})"


def section_retrieval(run) -> list[str]:
    """``## Retrieval (RULER)``: one table per length, methods × tasks, and the mean."""
    if not run.retrieval:
        return []
    lengths = sorted({n for r in run.retrieval for n in r.lengths})
    tasks = sorted({t for r in run.retrieval for t in r.cells})
    samples = {c.samples for r in run.retrieval for per in r.cells.values() for c in per.values()}
    lines = ["## Retrieval (RULER)", "",
             f"RULER's synthetic tasks (`lexformer.tasks.ruler`), {'/'.join(map(str, samples))} "
             "sample(s) per task and length, the same samples for every method; a cell is the "
             "mean score over samples (RULER's recall of the expected strings) with its 95 % "
             "interval (Wilson for 0/1 scores, else a bootstrap over samples).", ""]
    for n in lengths:
        rows = []
        for r in run.retrieval:
            if n not in r.lengths:
                continue
            mean = mean_score(r, n)
            rows.append([r.method, *(_score_cell(r.cells[t][n]) if n in r.cells.get(t, {})
                                     else "–" for t in tasks),
                         f"{mean:.2f}" if mean is not None else "–"])
        lines += [f"At {n} tokens ({n / run.context:g}·L):", "",
                  *table(["method", *tasks, "mean"], rows), ""]
    stops = [f"- **{r.method}** RULER stops at {max(r.lengths)}: {r.stop_reason}."
             for r in run.retrieval if r.stop_reason]
    return lines + (stops + [""] if stops else [])


def retrieval_findings(run) -> list[str]:
    """At each RULER length: the method with the highest mean score and how the others stand
    against it (paired bootstrap over the same task samples)."""
    out = []
    lengths = sorted({n for r in run.retrieval for n in r.lengths})
    for n in lengths:
        here = {r.method: r for r in run.retrieval if n in r.lengths}
        if len(here) < 2:
            continue
        best = max(here, key=lambda m: mean_score(here[m], n))
        if mean_score(here[best], n) == 0:
            out.append(f"RULER at {n} ({n / run.context:g}·L): every method scores 0.")
            continue
        below, open_ = [], []
        for method, record in here.items():
            if method == best:
                continue
            d, (lo, hi) = paired_difference(per_sample(here[best], n), per_sample(record, n))
            (below if lo > 0 else open_).append(f"{method} ({-d:+.2f})")
        text = (f"RULER at {n} ({n / run.context:g}·L): {best} scores highest (mean "
                f"{mean_score(here[best], n):.2f}).")
        if below:
            text += " It is above " + ", ".join(below) + " (paired interval excludes zero)."
        if open_:
            text += (" The samples cannot order it against " + ", ".join(open_) + ".")
        out.append(text)
    return out


__all__ = ["DEFAULT_EXTEND_RULER_SAMPLES", "DEFAULT_RULER_SCALES", "DEFAULT_RULER_TASKS",
           "RetrievalRecord", "mean_score", "paired_difference", "per_sample",
           "retrieval_findings", "retrieval_key", "retrieval_stage", "section_retrieval"]
