"""The parts the two trained experiments (reproduce and encoder) share: the scheme list's
checks, the training stage, the refusal of an out folder trained with other settings, and
the key of an evaluation by length."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..checkpoint import has_checkpoint, read_meta, read_train_config
from ..config import TrainConfig, describe_differences
from ..errors import LexformerError
from ..train import train
from .stages import Stage

#: every model is evaluated under both; the stage keys compare them as sorted lists
ATTENTIONS = ("full", "blockwise")
EVAL_SPLIT = "test"


def check_schemes(schemes: Sequence[str]) -> None:
    """A non-empty list of known position schemes, none twice."""
    from ..positions import POSITION_SCHEMES

    if not list(schemes):
        raise LexformerError("no schemes given; e.g. --schemes xpos,rope")
    unknown = [x for x in schemes if x not in POSITION_SCHEMES]
    if unknown:
        raise LexformerError(f"unknown scheme(s) {', '.join(unknown)}; known: "
                             + ", ".join(sorted(POSITION_SCHEMES)))
    if len(set(schemes)) != len(list(schemes)):
        raise LexformerError("a scheme is listed twice in --schemes")


def refuse_changed_training(models: Iterable[tuple[Path, TrainConfig]]) -> None:
    """Before any work: refuse an out folder holding a model trained with other settings,
    naming the fields that differ (resuming would mix two experiments in one table)."""
    for run_dir, cfg in models:
        if not has_checkpoint(run_dir):
            continue
        # read_train_config reads every saved layout, the first flat one included
        diffs = describe_differences(read_train_config(run_dir), cfg)
        if diffs:
            raise LexformerError(
                f"{run_dir} holds a model trained with other settings ({diffs}; saved → "
                "wanted); choose another --out or remove that folder (nothing was changed)")


def model_step(run_dir: Path) -> int | None:
    """The step of the checkpoint in ``run_dir``: part of every key measured on it."""
    return read_meta(run_dir).get("step")


def evaluation_key(step: int | None, lengths: Sequence[int], corpus: str,
                   attentions: Iterable[str], split: str = EVAL_SPLIT, **extra: Any
                   ) -> dict[str, Any]:
    """What an evaluation by length is reused on: the checkpoint step, the lengths, the
    corpus and split, and every attention mode (plus ``extra``, e.g. the document count)."""
    return {"step": step, "lengths": list(lengths), "corpus": corpus, "split": split,
            "attentions": sorted(attentions), **extra}


def saved_evaluation_key(result: Any, **extra: Any) -> dict[str, Any]:
    """:func:`evaluation_key` of a saved evaluation (a PerplexityResult or MaskedLMResult:
    both name their step, corpus, split and ``results[attention][length]``)."""
    return evaluation_key(result.step, result.lengths, result.corpus, result.results,
                          result.split, **extra)


@dataclass(frozen=True)
class TrainedModel:
    """A model folder as a stage's saved result. ``train`` writes the checkpoint itself;
    the saved key says whether it reached the planned steps (its settings were compared
    with the wanted ones before any stage ran)."""

    total_steps: int

    def load(self, path: Path) -> tuple[bool, None]:
        if not has_checkpoint(path):
            raise FileNotFoundError(path)
        return read_meta(path).get("step", 0) >= self.total_steps, None

    def save(self, path: Path, result: Any, key: Any) -> None:
        pass


def train_stage(name: str, title: str, cfg: TrainConfig, run_dir: Path,
                progress: bool) -> Stage[None]:
    """Train ``cfg`` into ``run_dir`` (resuming a started run), or keep a finished one."""

    def compute() -> None:
        summary = train(cfg, run_dir, resume=has_checkpoint(run_dir), progress=progress)
        if summary.stopped_early:
            raise KeyboardInterrupt

    return Stage(f"train/{name}", title, compute, key=True,
                 codec=TrainedModel(cfg.total_steps()), path=run_dir,
                 reused=f"    {name}: already trained with these settings, skipped")


__all__ = ["ATTENTIONS", "EVAL_SPLIT", "TrainedModel", "check_schemes", "evaluation_key",
           "model_step", "refuse_changed_training", "saved_evaluation_key", "train_stage"]
