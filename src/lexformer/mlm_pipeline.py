"""``lexformer reproduce --objective mlm``: does bidirectional XPOS extrapolate? (issue 11)

The encoder counterpart of :mod:`lexformer.pipeline`, as resumable stages:

1. data: corpus, tokenizer, token cache; the test split must hold documents of 16·L tokens;
2. train every scheme as a bidirectional encoder on BERT-style masked tokens
   (:mod:`lexformer.mlm`) with the same data order, seed and token budget;
3. evaluate masked-token loss and accuracy of each at L/4 … 16·L, full and blockwise
   attention, on the same masked tokens at every length;
4. ``report.md``, ``results.json`` and ``plots/`` (:mod:`lexformer.mlm_report`).

Layout of ``out``: ``models/<scheme>``, ``eval/<scheme>.json``, ``timings.json``,
``report.md``, ``results.json``, ``plots/``. A model is reused only if its saved training
config equals the wanted one (otherwise the run is refused, naming the differing fields), an
evaluation only if it measured the same checkpoint step at the same lengths on the same
corpus under both attention modes (otherwise it is redone).

Presets. ``mlm-smoke`` is the smoke preset as an encoder (seconds on an idle 2-core CPU).
``mlm-tiny`` is the tiny preset's shape (4 layers, d_model 128, 4 heads, L = 256) with 1.31 M
tokens per model instead of 1.64 M. Measured on an idle 2-core AMD EPYC (fp32, 2 threads,
2026-12-01): the encoders train at 3,700 (xpos) to 4,400 (rope) tokens/s against 4,070 for
the causal tiny xpos model, and one model's evaluation (5 test documents, 7 lengths, 2 modes)
takes 30–40 s: ~26 min of training and ~3 min of evaluation for five schemes, ~38 min at the
slowest rate the tiny preset was seen at (3,100 tokens/s causal); 1.64 M tokens would pass 45
min there.
"""

from __future__ import annotations

import json
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .checkpoint import has_checkpoint, load, read_meta, read_train_config
from .config import TrainConfig, describe_differences
from .errors import LexformerError
from .evaluate import check_lengths, default_lengths
from .fileio import atomic_write_json, ensure_writable_dir
from .mlm import MaskedLMResult, evaluate_masked_lm
from .presets import MLM_PRESETS
from .train import prepare_data, train

#: the bidirectional schemes compared by default ("learned" cannot go past L)
MLM_SCHEMES = ("xpos", "rope", "alibi", "absolute", "none")
ATTENTIONS = ("full", "blockwise")
EVAL_SPLIT = "test"


def mlm_preset_name(preset: str) -> str:
    """``mlm-tiny`` for ``tiny`` or ``mlm-tiny``; a clear error for a preset with no encoder
    version."""
    name = preset if preset in MLM_PRESETS else f"mlm-{preset}"
    if name not in MLM_PRESETS:
        raise LexformerError(f"no masked-LM preset for {preset!r}; choose one of "
                             + ", ".join(p.removeprefix("mlm-") for p in MLM_PRESETS))
    return name


def mlm_config(preset: str, **overrides: Any) -> TrainConfig:
    """The masked-LM preset for ``preset`` with ``overrides`` (see
    :meth:`TrainConfig.with_overrides`; ``None`` keeps the preset's value)."""
    return MLM_PRESETS[mlm_preset_name(preset)]().with_overrides(**overrides)


@dataclass
class MLMSettings:
    preset: str = "tiny"
    corpus: str = "shakespeare"
    out: Path = Path("runs/reproduce-mlm")
    schemes: Sequence[str] = MLM_SCHEMES
    lengths: Sequence[int] | None = None
    tokens: int | None = None
    seed: int = 0
    dtype: str | None = None
    progress: bool = True
    #: at most this many test documents (None: all that hold 16·L tokens)
    max_docs: int | None = None


def _say(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


@dataclass
class MLMPipeline:
    settings: MLMSettings
    configs: dict[str, TrainConfig]
    lengths: list[int]
    timings: dict[str, float] = field(default_factory=dict)
    started: float = field(default_factory=time.time)
    done_stages: int = 0

    @property
    def out(self) -> Path:
        return Path(self.settings.out)

    @property
    def train_length(self) -> int:
        return next(iter(self.configs.values())).train_length

    @property
    def n_stages(self) -> int:
        return 1 + 2 * len(self.configs) + 1

    def model_dir(self, scheme: str) -> Path:
        return self.out / "models" / scheme

    def record(self, stage: str, seconds: float) -> None:
        self.timings[stage] = round(seconds, 1)
        atomic_write_json(self.out / "timings.json", self.timings)

    def stage(self, text: str) -> None:
        self.done_stages += 1
        elapsed = int(time.time() - self.started)
        _say(f"[{self.done_stages}/{self.n_stages}] {text}  — {elapsed // 60}m{elapsed % 60:02d}s "
             "elapsed")


def plan(s: MLMSettings) -> MLMPipeline:
    """Every config and the evaluation lengths, all checked before any work."""
    from .positions import POSITION_SCHEMES

    if not list(s.schemes):
        raise LexformerError("no schemes given; e.g. --schemes xpos,rope")
    unknown = [x for x in s.schemes if x not in POSITION_SCHEMES]
    if unknown:
        raise LexformerError(f"unknown scheme(s) {', '.join(unknown)}; known: "
                             + ", ".join(sorted(POSITION_SCHEMES)))
    if len(set(s.schemes)) != len(list(s.schemes)):
        raise LexformerError("a scheme is listed twice in --schemes")
    if s.tokens is not None and s.tokens < 1:
        raise LexformerError(f"--tokens must be positive, got {s.tokens}")
    if s.max_docs is not None and s.max_docs < 1:
        raise LexformerError(f"max_docs must be at least 1, got {s.max_docs}")
    ensure_writable_dir(s.out, "--out folder")
    configs = {scheme: mlm_config(s.preset, position=scheme, corpus=s.corpus, tokens=s.tokens,
                                  seed=s.seed, dtype=s.dtype) for scheme in s.schemes}
    L = next(iter(configs.values())).train_length
    lengths = check_lengths(s.lengths if s.lengths is not None else default_lengths(L))
    if "learned" in s.schemes and lengths[-1] > L:
        raise LexformerError("the 'learned' scheme cannot be evaluated past L; leave it out "
                             "or evaluate at lengths up to L")
    timings_path = Path(s.out) / "timings.json"
    timings = json.loads(timings_path.read_text()) if timings_path.exists() else {}
    return MLMPipeline(s, configs, lengths, timings)


# --------------------------------------------------------------------------- stages
def stage_data(p: MLMPipeline):
    """Corpus, tokenizer, token cache and the evaluation documents (16·L tokens each)."""
    from .evaluate import evaluation_documents

    p.stage(f"data: corpus {p.settings.corpus!r}, tokenizer, token cache")
    t0 = time.time()
    _, tokenizer, _ = prepare_data(next(iter(p.configs.values())))
    docs = evaluation_documents(p.settings.corpus, tokenizer, EVAL_SPLIT, p.lengths[-1],
                                p.settings.max_docs)
    if "data" not in p.timings:
        p.record("data", time.time() - t0)
    return docs


def stage_train(p: MLMPipeline, scheme: str) -> None:
    cfg, run_dir = p.configs[scheme], p.model_dir(scheme)
    p.stage(f"train {scheme} encoder ({cfg.total_steps()} steps × {cfg.batch_size} × "
            f"{cfg.train_length} tokens, masked LM)")
    if has_checkpoint(run_dir) and read_meta(run_dir).get("step", 0) >= cfg.total_steps():
        _say(f"    {scheme}: already trained with these settings, skipped")
        return
    t0 = time.time()
    summary = train(cfg, run_dir, resume=has_checkpoint(run_dir), progress=p.settings.progress)
    if summary.stopped_early:
        raise KeyboardInterrupt
    p.record(f"train/{scheme}", time.time() - t0)


def _reusable(path: Path, step: int | None, lengths: list[int], corpus: str,
              documents: int) -> MaskedLMResult | None:
    if not path.exists():
        return None
    try:
        saved = MaskedLMResult.from_json(json.loads(path.read_text()))
    except (KeyError, ValueError, TypeError):
        return None  # an older or damaged file: measure again
    same = (saved.step == step and saved.lengths == lengths and saved.corpus == corpus
            and saved.split == EVAL_SPLIT and set(saved.results) == set(ATTENTIONS)
            and all(r.documents == documents for per in saved.results.values()
                    for r in per.values()))
    return saved if same else None


def stage_eval(p: MLMPipeline, scheme: str, documents) -> MaskedLMResult:
    path = p.out / "eval" / f"{scheme}.json"
    step = read_meta(p.model_dir(scheme)).get("step")
    p.stage(f"eval {scheme}: masked tokens at {', '.join(map(str, p.lengths))}")
    saved = _reusable(path, step, p.lengths, p.settings.corpus, len(documents))
    if saved is not None:
        _say(f"    {scheme}: already evaluated (step {step}), skipped")
        return saved
    ckpt = load(p.model_dir(scheme))
    t0 = time.time()
    results = evaluate_masked_lm(ckpt.model, documents, p.lengths, ATTENTIONS,
                                 progress=p.settings.progress)
    result = MaskedLMResult(model=scheme, corpus=p.settings.corpus, split=EVAL_SPLIT,
                            results=results, step=step, seconds=round(time.time() - t0, 1))
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_json(path, result.to_json())
    p.record(f"eval/{scheme}", time.time() - t0)
    return result


def run_mlm_pipeline(settings: MLMSettings) -> Path:
    """Run (or finish) the masked-LM experiment into ``settings.out``; returns ``report.md``."""
    from .experiments.encoder_report import MLMReportInputs, training_record, write_mlm_report

    p = plan(settings)
    for scheme in p.configs:  # refuse a changed experiment before any work
        run_dir = p.model_dir(scheme)
        if has_checkpoint(run_dir):
            diffs = describe_differences(read_train_config(run_dir), p.configs[scheme])
            if diffs:
                raise LexformerError(
                    f"{run_dir} holds a model trained with other settings ({diffs}; saved → "
                    "wanted); choose another --out or remove that folder (nothing was changed)")
    p.out.mkdir(parents=True, exist_ok=True)
    documents = stage_data(p)
    for scheme in p.configs:
        stage_train(p, scheme)
    evals = {scheme: stage_eval(p, scheme, documents) for scheme in p.configs}
    p.stage("report and plot")
    cfg = next(iter(p.configs.values()))
    inputs = MLMReportInputs(
        preset=cfg.preset, corpus=settings.corpus, train_length=p.train_length,
        lengths=p.lengths, schemes=list(settings.schemes), seed=settings.seed,
        tokens=cfg.tokens, evals=evals,
        training=[training_record(s, p.model_dir(s)) for s in p.configs],
        command=" ".join(["lexformer"] + sys.argv[1:]) if sys.argv else "",
        wall=time.time() - p.started, timings=p.timings)
    report = write_mlm_report(p.out, inputs)
    _say(f"done: {report}")
    return report


__all__ = ["ATTENTIONS", "MLMSettings", "MLM_SCHEMES", "mlm_config", "mlm_preset_name",
           "run_mlm_pipeline"]
