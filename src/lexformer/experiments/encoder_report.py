"""The report of ``lexformer reproduce --objective mlm``: tables, a plot and findings computed
from the numbers (``report.md``, ``results.json``, ``plots/mlm_loss_vs_length.png``).

Every comparison is a paired bootstrap over the evaluation documents: two models (or one
model at two lengths) are scored on the same masked tokens, so each resample takes the same
documents for both, and a difference whose 95 % interval contains zero is reported as not
distinguishable. The findings paragraph is generated, so it says what the numbers say.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ..fileio import atomic_write_json, atomic_write_text
from ..mlm import MaskedLengthResult, MaskedLMResult
from ..stats import resample_indices

TARGET = "xpos"


@dataclass
class MLMTrainingRecord:
    scheme: str
    step: int | None
    tokens_seen: int | None
    last_loss: float | None
    val_loss: float | None = None
    tokens_per_s: float | None = None


def training_record(scheme: str, run_dir: Path) -> MLMTrainingRecord:
    from ..checkpoint import read_meta
    from ..train import read_training_metrics

    meta = read_meta(run_dir)
    rec = MLMTrainingRecord(scheme, meta.get("step"), meta.get("tokens_seen"),
                            meta.get("last_loss"))
    rec.val_loss, rec.tokens_per_s = read_training_metrics(run_dir)
    return rec


@dataclass
class MLMReportInputs:
    preset: str
    corpus: str
    train_length: int
    lengths: list[int]
    schemes: list[str]
    seed: int
    tokens: int
    evals: dict[str, MaskedLMResult]
    training: list[MLMTrainingRecord] = field(default_factory=list)
    command: str = ""
    wall: float | None = None
    timings: dict[str, float] = field(default_factory=dict)

    @property
    def attentions(self) -> list[str]:
        return list(next(iter(self.evals.values())).results)


# --------------------------------------------------------------------------- statistics
@dataclass(frozen=True)
class LossDifference:
    """``loss(a) − loss(b)`` on the same masked tokens, with its paired 95 % interval (None
    with a single document)."""

    value: float
    ci95: tuple[float, float] | None

    @property
    def verdict(self) -> str:
        if self.ci95 is None:
            return "one document, no interval"
        if self.ci95[1] < 0:
            return "lower"
        if self.ci95[0] > 0:
            return "higher"
        return "not distinguishable"

    def text(self) -> str:
        ci = "" if self.ci95 is None else f" [{self.ci95[0]:+.3f}, {self.ci95[1]:+.3f}]"
        return f"{self.value:+.3f}{ci}"


def loss_difference(a: MaskedLengthResult, b: MaskedLengthResult) -> LossDifference:
    """Paired bootstrap of ``a.loss − b.loss`` (both on the same documents and masks)."""
    nll_a, nll_b = np.asarray(a.doc_nll), np.asarray(b.doc_nll)
    masked = np.asarray(a.doc_masked, dtype=np.float64)
    value = a.loss - b.loss
    if len(nll_a) < 2 or len(nll_a) != len(nll_b):
        return LossDifference(value, None)
    idx = resample_indices(len(nll_a))
    total = masked[idx].sum(axis=1)
    diffs = (nll_a[idx].sum(axis=1) - nll_b[idx].sum(axis=1)) / total
    lo, hi = np.percentile(diffs, [2.5, 97.5])
    return LossDifference(value, (float(lo), float(hi)))


# --------------------------------------------------------------------------- sections
def _length_header(inp: MLMReportInputs) -> list[str]:
    return [f"{n} (L)" if n == inp.train_length else str(n) for n in inp.lengths]


def _table(inp: MLMReportInputs, cell, best) -> list[str]:
    """Rows scheme / attention, columns lengths; the best value of each column in bold."""
    header = ["model", *_length_header(inp)]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    rows = [(s, a) for a in inp.attentions for s in inp.schemes]
    for scheme, attention in rows:
        per = inp.evals[scheme].results[attention]
        cells = []
        for n in inp.lengths:
            column = [inp.evals[s].results[a][n] for s, a in rows]
            text = cell(per[n])
            cells.append(f"**{text}**" if per[n] is best(column) else text)
        lines.append(f"| {scheme} / {attention} | " + " | ".join(cells) + " |")
    return lines


def _loss_cell(r: MaskedLengthResult) -> str:
    if r.loss_ci95 is None:
        return f"{r.loss:.3f}"
    return f"{r.loss:.3f} ±{(r.loss_ci95[1] - r.loss_ci95[0]) / 2:.3f}"


def section_tables(inp: MLMReportInputs, plot: str) -> list[str]:
    L = inp.train_length
    lines = ["## Masked-token loss by length", "",
             "Mean cross-entropy (nats) of the original token at the masked positions; lower is "
             f"better. Lengths above L = {L} are extrapolation; ± is half the 95 % bootstrap "
             "interval over documents; the lowest of each column is in bold. `blockwise`: a "
             "query sees its own block of L/2 tokens and the blocks on either side.", ""]
    lines += _table(inp, _loss_cell, lambda col: min(col, key=lambda r: r.loss))
    lines += ["", f"![masked-token loss against length]({plot})", "",
              "## Masked-token accuracy by length", "",
              "Share of masked positions whose most likely token is the original one (%); "
              "higher is better.", ""]
    lines += _table(inp, lambda r: f"{100 * r.accuracy:.1f}",
                    lambda col: max(col, key=lambda r: r.accuracy))
    return lines + [""]


def findings(inp: MLMReportInputs) -> list[str]:
    """Generated sentences: XPOS past L against itself at L and against every baseline at the
    longest length, per attention mode, each difference with its paired interval."""
    if TARGET not in inp.evals:
        return ["Bidirectional XPOS was not among the schemes of this run, so this run says "
                "nothing about it."]
    L, top = inp.train_length, inp.lengths[-1]
    baselines = [s for s in inp.schemes if s != TARGET]
    out = []
    for attention in inp.attentions:
        mine = inp.evals[TARGET].results[attention]
        growth = loss_difference(mine[top], mine[L]) if L in mine else None
        parts = [f"**{attention} attention.**"]
        if growth is not None:
            trend = {"higher": "rises", "lower": "falls",
                     "not distinguishable": "does not change distinguishably"}.get(
                         growth.verdict, "changes")
            parts.append(f"From L = {L} to {top} tokens, XPOS's masked-token loss {trend} "
                         f"({mine[L].loss:.3f} → {mine[top].loss:.3f}; difference "
                         f"{growth.text()}).")
        if baselines:
            verdicts = {s: loss_difference(mine[top], inp.evals[s].results[attention][top])
                        for s in baselines}
            groups: dict[str, list[str]] = {}
            for s, d in verdicts.items():
                groups.setdefault(d.verdict, []).append(f"{s} ({d.text()})")
            said = []
            for verdict in ("lower", "not distinguishable", "higher", "one document, no "
                            "interval"):
                if verdict in groups:
                    said.append(f"{verdict} than " if verdict in ("lower", "higher") else
                                f"{verdict} from " if verdict == "not distinguishable" else
                                "compared without intervals with ")
                    said[-1] += ", ".join(groups[verdict])
            parts.append(f"At {top} tokens its loss is " + "; ".join(said) + " (XPOS − "
                         "baseline, nats, 95 % paired interval).")
            best = min(inp.schemes, key=lambda s: inp.evals[s].results[attention][top].loss)
            parts.append(f"Lowest loss at {top} tokens: {best}.")
        out.append(" ".join(parts))
    return out


def section_findings(inp: MLMReportInputs) -> list[str]:
    lines = ["## Does bidirectional XPOS extrapolate?", ""]
    for paragraph in findings(inp):
        lines += [paragraph, ""]
    lines += ["These are one training seed at a small scale: a difference inside its interval "
              "is not evidence, and the intervals cover the choice of documents, not of "
              "seeds or of the training run (`docs/reproducibility.md`).", ""]
    return lines


def section_training(inp: MLMReportInputs) -> list[str]:
    lines = ["## Training", "",
             f"Every scheme: preset `{inp.preset}`, {inp.tokens:,} tokens at L = "
             f"{inp.train_length}, seed {inp.seed}, the same batches and the same masks; loss "
             "on the 15 % masked tokens.", "",
             "| scheme | steps | tokens | last train loss | validation loss | tokens/s |",
             "|---|---|---|---|---|---|"]

    def fmt(x, spec):
        return "–" if x is None else format(x, spec)

    for r in inp.training:
        lines.append(f"| {r.scheme} | {fmt(r.step, 'd')} | {fmt(r.tokens_seen, ',d')} | "
                     f"{fmt(r.last_loss, '.3f')} | {fmt(r.val_loss, '.3f')} | "
                     f"{fmt(r.tokens_per_s, ',.0f')} |")
    return lines + [""]


def section_provenance(inp: MLMReportInputs) -> list[str]:
    total = sum(inp.timings.values())
    lines = ["## Provenance", "", f"Command: `{inp.command}`", "",
             f"Compute time of all stages: {total / 60:.1f} min"
             + (f" (this invocation: {inp.wall / 60:.1f} min)." if inp.wall else "."), ""]
    return lines + ["| stage | seconds |", "|---|---|"] + [
        f"| {k} | {v:.1f} |" for k, v in inp.timings.items()] + [""]


# --------------------------------------------------------------------------- outputs
def plot_mlm_loss(path: Path, inp: MLMReportInputs) -> Path:
    """Masked-token loss against length, one panel per attention mode, one line per scheme."""
    from ..plots import pyplot, save_figure

    plt = pyplot()
    attentions = inp.attentions
    fig, axes = plt.subplots(1, len(attentions), figsize=(6 * len(attentions), 4.2),
                             squeeze=False, sharey=True)
    for ax, attention in zip(axes[0], attentions):
        for scheme in inp.schemes:
            per = inp.evals[scheme].results[attention]
            xs = [n for n in inp.lengths if n in per]
            ax.plot(xs, [per[n].loss for n in xs], marker="o", markersize=3, label=scheme,
                    linewidth=2.0 if scheme == TARGET else 1.0)
        ax.set_xscale("log", base=2)
        ax.set_xticks(inp.lengths)
        ax.set_xticklabels([str(n) for n in inp.lengths])
        ax.minorticks_off()
        ax.axvline(inp.train_length, color="black", linestyle="--", linewidth=1.0,
                   label=f"L = {inp.train_length}")
        ax.set_xlabel("evaluation length (tokens)")
        ax.set_title(f"{attention} attention")
        ax.grid(alpha=0.3)
    axes[0, 0].set_ylabel("masked-token loss (nats)")
    axes[0, 0].legend(fontsize=8, loc="best")
    fig.tight_layout()
    return save_figure(fig, path)


def results_json(inp: MLMReportInputs) -> dict[str, Any]:
    return {"preset": inp.preset, "corpus": inp.corpus, "train_length": inp.train_length,
            "lengths": inp.lengths, "schemes": inp.schemes, "seed": inp.seed,
            "tokens": inp.tokens, "command": inp.command, "timings": inp.timings,
            "training": [vars(r) for r in inp.training],
            "evals": {s: r.to_json() for s, r in inp.evals.items()}}


def write_mlm_report(out: Path, inp: MLMReportInputs) -> Path:
    """Write ``report.md``, ``results.json`` and the plot into ``out``; returns the report."""
    out = Path(out)
    plot = plot_mlm_loss(out / "plots" / "mlm_loss_vs_length.png", inp).relative_to(out)
    L, top = inp.train_length, inp.lengths[-1]
    n_docs = next(iter(next(iter(inp.evals.values())).results.values()))[top].documents
    lines = ["# Bidirectional XPOS: masked-LM extrapolation", "",
             f"Encoders trained as masked language models at **L = {L}** on `{inp.corpus}` "
             f"(preset `{inp.preset}`), evaluated on {n_docs} test document(s) of {top} tokens "
             f"cut into chunks of L/4 … {top // L}·L: every length scores the same masked "
             "tokens (masked once, 15 %, 80/10/10), only the context around them changes. "
             "XPOS uses the symmetric decay ζ^(|n−m|/B) (`docs/bidirectional.md`); ALiBi "
             "the symmetric bias −slope·|n−m|; `none` has no position information at all.", ""]
    lines += section_tables(inp, str(plot))
    lines += section_findings(inp)
    lines += section_training(inp)
    lines += section_provenance(inp)
    report = out / "report.md"
    atomic_write_text(report, "\n".join(lines))
    atomic_write_json(out / "results.json", results_json(inp))
    return report


__all__ = ["LossDifference", "MLMReportInputs", "MLMTrainingRecord", "findings",
           "loss_difference", "plot_mlm_loss", "training_record", "write_mlm_report"]
