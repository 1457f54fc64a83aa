"""``lexformer reproduce --objective mlm``: does bidirectional XPOS extrapolate? (issue 11)

The encoder counterpart of :mod:`lexformer.experiments.reproduce`, as resumable stages:

1. data: corpus, tokenizer, token cache; the test split must hold documents of 16·L tokens;
2. train every scheme × seed as a bidirectional encoder on BERT-style masked tokens
   (:mod:`lexformer.mlm`) with the same data order, seed and token budget;
3. evaluate masked-token loss and accuracy of each at L/4 … 16·L, full and blockwise
   attention, on the same masked tokens at every length;
4. out-of-domain: the same on a corpus no model was trained on (default: milton beside
   shakespeare, as in the reproduction);
5. ``report.md``, ``results.json`` and ``plots/`` (:mod:`lexformer.experiments.encoder_report`).

Layout of ``out``: ``models/<scheme>`` (first seed, the layout of one-seed runs) and
``models/<scheme>-seed<k>``, ``eval/<model>.json``, ``ood/<model>.json``, ``timings.json``,
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

import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..config import TrainConfig
from ..errors import LexformerError
from ..evaluate import check_lengths, default_lengths
from ..fileio import ensure_writable_dir
from ..mlm import MaskedLMResult, evaluate_masked_lm
from ..presets import MLM_PRESETS
from ..train import prepare_data
from .common import (
    ATTENTIONS,
    EVAL_SPLIT,
    Run,
    TrainedExperiment,
    TrainedSettings,
    evaluation_codec,
)
from .stages import Runner, Stage, command_line, say

#: the bidirectional schemes compared by default ("learned" cannot go past L)
MLM_SCHEMES = ("xpos", "rope", "alibi", "absolute", "none")


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
class MLMSettings(TrainedSettings):
    """The encoder experiment's settings: :class:`TrainedSettings` with its own out folder
    and schemes (their options stay the base's)."""

    out: Path = Path("runs/reproduce-mlm")
    schemes: Sequence[str] = MLM_SCHEMES
    #: at most this many test documents (None: all that hold 16·L tokens)
    max_docs: int | None = None


class MLMPipeline(TrainedExperiment):
    """The encoder experiment's invocation: ``configs`` by :class:`Run` (scheme × seed)."""

    settings: MLMSettings


def plan(s: MLMSettings) -> MLMPipeline:
    """Every config and the evaluation lengths, all checked before any work."""
    s.check_schemes()
    s.check_seeds()
    if s.task_samples is not None:
        raise LexformerError("--task-samples: causal experiment only; --objective mlm "
                             "measures masked-token loss, not the context-use tasks")
    if s.tokens is not None and s.tokens < 1:
        raise LexformerError(f"--tokens must be positive, got {s.tokens}")
    if s.max_docs is not None and s.max_docs < 1:
        raise LexformerError(f"max_docs must be at least 1, got {s.max_docs}")
    ensure_writable_dir(s.out, "--out folder")
    configs = s.run_configs(lambda scheme, seed: mlm_config(
        s.preset, position=scheme, corpus=s.corpus, tokens=s.tokens, seed=seed, dtype=s.dtype))
    L = next(iter(configs.values())).train_length
    lengths = check_lengths(s.lengths if s.lengths is not None else default_lengths(L))
    if "learned" in s.schemes and lengths[-1] > L:
        raise LexformerError("the 'learned' scheme cannot be evaluated past L; leave it out "
                             "or evaluate at lengths up to L")
    # data; per run: train, eval (, out-of-domain eval); report
    runner = Runner(1 + (3 if s.ood else 2) * len(configs) + 1, Path(s.out) / "timings.json")
    return MLMPipeline(s, configs, lengths, runner)


# --------------------------------------------------------------------------- stages
def data_stage(p: MLMPipeline) -> Stage[dict[str, list]]:
    """Corpus, tokenizer, token cache and the evaluation documents (16·L tokens each) of the
    training corpus and of the out-of-domain one, by corpus."""
    from ..evaluate import evaluation_documents

    def compute() -> dict[str, list]:
        _, tokenizer, _ = prepare_data(next(iter(p.configs.values())))
        return {corpus: evaluation_documents(corpus, tokenizer, EVAL_SPLIT, p.lengths[-1],
                                             p.settings.max_docs)
                for corpus in filter(None, (p.settings.corpus, p.settings.ood))}

    return p.data_stage(compute)


def _documents(result: MaskedLMResult) -> list[int]:
    """The document counts of a saved evaluation (one, the same at every cell)."""
    return sorted({r.documents for per in result.results.values() for r in per.values()})


EVAL_CODEC = evaluation_codec(MaskedLMResult.to_json, MaskedLMResult.from_json,
                              documents=_documents)


def eval_stage(p: MLMPipeline, run: Run, corpus: str, folder: str, documents
               ) -> Stage[MaskedLMResult]:
    """Masked-token loss and accuracy by length on ``corpus`` into ``<folder>/<model>.json``
    (or reuse it)."""
    from ..checkpoint import load

    def compute() -> MaskedLMResult:
        ckpt = load(p.model_dir(run))
        t0 = time.time()
        results = evaluate_masked_lm(ckpt.model, documents, p.lengths, ATTENTIONS,
                                     progress=p.settings.progress)
        return MaskedLMResult(model=run.name, corpus=corpus, split=EVAL_SPLIT,
                              results=results, step=p.model_step(run),
                              seconds=round(time.time() - t0, 1),
                              corpus_fingerprint=p.fingerprint(corpus))

    where = "" if corpus == p.settings.corpus else f" on {corpus!r}"
    return p.eval_stage(run, corpus, folder, f"{folder} {run.name}: masked tokens{where}",
                        compute, EVAL_CODEC, documents=[len(documents)])


def report_stage(p: MLMPipeline, evals: dict[Run, MaskedLMResult],
                 ood: dict[Run, MaskedLMResult]) -> Stage[Path]:
    from .encoder_report import MLMReportInputs, training_record, write_mlm_report

    s = p.settings

    def compute() -> Path:
        cfg = next(iter(p.configs.values()))
        inputs = MLMReportInputs(
            preset=cfg.preset, corpus=s.corpus, train_length=p.train_length,
            lengths=p.lengths, schemes=list(s.schemes), seed=s.seed, tokens=cfg.tokens,
            evals={r.scheme: evals[r] for r in p.runs if r.first},
            training=[training_record(r.name, p.model_dir(r)) for r in p.runs],
            command=command_line(), wall=p.runner.elapsed, timings=p.runner.timings,
            seed_evals=p.by_scheme(evals) if s.seeds > 1 else {},
            ood_corpus=s.ood, ood=p.by_scheme(ood) if ood else {})
        return write_mlm_report(p.out, inputs)

    return Stage("", "report and plot", compute)


def run_mlm_pipeline(settings: MLMSettings) -> Path:
    """Run (or finish) the masked-LM experiment into ``settings.out``; returns ``report.md``."""
    p = plan(settings)
    run = p.start()
    documents = run(data_stage(p))
    for r in p.runs:
        run(p.train_stage(r, f"{r.name} encoder", "masked LM"))
    evals = {r: run(eval_stage(p, r, settings.corpus, "eval", documents[settings.corpus]))
             for r in p.runs}
    ood = ({r: run(eval_stage(p, r, settings.ood, "ood", documents[settings.ood]))
            for r in p.runs} if settings.ood else {})
    report = run(report_stage(p, evals, ood))
    say(f"done: {report}")
    return report


__all__ = ["ATTENTIONS", "MLMSettings", "MLM_SCHEMES", "mlm_config", "mlm_preset_name",
           "run_mlm_pipeline"]
