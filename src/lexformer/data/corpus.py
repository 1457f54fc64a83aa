"""Corpus and document types, and the rule that assigns documents to splits.

A :class:`Corpus` holds three splits (``train``, ``validation``, ``test``) of
:class:`Document` objects. Whole documents go to one split, never pieces of a document to
several, so the long test documents used for length extrapolation are unseen in training.

The split rule, for documents in a fixed order (built-ins and directories: sorted by file
name; jsonl: line order): document ``i`` (0-based) goes to ``test`` if ``i % 7 == 0``, to
``validation`` if ``i % 14 == 4``, else to ``train`` (about 79 % / 7 % / 14 % of the
documents). With fewer than :data:`MIN_DOCUMENTS` documents (so some split would be empty)
each document is instead cut into :data:`PARTS_PER_TEXT` parts and the same rule applies
to the part index, so every split gets text from every document: parts 0 and 7 are test,
part 4 validation, the other 11 train.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass, field

from ..config import SPLITS
from ..errors import LexformerError

#: Parts a text is cut into when there are too few documents to split by document.
PARTS_PER_TEXT = 14
#: Fewest documents for which the split is by document (index 4 is the first validation one).
MIN_DOCUMENTS = 5


@dataclass
class Document:
    """One text with a stable name (a file name, ``file#part`` or ``file:line``)."""

    name: str
    text: str = field(repr=False)

    def __repr__(self) -> str:
        return f"Document(name={self.name!r}, chars={len(self.text)})"


@dataclass
class Corpus:
    """A named corpus: ``splits`` maps ``train``/``validation``/``test`` to documents."""

    name: str
    splits: dict[str, list[Document]]

    def __post_init__(self) -> None:
        for split in SPLITS:
            self.splits.setdefault(split, [])
        extra = set(self.splits) - set(SPLITS)
        if extra:
            raise LexformerError(f"unknown split names {sorted(extra)}; a corpus has the splits "
                                 f"{', '.join(SPLITS)}")

    @property
    def fingerprint(self) -> str:
        """sha256 (first 16 hex digits) of every split's document names and texts.

        Two corpora with the same documents in the same splits share caches, whatever
        their name or path. Computed on each access (milliseconds), so edits to the
        documents are never hidden by a stale value.
        """
        h = hashlib.sha256()
        for split in SPLITS:
            docs = self.splits[split]
            h.update(f"{split}\0{len(docs)}\0".encode())
            for doc in docs:
                name, text = doc.name.encode(), doc.text.encode()
                h.update(f"{len(name)}\0{len(text)}\0".encode())
                h.update(name)
                h.update(text)
        return h.hexdigest()[:16]

    def num_chars(self, split: str | None = None) -> int:
        """Characters in one split, or in all of them."""
        splits = SPLITS if split is None else (split,)
        return sum(len(d.text) for s in splits for d in self.splits[s])

    def __repr__(self) -> str:
        counts = ", ".join(f"{s}={len(self.splits[s])}" for s in SPLITS)
        return f"Corpus(name={self.name!r}, docs: {counts}, chars={self.num_chars()})"


def split_index(i: int) -> str:
    """The split of document ``i``: test if i % 7 == 0, validation if i % 14 == 4, else train.

    (i % 14 == 4 implies i % 7 == 4, so the two never overlap.)
    """
    if i % 7 == 0:
        return "test"
    if i % 14 == 4:
        return "validation"
    return "train"


def assign_splits(docs: Sequence[Document]) -> dict[str, list[Document]]:
    """Split documents (in the given order) by :func:`split_index`."""
    splits: dict[str, list[Document]] = {s: [] for s in SPLITS}
    for i, doc in enumerate(docs):
        splits[split_index(i)].append(doc)
    return splits


def _nearest_break(text: str, target: int, lo: int, hi: int) -> int:
    """A cut position near ``target`` in (lo, hi): after a paragraph break, else a line
    break, else a space, else ``target`` itself."""
    for sep in ("\n\n", "\n", " "):
        before = text.rfind(sep, lo + 1, target)
        after = text.find(sep, target, hi)
        cands = [p + len(sep) for p in (before, after) if p != -1]
        cands = [c for c in cands if lo < c < hi]
        if cands:
            return min(cands, key=lambda c: abs(c - target))
    return target


def split_text(text: str, parts: int) -> list[str]:
    """Cut ``text`` into at most ``parts`` contiguous, non-empty pieces of about equal length,
    at paragraph breaks where possible. ``"".join(pieces) == text``."""
    n = len(text)
    parts = max(1, min(parts, n))
    cuts = [0]
    for k in range(1, parts):
        target = k * n // parts
        half = max(1, n // (2 * parts))
        lo, hi = max(cuts[-1], target - half), min(n, target + half)
        cut = _nearest_break(text, target, lo, hi)
        if cuts[-1] < cut < n:
            cuts.append(cut)
    cuts.append(n)
    return [text[a:b] for a, b in zip(cuts, cuts[1:]) if b > a]


def split_documents(docs: Sequence[Document]) -> dict[str, list[Document]]:
    """By document if there are at least :data:`MIN_DOCUMENTS`, else by parts of each."""
    if len(docs) >= MIN_DOCUMENTS:
        return assign_splits(docs)
    splits: dict[str, list[Document]] = {s: [] for s in SPLITS}
    for doc in docs:
        for k, piece in enumerate(split_text(doc.text, PARTS_PER_TEXT)):
            splits[split_index(k)].append(Document(f"{doc.name}#{k:02d}", piece))
    return splits


__all__ = [
    "MIN_DOCUMENTS", "PARTS_PER_TEXT", "SPLITS", "Corpus", "Document", "assign_splits",
    "split_documents", "split_index", "split_text",
]
