"""Progress bars, only where someone watches them.

A bar redraws itself with ``\\r`` several times a second: on a terminal that is one line, in a
log file or a pipe it is tens of kilobytes of noise. Every bar of the library comes from
:func:`progress_bar`, which gives one only when it is asked for and stderr (where tqdm draws)
is a terminal; :func:`quiet_library_bars` does the same for the bars of transformers and the
Hugging Face hub (their "Loading weights" bar). ``LEXFORMER_PROGRESS=1`` in the environment
draws the bars asked for even off a terminal (a log followed with ``tail -f``).
"""

from __future__ import annotations

import os
import sys
from collections.abc import Iterable, Iterator
from typing import Any, TypeVar

T = TypeVar("T")


#: set to 1: draw the bars asked for even when stderr is not a terminal
FORCE_ENV = "LEXFORMER_PROGRESS"


def bars_wanted(enabled: bool = True) -> bool:
    """Whether a bar should be drawn: asked for, and stderr is a terminal (or FORCE_ENV)."""
    if not enabled:
        return False
    if os.environ.get(FORCE_ENV) == "1":
        return True
    isatty = getattr(sys.stderr, "isatty", None)
    return bool(isatty is not None and isatty())


def progress_bar(total: int | None, desc: str, enabled: bool = True, **options: Any):
    """A tqdm bar of ``total`` steps, or ``None`` when none should be drawn
    (:func:`bars_wanted`). ``options`` go to tqdm (``unit``, ``initial``, ``leave``…)."""
    if not bars_wanted(enabled):
        return None
    from tqdm.auto import tqdm

    options.setdefault("dynamic_ncols", True)
    return tqdm(total=total, desc=desc, **options)


def progress_iter(items: Iterable[T], desc: str, enabled: bool = True,
                  total: int | None = None, **options: Any) -> Iterator[T]:
    """``items``, advancing a bar (:func:`progress_bar`) where one is drawn."""
    if total is None and hasattr(items, "__len__"):
        total = len(items)  # as tqdm would infer it
    bar = progress_bar(total, desc, enabled, **options)
    if bar is None:
        yield from items
        return
    try:
        for item in items:
            yield item
            bar.update(1)
    finally:
        bar.close()


def quiet_library_bars(enabled: bool = True) -> None:
    """Silence the bars transformers and huggingface_hub draw (model loading, downloads)
    unless :func:`bars_wanted`. Before they are imported the environment switch is enough
    (they read it at import); after, their own switch is thrown too."""
    if bars_wanted(enabled):
        return
    os.environ["HF_HUB_DISABLE_PROGRESS_BARS"] = "1"
    if "huggingface_hub" in sys.modules:
        from huggingface_hub.utils import disable_progress_bars

        disable_progress_bars()
    if "transformers" in sys.modules:
        from transformers.utils import logging as hf_logging

        hf_logging.disable_progress_bar()


__all__ = ["FORCE_ENV", "bars_wanted", "progress_bar", "progress_iter", "quiet_library_bars"]
