"""``lexformer reproduce``: the paper's length-extrapolation experiment in one command.

Stages, each resumable (a re-run skips what is already on disk):

1. data: corpus, tokenizer and token cache;
2. train every scheme with the same data, seed and budget *in tokens*;
3. evaluate every model at L/4 … 16·L with full and blockwise attention;
4. attention resolution (analytic curves, and each model's ŝ[n] at L and 2L);
5. ``report.md`` with the tables beside the paper's, and the plots.
"""

from __future__ import annotations

import json
import math
import platform
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from . import __version__
from .checkpoint import has_checkpoint, load, read_meta
from .errors import LexformerError
from .evaluate import check_lengths, default_lengths, evaluate_perplexity, evaluation_documents
from .paper import PAPER_TRAIN_LENGTH, TABLE2, TABLE3, TABLE5
from .train import TrainConfig, prepare_data, train

DEFAULT_SCHEMES = ("absolute", "alibi", "rope", "xpos", "none")
ATTENTIONS = ("full", "blockwise")


def _say(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def _fmt_eta(seconds: float) -> str:
    seconds = max(0, int(seconds))
    return f"{seconds // 60}m{seconds % 60:02d}s"


def _trained(run_dir: Path, total_steps: int) -> bool:
    return has_checkpoint(run_dir) and read_meta(run_dir).get("step", 0) >= total_steps


def reproduce(
    preset: str = "tiny",
    corpus: str = "shakespeare",
    out: str | Path = "runs/reproduce",
    schemes: Sequence[str] = DEFAULT_SCHEMES,
    lengths: Sequence[int] | None = None,
    tokens: int | None = None,
    seed: int = 0,
    dtype: str | None = None,
    progress: bool = True,
) -> Path:
    """Run (or finish) the reproduction into ``out``; returns the path of ``report.md``."""
    from .positions import POSITION_SCHEMES

    unknown = [s for s in schemes if s not in POSITION_SCHEMES]
    if unknown:
        raise LexformerError(f"unknown scheme(s) {', '.join(unknown)}; known: "
                             + ", ".join(sorted(POSITION_SCHEMES)))
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    started = time.time()
    # Seconds per stage, kept across invocations so a resumed run still reports the time
    # each stage took when it actually ran.
    timings_path = out / "timings.json"
    timings: dict[str, float] = (json.loads(timings_path.read_text())
                                 if timings_path.exists() else {})

    def record(stage_name: str, seconds: float) -> None:
        timings[stage_name] = round(seconds, 1)
        timings_path.write_text(json.dumps(timings, indent=2))

    cfgs = {s: TrainConfig.from_preset(preset, position=s, corpus=corpus, tokens=tokens,
                                       seed=seed, dtype=dtype) for s in schemes}
    L = next(iter(cfgs.values())).train_length
    lengths = check_lengths(lengths or default_lengths(L))
    if "learned" in schemes and lengths[-1] > L:
        raise LexformerError("the 'learned' scheme cannot be evaluated past L; leave it out")

    n_stages = 2 + 2 * len(schemes) + 1
    stage = 0

    def stage_msg(text: str) -> None:
        nonlocal stage
        stage += 1
        elapsed = time.time() - started
        eta = ""
        done = [v for k, v in timings.items() if k.startswith("train/")]
        if done and stage <= 1 + len(schemes):
            left = sum(1 for s in schemes if not _trained(out / "models" / s,
                                                          cfgs[s].total_steps()))
            eta = f" (ETA for training ~{_fmt_eta(left * sum(done) / len(done))})"
        _say(f"[{stage}/{n_stages}] {text}  — {_fmt_eta(elapsed)} elapsed{eta}")

    stage_msg(f"data: corpus {corpus!r}, tokenizer, token cache")
    t0 = time.time()
    prepare_data(next(iter(cfgs.values())))
    if "data" not in timings:
        record("data", time.time() - t0)

    train_summaries: dict[str, dict[str, Any]] = {}
    for s in schemes:
        run_dir = out / "models" / s
        cfg = cfgs[s]
        stage_msg(f"train {s} ({cfg.total_steps()} steps × {cfg.batch_size} × {L} tokens)")
        t0 = time.time()
        if _trained(run_dir, cfg.total_steps()):
            _say(f"    {s}: already trained, skipped")
        else:
            # a (re)trained model invalidates its evaluation and the resolution analysis
            (out / "eval" / f"{s}.json").unlink(missing_ok=True)
            (out / "analysis.json").unlink(missing_ok=True)
            summary = train(cfg, run_dir, resume=has_checkpoint(run_dir), progress=progress)
            if summary["stopped_early"]:
                raise KeyboardInterrupt
            record(f"train/{s}", time.time() - t0)
        train_summaries[s] = _training_record(run_dir)

    docs = None
    eval_results: dict[str, dict] = {}
    for s in schemes:
        path = out / "eval" / f"{s}.json"
        stage_msg(f"evaluate {s} at {', '.join(map(str, lengths))} (full, blockwise)")
        if path.exists():
            saved = json.loads(path.read_text())
            if saved.get("lengths") == lengths:
                eval_results[s] = {a: {int(n): v for n, v in per.items()}
                                   for a, per in saved["results"].items()}
                _say(f"    {s}: already evaluated, skipped")
                continue
        ckpt = load(out / "models" / s)
        if docs is None:
            docs = evaluation_documents(corpus, ckpt.tokenizer, "test", lengths[-1])
        t0 = time.time()
        res = evaluate_perplexity(ckpt.model, docs, lengths, ATTENTIONS, progress=progress)
        eval_results[s] = res
        path.parent.mkdir(parents=True, exist_ok=True)
        record(f"eval/{s}", time.time() - t0)
        path.write_text(json.dumps({"lengths": lengths, "seconds": time.time() - t0,
                                    "results": {a: {str(n): v for n, v in per.items()}
                                                for a, per in res.items()}}, indent=2))

    stage_msg("attention resolution (analytic and per model at L and 2L)")
    t0 = time.time()
    fresh = not (out / "analysis.json").exists()
    analysis = _analysis(out, schemes, L, corpus, docs_source=(corpus, "test"))
    if fresh or "analysis" not in timings:
        record("analysis", time.time() - t0)

    stage_msg("report and plots")
    report = write_report(out, preset=preset, corpus=corpus, schemes=schemes, L=L,
                          lengths=lengths, eval_results=eval_results, analysis=analysis,
                          train_summaries=train_summaries, wall=time.time() - started,
                          timings=timings,
                          command=" ".join(["lexformer"] + sys.argv[1:]) if sys.argv else "")
    _say(f"done in {_fmt_eta(time.time() - started)}: {report}")
    return report


def _training_record(run_dir: Path) -> dict[str, Any]:
    meta = read_meta(run_dir)
    rec: dict[str, Any] = {"step": meta.get("step"), "tokens": meta.get("tokens_seen"),
                           "loss": meta.get("last_loss")}
    metrics = run_dir / "metrics.jsonl"
    if metrics.exists():
        lines = [json.loads(x) for x in metrics.read_text().splitlines() if x.strip()]
        vals = [x["val_loss"] for x in lines if "val_loss" in x]
        rec["val_loss"] = vals[-1] if vals else None
        speeds = [x["tokens_per_s"] for x in lines if x.get("tokens_per_s")]
        rec["tokens_per_s"] = float(np.median(speeds)) if speeds else None
    return rec


def _analysis(out: Path, schemes, L: int, corpus: str, docs_source) -> dict[str, Any]:
    from .analysis import analytic_resolution, model_resolution

    path = out / "analysis.json"
    if path.exists():
        saved = json.loads(path.read_text())
        if set(saved.get("models", {})) == set(schemes):
            return saved
    result: dict[str, Any] = {"analytic": {}, "models": {}}
    for label, gamma in (("rope", None), ("xpos", 0.4)):
        result["analytic"][label] = {
            str(n): analytic_resolution(64, n, gamma) for n in (L, 2 * L, 1024, 4096)}
    docs = None
    for s in schemes:
        ckpt = load(out / "models" / s)
        if docs is None:
            docs = evaluation_documents(docs_source[0], ckpt.tokenizer, docs_source[1], 2 * L)
        per: dict[str, Any] = {}
        for attention in ATTENTIONS:
            for n in (L, 2 * L):
                r = model_resolution(ckpt.model, docs, n, attention)
                per[f"{attention}@{n}"] = {
                    "resolution": float(r["resolution"]),
                    "s_hat": [None if not np.isfinite(x) else float(x) for x in r["s_hat"]],
                    "n_texts": r.get("n_texts"),
                }
        result["models"][s] = per
    path.write_text(json.dumps(result))
    return result


# --------------------------------------------------------------------------- report
def _cell(v: float | None) -> str:
    if v is None or not math.isfinite(v):
        return "–"
    return f"{v:.2f}" if v < 1000 else f"{v:.0f}"


def write_report(out: Path, *, preset, corpus, schemes, L, lengths, eval_results, analysis,
                 train_summaries, wall, command, timings=None) -> Path:
    from .plots import plot_expectation_curves, plot_expected_scores, plot_perplexity_vs_length

    plots = out / "plots"
    curves = {}
    for s in schemes:
        for a in ATTENTIONS:
            curves[f"{s} / {a}"] = {n: eval_results[s][a][n]["perplexity"] for n in lengths}
    paper_for_plot = {k: v for k, v in TABLE2.items()}
    ppl_png = plot_perplexity_vs_length(plots / "perplexity_vs_length.png", curves, L,
                                        paper=paper_for_plot)
    exp_png = plot_expectation_curves(plots / "expectation_curves.png", head_dim=64,
                                      max_distance=4 * L if L >= 1024 else 4096)
    s_hat_curves = {}
    for s in schemes:
        for a in ATTENTIONS:
            s_hat = analysis["models"][s][f"{a}@{2 * L}"]["s_hat"]
            s_hat_curves[f"{s} / {a}"] = np.array([np.nan if x is None else x for x in s_hat])
    shat_png = plot_expected_scores(plots / "expected_scores.png", s_hat_curves)

    def ppl(s, a, n):
        return eval_results[s][a][n]["perplexity"]

    lines: list[str] = []
    add = lines.append
    add("# lexformer reproduction report")
    add("")
    add(f"Trained at **L = {L}** on `{corpus}` (preset `{preset}`); evaluated on the test "
        f"split at L/4 … {lengths[-1] // L}·L. Every number below was measured by this run "
        "unless it sits in a column or table labelled *paper*.")
    add("")
    add("## Table 2 analogue: perplexity by length")
    add("")
    add("Ours (rows: scheme / attention; **LeX = xpos + blockwise**). "
        "Lengths above L are extrapolation.")
    add("")
    add("| model | " + " | ".join(
        f"{n}{' (L)' if n == L else ''}" for n in lengths) + " |")
    add("|---|" + "---|" * len(lengths))
    for s in schemes:
        for a in ATTENTIONS:
            name = "**LeX (xpos + blockwise)**" if (s, a) == ("xpos", "blockwise") else f"{s} / {a}"
            add(f"| {name} | " + " | ".join(_cell(ppl(s, a, n)) for n in lengths) + " |")
    add("")
    add(f"The paper (trained at {PAPER_TRAIN_LENGTH} on a Pile subset, 24 layers × 1024; "
        "columns in units of its L):")
    add("")
    paper_cols = [256, 512, 1024, 2048, 4096]
    add("| paper | " + " | ".join(f"{n} ({n / PAPER_TRAIN_LENGTH:g}·L)" for n in paper_cols)
        + " |")
    add("|---|" + "---|" * len(paper_cols))
    for k, row in TABLE2.items():
        add(f"| {k} | " + " | ".join(_cell(row[n]) for n in paper_cols) + " |")
    add("")
    add(f"![perplexity vs length]({ppl_png.relative_to(out)})")
    add("")

    add("## Table 5 analogue: blockwise attention per scheme")
    add("")
    ext = [n for n in lengths if n > L][:2] or lengths[-2:]
    add("| scheme | " + " | ".join(f"full @ {n}" for n in ext) + " | "
        + " | ".join(f"blockwise @ {n}" for n in ext) + " | paper full 2L / 4L | "
        "paper blockwise 2L / 4L |")
    add("|---|" + "---|" * (2 * len(ext) + 2))
    for s in schemes:
        pf = TABLE5.get((s, "full"))
        pb = TABLE5.get((s, "blockwise"))
        add(f"| {s} | " + " | ".join(_cell(ppl(s, 'full', n)) for n in ext) + " | "
            + " | ".join(_cell(ppl(s, 'blockwise', n)) for n in ext) + " | "
            + (f"{pf[0]} / {pf[1]}" if pf else "–") + " | "
            + (f"{pb[0]} / {pb[1]}" if pb else "–") + " |")
    add("")

    add("## Table 3 analogue: attention resolution")
    add("")
    add("R(ŝ) as defined in SPEC §3 / the paper's Eq. 3 (at most 1). The paper reports "
        "values above 1 (LeX 1.08 at 2048), so it must have normalised differently; compare "
        "orderings, not magnitudes. On a trained model's ŝ the sums run over hundreds of "
        "distances of nearly equal weight, so R is small (of order 1/N).")
    add("")
    add(f"| model | full @ {L} | full @ {2 * L} | blockwise @ {L} | blockwise @ {2 * L} | "
        "paper @ 1024 / 2048 |")
    add("|---|---|---|---|---|---|")
    for s in schemes:
        m = analysis["models"][s]
        paper = TABLE3.get(s)
        if s == "xpos":
            paper = TABLE3["xpos (no BCA)"]
        add(f"| {s} | " + " | ".join(
            f"{m[f'{a}@{n}']['resolution']:.3g}" for a in ATTENTIONS for n in (L, 2 * L))
            + " | " + (f"{paper[0]} / {paper[1]}" if paper else "–") + " |")
    add("")
    an = analysis["analytic"]
    add("Analytic resolution of the expectation curve g[n] (head dim 64, all-ones q and k, "
        "paper Eq. 8): " + ", ".join(
            f"{label} over 0..{n}: {float(an[label][str(n)]):.3f}"
            for label in an for n in (1024, 4096)) + ".")
    add("")
    add(f"![expectation curves]({exp_png.relative_to(out)})  ")
    add(f"![expected scores]({shat_png.relative_to(out)})")
    add("")

    add("## Training")
    add("")
    add("Same data, same seed, same budget in tokens for every scheme.")
    add("")
    add("| scheme | steps | tokens | final train loss | validation loss | tokens/s (median) |")
    add("|---|---|---|---|---|---|")
    for s in schemes:
        r = train_summaries[s]
        add(f"| {s} | {r.get('step')} | {r.get('tokens'):,} | {_fmt(r.get('loss'))} | "
            f"{_fmt(r.get('val_loss'))} | {_fmt(r.get('tokens_per_s'), 0)} |")
    add("")

    add("## What this run shows")
    add("")
    for para in _findings(schemes, L, lengths, eval_results, analysis):
        add(para)
        add("")

    add("## Provenance")
    add("")
    add(f"- command: `{command}`")
    add(f"- wall-clock of this invocation: {_fmt_eta(wall)} (stages already on disk are "
        "skipped)")
    if timings:
        total = sum(timings.values())
        add(f"- time of every stage when it ran: {_fmt_eta(total)} in all — "
            + ", ".join(f"{k} {_fmt_eta(v)}" for k, v in timings.items()))
    add(f"- lexformer {__version__}, torch {torch.__version__}, Python "
        f"{platform.python_version()}, numpy {np.__version__}")
    add(f"- machine: {platform.machine()}, {platform.system()} {platform.release()}, "
        f"{torch.get_num_threads()} torch threads, "
        f"{'CUDA ' + torch.cuda.get_device_name() if torch.cuda.is_available() else 'CPU only'}")
    add(f"- date: {time.strftime('%Y-%m-%d %H:%M:%S %Z')}")
    add("")
    report = out / "report.md"
    report.write_text("\n".join(lines))
    (out / "results.json").write_text(json.dumps({
        "preset": preset, "corpus": corpus, "train_length": L, "lengths": lengths,
        "perplexity": {s: {a: {str(n): eval_results[s][a][n]["perplexity"] for n in lengths}
                           for a in ATTENTIONS} for s in schemes},
        "training": train_summaries,
        "resolution": {s: {k: v["resolution"] for k, v in analysis["models"][s].items()}
                       for s in schemes},
    }, indent=2))
    return report


def _fmt(v, digits: int = 3) -> str:
    if v is None:
        return "–"
    return f"{v:,.{digits}f}"


def _findings(schemes, L, lengths, eval_results, analysis) -> list[str]:
    """Plain statements computed from the measured numbers (no expected outcome assumed)."""

    def ppl(s, a, n):
        return eval_results[s][a][n]["perplexity"]

    top = lengths[-1]
    out = []
    at_L = {f"{s}/{a}": ppl(s, a, L) for s in schemes for a in ATTENTIONS}
    best_L = min(at_L, key=at_L.get)
    out.append(f"At the training length ({L}) the best model is **{best_L}** "
               f"(perplexity {at_L[best_L]:.2f}).")
    growth = []
    for s in schemes:
        for a in ATTENTIONS:
            change = ppl(s, a, top) / ppl(s, a, L) - 1
            growth.append(f"{s}/{a} {change:+.1%}")
    out.append(f"Change in perplexity from L to {top // L}·L ({top} tokens): "
               + ", ".join(growth) + ".")
    extrap = [n for n in lengths if n > L]
    if extrap:
        wins = []
        for n in extrap:
            scores = {f"{s}/{a}": ppl(s, a, n) for s in schemes for a in ATTENTIONS}
            wins.append(f"{n}: {min(scores, key=scores.get)}")
        out.append("Best model at each extrapolation length — " + "; ".join(wins) + ".")
        if "xpos" in schemes:
            lex = [ppl("xpos", "blockwise", n) for n in extrap]
            others = {f"{s}/{a}": [ppl(s, a, n) for n in extrap]
                      for s in schemes for a in ATTENTIONS if (s, a) != ("xpos", "blockwise")}
            beaten_by = sorted({k for k, v in others.items()
                                if any(o < x for o, x in zip(v, lex))})
            if beaten_by:
                out.append("LeX (xpos + blockwise) is **not** the best at every extrapolation "
                           "length: " + ", ".join(beaten_by) + " beat it at one or more "
                           "lengths. This differs from the paper's Table 2.")
            else:
                out.append("LeX (xpos + blockwise) has the lowest perplexity at every "
                           "extrapolation length, as in the paper's Table 2.")
            trend = "falls" if lex[-1] < ppl("xpos", "blockwise", L) else "rises"
            out.append(f"LeX's perplexity {trend} from L to {top} "
                       f"({ppl('xpos', 'blockwise', L):.2f} → {lex[-1]:.2f}); the paper's "
                       "falls (23.31 → 20.73).")
        for s in ("absolute", "rope"):
            if s in schemes:
                out.append(f"{s} with full attention: {ppl(s, 'full', L):.2f} at L → "
                           f"{ppl(s, 'full', top):.2f} at {top}; with blockwise: "
                           f"{ppl(s, 'blockwise', top):.2f}.")
    out.append("The models are small and trained briefly (see Training): absolute numbers "
               "are far from the paper's and only the shapes of the curves are comparable.")
    return out
