"""Figures of the reproduction: expectation curves (paper Figure 1), perplexity against
length (Table 2 as a plot) and measured expected scores ŝ[n].

Every function creates the output folder, writes a PNG at 120 dpi atomically (a kill leaves
the old file or the new, never a damaged one; a symlink at the path is replaced, not written
through), closes its figure and returns the path. Legends sit outside the axes, so they never
cover a curve. matplotlib is imported inside the functions, with the Agg backend, so that
importing :mod:`lexformer` never touches matplotlib or a display.

Figures draw computed results: the numbers come from :mod:`lexformer.analysis` and the
reports, so this module imports no other part of lexformer but :mod:`lexformer.fileio`.
:func:`plot_by_length` is the one figure of a value against a log2 length axis that every
report draws.

Curves are keyed by :class:`lexformer.evaluate.Label` — a ``(scheme, attention)`` pair —
and get one colour per scheme and one line style per attention mode (full solid, blockwise
dashed, sliding dotted), so a scheme's two curves read as a pair. The legend shows
``"<scheme> / <attention>"``. The small helpers every figure uses — :func:`pyplot`,
:func:`save_figure`, :func:`line_styles`, :func:`legend_label` — are public, so the figures of
:mod:`lexformer.tasks.plots` share them.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from .fileio import atomic_write_with

DPI = 120
#: line style per attention mode; other methods (a pretrained model's) get dash-dot
LINESTYLES = {"full": "-", "blockwise": "--", "sliding": ":"}


def pyplot():
    """matplotlib.pyplot on the Agg backend (no display needed), imported on first use."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def save_figure(fig: Any, path: str | Path) -> Path:
    """Write ``fig`` as a PNG at :data:`DPI` (creating the folder), close it, return the path.

    Written through :func:`lexformer.fileio.atomic_write_with`, like every other output; the
    tight bounding box keeps a legend placed outside the axes inside the image."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        atomic_write_with(path, lambda f: fig.savefig(f, format="png", dpi=DPI,
                                                      bbox_inches="tight"))
    finally:
        pyplot().close(fig)
    return path


def split_label(key: Any) -> tuple[str, str]:
    """``(scheme, attention)`` of a curve key: a pair, a ``"scheme / attention"`` string, or a
    bare attention mode (scheme ``""``) or model name (attention ``""``)."""
    if isinstance(key, tuple):
        return str(key[0]), str(key[1])
    if " / " in key:
        scheme, attention = key.split(" / ", 1)
        return scheme.strip(), attention.strip()
    return ("", key) if key in LINESTYLES else (key, "")


def legend_outside(ax: Any, fontsize: float = 8, entries: Mapping[str, Any] | None = None
                   ) -> None:
    """The axes' legend (or ``entries``: label → handle) to their right, outside the plotting
    area: inside ("best") it still covers points when eight or ten curves fill the panel."""
    given = () if entries is None else (list(entries.values()), list(entries))
    ax.legend(*given, fontsize=fontsize, loc="upper left", bbox_to_anchor=(1.02, 1.0),
              borderaxespad=0.0)


def legend_label(key: Any) -> str:
    return " / ".join(part for part in split_label(key) if part)


def line_styles(keys: Iterable[Any]) -> dict[Any, dict[str, Any]]:
    """``{key: {"color", "linestyle"}}``: one colour per scheme (bare attention modes each get
    their own), one line style per attention mode, so a scheme's curves read as a group."""
    cycle = pyplot().rcParams["axes.prop_cycle"].by_key().get("color", ["C0"])
    colours: dict[str, Any] = {}
    styles = {}
    for key in keys:
        scheme, attention = split_label(key)
        colour_key = scheme or attention
        colours.setdefault(colour_key, cycle[len(colours) % len(cycle)])
        styles[key] = {"color": colours[colour_key],
                       "linestyle": LINESTYLES.get(attention, "-." if attention else "-")}
    return styles


# --------------------------------------------------------------------------- figures
def plot_expectation_curves(path: str | Path, curves: Any) -> Path:
    """Paper Figure 1 from computed curves (an :class:`lexformer.analysis.ExpectationCurves`,
    made by :func:`lexformer.analysis.expectation_curves`): expected score g[n] of all-ones
    q, k against relative distance n; the legend gives each curve's resolution R."""
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(7, 4))
    for name, g in curves.curves.items():
        ax.plot(np.arange(len(g)), g, linewidth=1.0,
                label=f"{name} (R = {curves.resolutions[name]:.3f})")
    ax.axhline(0.0, color="grey", linewidth=0.5)
    ax.set_xlabel("relative distance")
    ax.set_ylabel("expected attention score")
    ax.set_title(f"Expectation of q·k for all-ones q, k (head dim {curves.head_dim})")
    ax.set_xlim(0, curves.max_distance)
    legend_outside(ax, fontsize=9)
    ax.grid(alpha=0.3)
    return save_figure(fig, path)


@dataclass
class LengthPanel:
    """One panel of :func:`plot_by_length`: ``curves`` key → {length: value} (None and
    non-finite values are skipped), optional ``bands`` key → {length: (low, high)} drawn as a
    shaded interval, a dashed vertical line at ``mark`` labelled ``mark_label``, grey
    horizontal guides at ``guides`` and the x ticks (default: every length drawn and ``mark``,
    thinned to at most ~12)."""

    curves: Mapping[Any, Mapping[Any, float | None]]
    title: str = ""
    mark: int | None = None
    mark_label: str = ""
    bands: Mapping[Any, Mapping[Any, tuple[float, float]]] = field(default_factory=dict)
    ticks: Sequence[int] | None = None
    guides: Sequence[float] = ()


def _draw_curves(ax: Any, panel: LengthPanel, styles: Mapping[Any, dict[str, Any]],
                 widths: Mapping[Any, float]) -> tuple[list[int], list[float]]:
    lengths: set[int] = set()
    values: list[float] = []
    for key, per in panel.curves.items():
        points = sorted((int(n), float(v)) for n, v in per.items()
                        if v is not None and math.isfinite(float(v)))
        if not points:
            continue
        xs, ys = zip(*points)
        line, = ax.plot(xs, ys, marker="o", markersize=3, label=legend_label(key),
                        **styles.get(key, {}), **({"linewidth": widths[key]}
                                                  if key in widths else {}))
        band = panel.bands.get(key, {})
        bx = [n for n in xs if n in band and all(map(math.isfinite, band[n]))]
        if bx:
            ax.fill_between(bx, [band[n][0] for n in bx], [band[n][1] for n in bx],
                            color=line.get_color(), alpha=0.1, linewidth=0)
        lengths.update(xs)
        values.extend(ys)
    return sorted(lengths), values


def _log_y(ax: Any) -> None:
    """A logarithmic y axis labelled in plain numbers (120, not 1.2×10²); within one decade the
    intermediate ticks are labelled too, so a narrow range still reads."""
    from matplotlib import ticker

    ax.set_yscale("log")
    ax.yaxis.set_major_formatter(ticker.LogFormatter())
    ax.yaxis.set_minor_formatter(ticker.LogFormatter(labelOnlyBase=False))


def _length_axes(ax: Any, panel: LengthPanel, lengths: list[int], values: list[float],
                 log_y: bool | None, xlabel: str) -> None:
    if panel.ticks is not None:
        ticks = sorted(panel.ticks)
    else:  # every point, thinned so that many log-spaced bins stay readable
        ticks = sorted(set(lengths) | ({panel.mark} if panel.mark else set()))
        ticks = ticks[:: max(1, -(-len(ticks) // 12))]
    ax.set_xscale("log", base=2)
    ax.set_xticks(ticks)
    ax.set_xticklabels([str(n) for n in ticks])
    ax.minorticks_off()
    finite = [v for v in values if v > 0 and math.isfinite(v)]
    if log_y or (log_y is None and finite and max(finite) / min(finite) > 10):
        _log_y(ax)
    for level in panel.guides:
        ax.axhline(level, color="grey", linewidth=0.5)
    if panel.mark:
        ax.axvline(panel.mark, color="black", linestyle="--", linewidth=1.0,
                   label=panel.mark_label)
    ax.set_xlabel(xlabel)
    ax.set_title(panel.title)
    ax.grid(alpha=0.3, which="both")


def plot_by_length(path: str | Path, panels: Sequence[LengthPanel], ylabel: str, *,
                   styles: Mapping[Any, dict[str, Any]] | None = None,
                   widths: Mapping[Any, float] | None = None, log_y: bool | None = None,
                   panel_size: tuple[float, float] = (6.5, 4.5), share_y: bool = False,
                   every_legend: bool = True,
                   xlabel: str = "evaluation length (tokens)",
                   columns: int | None = None) -> Path:
    """A value against a log2 length axis, one panel per :class:`LengthPanel` side by side
    (``columns`` per row, default all in one row), one line per key (with its interval band
    where one is given).

    ``styles``: key → plot keywords (e.g. :func:`line_styles`; default: matplotlib's colour
    cycle); ``widths``: key → line width; ``log_y`` None: logarithmic y where the values span
    more than a factor of 10 (pass True for perplexities). With ``share_y`` the panels share
    the y axis and only the first of each row gets the y label. Legends sit right of their
    panel, outside it; ``every_legend`` False: one legend for all panels (each label once),
    right of the last.
    """
    plt = pyplot()
    cols = min(columns or len(panels), len(panels))
    rows = -(-len(panels) // cols)
    # constrained layout makes room for the legends outside the axes
    fig, grid = plt.subplots(rows, cols, figsize=(panel_size[0] * cols, panel_size[1] * rows),
                             squeeze=False, sharey=share_y, layout="constrained")
    axes = list(grid.ravel())
    for ax in axes[len(panels):]:
        ax.set_visible(False)
    for i, (ax, panel) in enumerate(zip(axes, panels)):
        lengths, values = _draw_curves(ax, panel, styles or {}, widths or {})
        _length_axes(ax, panel, lengths, values, log_y, xlabel)
        if i % cols == 0 or not share_y:
            ax.set_ylabel(ylabel)
        if every_legend:
            legend_outside(ax)
    if not every_legend:
        _one_legend(axes[:len(panels)])
    return save_figure(fig, path)


def _one_legend(axes: Sequence[Any]) -> None:
    """Every panel's entries, each label once, in one legend right of the last panel."""
    entries: dict[str, Any] = {}
    for ax in axes:
        for handle, label in zip(*ax.get_legend_handles_labels()):
            entries.setdefault(label, handle)
    legend_outside(axes[-1], entries=entries)


def plot_perplexity_vs_length(
    path: str | Path,
    results: Mapping[tuple[str, str], Mapping[Any, float | None]],
    train_length: int,
    paper: Mapping[tuple[str, str], Mapping[Any, float]] | None = None,
    paper_train_length: int = 1024,
    bands: Mapping[tuple[str, str], Mapping[Any, tuple[float, float]]] | None = None,
) -> Path:
    """Perplexity against evaluation length, one line per ``(scheme, attention)`` label.

    ``results``: label → {length: perplexity} (None or non-finite values are skipped). The x
    axis is log2 with a tick at every length, the y axis logarithmic (a perplexity is the
    exponential of a loss; one model far above the rest would flatten the others on a linear
    axis), and a dashed vertical line marks the training length. ``bands``: label → {length:
    (low, high)}, the 95 % intervals, drawn shaded. With ``paper`` ({label: {length: ppl}},
    e.g. :data:`lexformer.paper.TABLE2_BY_LABEL`) a second panel shows the paper's numbers
    with its own training length; one legend serves both panels.
    """
    panels = [LengthPanel(results, f"this run (trained at L = {train_length})", train_length,
                          f"train length L = {train_length}", bands=bands or {})]
    if paper:
        panels.append(LengthPanel(paper, "paper, Table 2 (trained at L = "
                                  f"{paper_train_length})", paper_train_length,
                                  f"train length L = {paper_train_length}"))
    styles = line_styles(list(results) + (list(paper) if paper else []))
    return plot_by_length(path, panels, "perplexity", styles=styles, log_y=True,
                          every_legend=False)


def plot_expected_scores(path: str | Path, curves: Mapping[tuple[str, str], Any]) -> Path:
    """Measured ŝ[n] (mean pre-softmax score at distance n) per ``(scheme, attention)``.

    NaN entries (distances no query can see, e.g. ≥ L under blockwise attention) leave gaps.
    """
    plt = pyplot()
    styles = line_styles(curves)
    fig, ax = plt.subplots(figsize=(7, 4))
    for label, s_hat in curves.items():
        s_hat = np.asarray(s_hat, dtype=np.float64)
        ax.plot(np.arange(s_hat.size), s_hat, linewidth=1.0, label=legend_label(label),
                **styles[label])
    ax.set_xlabel("relative distance n")
    ax.set_ylabel("mean pre-softmax score ŝ[n]")
    ax.set_title("Expected attention score by distance (paper Eq. 11)")
    legend_outside(ax)
    ax.grid(alpha=0.3)
    return save_figure(fig, path)


__all__ = ["DPI", "LINESTYLES", "LengthPanel", "legend_label", "legend_outside", "line_styles",
           "plot_by_length", "plot_expectation_curves", "plot_expected_scores",
           "plot_perplexity_vs_length", "pyplot", "save_figure", "split_label"]
