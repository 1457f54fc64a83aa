"""Passkey retrieval (the Landmark-Attention / YaRN template).

A prompt is the task line, filler sentences with the key line inserted at a chosen depth,
and the question::

    There is an important info hidden inside a lot of irrelevant text. Find it and memorize
    it. I will quiz you about the important information there. The grass is green. The sky
    is blue. … The pass key is 31415. Remember it. 31415 is the pass key. … What is the pass
    key? The pass key is

The filler is the five sentences of :data:`FILLER` repeated in order; *depth* is the fraction
of the filler sentences that come before the key line (0: right after the task line, 1: just
before the question). The pass key K is drawn uniformly from 1 … 50000. A trial is correct
when the first integer in the model's 10 greedy tokens equals K.

Length: the prompt holds as many filler sentences as fit in the target token count (measured
with the model's own tokenizer), so it has at most ``length`` tokens and falls short by less
than one filler sentence (≤ 22 tokens with a byte tokenizer, a handful with BPE).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
import torch

from ..errors import LexformerError
from ..lm import LanguageModel, check_attention
from .results import PasskeyCell
from .scoring import fits, progress, require_fit
from .settings import DEFAULT_DEPTHS, DEFAULT_TRIALS, default_passkey_lengths

TASK_LINE = ("There is an important info hidden inside a lot of irrelevant text. Find it and "
             "memorize it. I will quiz you about the important information there.")
FILLER = ("The grass is green.", "The sky is blue.", "The sun is yellow.", "Here we go.",
          "There and back again.")
KEY_LINE = "The pass key is {key}. Remember it. {key} is the pass key."
QUESTION = "What is the pass key? The pass key is"
MAX_KEY = 50000
ANSWER_TOKENS = 10


@dataclass(frozen=True)
class PasskeyPrompt:
    text: str
    ids: list[int]
    key: int
    filler_before: int  # filler sentences before the key line
    filler_total: int

    @property
    def depth(self) -> float:
        """The depth actually achieved (the requested one, to within one sentence)."""
        return self.filler_before / self.filler_total if self.filler_total else 0.0


def passkey_text(key: int, filler_total: int, filler_before: int) -> str:
    filler = [FILLER[i % len(FILLER)] for i in range(filler_total)]
    parts = [TASK_LINE, *filler[:filler_before], KEY_LINE.format(key=key),
             *filler[filler_before:], QUESTION]
    return " ".join(parts)


def _prompt(encode: Callable[[str], list[int]], key: int, total: int, depth: float
            ) -> PasskeyPrompt:
    before = round(depth * total)
    text = passkey_text(key, total, before)
    return PasskeyPrompt(text, encode(text), key, before, total)


def build_passkey_prompt(encode: Callable[[str], list[int]], length: int, depth: float,
                         key: int) -> PasskeyPrompt:
    """The longest prompt of at most ``length`` tokens (by ``encode``) with the key at
    ``depth``; refuses a length the fixed text alone exceeds."""
    if not 0.0 <= depth <= 1.0:
        raise LexformerError(f"passkey depth must lie in [0, 1], got {depth}")
    bare = _prompt(encode, key, 0, depth)
    if len(bare.ids) > length:
        raise LexformerError(f"passkey length {length} is too short: the task text alone is "
                             f"{len(bare.ids)} tokens")
    probe = _prompt(encode, key, 2 * len(FILLER), depth)
    per_sentence = max(1e-9, (len(probe.ids) - len(bare.ids)) / (2 * len(FILLER)))
    total = int((length - len(bare.ids)) / per_sentence)  # an estimate, then walk to the edge
    best = _prompt(encode, key, total, depth)
    while total > 0 and len(best.ids) > length:
        total -= 1
        best = _prompt(encode, key, total, depth)
    while True:
        grown = _prompt(encode, key, total + 1, depth)
        if len(grown.ids) > length:
            return best
        total, best = total + 1, grown


def first_integer(text: str) -> int | None:
    match = re.search(r"\d+", text)
    return int(match.group()) if match else None


def passkey_trial(model: LanguageModel, attention: str, prompt: PasskeyPrompt) -> bool:
    ids = torch.tensor([prompt.ids], dtype=torch.int64)
    answer = model.greedy(ids, ANSWER_TOKENS, attention)[0].tolist()
    return first_integer(model.decode(answer)) == prompt.key


def trial_keys(seed: int, length: int, depth_index: int, trials: int) -> list[int]:
    """Seeded keys of one cell: the same for every attention method and model."""
    rng = np.random.default_rng([seed, length, depth_index])
    return [int(k) for k in rng.integers(1, MAX_KEY + 1, size=trials)]


def resolve_lengths(model: LanguageModel, attention: str, lengths: Sequence[int] | None
                    ) -> list[int]:
    """The lengths to run: explicit ones are checked (one clear error); the defaults
    (L/2 … 16·L) keep those the model can score with the answer and that hold the task text."""
    check_attention(model, attention)
    bare = len(model.encode(passkey_text(MAX_KEY, 0, 0)))  # the longest key: 5 digits
    if lengths is None:
        keep = [n for n in default_passkey_lengths(model.context_length)
                if n >= bare and fits(model, attention, n + ANSWER_TOKENS)]
        if not keep:
            raise LexformerError(f"no default passkey length fits {model.name} with "
                                 f"{attention} attention")
        return keep
    for n in lengths:
        if n < bare:
            raise LexformerError(f"passkey length {n} is too short: the task text alone is "
                                 f"{bare} tokens")
        require_fit(model, attention, n + ANSWER_TOKENS,
                    f"passkey at length {n} (plus {ANSWER_TOKENS} answer tokens)")
    return sorted(set(lengths))


def passkey_accuracy(model: LanguageModel, attention: str, lengths: Sequence[int] | None = None,
                     depths: Sequence[float] = DEFAULT_DEPTHS, trials: int = DEFAULT_TRIALS,
                     seed: int = 0, show_progress: bool = False
                     ) -> dict[int, dict[float, PasskeyCell]]:
    """``{length: {depth: PasskeyCell}}`` of ``model`` under ``attention``."""
    lengths = resolve_lengths(model, attention, lengths)
    cells = [(n, i, float(d)) for n in lengths for i, d in enumerate(depths)]
    grid: dict[int, dict[float, PasskeyCell]] = {n: {} for n in lengths}
    for n, i, depth in progress(cells, show_progress, f"passkey {attention}"):
        keys = trial_keys(seed, n, i, trials)
        hits = sum(passkey_trial(model, attention, build_passkey_prompt(model.encode, n, depth, k))
                   for k in keys)
        grid[n][depth] = PasskeyCell(accuracy=hits / trials, trials=trials)
    return grid


__all__ = ["ANSWER_TOKENS", "FILLER", "KEY_LINE", "QUESTION", "TASK_LINE", "PasskeyPrompt",
           "build_passkey_prompt", "first_integer", "passkey_accuracy", "passkey_text",
           "resolve_lengths"]
