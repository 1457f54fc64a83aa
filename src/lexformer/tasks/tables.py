"""Plain-text tables of the context-use tasks, one per task, for a terminal.

* copy: attention methods down, distances across, the copy gain in each cell;
* position-loss: attention methods down, bin ends across, the mean token loss (nats);
* passkey: one row per (attention, depth), prompt lengths across, the accuracy;
* ruler: one row per (task, attention), lengths across, the score and its 95 % interval.

A cell a task did not measure reads ``-``; a non-finite number reads ``nan``.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from typing import Any

from .results import TaskResults
from .ruler.core import in_ruler_order


def _number(value: float, digits: int) -> str:
    return f"{value:.{digits}f}" if math.isfinite(value) else "nan"


def _grid(title: str, rows: Mapping[str, Mapping[Any, Any]], cell: Callable[[Any], str],
          column_name: Callable[[Any], str] = str) -> str:
    """Rows by name, one column per key found in any row (sorted), right-aligned."""
    columns = sorted({key for per in rows.values() for key in per})
    texts = {name: [cell(per[c]) if c in per else "-" for c in columns]
             for name, per in rows.items()}
    head = [column_name(c) for c in columns]
    width = max([len(h) for h in head] + [len(t) for row in texts.values() for t in row]) + 2
    first = max([len(title)] + [len(name) for name in rows]) + 2
    lines = [f"{title:<{first}}" + "".join(f"{h:>{width}}" for h in head)]
    lines += [f"{name:<{first}}" + "".join(f"{t:>{width}}" for t in row)
              for name, row in texts.items()]
    return "\n".join(lines)


def format_copy_table(results: TaskResults) -> str:
    """Copy gain, attention × distance."""
    return _grid("copy gain", results.copy, lambda s: _number(s.gain, 3),
                 lambda d: f"d={d}")


def format_position_loss_table(results: TaskResults) -> str:
    """Mean token loss (nats), attention × position bin (by its last position)."""
    return _grid("loss by pos.", results.position_loss, lambda b: _number(b.loss, 3),
                 lambda end: f"≤{end}")


def format_passkey_table(results: TaskResults) -> str:
    """Passkey accuracy, (attention, depth) × prompt length."""
    rows = {}
    for attention, per_length in results.passkey.items():
        depths = sorted({d for row in per_length.values() for d in row})
        for depth in depths:
            rows[f"{attention} @{depth:g}"] = {n: row[depth] for n, row in per_length.items()
                                                if depth in row}
    return _grid("passkey depth", rows, lambda c: _number(c.accuracy, 2),
                 lambda n: f"n={n}")


def format_ruler_table(results: TaskResults) -> str:
    """RULER score [95 % interval], (task, attention) × length."""
    rows = {}
    tasks = in_ruler_order(t for per in results.ruler.values() for t in per)
    for task in tasks:
        for attention, per_task in results.ruler.items():
            if task in per_task:
                rows[f"{task} {attention}"] = per_task[task]
    return _grid("RULER task", rows, lambda c: f"{_number(c.score, 2)} [{_number(c.ci95[0], 2)}"
                 f"-{_number(c.ci95[1], 2)}]", lambda n: f"n={n}")


def format_task_tables(results: TaskResults) -> str:
    """The table of every task present in ``results``, separated by blank lines."""
    tables = [fmt(results) for present, fmt in (
        (results.position_loss, format_position_loss_table),
        (results.copy, format_copy_table),
        (results.passkey, format_passkey_table),
        (results.ruler, format_ruler_table)) if present]
    return "\n\n".join(tables)


__all__ = ["format_copy_table", "format_passkey_table", "format_position_loss_table",
           "format_ruler_table", "format_task_tables"]
