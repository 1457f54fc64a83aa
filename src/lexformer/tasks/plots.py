"""Figures of the context-use tasks: loss by position, copy gain by distance, passkey heatmap,
RULER score by length.

Each takes ``key → series`` so one figure can hold several models. A key is an attention
name (the keys of :class:`TaskResults`), a ``"<scheme> / <attention>"`` string, or a
``(scheme, attention)`` pair like :mod:`lexformer.plots` uses: one colour per scheme, one line
style per attention method (full solid, blockwise dashed, sliding dotted).

matplotlib is imported inside the functions with the Agg backend, so importing
:mod:`lexformer.tasks` never touches it. The two line figures are
:func:`lexformer.plots.plot_by_length` (log2 x, legend outside the axes); the heatmap shares
:func:`~lexformer.plots.pyplot` and :func:`~lexformer.plots.save_figure`, hence the 120 dpi,
the atomic write and the colours and line styles of :mod:`lexformer.plots`.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from ..plots import LengthPanel, legend_label, line_styles, plot_by_length, pyplot, save_figure
from .results import BinLoss, CopyScore, PasskeyCell, RulerResults, TaskResults
from .ruler.core import in_ruler_order


def _panel(curves: Mapping[Any, Mapping[int, float]], title: str, train_length: int | None,
           guides: tuple[float, ...] = ()) -> LengthPanel:
    return LengthPanel(curves, title, train_length,
                       f"train length L = {train_length}" if train_length else "",
                       guides=guides)


def plot_position_loss(path: str | Path, curves: Mapping[Any, Mapping[int, BinLoss]],
                       train_length: int | None = None) -> Path:
    """Mean token loss against position bin end (log2 x), one line per key."""
    losses = {key: {end: b.loss for end, b in bins.items()} for key, bins in curves.items()}
    return plot_by_length(path, [_panel(losses, "Loss by position", train_length)],
                          "mean token loss (nats)", styles=line_styles(curves), log_y=False,
                          panel_size=(7, 4),
                          xlabel="position (tokens of context before the token; bin end)")


def plot_copy_gain(path: str | Path, curves: Mapping[Any, Mapping[int, CopyScore]],
                   train_length: int | None = None) -> Path:
    """Copy gain against distance (log2 x), one line per key; 0 and 1 drawn as guides."""
    gains = {key: {d: s.gain for d, s in scores.items()} for key, scores in curves.items()}
    return plot_by_length(path, [_panel(gains, "Copy at a distance", train_length,
                                        guides=(0.0, 1.0))],
                          "copy gain 1 − loss(repeat) / loss(control)",
                          styles=line_styles(curves),
                          log_y=False, panel_size=(7, 4),
                          xlabel="distance d (tokens between the span and its repeat)")


def _heatmap(ax: Any, grid: Mapping[int, Mapping[float, PasskeyCell]], title: str) -> Any:
    lengths = sorted(grid)
    depths = sorted({d for row in grid.values() for d in row})
    values = [[grid[n][d].accuracy if d in grid[n] else math.nan for n in lengths]
              for d in depths]
    image = ax.imshow(values, vmin=0.0, vmax=1.0, cmap="RdYlGn", aspect="auto",
                      origin="lower")
    ax.set_xticks(range(len(lengths)), [str(n) for n in lengths])
    ax.set_yticks(range(len(depths)), [f"{d:g}" for d in depths])
    for row, depth_values in enumerate(values):
        for col, v in enumerate(depth_values):
            if math.isfinite(v):
                ax.text(col, row, f"{v:.2f}", ha="center", va="center", fontsize=7)
    ax.set_xlabel("prompt length (tokens)")
    ax.set_title(title, fontsize=9)
    return image


def plot_passkey(path: str | Path,
                 grids: Mapping[Any, Mapping[int, Mapping[float, PasskeyCell]]]) -> Path:
    """One accuracy heatmap (depth × length) per key, side by side."""
    keys = [key for key, grid in grids.items() if grid]
    columns = max(1, len(keys))
    fig, axes = pyplot().subplots(1, columns, figsize=(4.5 * columns, 3.8), squeeze=False)
    image = None
    for ax, key in zip(axes[0], keys):
        image = _heatmap(ax, grids[key], legend_label(key))
    if image is not None:
        fig.colorbar(image, ax=list(axes[0]), label="accuracy", shrink=0.9)
    axes[0, 0].set_ylabel("key depth (fraction of the filler before the key)")
    fig.suptitle("Passkey retrieval")
    return save_figure(fig, path)


def plot_ruler(path: str | Path, results: RulerResults, train_length: int | None = None
               ) -> Path:
    """RULER score against length (log2 x), one panel per task, one line per key (attention
    method) with its 95 % interval shaded; the model's context L marked."""
    tasks = in_ruler_order(t for per in results.values() for t in per)
    mark = f"context L = {train_length}" if train_length else ""
    panels = []
    for task in tasks:
        cells = {key: per[task] for key, per in results.items() if task in per}
        panels.append(LengthPanel(
            {k: {n: c.score for n, c in row.items()} for k, row in cells.items()}, task,
            train_length, mark, bands={k: {n: c.ci95 for n, c in row.items()}
                                       for k, row in cells.items()}, guides=(0.0, 1.0)))
    return plot_by_length(path, panels, "RULER score (recall of the answers)",
                          styles=line_styles(results), log_y=False, panel_size=(3.6, 3.0),
                          share_y=True, every_legend=False, xlabel="prompt length (tokens)",
                          columns=4)


def plot_task_results(results: TaskResults, folder: str | Path,
                      train_length: int | None = None, prefix: str = "") -> list[Path]:
    """The figures of every task present in ``results``: ``<prefix>position-loss.png``,
    ``<prefix>copy-gain.png``, ``<prefix>passkey.png``, ``<prefix>ruler.png`` in ``folder``."""
    folder = Path(folder)
    paths = []
    if results.position_loss:
        paths.append(plot_position_loss(folder / f"{prefix}position-loss.png",
                                        results.position_loss, train_length))
    if results.copy:
        paths.append(plot_copy_gain(folder / f"{prefix}copy-gain.png", results.copy,
                                    train_length))
    if results.passkey:
        paths.append(plot_passkey(folder / f"{prefix}passkey.png", results.passkey))
    if results.ruler:
        paths.append(plot_ruler(folder / f"{prefix}ruler.png", results.ruler, train_length))
    return paths


__all__ = ["plot_copy_gain", "plot_passkey", "plot_position_loss", "plot_ruler",
           "plot_task_results"]
