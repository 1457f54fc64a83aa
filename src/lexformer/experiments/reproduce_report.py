"""The reproduction's ``report.md``, ``results.json`` and plots, from typed results only.

One function per table or section. Every number comes from :class:`ReportInputs`; the
sentences of "What this run shows" are generated from those numbers, and an ordering between
two models is stated only where the paired bootstrap interval of their difference excludes
zero (otherwise the text says "tie at this scale" and gives the interval).

The section "Does the model use its context?" (copy gain and loss by position) comes from
:mod:`lexformer.experiments.context_report`; what the three experiment reports share (cells, tables,
training and provenance sections, the length figure) from :mod:`.reporting`.

Cells read ``81.12 ±0.90``: with one seed ± is half the width of the 95 % paired-bootstrap
interval over documents; with several seeds the value is the mean over seeds and ± their
standard deviation (n − 1 in the denominator).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np

from ..analysis import AnalysisResult
from ..evaluate import Label, LengthResult, PerplexityResult
from ..paper import PAPER_TRAIN_LENGTH, TABLE2, TABLE2_BY_LABEL, TABLE3, TABLE5
from ..stats import Difference, resample_indices, seed_difference
from .context_report import ContextInputs, context_json, section_context, write_context_plots
from .reporting import (
    figure_path,
    findings_section,
    is_smoke,
    number,
    optional,
    provenance_section,
    same_scores,
    seeds_cell,
    seeds_note,
    shown_path,
    smoke_banner,
    table,
    training_section,
    write_report_files,
)

ATTENTIONS = ("full", "blockwise")
LEX = Label("xpos", "blockwise")


@dataclass
class TrainingRecord:
    """What one training run reached (from its checkpoint and metrics)."""

    scheme: str
    seed: int
    step: int | None = None
    tokens: int | None = None
    loss: float | None = None
    val_loss: float | None = None
    tokens_per_s: float | None = None

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class ReportInputs:
    """Everything the report shows. ``evals[scheme]`` and ``ood[scheme]`` hold one
    :class:`PerplexityResult` per seed, in seed order."""

    preset: str
    corpus: str
    train_length: int
    lengths: list[int]
    schemes: list[str]
    seeds: list[int]
    evals: dict[str, list[PerplexityResult]]
    analysis: AnalysisResult
    training: list[TrainingRecord]
    ood_corpus: str | None = None
    ood: dict[str, list[PerplexityResult]] = field(default_factory=dict)
    command: str = ""
    wall: float = 0.0
    timings: dict[str, float] = field(default_factory=dict)
    context: ContextInputs | None = None  # copy and loss by position; None: not measured

    @property
    def labels(self) -> list[Label]:
        return [Label(s, a) for s in self.schemes for a in ATTENTIONS]


# --------------------------------------------------------------------------- numbers
def _cells(table: dict[str, list[PerplexityResult]], label: Label, n: int) -> list[LengthResult]:
    return [r.results[label.attention][n] for r in table[label.scheme]]


def mean_perplexity(table: dict[str, list[PerplexityResult]], label: Label, n: int) -> float:
    return float(np.mean([c.perplexity for c in _cells(table, label, n)]))


def cell_text(cells: Sequence[LengthResult]) -> str:
    """One seed: ``ppl ±half-interval``; several: ``mean ±std`` over seeds."""
    return seeds_cell([c.perplexity for c in cells], cells[0].ci95)


def difference(table: dict[str, list[PerplexityResult]], a: Label, b: Label,
               n: int) -> Difference:
    """ppl(a) − ppl(b) at length n: for one seed, paired over documents; for several, the
    mean over seeds of the per-seed differences, with an interval over documents and one over
    seeds (seed k of a paired with seed k of b: the same data order)."""
    ca, cb = _cells(table, a, n), _cells(table, b, n)
    # one seed is the K = 1 case: the same paired bootstrap, and no interval over seeds
    return seed_difference([c.doc_nll for c in ca], [c.doc_nll for c in cb],
                           ca[0].tokens_per_document, resample_indices(len(ca[0].doc_nll)))


def _fmt_eta(seconds: float) -> str:
    seconds = max(0, int(seconds))
    return f"{seconds // 60}m{seconds % 60:02d}s"


def _diff_text(d: Difference) -> str:
    if d.seed_ci95 is None:
        return f"{d.value:+.2f} (95 % interval {d.ci95[0]:+.2f} … {d.ci95[1]:+.2f})"
    return (f"{d.value:+.2f} (95 % intervals: over documents {d.ci95[0]:+.2f} … "
            f"{d.ci95[1]:+.2f}, over seeds {d.seed_ci95[0]:+.2f} … {d.seed_ci95[1]:+.2f})")


def _interval_text(d: Difference, sep: str = " … ") -> str:
    """The interval(s) of a difference for a table cell: over documents, and over seeds when
    several seeds were trained."""
    docs = f"{d.ci95[0]:+.2f}{sep}{d.ci95[1]:+.2f}"
    if d.seed_ci95 is None:
        return docs
    return f"docs {docs}; seeds {d.seed_ci95[0]:+.2f}{sep}{d.seed_ci95[1]:+.2f}"


def _row_name(label: Label) -> str:
    return "**LeX (xpos + blockwise)**" if label == LEX else str(label)


# --------------------------------------------------------------------------- sections
def _uncertainty_note(inp: ReportInputs) -> str:
    if len(inp.seeds) == 1:
        return ("± is half the width of the 95 % paired-bootstrap interval over the test "
                "documents (1000 resamples).")
    return seeds_note(inp.seeds)


def _perplexity_table(inp: ReportInputs, results: dict[str, list[PerplexityResult]]
                      ) -> list[str]:
    L = inp.train_length
    return table(["model", *(f"{n}{' (L)' if n == L else ''}" for n in inp.lengths)],
                 ([_row_name(label), *(cell_text(_cells(results, label, n))
                                       for n in inp.lengths)] for label in inp.labels))


def section_table2(inp: ReportInputs, ppl_png: str) -> list[str]:
    lines = ["## Table 2 analogue: perplexity by length", "",
             "Ours (rows: scheme / attention; **LeX = xpos + blockwise**). Lengths above L are "
             "extrapolation. " + _uncertainty_note(inp), ""]
    lines += _perplexity_table(inp, inp.evals)
    cols = [256, 512, 1024, 2048, 4096]
    lines += ["", f"The paper (trained at {PAPER_TRAIN_LENGTH} on a Pile subset, 24 layers × "
              "1024; columns in units of its L):", "",
              "| paper | " + " | ".join(f"{n} ({n / PAPER_TRAIN_LENGTH:g}·L)" for n in cols)
              + " |", "|---|" + "---|" * len(cols)]
    lines += [f"| {k} | " + " | ".join(number(row[n]) for n in cols) + " |"
              for k, row in TABLE2.items()]
    return lines + ["", f"![perplexity vs length]({ppl_png})", ""]


def _extrapolation_lengths(inp: ReportInputs) -> list[int]:
    return [n for n in inp.lengths if n > inp.train_length][:2] or inp.lengths[-2:]


def section_table5(inp: ReportInputs) -> list[str]:
    ext = _extrapolation_lengths(inp)
    lines = ["## Table 5 analogue: blockwise attention per scheme", "",
             "blockwise − full is the paired difference in perplexity with its 95 % interval "
             "(with several seeds: over documents and over seeds); *tie* marks an interval "
             "that contains zero.", "",
             "| scheme | " + " | ".join(f"full @ {n}" for n in ext) + " | "
             + " | ".join(f"blockwise @ {n}" for n in ext) + " | "
             + " | ".join(f"blockwise − full @ {n}" for n in ext)
             + " | paper full 2L / 4L | paper blockwise 2L / 4L |",
             "|---|" + "---|" * (3 * len(ext) + 2)]
    for s in inp.schemes:
        full, block = Label(s, "full"), Label(s, "blockwise")
        diffs = [difference(inp.evals, block, full, n) for n in ext]
        pf, pb = TABLE5.get((s, "full")), TABLE5.get((s, "blockwise"))
        lines.append(
            f"| {s} | " + " | ".join(cell_text(_cells(inp.evals, full, n)) for n in ext)
            + " | " + " | ".join(cell_text(_cells(inp.evals, block, n)) for n in ext) + " | "
            + " | ".join(f"{d.value:+.2f} [{_interval_text(d, ', ')}]"
                         + (" *tie*" if d.is_tie else "") for d in diffs) + " | "
            + (f"{pf[0]} / {pf[1]}" if pf else "–") + " | "
            + (f"{pb[0]} / {pb[1]}" if pb else "–") + " |")
    return lines + [""]


def section_differences(inp: ReportInputs) -> list[str]:
    """The best model at L and at each extrapolation length against every other."""
    lines = ["## Paired differences", "",
             "At each length, the model with the lowest perplexity against every other: "
             "difference in perplexity (other − best) with its 95 % paired-bootstrap interval "
             "over documents (with several seeds also the Student-t interval of the per-seed "
             "differences); *tie* marks an interval that contains zero, *identical* two "
             "configurations that score every document the same (full and blockwise "
             "attention at lengths ≤ L).", "",
             "| length | best | other | other − best | 95 % interval | |",
             "|---|---|---|---|---|---|"]
    for n in [n for n in inp.lengths if n >= inp.train_length]:
        best = min(inp.labels, key=lambda lab: mean_perplexity(inp.evals, lab, n))
        for other in (lab for lab in inp.labels if lab != best):
            d = difference(inp.evals, other, best, n)
            mark = ("identical" if _same(inp.evals, other, best, n)
                    else "tie" if d.is_tie else "")
            lines.append(f"| {n} | {best} | {other} | {d.value:+.2f} | "
                         f"{_interval_text(d)} | {mark} |")
    return lines + [""]


def section_ood(inp: ReportInputs) -> list[str]:
    if not inp.ood:
        return []
    return (["## Out-of-domain perplexity", "",
             f"Every model evaluated on the test split of `{inp.ood_corpus}`, a corpus it was "
             "not trained on (same tokenizer, same lengths). " + _uncertainty_note(inp), ""]
            + _perplexity_table(inp, inp.ood) + [""])


def section_table3(inp: ReportInputs, exp_png: str, shat_png: str) -> list[str]:
    L, an = inp.train_length, inp.analysis
    lines = ["## Table 3 analogue: attention resolution", "",
             "R(ŝ) as defined in docs/method.md / the paper's Eq. 9 (at most 1). The paper "
             "reports values above 1 (LeX 1.08 at 2048), so it must have normalised "
             "differently; compare orderings, not magnitudes. On a trained model's ŝ the sums "
             "run over hundreds of distances of nearly equal weight, so R is small (of order "
             "1/N). Measured on the first seed's models.", "",
             f"| model | full @ {L} | full @ {2 * L} | blockwise @ {L} | blockwise @ {2 * L} | "
             "paper @ 1024 / 2048 |", "|---|---|---|---|---|---|"]
    for s in inp.schemes:
        m = an.models[s]
        paper = TABLE3["xpos (no BCA)"] if s == "xpos" else TABLE3.get(s)
        lines.append(f"| {s} | " + " | ".join(
            f"{m.get(a, n).resolution:.3g}" for a in ATTENTIONS for n in (L, 2 * L))
            + " | " + (f"{paper[0]} / {paper[1]}" if paper else "–") + " |")
    lines += ["", f"Analytic resolution of the expectation curve g[n] (head dim {an.head_dim}, "
              "the models' own; all-ones q and k, paper Eq. 8): " + ", ".join(
                  f"{name} over 0..{n}: {v:.3f}" for name, per in an.analytic.items()
                  for n, v in sorted(per.items())) + ".", "",
              f"![expectation curves]({exp_png})  ", f"![expected scores]({shat_png})", ""]
    return lines


def section_training(inp: ReportInputs) -> list[str]:
    return training_section(
        "Same data, same budget in tokens for every scheme; the seed decides both the "
        "initialisation and the data order, and is shared across schemes.",
        ["scheme", "seed", "steps", "tokens", "final train loss", "validation loss",
         "tokens/s (median)"],
        ([r.scheme, str(r.seed), str(r.step), optional(r.tokens, ",.0f"),
          optional(r.loss, ",.3f"), optional(r.val_loss, ",.3f"),
          optional(r.tokens_per_s, ",.0f")] for r in inp.training))


def section_provenance(inp: ReportInputs, out: Path | None = None) -> list[str]:
    timing = [f"- wall-clock of this invocation: {_fmt_eta(inp.wall)} (stages already on disk "
              "are skipped)"]
    if inp.timings:
        timing.append(f"- time of every stage when it ran: {_fmt_eta(sum(inp.timings.values()))}"
                      " in all — " + ", ".join(f"{k} {_fmt_eta(v)}"
                                               for k, v in inp.timings.items()))
    return provenance_section(inp.command, timing, out=out)


# --------------------------------------------------------------------------- findings
def _same(table, a: Label, b: Label, n: int) -> bool:
    """Two configurations that score every document identically (up to float rounding), as
    full and blockwise attention do at lengths ≤ L. Their fp32 kernels differ, so document
    NLLs agree to ~1e-8 relative, not exactly; 1e-6 is far below any real difference between
    two models (the smallest seen in a default run: ~1e-4); see reporting.SAME_RTOL."""
    return all(same_scores(x.doc_nll, y.doc_nll)
               for x, y in zip(_cells(table, a, n), _cells(table, b, n)))


def _groups(table, labels: Sequence[Label], n: int) -> list[list[Label]]:
    """Labels ranked by perplexity at n, identical configurations grouped together."""
    groups: list[list[Label]] = []
    for lab in sorted(labels, key=lambda lab: mean_perplexity(table, lab, n)):
        for g in groups:
            if _same(table, g[0], lab, n):
                g.append(lab)
                break
        else:
            groups.append([lab])
    return groups


def _ordering(table, labels: Sequence[Label], n: int) -> str:
    """The best configuration at n and which others it is not separable from. Every other
    configuration is compared with the best (paired intervals differ by pair, so the
    runner-up being separable does not make the third one separable)."""
    groups = _groups(table, labels, n)
    names = [" = ".join(map(str, g)) for g in groups]
    if len(groups) == 1:
        return f"{names[0]} (identical scores)"
    diffs = [difference(table, g[0], groups[0][0], n) for g in groups[1:]]
    tied = [(name, d) for name, d in zip(names[1:], diffs) if d.is_tie]
    if tied:
        return (f"tie at this scale between {names[0]} and " + "; ".join(
            f"{name} (difference {_diff_text(d)})" for name, d in tied))
    return f"{names[0]}, ahead of the next best {names[1]} by {_diff_text(diffs[0])}"


def _lex_findings(inp: ReportInputs, extrap: list[int]) -> list[str]:
    beaten, tied = set(), set()
    for n in extrap:
        for other in (lab for lab in inp.labels if lab != LEX):
            d = difference(inp.evals, LEX, other, n)
            if d.is_tie:
                tied.add(str(other))
            elif d.value > 0:
                beaten.add(str(other))
    if beaten:
        text = ("LeX (xpos + blockwise) is **not** the best at every extrapolation length: "
                + ", ".join(sorted(beaten)) + " beat it at one or more lengths (interval "
                "excluding zero). This differs from the paper's Table 2.")
    else:
        text = ("No model beats LeX (xpos + blockwise) at any extrapolation length with an "
                "interval excluding zero, as in the paper's Table 2.")
    if tied:
        text += (" Ties at this scale (interval containing zero) at one or more lengths "
                 "with: " + ", ".join(sorted(tied)) + ".")
    L, top = inp.train_length, inp.lengths[-1]
    at_L, at_top = mean_perplexity(inp.evals, LEX, L), mean_perplexity(inp.evals, LEX, top)
    trend = "falls" if at_top < at_L else "rises"
    return [text, f"LeX's perplexity {trend} from L to {top} ({at_L:.2f} → {at_top:.2f}); "
                  "the paper's falls (23.31 → 20.73)."]


def findings(inp: ReportInputs) -> list[str]:
    """Plain statements computed from the measured numbers (no expected outcome assumed)."""
    L, top, table = inp.train_length, inp.lengths[-1], inp.evals
    out = [f"At the training length ({L}) the best model is: {_ordering(table, inp.labels, L)}."]
    growth = [f"{lab} {mean_perplexity(table, lab, top) / mean_perplexity(table, lab, L) - 1:+.1%}"
              for lab in inp.labels]
    out.append(f"Change in perplexity from L to {top // L}·L ({top} tokens): "
               + ", ".join(growth) + ".")
    extrap = [n for n in inp.lengths if n > L]
    if extrap:
        out.append("Best model at each extrapolation length — " + "; ".join(
            f"{n}: {_ordering(table, inp.labels, n)}" for n in extrap) + ".")
        if LEX.scheme in inp.schemes and not is_smoke(inp.preset):  # a smoke run: no verdict
            out += _lex_findings(inp, extrap)
    if inp.ood:
        out.append(f"Out of domain (`{inp.ood_corpus}`) at {top} tokens the best model is: "
                   f"{_ordering(inp.ood, inp.labels, top)}.")
    if not is_smoke(inp.preset):  # a smoke run's section opens with SMOKE_FINDINGS instead
        out.append("The models are small and trained briefly (see Training): absolute numbers "
                   "are far from the paper's and only the shapes of the curves are comparable.")
    return out


def section_findings(inp: ReportInputs) -> list[str]:
    return findings_section("## What this run shows", inp.preset, findings(inp))


# --------------------------------------------------------------------------- files
def write_plots(out: Path, inp: ReportInputs) -> tuple[Path, Path, Path]:
    from ..analysis import expectation_curves
    from ..plots import plot_expectation_curves, plot_expected_scores, plot_perplexity_vs_length

    L = inp.train_length
    curves = {lab: {n: mean_perplexity(inp.evals, lab, n) for n in inp.lengths}
              for lab in inp.labels}
    ppl = plot_perplexity_vs_length(figure_path(out, "plots/perplexity_vs_length.png"),
                                    curves, L, paper=TABLE2_BY_LABEL, bands=_bands(inp))
    exp = plot_expectation_curves(figure_path(out, "plots/expectation_curves.png"),
                                  expectation_curves(inp.analysis.head_dim,
                                                     max_distance=4 * L if L >= 1024 else 4096))
    s_hat = {lab: inp.analysis.models[lab.scheme].get(lab.attention, 2 * L).s_hat
             for lab in inp.labels}
    shat = plot_expected_scores(figure_path(out, "plots/expected_scores.png"), s_hat)
    return ppl, exp, shat


def _bands(inp: ReportInputs) -> dict[Label, dict[int, tuple[float, float]]]:
    """The 95 % bootstrap interval of each point, with one seed. With several the curve is a
    mean over seeds, which no seed's interval describes: no bands."""
    if len(inp.seeds) != 1:
        return {}
    return {lab: {n: c.ci95 for n in inp.lengths for c in _cells(inp.evals, lab, n)
                  if c.ci95 is not None} for lab in inp.labels}


def results_json(inp: ReportInputs) -> dict[str, Any]:
    def per_label(table):
        return {s: {a: {str(n): mean_perplexity(table, Label(s, a), n) for n in inp.lengths}
                    for a in ATTENTIONS} for s in inp.schemes}

    return {"preset": inp.preset, "corpus": inp.corpus, "train_length": inp.train_length,
            "lengths": inp.lengths, "seeds": inp.seeds, "perplexity": per_label(inp.evals),
            "ood_corpus": inp.ood_corpus,
            "ood_perplexity": per_label(inp.ood) if inp.ood else None,
            "training": [r.to_json() for r in inp.training],
            "resolution": {s: {r.key: r.resolution for r in inp.analysis.models[s].results}
                           for s in inp.schemes},
            **(context_json(inp.context) if inp.context else {})}


def _shown(inp: ReportInputs, out: Path) -> ReportInputs:
    """``inp`` with its corpus paths as the report prints them (relative to ``out``);
    results.json keeps them as given."""
    return replace(inp, corpus=shown_path(inp.corpus, out), ood_corpus=None
                   if inp.ood_corpus is None else shown_path(inp.ood_corpus, out))


def write_report(out: Path, inp: ReportInputs) -> Path:
    """Write ``report.md``, ``results.json`` and the plots into ``out``; returns the report."""
    out = Path(out)
    ppl, exp, shat = (p.relative_to(out) for p in write_plots(out, inp))
    results, inp = results_json(inp), _shown(inp, out)
    L, top = inp.train_length, inp.lengths[-1]
    lines = ["# lexformer reproduction report", "", *smoke_banner(inp.preset),
             f"Trained at **L = {L}** on `{inp.corpus}` (preset `{inp.preset}`, "
             f"seed{'s' if len(inp.seeds) > 1 else ''} {', '.join(map(str, inp.seeds))}); "
             f"evaluated on the test split at L/4 … {top // L}·L. Every number below was "
             "measured by this run unless it sits in a column or table labelled *paper*.", ""]
    lines += section_table2(inp, str(ppl))
    lines += section_table5(inp)
    lines += section_differences(inp)
    lines += section_ood(inp)
    lines += section_table3(inp, str(exp), str(shat))
    if inp.context is not None:
        position_png, copy_png = (p.relative_to(out) for p in
                                  write_context_plots(out / "plots", inp.context))
        lines += section_context(inp.context, str(position_png), str(copy_png))
    lines += section_training(inp)
    lines += section_findings(inp)
    lines += section_provenance(inp, out)
    return write_report_files(out, lines, results)


__all__ = ["ReportInputs", "TrainingRecord", "cell_text", "difference", "findings",
           "mean_perplexity", "write_report"]
