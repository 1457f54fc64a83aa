"""The report section "Does the model use its context?": the copy-gain table, the loss-by-
position and copy-gain figures, and one paragraph generated from those numbers.

Inputs are typed :class:`~lexformer.tasks.TaskResults` per scheme (one per seed, in seed
order); with several seeds every number is the mean over seeds. A copy gain above
:data:`COPY_THRESHOLD` counts as copying: the threshold is a fixed, stated choice (a model
that does not use the earlier span scores 0, since the repeat is scored against a control
with that span replaced; an exact copier about 1), not a significance test.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ..tasks.results import TaskResults
from .reporting import LengthPanel, plot_by_length, table

ATTENTIONS = ("full", "blockwise")
#: a copy gain at or below this reads as "about 0" (the model does not copy at that distance)
COPY_THRESHOLD = 0.05


@dataclass
class ContextInputs:
    """What the section shows: ``tasks[scheme]`` holds one TaskResults per seed (copy and
    position-loss under full and blockwise attention)."""

    train_length: int
    schemes: list[str]
    tasks: dict[str, list[TaskResults]]
    samples: int
    span: int
    chunk_length: int
    attentions: Sequence[str] = field(default=ATTENTIONS)

    def copy_gain(self, scheme: str, attention: str) -> dict[int, float]:
        """Copy gain by distance, mean over seeds."""
        per_seed = [r.copy[attention] for r in self.tasks[scheme]]
        return {d: float(np.mean([s[d].gain for s in per_seed])) for d in sorted(per_seed[0])}

    def position_loss(self, scheme: str, attention: str) -> dict[int, float]:
        """Mean token loss by position bin (keyed by the bin's last position), mean over
        seeds."""
        per_seed = [r.position_loss[attention] for r in self.tasks[scheme]]
        return {e: float(np.mean([b[e].loss for b in per_seed])) for e in sorted(per_seed[0])}

    @property
    def distances(self) -> list[int]:
        return sorted({d for s in self.schemes for a in self.attentions
                       for d in self.copy_gain(s, a)})


def length_name(n: int, train_length: int) -> str:
    """``L/8``, ``L``, ``4·L``; a length that is no simple multiple of L stays a number."""
    if n == train_length:
        return "L"
    if n < train_length and train_length % n == 0:
        return f"L/{train_length // n}"
    if n % train_length == 0:
        return f"{n // train_length}·L"
    return str(n)


def gain_text(gain: float) -> str:
    """Three decimals, without the sign of a gain that rounds to zero."""
    text = f"{gain:.3f}"
    return text[1:] if text == "-0.000" else text


def copy_table(c: ContextInputs) -> list[str]:
    """Markdown rows: scheme / attention down, distances across, the copy gain in each cell."""
    distances = c.distances
    rows = ([f"{scheme} / {attention}", *(gain_text(gains[d]) if d in gains else "–"
                                          for d in distances)]
            for scheme in c.schemes for attention in c.attentions
            for gains in [c.copy_gain(scheme, attention)])
    return table(["model", *(f"{d} ({length_name(d, c.train_length)})" for d in distances)],
                 rows)


# --------------------------------------------------------------------------- the paragraph
def _reach_phrase(scheme: str, gains: dict[int, float], L: int) -> str:
    """What one scheme reaches under one attention mode, from its gains by distance."""
    distances = sorted(gains)
    copying = [d for d in distances if gains[d] > COPY_THRESHOLD]
    if not copying:
        return f"{scheme} copies at no distance (gain ≤ {COPY_THRESHOLD} from {distances[0]} on)"
    last = copying[-1]
    reach = f"{scheme} copies up to {last} tokens ({length_name(last, L)}, gain {gains[last]:.2f})"
    if last == distances[-1]:
        return reach + ", the longest distance measured"
    falls = next(d for d in distances if d > last)
    return reach + f"; its gain falls to about 0 from {falls} ({length_name(falls, L)}) on"


def _past_L(c: ContextInputs, attention: str) -> tuple[list[str], list[str]]:
    """Schemes that copy (gain > threshold) at some distance beyond L, and those that do not."""
    L, yes, no = c.train_length, [], []
    for scheme in c.schemes:
        gains = c.copy_gain(scheme, attention)
        beyond = [g for d, g in gains.items() if d > L]
        (yes if beyond and max(beyond) > COPY_THRESHOLD else no).append(scheme)
    return yes, no


def _loss_trend(c: ContextInputs, attention: str) -> str:
    """Mean loss in the bin that ends at L (or the nearest below) → in the last bin."""
    parts = []
    for scheme in c.schemes:
        bins = c.position_loss(scheme, attention)
        at_L = max((e for e in bins if e <= c.train_length), default=min(bins))
        last = max(bins)
        parts.append(f"{scheme} {bins[at_L]:.2f} → {bins[last]:.2f}")
    return ", ".join(parts)


def context_paragraph(c: ContextInputs) -> str:
    """Plain statements of what each attention mode reaches, computed from the numbers."""
    L = c.train_length
    out = [f"A copy gain above {COPY_THRESHOLD} counts as copying (a fixed threshold, not a "
           f"significance test; {c.samples} samples per distance)."]
    for attention in c.attentions:
        out.append(f"With {attention} attention, " + "; ".join(
            _reach_phrase(s, c.copy_gain(s, attention), L) for s in c.schemes) + ".")
        if max(c.distances) > L:
            yes, no = _past_L(c, attention)
            out.append(f"Past L ({L} tokens) under {attention} attention: "
                       + (f"{', '.join(yes)} still cop{'y' if len(yes) > 1 else 'ies'}"
                          if yes else "no scheme copies")
                       + (f"; {', '.join(no)} do{'' if len(no) > 1 else 'es'} not" if no and yes
                          else "") + ".")
    if "blockwise" in c.attentions:
        out.append("Blockwise attention lets each layer look back less than L tokens, so any "
                   "copying past L it shows is relayed through the layers.")
    if c.chunk_length > L:
        out.append(f"Mean token loss in the position bin ending at L → in the last bin "
                   f"(ending at {c.chunk_length}) — " + "; ".join(
                       f"{a}: {_loss_trend(c, a)}" for a in c.attentions)
                   + " (a loss that falls past L means context beyond the training length "
                     "helps; one that rises, that it hurts).")
    return " ".join(out)


# --------------------------------------------------------------------------- figures, JSON
def write_context_plots(plots: Path, c: ContextInputs) -> tuple[Path, Path]:
    """``position_loss.png`` and ``copy_gain.png`` in ``plots``: the seed-mean curves, one
    colour per scheme and one line style per attention mode."""
    from ..plots import line_styles

    L, keys = c.train_length, [(s, a) for s in c.schemes for a in c.attentions]
    styles, mark = line_styles(keys), f"train length L = {L}"
    position = LengthPanel({k: c.position_loss(*k) for k in keys}, "Loss by position", L, mark)
    copy = LengthPanel({k: c.copy_gain(*k) for k in keys}, "Copy at a distance", L, mark,
                       guides=(0.0, 1.0))
    return (plot_by_length(plots / "position_loss.png", [position], "mean token loss (nats)",
                           styles=styles, log_y=False, panel_size=(7, 4),
                           xlabel="position (tokens of context before the token; bin end)"),
            plot_by_length(plots / "copy_gain.png", [copy],
                           "copy gain 1 − loss(repeat) / loss(control)", styles=styles,
                           log_y=False, panel_size=(7, 4),
                           xlabel="distance d (tokens between the span and its repeat)"))


def section_context(c: ContextInputs, position_png: str, copy_png: str) -> list[str]:
    L = c.train_length
    lines = ["## Does the model use its context?", "",
             f"Copy at a distance: a span of {c.span} tokens of test text is repeated d tokens "
             "after its first occurrence; the gain 1 − loss(repeat) / loss(control) over span "
             "tokens 2 … k, where the control is the same sequence with the first occurrence "
             "replaced by another span of the text, is 0 for a model that does not use the "
             "first occurrence and about 1 for an exact copy (mean over "
             f"{c.samples} samples per distance"
             + (", then over seeds" if any(len(v) > 1 for v in c.tasks.values()) else "")
             + f"). Distances run from L/8 to {length_name(max(c.distances), L)}.", ""]
    lines += copy_table(c)
    lines += ["", f"Loss by position: mean token loss against the number of tokens before it, "
              f"in log-spaced bins over chunks of {c.chunk_length} tokens.", "",
              f"![loss by position]({position_png})  ", f"![copy gain]({copy_png})", "",
              context_paragraph(c), ""]
    return lines


def context_json(c: ContextInputs) -> dict[str, Any]:
    """``copy_gain[scheme][attention][distance]`` and ``position_loss[…][bin end]``."""
    return {"copy_gain": {s: {a: {str(d): g for d, g in c.copy_gain(s, a).items()}
                              for a in c.attentions} for s in c.schemes},
            "position_loss": {s: {a: {str(e): v for e, v in c.position_loss(s, a).items()}
                                  for a in c.attentions} for s in c.schemes}}


__all__ = ["COPY_THRESHOLD", "ContextInputs", "context_json", "context_paragraph",
           "copy_table", "length_name", "section_context", "write_context_plots"]
