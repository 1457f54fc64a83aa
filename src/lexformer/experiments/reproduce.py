"""``lexformer reproduce``: the paper's length-extrapolation experiment as resumable stages.

1. data: corpus, tokenizer and token cache; the evaluation corpora are checked to hold
   documents of the longest length before anything is trained;
2. train every scheme × seed with the same data order, seed and budget *in tokens*;
3. evaluate every model at L/4 … 16·L with full and blockwise attention;
4. out-of-domain: the same on a corpus no model was trained on;
5. context use: loss by position and copy at distances L/8 … 16·L for every model under
   full and blockwise attention (:mod:`lexformer.tasks`);
6. attention resolution (analytic curves, and each first-seed model's ŝ[n] at L and 2L);
7. ``report.md`` with the tables beside the paper's, and the plots
   (:mod:`lexformer.experiments.reproduce_report`).

Layout of ``out``: ``models/<scheme>`` (first seed; the layout of earlier versions) and
``models/<scheme>-seed<k>`` (other seeds), ``eval/<model>.json``, ``ood/<model>.json``,
``position-loss/<model>.json``, ``copy/<model>.json``, ``analysis.json``, ``timings.json``,
``report.md``, ``results.json``, ``plots/``.

A stage's saved output is reused only when it was made with the same settings: a model only
if its saved training config equals the wanted one (otherwise the run is refused, naming the
differing fields), an evaluation only if it measured the same checkpoint step at the same
lengths on the same corpus (otherwise it is redone), a task result only if it measured the
same checkpoint step with the same task settings.
"""

from __future__ import annotations

import json
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from ..analysis import AnalysisResult, analytic_resolutions, analyze_checkpoint
from ..checkpoint import load
from ..errors import LexformerError
from ..evaluate import PerplexityResult, check_lengths, default_lengths, evaluate_model
from ..fileio import ensure_writable_dir
from ..presets import from_preset
from ..tasks import TaskResults, TaskSettings, default_distances, run_tasks
from ..tasks.settings import DEFAULT_SAMPLES
from ..train import prepare_data, read_training_metrics
from .common import (
    ATTENTIONS,
    DEFAULT_SCHEMES,
    EVAL_SPLIT,
    MAX_SEEDS,
    Run,
    TrainedExperiment,
    TrainedSettings,
    default_ood_corpus,
    evaluation_codec,
)
from .context_report import ContextInputs
from .reproduce_report import ReportInputs, TrainingRecord, write_report
from .stages import JsonCodec, Runner, Stage, command_line, say

#: the context-use tasks run on every model, each a resumable stage
CONTEXT_TASKS = ("position-loss", "copy")
#: copy samples per distance by preset: the smoke preset only shows that the stages work
TASK_SAMPLES = {"smoke": 4}


@dataclass
class ReproduceSettings(TrainedSettings):
    """The causal experiment's settings: every field is :class:`TrainedSettings`' (the
    copy-task samples included)."""


def check_settings(s: ReproduceSettings) -> None:
    """Every user error in the settings, before any work."""
    s.check_schemes()
    s.check_seeds()
    if s.tokens is not None and s.tokens < 1:
        raise LexformerError(f"--tokens must be positive, got {s.tokens}")
    if s.task_samples is not None and s.task_samples < 1:
        raise LexformerError(f"copy samples must be at least 1, got {s.task_samples}")
    ensure_writable_dir(s.out, "--out folder")


class Pipeline(TrainedExperiment):
    """The reproduction's invocation: ``configs`` by :class:`Run` (scheme × seed)."""

    settings: ReproduceSettings

    @property
    def task_settings(self) -> TaskSettings:
        """Position-loss over chunks of the longest evaluation length; copy at the default
        distances L/8 … 16·L (those a model can score)."""
        samples = self.settings.task_samples or TASK_SAMPLES.get(self.settings.preset,
                                                                  DEFAULT_SAMPLES)
        return TaskSettings(length=self.lengths[-1], samples=samples)

    @property
    def task_document_length(self) -> int:
        """Tokens a task document holds: the longest evaluation length, or the copy prefix
        (L/2), span and longest distance if that is more (the copied text is real text)."""
        s, L = self.task_settings, self.train_length
        return max(self.lengths[-1], max(1, L // 2) + s.span + max(default_distances(L)))


def n_stages(s: ReproduceSettings, runs: int) -> int:
    # per run: train, eval (, out-of-domain eval), position-loss, copy
    per_run = (3 if s.ood else 2) + len(CONTEXT_TASKS)
    return 1 + per_run * runs + 2  # data …, analysis, report


def plan(s: ReproduceSettings) -> Pipeline:
    """Configs for every scheme × seed and the evaluation lengths, all checked."""
    check_settings(s)
    configs = s.run_configs(lambda scheme, seed: from_preset(
        s.preset, position=scheme, corpus=s.corpus, tokens=s.tokens, seed=seed, dtype=s.dtype))
    first = next(iter(configs.values()))
    if first.objective != "clm":
        raise LexformerError(f"preset {s.preset} trains masked-LM encoders; their experiment "
                             "is lexformer reproduce --objective mlm "
                             "(lexformer.experiments.encoder)")
    L = first.train_length
    lengths = check_lengths(s.lengths if s.lengths is not None else default_lengths(L))
    if "learned" in s.schemes and lengths[-1] > L:
        raise LexformerError("the 'learned' scheme cannot be evaluated past L; leave it out")
    runner = Runner(n_stages(s, len(configs)), Path(s.out) / "timings.json")
    return Pipeline(s, configs, lengths, runner)


# --------------------------------------------------------------------------- stages
def data_stage(p: Pipeline) -> Stage[None]:
    """Corpus, tokenizer, token cache; then check every evaluation corpus is long enough."""
    from ..evaluate import evaluation_documents

    def compute() -> None:
        _, tokenizer, _ = prepare_data(next(iter(p.configs.values())))
        for corpus in filter(None, (p.settings.corpus, p.settings.ood)):
            evaluation_documents(corpus, tokenizer, EVAL_SPLIT, p.lengths[-1], max_docs=1)
        try:  # the context-use tasks' text: copy needs L/2 + span + 16·L tokens of a document
            evaluation_documents(p.settings.corpus, tokenizer, EVAL_SPLIT,
                                 p.task_document_length, max_docs=1)
        except LexformerError as e:
            raise LexformerError(f"copy at distances up to 16·L needs test documents of "
                                 f"{p.task_document_length} tokens: {e}") from None

    return p.data_stage(compute)


def _complete(result: PerplexityResult) -> PerplexityResult:
    if not all(r.doc_nll for per in result.results.values() for r in per.values()):
        raise ValueError("saved before per-document losses were kept: measure again")
    return result


EVAL_CODEC = evaluation_codec(PerplexityResult.to_json,
                              lambda data: _complete(PerplexityResult.from_json(data)))


def eval_stage(p: Pipeline, run: Run, corpus: str, folder: str) -> Stage[PerplexityResult]:
    """Evaluate one model on ``corpus`` into ``<folder>/<model>.json`` (or reuse it)."""
    from ..lm import LexformerLM

    def compute() -> PerplexityResult:
        ckpt = load(p.model_dir(run))
        return evaluate_model(LexformerLM.from_checkpoint(ckpt), corpus, EVAL_SPLIT, p.lengths,
                              ATTENTIONS, progress=p.settings.progress,
                              checkpoint=str(ckpt.path), step=p.model_step(run))

    return p.eval_stage(run, corpus, folder, f"{folder} {run.name} on {corpus!r}", compute,
                        EVAL_CODEC)


@dataclass
class TaskRecord:
    """One context-use task measured on one model, with what identifies the measurement."""

    model: str
    task: str
    corpus: str
    step: int | None
    settings: dict[str, Any]
    results: TaskResults
    seconds: float | None = None
    #: the corpus's content fingerprint (None in records saved before it was kept)
    corpus_fingerprint: str | None = None

    def to_json(self) -> dict[str, Any]:
        return {"model": self.model, "task": self.task, "corpus": self.corpus,
                "corpus_fingerprint": self.corpus_fingerprint,
                "split": EVAL_SPLIT, "step": self.step, "settings": self.settings,
                "seconds": self.seconds, "results": self.results.to_json()}

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> TaskRecord:
        results = TaskResults.from_json(data["results"])
        # an older version's copy gain (no control) is stale: the stage measures it again
        results.require_copy_control("saved task record")
        return cls(model=str(data["model"]), task=str(data["task"]), corpus=str(data["corpus"]),
                   step=data["step"], settings=dict(data["settings"]), results=results,
                   seconds=data.get("seconds"),
                   corpus_fingerprint=data.get("corpus_fingerprint"))

    @property
    def key(self) -> dict[str, Any]:
        """What a saved record is reused on: task, step, corpus, settings and every
        attention mode it holds."""
        from ..tasks import TASKS

        attentions = getattr(self.results, TASKS[self.task].result_field)
        return {"task": self.task, "step": self.step, "corpus": self.corpus,
                "corpus_fingerprint": self.corpus_fingerprint, "settings": self.settings,
                "attentions": sorted(attentions)}


TASK_CODEC = JsonCodec(TaskRecord.to_json, TaskRecord.from_json, key_of=lambda r: r.key)


def settings_json(settings: TaskSettings) -> dict[str, Any]:
    """The task settings as JSON values (tuples as lists), for saving and comparing."""
    return json.loads(json.dumps(asdict(settings)))


def task_stage(p: Pipeline, run: Run, task: str) -> Stage[TaskRecord]:
    """One context-use task on one model under full and blockwise attention into
    ``<task>/<model>.json`` (or reuse it)."""
    from ..evaluate import evaluation_documents
    from ..lm import LexformerLM

    corpus, step = p.settings.corpus, p.model_step(run)
    settings = settings_json(p.task_settings)
    wanted = {"task": task, "step": step, "corpus": corpus,
              "corpus_fingerprint": p.fingerprint(corpus), "settings": settings,
              "attentions": sorted(ATTENTIONS)}

    def compute() -> TaskRecord:
        ckpt = load(p.model_dir(run))
        t0 = time.time()
        documents = evaluation_documents(corpus, ckpt.tokenizer, EVAL_SPLIT,
                                         p.task_document_length)
        results = run_tasks(LexformerLM.from_checkpoint(ckpt), [task], ATTENTIONS, documents,
                            p.task_settings, progress=p.settings.progress)
        return TaskRecord(run.name, task, corpus, step, settings, results,
                          seconds=round(time.time() - t0, 2),
                          corpus_fingerprint=p.fingerprint(corpus))

    return Stage(f"{task}/{run.name}", f"{task} {run.name} ({' and '.join(ATTENTIONS)} "
                 "attention)", compute, key=wanted, codec=TASK_CODEC,
                 path=p.out / task / f"{run.name}.json",
                 reused=f"    {run.name}: {task} already measured (step {step}), skipped")


def merge_task_results(parts: Sequence[TaskResults]) -> TaskResults:
    """The tasks of several records of one model in one TaskResults."""
    merged = TaskResults()
    for part in parts:
        merged.copy.update(part.copy)
        merged.position_loss.update(part.position_loss)
        merged.passkey.update(part.passkey)
        merged.ruler.update(part.ruler)
    return merged


ANALYSIS_CODEC = JsonCodec(AnalysisResult.to_json, AnalysisResult.from_json,
                           key_of=lambda r: {k: m.step for k, m in r.models.items()})


def analysis_stage(p: Pipeline) -> Stage[AnalysisResult]:
    """Resolution of every first-seed model at L and 2L (reused when the steps match)."""
    L = p.train_length
    firsts = [r for r in p.runs if r.first]

    def compute() -> AnalysisResult:
        models = {r.scheme: analyze_checkpoint(load(p.model_dir(r)), p.settings.corpus,
                                               EVAL_SPLIT, [L, 2 * L], ATTENTIONS)
                  for r in firsts}
        head_dim = next(iter(models.values())).head_dim
        return AnalysisResult(head_dim,
                              analytic_resolutions(head_dim, (L, 2 * L, 1024, 4096)), models)

    return Stage("analysis", "attention resolution (analytic and per model at L and 2L)",
                 compute, key={r.scheme: p.model_step(r) for r in firsts},
                 codec=ANALYSIS_CODEC, path=p.out / "analysis.json")


# --------------------------------------------------------------------------- report
def training_record(run: Run, run_dir: Path) -> TrainingRecord:
    from ..checkpoint import read_run_meta

    meta = read_run_meta(run_dir)
    rec = TrainingRecord(run.scheme, run.seed, meta.step, meta.tokens_seen, meta.last_loss)
    rec.val_loss, rec.tokens_per_s = read_training_metrics(run_dir)
    return rec


def _context_inputs(p: Pipeline, tasks: dict[Run, TaskResults]) -> ContextInputs:
    s = p.task_settings
    return ContextInputs(train_length=p.train_length, schemes=list(p.settings.schemes),
                         tasks=p.by_scheme(tasks), samples=s.samples, span=s.span,
                         chunk_length=p.lengths[-1], attentions=ATTENTIONS)


def report_stage(p: Pipeline, evals: dict[Run, PerplexityResult],
                 ood: dict[Run, PerplexityResult], tasks: dict[Run, TaskResults],
                 analysis: AnalysisResult) -> Stage[Path]:
    """``report.md``, ``results.json`` and the plots, from every stage's result."""
    s = p.settings

    def compute() -> Path:
        inputs = ReportInputs(
            preset=s.preset, corpus=s.corpus, train_length=p.train_length,
            lengths=p.lengths, schemes=list(s.schemes), seeds=s.seed_list,
            evals=p.by_scheme(evals), analysis=analysis,
            training=[training_record(r, p.model_dir(r)) for r in p.runs],
            ood_corpus=s.ood, ood=p.by_scheme(ood) if ood else {}, command=command_line(),
            wall=p.runner.elapsed, timings=p.runner.timings,
            context=_context_inputs(p, tasks))
        return write_report(p.out, inputs)

    return Stage("", "report and plots", compute)


def run_pipeline(settings: ReproduceSettings) -> Path:
    """Run (or finish) the reproduction into ``settings.out``; returns ``report.md``."""
    p = plan(settings)
    run = p.start()
    run(data_stage(p))
    for r in p.runs:
        run(p.train_stage(r, r.name, f"seed {r.seed}"))
    evals = {r: run(eval_stage(p, r, settings.corpus, "eval")) for r in p.runs}
    ood = ({r: run(eval_stage(p, r, settings.ood, "ood")) for r in p.runs}
           if settings.ood else {})
    tasks = {r: merge_task_results([run(task_stage(p, r, task)).results
                                    for task in CONTEXT_TASKS]) for r in p.runs}
    analysis = run(analysis_stage(p))
    report = run(report_stage(p, evals, ood, tasks, analysis))
    say(f"done: {report}")
    return report


def reproduce(preset: str = "tiny", corpus: str = "shakespeare",
              out: str | Path = "runs/reproduce", schemes: Sequence[str] = DEFAULT_SCHEMES,
              lengths: Sequence[int] | None = None, tokens: int | None = None, seed: int = 0,
              dtype: str | None = None, progress: bool = True, seeds: int = 1,
              ood_corpus: str | None = "auto", task_samples: int | None = None) -> Path:
    """Keyword form of :func:`run_pipeline`; returns the path of ``report.md``."""
    return run_pipeline(ReproduceSettings(
        preset=preset, corpus=corpus, out=Path(out), schemes=tuple(schemes), lengths=lengths,
        tokens=tokens, seed=seed, seeds=seeds, dtype=dtype, ood_corpus=ood_corpus,
        progress=progress, task_samples=task_samples))


__all__ = ["ATTENTIONS", "CONTEXT_TASKS", "DEFAULT_SCHEMES", "MAX_SEEDS", "ReproduceSettings",
           "Run", "TaskRecord", "default_ood_corpus", "reproduce", "run_pipeline"]
