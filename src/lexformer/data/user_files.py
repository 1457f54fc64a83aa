"""Corpora from the user's own files.

* a directory of ``.txt`` files (searched recursively): each file is a document, in sorted
  order of its path relative to the directory;
* a ``.jsonl`` file: each non-blank line is a JSON object whose ``text`` field is a document;
* any other file (e.g. ``.txt``): one UTF-8 text.

Documents are split by :func:`~lexformer.data.corpus.split_documents` (by document if
there are enough of them, else each is cut into parts); ``whole=True`` (``--split all``) keeps
every document whole instead, all of them in the ``test`` split, so that an evaluation of the
user's own text scores the whole of it. Nothing is written to the cache.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

from ..errors import LexformerError
from .corpus import Corpus, Document, split_documents
from .text import decode_text, read_bytes, read_text_file

#: What a user path may be, for error messages.
USER_PATH_KINDS = "a .txt file, a directory of .txt files or a .jsonl file"
_JSONL_EXAMPLE = 'each line must be a JSON object like {"text": "..."}'


def _jsonl_document(path: Path, lineno: int, line: str) -> Document:
    try:
        obj = json.loads(line)
    except json.JSONDecodeError as e:
        raise LexformerError(
            f"{path} line {lineno} is not valid JSON ({e.msg}); {_JSONL_EXAMPLE}") from None
    if not isinstance(obj, dict) or "text" not in obj:
        raise LexformerError(f'{path} line {lineno} has no "text" field; {_JSONL_EXAMPLE}')
    if not isinstance(obj["text"], str):
        raise LexformerError(
            f'{path} line {lineno}: "text" must be a string, got {type(obj["text"]).__name__}')
    return Document(f"{path.stem}:{lineno}", obj["text"])


def load_jsonl(path: Path) -> list[Document]:
    """The non-empty ``text`` of every non-blank line, named ``<stem>:<line number>``."""
    text = decode_text(read_bytes(path), path)
    docs = [_jsonl_document(path, lineno, line)
            for lineno, line in enumerate(text.split("\n"), start=1) if line.strip()]
    if not any(d.text.strip() for d in docs):
        raise LexformerError(f"{path} is empty (no line with a non-empty \"text\"); give a "
                             f'.jsonl file with one {{"text": "..."}} object per line')
    return [d for d in docs if d.text]


def load_directory(path: Path) -> list[Document]:
    """Every ``.txt`` file under ``path``, named by its relative path."""
    files = sorted((p for p in path.rglob("*.txt") if p.is_file()),
                   key=lambda p: p.relative_to(path).as_posix())
    if not files:
        raise LexformerError(f"directory {path} holds no .txt files; put one UTF-8 .txt file "
                             f"per document in it")
    return [Document(p.relative_to(path).as_posix(), read_text_file(p)) for p in files]


def load_user_corpus(path: str | os.PathLike, whole: bool = False) -> Corpus:
    """A corpus from a text file, a directory of ``.txt`` files or a ``.jsonl`` file; with
    ``whole``, every file or record is one document of the ``test`` split (never cut)."""
    p = Path(path).expanduser()
    if not p.exists():
        raise LexformerError(f"no such file or directory: {path}; give {USER_PATH_KINDS}")
    if p.is_dir():
        docs = load_directory(p)
    elif p.suffix.lower() == ".jsonl":
        docs = load_jsonl(p)
    else:
        docs = [Document(p.stem, read_text_file(p))]
    if whole:  # the held-out split is the one evaluations read: there it is every document
        return Corpus(str(p), {"test": docs})
    return Corpus(str(p), split_documents(docs))


__all__ = ["USER_PATH_KINDS", "load_directory", "load_jsonl", "load_user_corpus"]
