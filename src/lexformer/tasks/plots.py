"""Figures of the context-use tasks: loss by position, copy gain by distance, passkey heatmap.

Each takes ``key → series`` so one figure can hold several models. A key is an attention
name (the keys of :class:`TaskResults`), a ``"<scheme> / <attention>"`` string, or a
``(scheme, attention)`` pair like :mod:`lexformer.plots` uses: one colour per scheme, one line
style per attention method (full solid, blockwise dashed, sliding dotted).

matplotlib is imported inside the functions with the Agg backend, so importing
:mod:`lexformer.tasks` never touches it. Figures are PNGs at the same 120 dpi as
:mod:`lexformer.plots` (which keeps its save helpers private, hence the small copy here).
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from .results import BinLoss, CopyScore, PasskeyCell, TaskResults

DPI = 120
_LINESTYLES = {"full": "-", "blockwise": "--", "sliding": ":"}


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _save(fig: Any, path: str | Path) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    plt = _pyplot()
    try:
        fig.savefig(path, dpi=DPI, bbox_inches="tight")
    finally:
        plt.close(fig)
    return path


def _scheme_and_attention(key: Any) -> tuple[str, str]:
    if isinstance(key, tuple):
        return str(key[0]), str(key[1])
    if " / " in key:
        scheme, attention = key.split(" / ", 1)
        return scheme.strip(), attention.strip()
    return ("", key) if key in _LINESTYLES else (key, "")


def _legend(key: Any) -> str:
    return " / ".join(part for part in _scheme_and_attention(key) if part)


def _styles(keys: Iterable[Any]) -> dict[Any, dict[str, Any]]:
    cycle = _pyplot().rcParams["axes.prop_cycle"].by_key().get("color", ["C0"])
    colours: dict[str, Any] = {}
    styles = {}
    for key in keys:
        scheme, attention = _scheme_and_attention(key)
        # bare attention names each get a colour of their own; schemes share one per scheme
        colour_key = scheme or attention
        colours.setdefault(colour_key, cycle[len(colours) % len(cycle)])
        styles[key] = {"color": colours[colour_key],
                       "linestyle": _LINESTYLES.get(attention, "-")}
    return styles


def _mark_train_length(ax: Any, train_length: int | None) -> None:
    if train_length:
        ax.axvline(train_length, color="black", linestyle="--", linewidth=1.0,
                   label=f"train length L = {train_length}")


def _line(ax: Any, key: Any, points: list[tuple[int, float]], style: dict[str, Any]
          ) -> list[int]:
    points = sorted((x, y) for x, y in points if math.isfinite(y))
    if not points:
        return []
    xs, ys = zip(*points)
    ax.plot(xs, ys, marker="o", markersize=3, label=_legend(key), **style)
    return list(xs)


def _log2_axis(ax: Any, xs: Iterable[int]) -> None:
    """log2 x with a plain-number tick at every point (thinned to at most ~12 ticks)."""
    ax.set_xscale("log", base=2)
    ticks = sorted(set(xs))
    if ticks:
        ticks = ticks[:: max(1, -(-len(ticks) // 12))]
        ax.set_xticks(ticks, [str(t) for t in ticks], fontsize=8)
        ax.minorticks_off()


def plot_position_loss(path: str | Path, curves: Mapping[Any, Mapping[int, BinLoss]],
                       train_length: int | None = None) -> Path:
    """Mean token loss against position bin end (log2 x), one line per key."""
    styles = _styles(curves)
    fig, ax = _pyplot().subplots(figsize=(7, 4))
    xs: list[int] = []
    for key, bins in curves.items():
        xs += _line(ax, key, [(end, b.loss) for end, b in bins.items()], styles[key])
    _log2_axis(ax, xs)
    _mark_train_length(ax, train_length)
    ax.set_xlabel("position (tokens of context before the token; bin end)")
    ax.set_ylabel("mean token loss (nats)")
    ax.set_title("Loss by position")
    ax.legend(fontsize=8, loc="best")
    ax.grid(alpha=0.3, which="both")
    return _save(fig, path)


def plot_copy_gain(path: str | Path, curves: Mapping[Any, Mapping[int, CopyScore]],
                   train_length: int | None = None) -> Path:
    """Copy gain against distance (log2 x), one line per key; 0 and 1 drawn as guides."""
    styles = _styles(curves)
    fig, ax = _pyplot().subplots(figsize=(7, 4))
    xs: list[int] = []
    for key, scores in curves.items():
        xs += _line(ax, key, [(d, s.gain) for d, s in scores.items()], styles[key])
    _log2_axis(ax, xs)
    for level in (0.0, 1.0):
        ax.axhline(level, color="grey", linewidth=0.5)
    _mark_train_length(ax, train_length)
    ax.set_xlabel("distance d (tokens between the span and its repeat)")
    ax.set_ylabel("copy gain 1 − loss(repeat) / loss(first)")
    ax.set_title("Copy at a distance")
    ax.legend(fontsize=8, loc="best")
    ax.grid(alpha=0.3, which="both")
    return _save(fig, path)


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
    fig, axes = _pyplot().subplots(1, columns, figsize=(4.5 * columns, 3.8), squeeze=False)
    image = None
    for ax, key in zip(axes[0], keys):
        image = _heatmap(ax, grids[key], _legend(key))
    if image is not None:
        fig.colorbar(image, ax=list(axes[0]), label="accuracy", shrink=0.9)
    axes[0, 0].set_ylabel("key depth (fraction of the filler before the key)")
    fig.suptitle("Passkey retrieval")
    return _save(fig, path)


def plot_task_results(results: TaskResults, folder: str | Path,
                      train_length: int | None = None, prefix: str = "") -> list[Path]:
    """The figures of every task present in ``results``: ``<prefix>position-loss.png``,
    ``<prefix>copy-gain.png``, ``<prefix>passkey.png`` in ``folder``."""
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
    return paths


__all__ = ["plot_copy_gain", "plot_passkey", "plot_position_loss", "plot_task_results"]
