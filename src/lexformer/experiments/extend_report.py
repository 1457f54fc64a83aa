"""``report.md`` and the plot of ``lexformer extend``, from an :class:`~lexformer.extend.ExtendRun`.

One function per section. Cells read ``12.34 ±0.56``: ± is half the width of the 95 %
bootstrap interval over blocks of the documents (:mod:`lexformer.prefix_eval`). The
sentences of "What this means" come from the numbers; one method is said to beat another
at a length only where the paired bootstrap interval of their difference excludes zero
(:func:`lexformer.stats.perplexity_difference`).
"""

from __future__ import annotations

import math
import os
from pathlib import Path

from ..evaluate import LengthResult
from ..hf.methods import HF_METHODS
from ..stats import perplexity_difference, resample_indices
from .extend_retrieval import section_retrieval
from .reporting import (
    LengthPanel,
    figure_path,
    interval_cell,
    machine_name,
    plot_by_length,
    provenance_section,
    same_scores,
    shown_path,
    table,
    write_report_files,
)

PLOT = "plots/perplexity_vs_length.png"
POSITION_PLOT = "plots/loss_by_position.png"

#: method → where it comes from: each method's record says (``HFMethod.source``)
SOURCES = {name: m.source for name, m in HF_METHODS.items()}


def _cells(run) -> dict[str, dict[int, LengthResult]]:
    return {st.method: st.result.results[st.method] for st in run.stages}


def _cell_text(r: LengthResult | None) -> str:
    # inf or nan perplexity is printed as such here (the reproduction prints "–")
    return "–" if r is None else interval_cell(r.perplexity, r.ci95, blank_nonfinite=False)


def _scale(n: int, context: int) -> str:
    k = n / context
    return f"{k:g}·L" if k >= 1 else f"L/{context / n:g}"


def _split_words(split: str) -> str:
    """What the scored documents are, for the report's first sentence."""
    if split == "all":
        return "every file or record of your text, whole"
    return ("lexformer's held-out split; a pretrained model may still have seen this public "
            "text in training")


# --------------------------------------------------------------------------- sections
def section_header(run, out: Path | None = None) -> list[str]:
    from ..prefix_eval import UNIT_TOKENS

    s = run.settings
    corpus = s.corpus if out is None else shown_path(s.corpus, out)
    return [f"# Length extension of {run.model_name} (declared context L = {run.context})", "",
            f"Perplexity at length n on the first n tokens of each of {run.documents} "
            f"{s.split} document(s) of `{corpus}` ({_split_words(s.split)}; "
            f"{run.lengths[-1]} tokens or more each), read as one n-token input with every "
            "token after the first scored. A method whose output at a position does not "
            "depend on the input's length is read once per document at its longest length and "
            "scored on the prefixes; the others once per length (`lexformer.prefix_eval`). "
            f"Methods whose every key stays visible (O(n²)) run up to {s.full_up_to:g}·L "
            "(`--full-up-to`); window methods run at every length. Intervals resample blocks "
            f"of {UNIT_TOKENS} consecutive targets of the documents, every method with the "
            "same blocks.", ""]


def section_methods(run) -> list[str]:
    from ..hf.rope_scaling import ROPE_TYPES, rope_summary

    def summary(method: str) -> str:
        if method in ROPE_TYPES:  # says whether the factor was fixed or the per-length oracle
            return rope_summary(method, run.options_for(method))
        return HF_METHODS[method].summary if method in HF_METHODS else "–"

    rows = ([st.method, summary(st.method), SOURCES.get(st.method, "–")] for st in run.stages)
    return ["## Methods", "", *table(["method", "what it does", "source"], rows), ""]


def section_table(run) -> list[str]:
    cells = _cells(run)
    head = [f"{n} ({_scale(n, run.context)})" for n in run.lengths]
    lines = ["## Perplexity by length", "", *table(
        ["method", *head], ([method, *(_cell_text(per.get(n)) for n in run.lengths)]
                            for method, per in cells.items()))]
    note = ("± is half the width of the 95 % bootstrap interval over the blocks of all "
            "documents (1000 resamples). Blocks of one document share its topic, so these "
            "intervals are narrower than an interval over many documents would be.")
    lines += ["", note + " – : not run (see below).", ""]
    stops = [f"- **{st.method}** stops at {max(cells[st.method])}: {st.stop_reason}."
             for st in run.stages if st.stop_reason]
    return lines + (["Where each method stops and why:", ""] + stops + [""] if stops else [])


def section_plot(run) -> list[str]:
    return ["## Perplexity against length", "",
            f"![perplexity vs length]({PLOT})", "",
            f"x: evaluation length (log2); dashed line: the declared context L = {run.context}.",
            ""]


def section_position(run) -> list[str]:
    if not any(st.position_loss for st in run.stages):
        return []
    return ["## Loss along the input", "", f"![loss by position]({POSITION_PLOT})", "",
            "Mean token loss at positions [2^k, 2^(k+1)) of each method's longest input, over "
            "every document, drawn at 2^k (so the point on the dashed line covers the first L "
            f"positions past L = {run.context}; x: position, log2). Where a "
            "method's curve turns up it has stopped using what lies that far back.", ""]


def section_cost(run) -> list[str]:
    def load(st) -> str:
        return f"{st.load_average:.1f}" if st.load_average is not None else "–"

    rows = [[st.method, "perplexity", f"{st.seconds:.1f}", f"{st.peak_rss_mb:.0f}", load(st),
             "earlier run (reused)" if st.reused else "this run"] for st in run.stages]
    rows += [[r.method, "RULER", f"{r.seconds:.1f}", "–", load(r),
              "earlier run (reused)" if r.reused else "this run"] for r in run.retrieval]
    lines = ["## Time and memory", "", *table(
        ["method", "stage", "seconds", "peak RSS (MiB)", "load at end", "measured"], rows)]
    measures = sorted({st.memory_measure for st in run.stages})
    return lines + ["", "Time: wall-clock of the stage's scoring (model loading and "
                    "tokenizing excluded). Memory: " + "; ".join(measures) + ", in MiB "
                    "(process memory: weights, activations and Python alike). Load: the "
                    "machine's 1-minute load average when the stage ended; above the number "
                    f"of cores ({os.cpu_count()}) other work shared them and the time is "
                    "slower than the method.", ""]


def rounding_floor(run) -> float:
    """The relative perplexity gap that rounding alone makes between kernels computing the
    same attention: the largest spread, at the run's lengths up to L, of the methods that do
    not rescale positions — at their defaults every window method sees every key up to L, so
    there they all compute the model itself (with smaller windows set through
    --method-options the floor is larger than rounding: conservative). In float32 it is
    ~1e-7 and SAME_RTOL covers it; in bf16 ~1e-3 (measured: 0.11 % at L/4, 0.2 % at L), and
    a difference below it says nothing about the methods."""
    spreads = [0.0]
    for n in (n for n in run.lengths if n <= run.context):
        here = [st.result.results[st.method][n].perplexity for st in run.stages
                if n in st.result.results[st.method]
                and HF_METHODS.get(st.method, HF_METHODS["full"]).kind != "rope"]
        if len(here) > 1:
            spreads.append(max(here) / min(here) - 1.0)
    return max(spreads)


def _same(a: LengthResult, b: LengthResult, floor: float = 0.0) -> bool:
    """The same score on every document up to float rounding: kernels that compute the same
    attention differ by ~1e-9 relative in the documents' summed NLL (measured on the test
    model), a real difference between methods by more (reporting.SAME_RTOL); or, where the
    run's rounding floor (:func:`rounding_floor`) is larger, perplexities within it."""
    return (same_scores(a.doc_nll, b.doc_nll)
            or abs(a.perplexity / b.perplexity - 1.0) <= floor)


def _signed(x: float) -> str:
    return f"{x:+.2f}" if abs(x) >= 0.01 or x == 0 else f"{x:+.1e}"


def _compare(cells, n: int, best: str, other: str, floor: float = 0.0) -> tuple[str, str]:
    """How ``best`` stands against ``other`` at n — "below" (paired interval of the difference
    excludes zero), "same" (identical up to rounding) or "open" — and the difference as text."""
    a, b = cells[best][n], cells[other][n]
    if _same(a, b, floor):
        return "same", other
    units = len(a.doc_nll)
    indices = resample_indices(units) if units > 1 else None
    d = perplexity_difference(a.doc_nll, b.doc_nll, a.unit_token_counts, indices)
    if not all(map(math.isfinite, d.ci95)):
        return "open", f"{other} ({_signed(d.value)}; one block: no interval)"
    text = (f"{other} ({_signed(d.value)}, 95 % interval {_signed(d.ci95[0])} … "
            f"{_signed(d.ci95[1])})")
    return ("open" if d.is_tie else "below"), text


def _identical_groups(here: dict[str, LengthResult], exclude: str, floor: float = 0.0
                      ) -> list[tuple[str, list[str]]]:
    """The methods other than ``exclude``, those with the same scores grouped (first, rest),
    so that methods identical at this length are named once."""
    groups: list[tuple[str, list[str]]] = []
    for method in here:
        if method == exclude:
            continue
        for first, twins in groups:
            if _same(here[first], here[method], floor):
                twins.append(method)
                break
        else:
            groups.append((method, []))
    return groups


def _length_finding(run, cells, n: int, floor: float = 0.0) -> str | None:
    here = {m: per[n] for m, per in cells.items() if n in per}
    if len(here) < 2:
        return None
    best = min(here, key=lambda m: here[m].perplexity)
    groups: dict[str, list[str]] = {"below": [], "same": [], "open": []}
    for first, twins in _identical_groups(here, exclude=best, floor=floor):
        kind, text = _compare(cells, n, best, first, floor)
        groups[kind].append(" = ".join([first] + twins) + text[len(first):])
    text = (f"At {n} ({_scale(n, run.context)}) {best} has the lowest perplexity "
            f"({here[best].perplexity:.2f}).")
    if groups["same"]:
        text += " " + ", ".join(groups["same"]) + " score(s) the same up to rounding."
    if groups["below"]:
        text += " It is below " + ", ".join(groups["below"]) + "."
    if groups["open"]:
        text += (" The data cannot order it against " + ", ".join(groups["open"])
                 + " (the paired interval of the difference includes zero).")
    return text


def findings(run) -> list[str]:
    cells = _cells(run)
    floor = rounding_floor(run)
    out = [f for n in run.lengths if n >= run.context
           if (f := _length_finding(run, cells, n, floor)) is not None]
    full = cells.get("full", {})
    beyond = [n for n in full if n > run.context]
    if run.context in full and beyond:
        n, at_l = max(beyond), full[run.context].perplexity
        out.append(f"Full attention past its declared context: perplexity {at_l:.2f} at L, "
                   f"{full[n].perplexity:.2f} at {n} (×{full[n].perplexity / at_l:.3f}).")
    growth = [f"{method} ×{per[max(per)].perplexity / per[run.context].perplexity:.3f} "
              f"(to {max(per)})" for method, per in cells.items()
              if method != "full" and run.context in per and max(per) > run.context]
    if growth:
        out.append("Perplexity from L to the longest length each method ran at: "
                   + ", ".join(growth) + " (the longer prefix also holds other text, so "
                   "compare methods at one length, not one method across lengths).")
    if not out:
        out.append(f"No length at or past the declared context L = {run.context} was measured "
                   "by two or more methods: nothing to compare there (see the table).")
    if floor > 1e-5:
        out.append(f"Rounding: up to L the methods that compute the same attention there "
                   f"differ by up to {100 * floor:.2f} % (the run's precision); differences "
                   "below that count as the same.")
    if run.documents < 3:
        out.append(f"{run.documents} document(s): the intervals resample blocks of the same "
                   "text; run with more documents (`--max-docs`) before generalising an order.")
    return out


def _lowest(cells, n: int, methods, floor: float = 0.0) -> str | None:
    """The method of ``methods`` with the lowest perplexity at n, and the ones the data
    cannot order against it, as text; None where fewer than one ran there."""
    here = [m for m in methods if n in cells.get(m, {})]
    if not here:
        return None
    best = min(here, key=lambda m: cells[m][n].perplexity)
    ties = [m for m in here if m != best and _compare(cells, n, best, m, floor)[0] != "below"]
    return best + (f" (not distinguishable from {', '.join(ties)})" if ties else "")


def needs(run) -> list[str]:
    """Which method to pick for which need, from the longest length each need was measured
    at; a method is named alone only where the intervals separate it from the rest."""
    from .extend_retrieval import mean_score, paired_difference, per_sample

    cells = _cells(run)
    out = []
    n = run.lengths[-1]
    bounded = [st.method for st in run.stages if not HF_METHODS.get(st.method) or
               not HF_METHODS[st.method].quadratic]
    floor = rounding_floor(run)
    if (pick := _lowest(cells, n, bounded, floor)) is not None:
        out.append(f"Streaming, bounded memory per token (at {n}, {_scale(n, run.context)}): "
                   f"{pick}.")
    longest = max(max(per) for per in cells.values())
    if (pick := _lowest(cells, longest, list(cells), floor)) is not None:
        out.append(f"Perplexity of long documents at {longest}: {pick}.")
    ruler = [r for r in run.retrieval if r.lengths]
    if ruler:
        n = max(max(r.lengths) for r in ruler)
        here = [r for r in ruler if n in r.lengths]
        best = max(here, key=lambda r: mean_score(r, n))
        if mean_score(best, n) == 0:
            out.append(f"Retrieval (RULER) at {n}: none of the methods run there "
                       "retrieved anything.")
            return out
        ties = [r.method for r in here if r is not best and paired_difference(
            per_sample(best, n), per_sample(r, n))[1][0] <= 0]
        out.append(f"Retrieval (RULER) at {n}: {best.method} (mean {mean_score(best, n):.2f}"
                   + (f"; not distinguishable from {', '.join(ties)}" if ties else "") + ").")
    return out


def section_findings(run) -> list[str]:
    from .extend_retrieval import retrieval_findings

    lines = ["## What this means", ""] + [f"- {f}" for f in findings(run)]
    lines += [f"- {f}" for f in retrieval_findings(run)]
    picks = needs(run)
    if picks:
        lines += ["", "Which method for which need (from this run's intervals only):", ""]
        lines += [f"- {p}" for p in picks]
    return lines + [""]


def section_provenance(run, out: Path | None = None) -> list[str]:
    return provenance_section(run.command, [
        f"- wall-clock of this invocation: {run.wall:.0f} s (stages already on disk are "
        "reused)"], started=run.started, out=out)


# --------------------------------------------------------------------------- files
def write_plot(out: Path, run) -> Path:
    """Perplexity against length on a log y axis, one line per method, the 95 % bootstrap
    interval over blocks shaded."""
    cells = _cells(run)
    curves = {method: {n: r.perplexity for n, r in per.items()} for method, per in cells.items()}
    bands = {method: {n: r.ci95 for n, r in per.items() if r.ci95 is not None}
             for method, per in cells.items()}
    panel = LengthPanel(curves, f"{run.model_name}: perplexity against length", run.context,
                        f"declared context L = {run.context}", ticks=run.lengths, bands=bands)
    return plot_by_length(figure_path(out, PLOT), [panel], "perplexity", log_y=True,
                          panel_size=(7, 4.5))


def write_position_plot(out: Path, run) -> Path | None:
    """Mean loss by position along each method's longest input (log2 x)."""
    curves = {st.method: st.position_loss for st in run.stages if st.position_loss}
    if not curves:
        return None
    panel = LengthPanel(curves, f"{run.model_name}: loss along the input", run.context,
                        f"declared context L = {run.context}")
    return plot_by_length(figure_path(out, POSITION_PLOT), [panel], "mean token loss (nats)",
                          log_y=False, panel_size=(7, 4.5), xlabel="position (tokens)")


def write_report(out: Path, run) -> Path:
    write_plot(out, run)
    write_position_plot(out, run)
    lines = (section_header(run, out) + section_methods(run) + section_table(run)
             + section_plot(run) + section_position(run) + section_retrieval(run)
             + section_cost(run)
             + section_findings(run)
             + section_provenance(run, out))
    return write_report_files(out, lines)


__all__ = ["SOURCES", "findings", "machine_name", "write_plot", "write_report"]
