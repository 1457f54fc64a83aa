"""Typed results of the context-use tasks and their JSON form.

JSON shape (keys are strings, values JSON numbers; a non-finite number is written as null)::

    {"copy":          {attention: {distance: {"gain", "loss_first", "loss_repeat",
                                               "loss_control", "samples"}}},
     "position-loss": {attention: {bin_end: {"loss", "tokens"}}},
     "passkey":       {attention: {length: {depth: {"accuracy", "trials"}}}},
     "ruler":         {attention: {task: {length: {"score", "samples", "ci95",
                                                   "per_sample"}}}}}

A task that was not run has an empty mapping, so the first three keys are always there;
``ruler`` is written only when RULER ran (absent reads back as not run).

``loss_control`` is absent from a copy score measured without a control: files written
before the control existed read back with it nan and their gain as saved (the old, biased
definition against ``loss_first``). Nothing can recompute that gain (the control was never
scored), so a stage that reuses saved results asks :meth:`TaskResults.require_copy_control`
and measures such a file again rather than mix the two definitions in one table.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from ..errors import LexformerError


@dataclass(frozen=True)
class BinLoss:
    """Mean token NLL (nats) over the positions of one bin, and how many tokens it pooled."""

    loss: float
    tokens: int


@dataclass(frozen=True)
class CopyScore:
    """Copy at one distance: ``gain = 1 - loss_repeat / loss_control`` (mean NLLs in nats
    over ``samples`` sequences; the control is the same sequence with the first occurrence
    replaced by another span, see :mod:`lexformer.tasks.copying`). ``loss_control`` is nan
    for a score measured without one."""

    gain: float
    loss_first: float
    loss_repeat: float
    samples: int
    loss_control: float = math.nan

    @property
    def controlled(self) -> bool:
        """Whether the gain is measured against a control (not a file of an older version)."""
        return math.isfinite(self.loss_control)


@dataclass(frozen=True)
class PasskeyCell:
    """Fraction of ``trials`` prompts whose pass key was retrieved."""

    accuracy: float
    trials: int


@dataclass(frozen=True)
class RulerCell:
    """Mean RULER score (0 … 1) over ``samples`` prompts, its 95 % interval (Wilson when
    every sample scored 0 or 1, else a seeded percentile bootstrap) and the scores."""

    score: float
    samples: int
    ci95: tuple[float, float]
    per_sample: tuple[float, ...]

    @classmethod
    def of(cls, scores: Sequence[float], seed: int = 0) -> RulerCell:
        from ..stats import mean_interval, wilson_interval

        scores = tuple(float(s) for s in scores)
        if not scores:
            raise LexformerError("a RULER cell needs at least one sample")
        if all(s in (0.0, 1.0) for s in scores):
            ci = wilson_interval(int(sum(scores)), len(scores))
        else:
            ci = mean_interval(scores, seed)
        return cls(math.fsum(scores) / len(scores), len(scores), ci, scores)

    def to_json(self) -> dict[str, Any]:
        return {"score": self.score, "samples": self.samples, "ci95": list(self.ci95),
                "per_sample": list(self.per_sample)}

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> RulerCell:
        missing = [k for k in ("score", "samples", "ci95", "per_sample") if k not in data]
        if missing:
            raise LexformerError(f"RULER cell JSON lacks {', '.join(missing)}")
        lo, hi = data["ci95"]
        return cls(float(data["score"]), int(data["samples"]), (float(lo), float(hi)),
                   tuple(float(s) for s in data["per_sample"]))


PositionLoss = dict[str, dict[int, BinLoss]]
CopyResults = dict[str, dict[int, CopyScore]]
PasskeyResults = dict[str, dict[int, dict[float, PasskeyCell]]]
#: {attention: {RULER task: {length: cell}}}
RulerResults = dict[str, dict[str, dict[int, RulerCell]]]


def _number(value: float) -> float | None:
    return float(value) if math.isfinite(value) else None


def _read_number(value: Any) -> float:
    return math.nan if value is None else float(value)


def _fields(data: dict[str, Any], names: tuple[str, ...], where: str) -> list[Any]:
    missing = [n for n in names if n not in data]
    if missing:
        raise LexformerError(f"task results JSON: {where} lacks {', '.join(missing)}")
    return [data[n] for n in names]


@dataclass
class TaskResults:
    """Results of :func:`lexformer.tasks.run_tasks`, per task, per attention method."""

    copy: CopyResults = field(default_factory=dict)
    position_loss: PositionLoss = field(default_factory=dict)
    passkey: PasskeyResults = field(default_factory=dict)
    ruler: RulerResults = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        """The JSON-ready dict described in the module docstring."""
        data = {
            "copy": {a: {str(d): _copy_json(s) for d, s in per.items()}
                     for a, per in self.copy.items()},
            "position-loss": {a: {str(e): {"loss": _number(b.loss), "tokens": b.tokens}
                                  for e, b in per.items()}
                              for a, per in self.position_loss.items()},
            "passkey": {a: {str(n): {str(depth): {"accuracy": c.accuracy, "trials": c.trials}
                                     for depth, c in row.items()}
                            for n, row in per.items()}
                        for a, per in self.passkey.items()},
        }
        if self.ruler:  # absent when not run, so files without RULER keep their shape
            data["ruler"] = {a: {t: {str(n): c.to_json() for n, c in row.items()}
                                 for t, row in per.items()}
                             for a, per in self.ruler.items()}
        return data

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> TaskResults:
        """Inverse of :meth:`to_json` (missing task keys read as tasks not run)."""
        if not isinstance(data, dict):
            raise LexformerError("task results JSON must be an object")
        try:
            return cls(copy=_copy_from_json(data.get("copy", {})),
                       position_loss=_bins_from_json(data.get("position-loss", {})),
                       passkey=_passkey_from_json(data.get("passkey", {})),
                       ruler={a: {t: {int(n): RulerCell.from_json(c) for n, c in row.items()}
                                  for t, row in per.items()}
                              for a, per in data.get("ruler", {}).items()})
        except (AttributeError, TypeError, ValueError) as e:
            if isinstance(e, LexformerError):
                raise
            raise LexformerError(f"task results JSON is malformed: {e}") from None

    def require_copy_control(self, where: str) -> None:
        """Refuse, in one line, copy scores saved without a control (their gain is the old
        one against the first occurrence, biased below 0 for a model that cannot see it)."""
        old = sorted({a for a, per in self.copy.items()
                      if not all(s.controlled for s in per.values())})
        if old:
            raise LexformerError(f"{where}: copy scores of {', '.join(old)} attention were "
                                 "saved without a control span; measure them again")


def _copy_json(s: CopyScore) -> dict[str, Any]:
    data = {"gain": _number(s.gain), "loss_first": _number(s.loss_first),
            "loss_repeat": _number(s.loss_repeat)}
    if s.controlled:
        data["loss_control"] = s.loss_control
    return {**data, "samples": s.samples}


def _copy_from_json(data: dict[str, Any]) -> CopyResults:
    out: CopyResults = {}
    for attention, per in data.items():
        out[attention] = {}
        for distance, v in per.items():
            gain, first, repeat, samples = _fields(
                v, ("gain", "loss_first", "loss_repeat", "samples"), f"copy/{distance}")
            # a file written before the control existed has none: nan, see the docstring
            control = v.get("loss_control")
            out[attention][int(distance)] = CopyScore(
                _read_number(gain), _read_number(first), _read_number(repeat), int(samples),
                math.nan if control is None else float(control))
    return out


def _bins_from_json(data: dict[str, Any]) -> PositionLoss:
    out: PositionLoss = {}
    for attention, per in data.items():
        out[attention] = {}
        for end, v in per.items():
            loss, tokens = _fields(v, ("loss", "tokens"), f"position-loss/{end}")
            out[attention][int(end)] = BinLoss(_read_number(loss), int(tokens))
    return out


def _passkey_from_json(data: dict[str, Any]) -> PasskeyResults:
    out: PasskeyResults = {}
    for attention, per in data.items():
        out[attention] = {}
        for length, row in per.items():
            cells = {}
            for depth, v in row.items():
                accuracy, trials = _fields(v, ("accuracy", "trials"), f"passkey/{length}")
                cells[float(depth)] = PasskeyCell(float(accuracy), int(trials))
            out[attention][int(length)] = cells
    return out


__all__ = ["BinLoss", "CopyResults", "CopyScore", "PasskeyCell", "PasskeyResults",
           "PositionLoss", "RulerCell", "RulerResults", "TaskResults"]
