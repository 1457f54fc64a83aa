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

from ..mlm import MaskedLengthResult, MaskedLMResult
from ..stats import ratio_difference_interval
from .reporting import (
    LengthPanel,
    figure_path,
    findings_section,
    is_smoke,
    optional,
    plot_by_length,
    provenance_section,
    seeds_cell,
    seeds_note,
    shown_path,
    smoke_banner,
    table,
    training_section,
    write_report_files,
)

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
    #: every seed's evaluation by scheme, in seed order, when several seeds were trained
    #: (``evals`` holds the first seed's: the findings and their paired intervals use those)
    seed_evals: dict[str, list[MaskedLMResult]] = field(default_factory=dict)
    ood_corpus: str | None = None
    #: the out-of-domain evaluation by scheme, one per seed; empty: not measured
    ood: dict[str, list[MaskedLMResult]] = field(default_factory=dict)

    @property
    def attentions(self) -> list[str]:
        return list(next(iter(self.evals.values())).results)

    @property
    def by_seed(self) -> dict[str, list[MaskedLMResult]]:
        """Every seed's evaluation by scheme (one seed: ``evals``)."""
        return self.seed_evals or {s: [r] for s, r in self.evals.items()}

    @property
    def seeds(self) -> list[int]:
        return list(range(self.seed, self.seed + len(next(iter(self.by_seed.values())))))


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
    if len(a.doc_nll) != len(b.doc_nll):
        return LossDifference(a.loss - b.loss, None)
    return LossDifference(a.loss - b.loss,
                          ratio_difference_interval(a.doc_nll, b.doc_nll, a.doc_masked))


# --------------------------------------------------------------------------- sections
def _length_header(inp: MLMReportInputs) -> list[str]:
    return [f"{n} (L)" if n == inp.train_length else str(n) for n in inp.lengths]


def _table(inp: MLMReportInputs, results: dict[str, list[MaskedLMResult]], cell, value,
           best=min) -> list[str]:
    """Rows scheme / attention, columns lengths; a cell over the seeds' results (``cell`` of
    their list), the best of each column by the mean ``value`` over seeds in bold."""
    rows = [(s, a) for a in inp.attentions for s in inp.schemes]
    body = []
    for scheme, attention in rows:
        cells = []
        for n in inp.lengths:
            column = [[r.results[a][n] for r in results[s]] for s, a in rows]
            mine = [r.results[attention][n] for r in results[scheme]]
            top = best(column, key=lambda c: float(np.mean([value(x) for x in c])))
            text = cell(mine)
            # the same result objects, not equal values: a tie is bold once
            cells.append(f"**{text}**" if all(a is b for a, b in zip(mine, top)) else text)
        body.append([f"{scheme} / {attention}", *cells])
    return table(["model", *_length_header(inp)], body)


def _loss_cell(cells: list[MaskedLengthResult]) -> str:
    # a loss keeps its decimals at any size (no "large" rule) and prints inf/nan as such
    return seeds_cell([r.loss for r in cells], cells[0].loss_ci95, digits=3, large=None,
                      blank_nonfinite=False)


def _accuracy_cell(cells: list[MaskedLengthResult]) -> str:
    return seeds_cell([100 * r.accuracy for r in cells], digits=1, large=None,
                      blank_nonfinite=False)


def _uncertainty_note(inp: MLMReportInputs) -> str:
    if len(inp.seeds) == 1:
        return "± is half the 95 % bootstrap interval over documents"
    note = seeds_note(inp.seeds).removesuffix(".")  # it continues a sentence here
    return note[0].lower() + note[1:]


def _loss_table(inp: MLMReportInputs, results: dict[str, list[MaskedLMResult]]) -> list[str]:
    return _table(inp, results, _loss_cell, lambda r: r.loss)


def section_tables(inp: MLMReportInputs, plot: str) -> list[str]:
    L = inp.train_length
    lines = ["## Masked-token loss by length", "",
             "Mean cross-entropy (nats) of the original token at the masked positions; lower is "
             f"better. Lengths above L = {L} are extrapolation; {_uncertainty_note(inp)}; the "
             "lowest of each column is in bold. `blockwise`: a query sees its own block of L/2 "
             "tokens and the blocks on either side.", ""]
    lines += _loss_table(inp, inp.by_seed)
    lines += ["", f"![masked-token loss against length]({plot})", "",
              "## Masked-token accuracy by length", "",
              "Share of masked positions whose most likely token is the original one (%); "
              "higher is better.", ""]
    lines += _table(inp, inp.by_seed, _accuracy_cell, lambda r: r.accuracy, best=max)
    return lines + [""]


def section_ood(inp: MLMReportInputs, out: Path) -> list[str]:
    if not inp.ood:
        return []
    return (["## Out-of-domain masked-token loss", "",
             f"Every encoder evaluated on the test split of `{shown_path(inp.ood_corpus, out)}`, "
             "a corpus it was not trained on (same tokenizer, same lengths, masked the same "
             f"way); {_uncertainty_note(inp)}.", ""]
            + _loss_table(inp, inp.ood) + [""])


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
    lines = findings_section("## Does bidirectional XPOS extrapolate?", inp.preset,
                             findings(inp))
    if len(inp.seeds) > 1:
        lines += [f"The differences above are those of the first seed's models (seed "
                  f"{inp.seed}); the tables give the mean and spread over {len(inp.seeds)} "
                  "seeds.", ""]
    if not is_smoke(inp.preset):  # a smoke run's caveat opened the section
        lines += ["These are one training seed at a small scale: a difference inside its "
                  "interval is not evidence, and the intervals cover the choice of documents, "
                  "not of seeds or of the training run (`docs/reproducibility.md`).", ""]
    return lines


def section_training(inp: MLMReportInputs) -> list[str]:
    return training_section(
        f"Every scheme: preset `{inp.preset}`, {inp.tokens:,} tokens at L = "
        f"{inp.train_length}, seed{'s' if len(inp.seeds) > 1 else ''} "
        f"{', '.join(map(str, inp.seeds))}, the same batches and the same masks"
        f"{' (for a seed)' if len(inp.seeds) > 1 else ''}; loss on the 15 % masked tokens.",
        ["scheme", "steps", "tokens", "last train loss", "validation loss", "tokens/s"],
        ([r.scheme, optional(r.step, "d"), optional(r.tokens_seen, ",d"),
          optional(r.last_loss, ".3f"), optional(r.val_loss, ".3f"),
          optional(r.tokens_per_s, ",.0f")] for r in inp.training))


def section_provenance(inp: MLMReportInputs, out: Path | None = None) -> list[str]:
    total = sum(inp.timings.values())
    timing = [f"- compute time of all stages: {total / 60:.1f} min"
              + (f" (this invocation: {inp.wall / 60:.1f} min)" if inp.wall else "")]
    return provenance_section(inp.command, timing, out=out) + table(
        ["stage", "seconds"], ([k, f"{v:.1f}"] for k, v in inp.timings.items())) + [""]


# --------------------------------------------------------------------------- outputs
def plot_mlm_loss(path: Path, inp: MLMReportInputs) -> Path:
    """Masked-token loss against length, one panel per attention mode, one line per scheme,
    the 95 % bootstrap interval over documents shaded where there is one. With several seeds
    the line is the mean over seeds, which no seed's interval describes: no bands."""
    def mean_loss(s: str, a: str, n: int) -> float:
        return float(np.mean([r.results[a][n].loss for r in inp.by_seed[s]]))

    one_seed = len(inp.seeds) == 1
    panels = [LengthPanel({s: {n: mean_loss(s, a, n) for n in inp.evals[s].results[a]}
                           for s in inp.schemes}, f"{a} attention", inp.train_length,
                          f"L = {inp.train_length}", ticks=inp.lengths,
                          bands={s: {n: r.loss_ci95 for n, r in inp.evals[s].results[a].items()
                                     if r.loss_ci95 is not None and one_seed}
                                 for s in inp.schemes})
              for a in inp.attentions]
    return plot_by_length(path, panels, "masked-token loss (nats)", widths={
        s: 2.0 if s == TARGET else 1.0 for s in inp.schemes}, log_y=False,
        panel_size=(6, 4.2), share_y=True, every_legend=False)


def results_json(inp: MLMReportInputs) -> dict[str, Any]:
    return {"preset": inp.preset, "corpus": inp.corpus, "train_length": inp.train_length,
            "lengths": inp.lengths, "schemes": inp.schemes, "seed": inp.seed,
            "tokens": inp.tokens, "command": inp.command, "timings": inp.timings,
            "training": [vars(r) for r in inp.training],
            "evals": {s: r.to_json() for s, r in inp.evals.items()},
            **({"seeds": inp.seeds, "evals_by_seed": _results_json(inp.seed_evals)}
               if inp.seed_evals else {}),
            **({"ood_corpus": inp.ood_corpus, "ood": _results_json(inp.ood)}
               if inp.ood else {})}


def _results_json(table: dict[str, list[MaskedLMResult]]) -> dict[str, list[dict]]:
    return {s: [r.to_json() for r in per_seed] for s, per_seed in table.items()}


def write_mlm_report(out: Path, inp: MLMReportInputs) -> Path:
    """Write ``report.md``, ``results.json`` and the plot into ``out``; returns the report."""
    out = Path(out)
    plot = plot_mlm_loss(figure_path(out, "plots/mlm_loss_vs_length.png"), inp
                         ).relative_to(out)
    L, top = inp.train_length, inp.lengths[-1]
    n_docs = next(iter(next(iter(inp.evals.values())).results.values()))[top].documents
    lines = ["# Bidirectional XPOS: masked-LM extrapolation", "", *smoke_banner(inp.preset),
             f"Encoders trained as masked language models at **L = {L}** on "
             f"`{shown_path(inp.corpus, out)}` "
             f"(preset `{inp.preset}`), evaluated on {n_docs} test document(s) of {top} tokens "
             f"cut into chunks of L/4 … {top // L}·L: every length scores the same masked "
             "tokens (masked once, 15 %, 80/10/10), only the context around them changes. "
             "XPOS uses the symmetric decay ζ^(|n−m|/B) (`docs/bidirectional.md`); ALiBi "
             "the symmetric bias −slope·|n−m|; `none` has no position information at all.", ""]
    lines += section_tables(inp, str(plot))
    lines += section_ood(inp, out)
    lines += section_findings(inp)
    lines += section_training(inp)
    lines += section_provenance(inp, out)
    return write_report_files(out, lines, results_json(inp))


__all__ = ["LossDifference", "MLMReportInputs", "MLMTrainingRecord", "findings",
           "loss_difference", "plot_mlm_loss", "training_record", "write_mlm_report"]
