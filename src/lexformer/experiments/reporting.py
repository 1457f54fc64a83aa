"""The reporting kit the three experiment reports share: value ± interval cells, "identical
scores", markdown tables, the training and provenance sections, and the length figure.

Each report keeps its own sections and wording; what they have in common lives here, so the
reproduction, the encoder experiment and ``extend`` format a cell, decide that two
configurations score the same and record the machine in one way. The figure of a value
against a log2 length axis is :func:`lexformer.plots.plot_by_length` (re-exported here): it
lives beside the other figures because :mod:`lexformer.tasks` draws with those helpers too and
sits below this package.
"""

from __future__ import annotations

import math
import os
import platform
import subprocess
import time
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from ..fileio import atomic_write_json, atomic_write_text, ensure_no_symlinked_folder
from ..plots import LengthPanel, plot_by_length

#: two documents' summed NLL within this relative distance count as the same score. Kernels
#: that compute the same attention agree to ~1e-8 relative (full and blockwise at lengths ≤ L:
#: ≤ 8e-9 in docs/extend, ≤ 5e-9 in the smoke runs); the closest real difference seen is
#: 1.2e-6 (yarn against full at 2·L on the tests' tiny Llama), the next ~1e-4. 1e-6 was the
#: reproduction's bound, so its committed reports cannot change (their document NLLs are not
#: committed to check a tighter one), and no committed extend report changes with it.
SAME_RTOL = 1e-6

#: presets whose models train for seconds: their reports say that the numbers mean nothing
SMOKE_PRESETS = frozenset({"smoke", "mlm-smoke"})


# --------------------------------------------------------------------------- cells
def number(value: float | None, digits: int = 2, large: float | None = 1000.0,
           blank_nonfinite: bool = True) -> str:
    """``value`` with ``digits`` decimals, none from ``large`` on (a perplexity of 3000 needs
    no decimals); "–" for None, and for inf/nan unless ``blank_nonfinite`` is False."""
    if value is None or (blank_nonfinite and not math.isfinite(value)):
        return "–"
    return f"{value:.{digits}f}" if large is None or value < large else f"{value:.0f}"


def half_width(ci95: tuple[float, float] | None) -> float | None:
    return None if ci95 is None else (ci95[1] - ci95[0]) / 2


def value_cell(value: float | None, half: float | None = None, digits: int = 2,
               large: float | None = 1000.0, blank_nonfinite: bool = True) -> str:
    """``81.12 ±0.90``: the value (see :func:`number`) and a ± of the same decimals; no ±
    when ``half`` is None (one document: no interval)."""
    text = number(value, digits, large, blank_nonfinite)
    return text if half is None else f"{text} ±{half:.{digits}f}"


def interval_cell(value: float | None, ci95: tuple[float, float] | None, digits: int = 2,
                  large: float | None = 1000.0, blank_nonfinite: bool = True) -> str:
    """:func:`value_cell` with ± half the width of the 95 % interval ``ci95``."""
    return value_cell(value, half_width(ci95), digits, large, blank_nonfinite)


def seeds_cell(values: Sequence[float], ci95: tuple[float, float] | None = None,
               digits: int = 2, large: float | None = 1000.0, blank_nonfinite: bool = True
               ) -> str:
    """A cell over seeds: one seed is its value ± half its 95 % interval over documents
    ``ci95``; several are their mean ± their standard deviation (n − 1 in the denominator)."""
    if len(values) == 1:
        return interval_cell(values[0], ci95, digits, large, blank_nonfinite)
    return value_cell(float(np.mean(values)), float(np.std(values, ddof=1)), digits, large,
                      blank_nonfinite)


def seeds_note(seeds: Sequence[int]) -> str:
    """What a cell over several seeds is (:func:`seeds_cell`)."""
    return (f"Each cell is the mean over {len(seeds)} seeds ({', '.join(map(str, seeds))})"
            " ± their standard deviation.")


def optional(value: Any, spec: str = "") -> str:
    """``format(value, spec)``, or "–" for a value that was not recorded."""
    return "–" if value is None else format(value, spec)


def same_scores(doc_nll_a: Sequence[float], doc_nll_b: Sequence[float]) -> bool:
    """Every document scored the same up to float rounding (see :data:`SAME_RTOL`)."""
    return bool(np.allclose(doc_nll_a, doc_nll_b, rtol=SAME_RTOL, atol=0))


# --------------------------------------------------------------------------- paths
def shown_path(value: str, out: str | Path) -> str:
    """A path as a report shows it: an absolute one relative to the run folder ``out`` (the
    folders of the machine a report was made on mean nothing where it is read or committed,
    and say whose machine it was); anything else as given."""
    if not os.path.isabs(value):
        return value
    return os.path.relpath(value, os.path.abspath(out))


def shown_command(command: str, out: str | Path) -> str:
    """``command`` with every absolute path in it, also an ``--option=/path`` value, shown
    relative to ``out`` (:func:`shown_path`): the command as typed inside the run folder."""
    words = []
    for word in command.split(" "):
        key, eq, value = word.partition("=")
        if not (eq and word.startswith("-")):
            key, eq, value = "", "", word
        words.append(key + eq + shown_path(value, out))
    return " ".join(words)


def figure_path(out: str | Path, relative: str | Path) -> Path:
    """``out / relative`` for a figure, refused in one line when a folder on the way (a
    planted ``plots`` link) would send the write outside the run folder."""
    return ensure_no_symlinked_folder(out, Path(out) / relative, "figure")


# --------------------------------------------------------------------------- smoke runs
def is_smoke(preset: str) -> bool:
    return preset in SMOKE_PRESETS


def smoke_banner(preset: str) -> list[str]:
    """The lines that open a smoke run's report (none for another preset)."""
    if not is_smoke(preset):
        return []
    return [f"> **Smoke run: these numbers mean nothing.** Preset `{preset}` trains a tiny "
            "model for seconds; the run only shows that the pipeline works end to end. Run a "
            "larger preset for numbers that say something about the position schemes.", ""]


#: what a smoke run's findings section says in place of conclusions
SMOKE_FINDINGS = ("**No conclusions: this is a smoke run** (a tiny model trained for "
                  "seconds). The sentences below only restate this run's numbers, to show "
                  "that the pipeline computes and compares them; they are not evidence about "
                  "any position scheme.")


def findings_section(heading: str, preset: str, paragraphs: Sequence[str]) -> list[str]:
    """A report's findings: its heading, for a smoke run the "no conclusions" paragraph
    first, then one line per paragraph."""
    lines = [heading, ""]
    if is_smoke(preset):
        lines += [SMOKE_FINDINGS, ""]
    for paragraph in paragraphs:
        lines += [paragraph, ""]
    return lines


# --------------------------------------------------------------------------- sections
def table(header: Sequence[str], rows: Iterable[Sequence[str]]) -> list[str]:
    """Markdown lines of a table: the header, the rule, one line per row."""
    return (["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
            + ["| " + " | ".join(row) + " |" for row in rows])


def training_section(intro: str, header: Sequence[str], rows: Iterable[Sequence[str]]
                     ) -> list[str]:
    """``## Training``: what every run shares (``intro``), then one row per trained model."""
    return ["## Training", "", intro, "", *table(header, rows), ""]


def machine_name() -> str:
    """The CPU's model name (``lscpu``), else the platform's processor string."""
    try:
        out = subprocess.run(["lscpu"], capture_output=True, text=True, timeout=10).stdout
        for line in out.splitlines():
            if line.startswith("Model name:"):
                return line.split(":", 1)[1].strip()
    except (OSError, subprocess.SubprocessError):
        pass
    return platform.processor() or platform.machine()


def machine() -> str:
    """CPU model, cores, torch threads, system and accelerator, as one line."""
    import torch

    accelerator = (f"CUDA {torch.cuda.get_device_name()}" if torch.cuda.is_available()
                   else "CPU only")
    return (f"{machine_name()}, {os.cpu_count()} cores, {torch.get_num_threads()} torch "
            f"threads, {platform.system()} {platform.release()}, {accelerator}")


def git_commit() -> str | None:
    """The short commit of the source tree lexformer runs from, None outside a git clone."""
    try:
        out = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True,
                             text=True, timeout=10, cwd=Path(__file__).resolve().parent)
    except (OSError, subprocess.SubprocessError):
        return None
    commit = out.stdout.strip() if out.returncode == 0 else ""
    return commit or None


def versions() -> str:
    """lexformer, torch, transformers (if installed), numpy, Python and the git commit."""
    import torch

    from .. import __version__

    try:
        import transformers
        hf = f", transformers {transformers.__version__}"
    except ImportError:
        hf = ""
    commit = git_commit()
    return (f"lexformer {__version__}, torch {torch.__version__}{hf}, numpy {np.__version__}, "
            f"Python {platform.python_version()}" + (f", git {commit}" if commit else ""))


def provenance_section(command: str, timing: Sequence[str], started: float | None = None,
                       out: str | Path | None = None) -> list[str]:
    """``## Provenance``: the command, the report's own timing lines (each a ``- …`` bullet),
    the machine, the date (``started``, default now) and the versions. With ``out`` (the run
    folder) the command's absolute paths are shown relative to it (:func:`shown_command`)."""
    when = time.localtime(started) if started is not None else time.localtime()
    shown = command if out is None else shown_command(command, out)
    note = " (absolute paths shown relative to the run folder)" if shown != command else ""
    return ["## Provenance", "", f"- command: `{shown}`{note}", *timing,
            f"- machine: {machine()}",
            f"- date: {time.strftime('%Y-%m-%d %H:%M:%S %Z', when)}",
            f"- versions: {versions()}", ""]


# --------------------------------------------------------------------------- files
def write_report_files(out: Path, lines: Sequence[str], results: dict[str, Any] | None = None
                       ) -> Path:
    """``report.md`` from ``lines`` (and ``results.json`` from ``results``) in ``out``, each
    written atomically; returns the report's path."""
    report = Path(out) / "report.md"
    atomic_write_text(report, "\n".join(lines))
    if results is not None:
        atomic_write_json(Path(out) / "results.json", results)
    return report


__all__ = ["LengthPanel", "SAME_RTOL", "SMOKE_FINDINGS", "SMOKE_PRESETS", "figure_path",
           "findings_section", "git_commit", "half_width", "interval_cell", "is_smoke",
           "machine", "machine_name", "number", "optional", "plot_by_length",
           "provenance_section", "same_scores", "seeds_cell", "seeds_note", "shown_command",
           "shown_path", "smoke_banner", "table", "training_section", "value_cell", "versions",
           "write_report_files"]
