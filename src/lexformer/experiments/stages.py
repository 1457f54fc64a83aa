"""The stage runner every experiment (reproduce, encoder, extend) resumes through.

A :class:`Stage` computes one result and saves it together with its *key*: the settings and
input fingerprints it was computed from (checkpoint step, lengths, corpus, method options …).
A later run reuses the saved result only when the saved key equals the wanted one; an older
or damaged file is measured again. The :class:`Runner` owns what every experiment used to
write for itself: the ``[i/n] … elapsed`` progress lines, the seconds of every stage
(``timings.json``) and the atomic writes.

A stage is built when its inputs exist (an evaluation's key holds the step its training
stage left), so an experiment is the sequence of its stage constructors and tells the runner
the count up front.
"""

from __future__ import annotations

import json
import os
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Generic, Protocol, TypeVar

from ..errors import LexformerError
from ..fileio import atomic_write_json

T = TypeVar("T")

#: what reading an older or damaged stage file raises: the stage is measured again
STALE_ERRORS = (KeyError, ValueError, TypeError, AttributeError, OSError, LexformerError)


def say(msg: str) -> None:
    """One progress line on stderr (stdout stays for what a command prints as its result)."""
    print(msg, file=sys.stderr, flush=True)


def machine_load() -> float | None:
    """The machine's 1-minute load average now (None where the platform has none): beside a
    stage's time it says whether other work shared the cores."""
    try:
        return round(os.getloadavg()[0], 2)
    except (OSError, AttributeError):
        return None


def command_line() -> str:
    """The command as the user typed it, for a report's provenance."""
    return " ".join(["lexformer"] + sys.argv[1:]) if sys.argv else ""


class Codec(Protocol[T]):
    """Where a stage's result lives between runs, and the key it was saved with."""

    def load(self, path: Path) -> tuple[Any, T]:
        """(the saved key, the saved result); raises one of :data:`STALE_ERRORS` for a file
        that cannot be read back."""

    def save(self, path: Path, result: T, key: Any) -> None: ...


@dataclass(frozen=True)
class JsonCodec(Generic[T]):
    """A result kept as one JSON file, written atomically.

    With ``key_field`` the key is stored in that entry beside the result (``extend``'s
    ``settings``). Without it the key is read back from the result's own fields by
    ``key_of``: the reproduction's files have always named their step, lengths and corpus,
    and reading the key from them keeps folders made by earlier versions reusable."""

    to_json: Callable[[T], dict[str, Any]]
    from_json: Callable[[dict[str, Any]], T]
    key_of: Callable[[T], Any] | None = None
    key_field: str | None = None

    def load(self, path: Path) -> tuple[Any, T]:
        data = json.loads(path.read_text())
        result = self.from_json(data)
        key = data[self.key_field] if self.key_field else self.key_of(result)
        return key, result

    def save(self, path: Path, result: T, key: Any) -> None:
        data = self.to_json(result)
        if self.key_field:
            data = {**data, self.key_field: key}
        path.parent.mkdir(parents=True, exist_ok=True)
        atomic_write_json(path, data)


@dataclass(frozen=True)
class Stage(Generic[T]):
    """One resumable step of an experiment.

    ``name`` is its entry in ``timings.json`` ("" for a stage whose time is not kept) and
    ``title`` its progress line. ``key`` is compared for equality with the key ``codec``
    reads back from ``path``; without a codec nothing is saved and the stage runs every
    time. ``reused`` is the line printed when the saved result is taken."""

    name: str
    title: str
    compute: Callable[[], T]
    key: Any = None
    codec: Codec[T] | None = None
    path: Path | None = None
    reused: str = ""


def read_timings(path: Path) -> dict[str, float]:
    """The seconds per stage saved in ``path``. A damaged file (not JSON, not a mapping of
    stage names to seconds: a kill mid-write on an old version, a hand edit) is not an
    error: it is set aside with a note, and every stage run from now on is timed again."""
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        data = None
    if isinstance(data, dict) and all(
            isinstance(v, (int, float)) and not isinstance(v, bool) for v in data.values()):
        return data
    say(f"note: {path} is damaged and is rewritten; stages reused from earlier runs have no "
        "time in the report, the others are timed again")
    return {}


def changed_fields(saved: Any, wanted: Any) -> list[str]:
    """The entries in which two stage keys differ ("inputs" when they are not both dicts)."""
    if not (isinstance(saved, dict) and isinstance(wanted, dict)):
        return ["inputs"]
    return sorted(k for k in saved.keys() | wanted.keys() if saved.get(k) != wanted.get(k))


#: the file that marks a folder as the output of one lexformer command
RUN_MARKER = "lexformer-run.json"


def claim_out_folder(out: Path, command: str, signature: Sequence[str]) -> None:
    """Before any work: ``out`` must be missing, empty, or a run of ``command`` — it holds
    the marker naming ``command``, or (a folder written before the marker existed) one of the
    entries in ``signature`` that only this command writes. Anything else is refused in one line,
    so no file of the user's is overwritten. Temp files a killed write left are removed, and
    the marker is written."""
    from .. import __version__
    from ..fileio import remove_stale_temps

    out = Path(out)
    marker = out / RUN_MARKER
    entries = sorted(p.name for p in out.iterdir()) if out.is_dir() else []
    if marker.is_file():
        try:
            owner = json.loads(marker.read_text()).get("command")
        except (OSError, ValueError, AttributeError):
            owner = None
        if owner != command:
            raise LexformerError(f"--out {out} is the output of {owner or 'another command'}"
                                 f", not of lexformer {command}; choose another --out "
                                 "(nothing was changed)")
    elif entries and not set(signature) & set(entries):
        raise LexformerError(f"--out {out} is not empty and is not a run of lexformer "
                             f"{command} (it holds {', '.join(entries[:3])}"
                             f"{' …' if len(entries) > 3 else ''}); choose an empty or new "
                             "folder (nothing was changed)")
    removed = remove_stale_temps(out)
    if removed:
        say(f"    removed {len(removed)} temp file(s) a killed run left in {out}")
    if not marker.is_file():
        out.mkdir(parents=True, exist_ok=True)
        atomic_write_json(marker, {"command": command, "lexformer": __version__})


@dataclass
class Runner:
    """Runs the ``total`` stages of one invocation in order, keeping their timings."""

    total: int
    timings_file: Path | None = None
    started: float = field(default_factory=time.time)
    timings: dict[str, float] = field(default_factory=dict)
    done: int = 0

    def __post_init__(self) -> None:
        # seconds per stage are kept across invocations: a resumed run still reports the
        # time each stage took when it actually ran
        if self.timings_file is not None and self.timings_file.exists():
            self.timings = read_timings(self.timings_file)

    @property
    def elapsed(self) -> float:
        return time.time() - self.started

    def progress(self, text: str) -> None:
        self.done += 1
        elapsed = int(self.elapsed)
        say(f"[{self.done}/{self.total}] {text}  — {elapsed // 60}m{elapsed % 60:02d}s "
            "elapsed")

    def run(self, stage: Stage[T]) -> T:
        """The stage's saved result when its key is unchanged, else computed and saved."""
        self.progress(stage.title)
        found, saved = self._saved(stage)
        if found:
            if stage.reused:
                say(stage.reused)
            return saved
        t0 = time.time()
        result = stage.compute()
        if stage.codec is not None:
            stage.codec.save(stage.path, result, stage.key)
        self._record(stage, time.time() - t0)
        return result

    def _saved(self, stage: Stage[T]) -> tuple[bool, Any]:
        if stage.codec is None or stage.path is None or not stage.path.exists():
            return False, None
        try:
            key, result = stage.codec.load(stage.path)
        except STALE_ERRORS:
            say(f"    {stage.path.name}: unreadable or from an older version, measured again")
            return False, None
        if key == stage.key:
            return True, result
        say(f"    {stage.path.name}: saved with other {', '.join(changed_fields(key, stage.key))}"
            ", measured again")
        return False, None

    def _record(self, stage: Stage, seconds: float) -> None:
        if not stage.name or self.timings_file is None:
            return
        # a stage that saves nothing runs every time, cheaply once its caches exist (the
        # data stage): the time it took when it did the work is the one kept
        if stage.codec is None and stage.name in self.timings:
            return
        self.timings[stage.name] = round(seconds, 1)
        atomic_write_json(self.timings_file, self.timings)


__all__ = ["Codec", "JsonCodec", "RUN_MARKER", "Runner", "STALE_ERRORS", "Stage",
           "changed_fields", "claim_out_folder", "command_line", "read_timings", "say"]
