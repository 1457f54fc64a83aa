"""Figures of the reproduction: expectation curves (paper Figure 1), perplexity against
length (Table 2 as a plot) and measured expected scores ŝ[n].

Every function creates the output folder, writes a PNG at 120 dpi, closes its figure and
returns the path. matplotlib is imported inside the functions, with the Agg backend, so that
importing :mod:`lexformer` never touches matplotlib or a display.

Curves are keyed by :class:`lexformer.evaluate.Label` — a ``(scheme, attention)`` pair —
and get one colour per scheme and one line style per attention mode (full solid, blockwise
dashed, sliding dotted), so a scheme's two curves read as a pair. The legend shows
``"<scheme> / <attention>"``. The small helpers every figure uses — :func:`pyplot`,
:func:`save_figure`, :func:`line_styles`, :func:`legend_label` — are public, so the figures of
:mod:`lexformer.tasks.plots` share them.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import numpy as np

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
    """Write ``fig`` as a PNG at :data:`DPI` (creating the folder), close it, return the path."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        fig.savefig(path, dpi=DPI, bbox_inches="tight")
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
def plot_expectation_curves(
    path: str | Path,
    head_dim: int = 64,
    max_distance: int = 4096,
    gammas: Mapping[str, float | None] | None = None,
    scale_base: float = 512.0,
) -> Path:
    """Paper Figure 1: expected score g[n] of all-ones q, k against relative distance n.

    ``gammas`` maps a legend name to the XPOS γ (None: RoPE); default
    ``{"RoPE": None, "XPOS": 0.4}``. The legend gives each curve's resolution R.
    """
    from .analysis import expectation_curve, resolution

    plt = pyplot()
    gammas = {"RoPE": None, "XPOS": 0.4} if gammas is None else gammas
    fig, ax = plt.subplots(figsize=(7, 4))
    n = np.arange(max_distance + 1)
    for name, gamma in gammas.items():
        g = expectation_curve(head_dim, max_distance, gamma, scale_base)
        ax.plot(n, g, linewidth=1.0, label=f"{name} (R = {resolution(g):.3f})")
    ax.axhline(0.0, color="grey", linewidth=0.5)
    ax.set_xlabel("relative distance")
    ax.set_ylabel("expected attention score")
    ax.set_title(f"Expectation of q·k for all-ones q, k (head dim {head_dim})")
    ax.set_xlim(0, max_distance)
    ax.legend(loc="best")
    ax.grid(alpha=0.3)
    return save_figure(fig, path)


def _length_axes(ax: Any, lengths: list[int], values: list[float], train_length: int,
                 title: str) -> None:
    ax.set_xscale("log", base=2)
    ax.set_xticks(lengths)
    ax.set_xticklabels([str(n) for n in lengths])
    ax.minorticks_off()
    finite = [v for v in values if v > 0 and math.isfinite(v)]
    if finite and max(finite) / min(finite) > 10:
        ax.set_yscale("log")
    ax.axvline(train_length, color="black", linestyle="--", linewidth=1.0,
               label=f"train length L = {train_length}")
    ax.set_xlabel("evaluation length (tokens)")
    ax.set_ylabel("perplexity")
    ax.set_title(title)
    ax.grid(alpha=0.3, which="both")


def _plot_ppl_lines(ax: Any, table: Mapping[tuple[str, str], Mapping[Any, float | None]],
                    styles: Mapping[Any, dict[str, Any]]) -> tuple[list[int], list[float]]:
    lengths: set[int] = set()
    values: list[float] = []
    for label, per in table.items():
        points = sorted((int(n), float(v)) for n, v in per.items()
                        if v is not None and math.isfinite(float(v)))
        if not points:
            continue
        xs, ys = zip(*points)
        ax.plot(xs, ys, marker="o", markersize=3, label=legend_label(label),
                **styles[label])
        lengths.update(xs)
        values.extend(ys)
    return sorted(lengths), values


def plot_perplexity_vs_length(
    path: str | Path,
    results: Mapping[tuple[str, str], Mapping[Any, float | None]],
    train_length: int,
    paper: Mapping[tuple[str, str], Mapping[Any, float]] | None = None,
    paper_train_length: int = 1024,
) -> Path:
    """Perplexity against evaluation length, one line per ``(scheme, attention)`` label.

    ``results``: label → {length: perplexity} (None or non-finite values are skipped). The x
    axis is log2 with a tick at every length, the y axis is logarithmic when the values span
    more than a factor of 10, and a dashed vertical line marks the training length. With
    ``paper`` ({label: {length: ppl}}, e.g. :data:`lexformer.paper.TABLE2_BY_LABEL`) a second panel
    shows the paper's numbers with its own training length.
    """
    plt = pyplot()
    labels = list(results) + (list(paper) if paper else [])
    styles = line_styles(labels)
    ncols = 2 if paper else 1
    fig, axes = plt.subplots(1, ncols, figsize=(6.5 * ncols, 4.5), squeeze=False)
    ax = axes[0, 0]
    lengths, values = _plot_ppl_lines(ax, results, styles)
    _length_axes(ax, sorted(set(lengths) | {train_length}), values, train_length,
                 f"this run (trained at L = {train_length})")
    ax.legend(fontsize=8, loc="best")
    if paper:
        ax = axes[0, 1]
        lengths, values = _plot_ppl_lines(ax, paper, styles)
        _length_axes(ax, sorted(set(lengths) | {paper_train_length}), values,
                     paper_train_length, f"paper, Table 2 (trained at L = {paper_train_length})")
        ax.legend(fontsize=8, loc="best")
    fig.tight_layout()
    return save_figure(fig, path)


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
    ax.legend(fontsize=8, loc="best")
    ax.grid(alpha=0.3)
    return save_figure(fig, path)


__all__ = ["DPI", "LINESTYLES", "legend_label", "line_styles", "plot_expectation_curves",
           "plot_expected_scores", "plot_perplexity_vs_length", "pyplot", "save_figure",
           "split_label"]
