"""Token caches: each split tokenized once, stored as ``.npy`` files and memory-mapped.

Layout under the cache directory::

    tokenizers/<key>/tokenizer.json      key = hash(corpus fingerprint, kind, vocab_size)
    tokens/<key>/meta.json               key = hash(corpus fingerprint, tokenizer JSON)
    tokens/<key>/<split>.tokens.npy      uint16 (vocab <= 65535) or uint32, all documents
                                         of the split concatenated, in corpus order
    tokens/<key>/<split>.offsets.npy     int64, n_docs + 1 document boundaries

Every file is written atomically (:mod:`lexformer.fileio`: temp file, fsync, rename);
``meta.json`` is written last, so a cache folder with ``meta.json`` is complete. Several
processes may build the same cache at once: the results are identical, so whichever
``os.replace`` comes last wins harmlessly.
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..config import SPLITS
from ..errors import LexformerError
from ..fileio import atomic_write_text, atomic_write_with
from .cachedir import resolve_cache_dir
from .corpus import Corpus, Document
from .tokenizer import (
    TOKENIZER_FILE,
    ByteTokenizer,
    Tokenizer,
    build_tokenizer,
    check_kind,
    load_tokenizer,
)

CACHE_VERSION = 1
#: Show a progress bar when a corpus has more documents than this.
PROGRESS_MIN_DOCS = 8
_BATCH_DOCS = 8


@dataclass
class TokenizedSplit:
    """The tokens of one split: ``tokens[doc_offsets[i]:doc_offsets[i + 1]]`` is document i."""

    tokens: np.ndarray
    doc_offsets: np.ndarray
    doc_names: list[str] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.doc_names)

    @property
    def num_tokens(self) -> int:
        return int(self.doc_offsets[-1])

    def document(self, i: int) -> np.ndarray:
        """The tokens of document ``i`` (a read-only view)."""
        n = len(self.doc_names)
        if not -n <= i < n:
            raise IndexError(f"document {i} out of range for a split of {n} documents")
        i %= n
        return self.tokens[int(self.doc_offsets[i]):int(self.doc_offsets[i + 1])]

    def document_lengths(self) -> np.ndarray:
        return np.diff(self.doc_offsets)

    def __repr__(self) -> str:
        return (f"TokenizedSplit(docs={len(self)}, tokens={self.num_tokens}, "
                f"dtype={self.tokens.dtype})")


@dataclass
class TokenizedCorpus:
    """A corpus tokenized with one tokenizer; ``splits`` maps split name to TokenizedSplit."""

    name: str
    fingerprint: str
    tokenizer_kind: str
    vocab_size: int
    path: Path
    splits: dict[str, TokenizedSplit]
    from_cache: bool = False  # True when read from an existing cache folder


def _digest(*parts: str) -> str:
    h = hashlib.sha256()
    for p in parts:
        b = p.encode()
        h.update(f"{len(b)}\0".encode())
        h.update(b)
    return h.hexdigest()[:16]


def token_dtype(vocab_size: int) -> np.dtype:
    """uint16 when every id fits (vocab_size <= 65535), else uint32."""
    return np.dtype(np.uint16 if vocab_size <= 65535 else np.uint32)


def _save_npy(path: Path, array: np.ndarray) -> None:
    atomic_write_with(path, lambda f: np.save(f, array, allow_pickle=False))


def _load_npy(path: Path) -> np.ndarray:
    """A read-only memory map of an .npy file (an empty read-only array if it has no data)."""
    try:
        return np.load(path, mmap_mode="r", allow_pickle=False)
    except ValueError:  # mmap of zero bytes (empty split) is refused on some platforms
        arr = np.load(path, allow_pickle=False)
        arr.setflags(write=False)
        return arr


def _read_cache(path: Path) -> dict[str, TokenizedSplit] | None:
    meta_path = path / "meta.json"
    if not meta_path.is_file():
        return None
    try:
        meta = json.loads(meta_path.read_text(encoding="utf-8"))
        if meta.get("version") != CACHE_VERSION:
            return None
        splits = {}
        for split in SPLITS:
            names = meta["splits"][split]["doc_names"]
            tokens = _load_npy(path / f"{split}.tokens.npy")
            offsets = np.array(_load_npy(path / f"{split}.offsets.npy"), dtype=np.int64)
            offsets.setflags(write=False)
            if len(offsets) != len(names) + 1 or int(offsets[-1]) != len(tokens):
                return None
            splits[split] = TokenizedSplit(tokens, offsets, list(names))
        return splits
    except (OSError, ValueError, KeyError, TypeError):
        return None  # damaged or partial: rebuild


def _encode_docs(tokenizer: Tokenizer, texts: list[str], dtype: np.dtype, bar) -> list[np.ndarray]:
    out = []
    for i in range(0, len(texts), _BATCH_DOCS):
        chunk = texts[i:i + _BATCH_DOCS]
        if isinstance(tokenizer, ByteTokenizer):
            arrays = [np.frombuffer(t.encode("utf-8"), dtype=np.uint8).astype(dtype)
                      for t in chunk]
        else:
            arrays = [np.asarray(ids, dtype=dtype) for ids in tokenizer.encode_batch(chunk)]
        out += arrays
        if bar is not None:
            bar.update(len(chunk))
    return out


def _write_split(path: Path, split: str, docs: list[Document], tokenizer: Tokenizer,
                 dtype: np.dtype, bar) -> dict:
    """Tokenize one split into ``<split>.tokens.npy`` and ``<split>.offsets.npy``; return its
    entry of ``meta.json``."""
    arrays = _encode_docs(tokenizer, [d.text for d in docs], dtype, bar)
    lengths = np.array([len(a) for a in arrays], dtype=np.int64)
    offsets = np.concatenate([[0], np.cumsum(lengths)]).astype(np.int64)
    tokens = np.concatenate(arrays) if arrays else np.zeros(0, dtype=dtype)
    _save_npy(path / f"{split}.tokens.npy", tokens.astype(dtype, copy=False))
    _save_npy(path / f"{split}.offsets.npy", offsets)
    return {"doc_names": [d.name for d in docs], "num_tokens": int(offsets[-1])}


def tokenize_corpus(corpus: Corpus, tokenizer: Tokenizer,
                    cache_dir: str | os.PathLike | None = None,
                    progress: bool = True) -> TokenizedCorpus:
    """Tokenize every split of ``corpus`` (once; later calls memory-map the cache).

    ``progress=False`` shows no progress bar (one is shown, on stderr, for corpora of more
    than :data:`PROGRESS_MIN_DOCS` documents).
    """
    cache = resolve_cache_dir(cache_dir)
    key = _digest("tokens", corpus.fingerprint, tokenizer.to_json())
    path = cache / "tokens" / key
    vocab_size = tokenizer.vocab_size

    def result(splits: dict[str, TokenizedSplit], hit: bool) -> TokenizedCorpus:
        return TokenizedCorpus(corpus.name, corpus.fingerprint, tokenizer.kind, vocab_size,
                               path, splits, from_cache=hit)

    cached = _read_cache(path)
    if cached is not None:
        return result(cached, True)

    from ..progress import progress_bar

    path.mkdir(parents=True, exist_ok=True)
    dtype = token_dtype(vocab_size)
    total = sum(len(corpus.splits[s]) for s in SPLITS)
    bar = progress_bar(total, f"tokenizing {corpus.name}", progress and total > PROGRESS_MIN_DOCS,
                       unit="doc", leave=False)
    meta = {"version": CACHE_VERSION, "corpus": corpus.name, "fingerprint": corpus.fingerprint,
            "tokenizer_kind": tokenizer.kind, "vocab_size": vocab_size, "dtype": dtype.name,
            "splits": {}}
    try:
        for split in SPLITS:
            meta["splits"][split] = _write_split(path, split, corpus.splits[split], tokenizer,
                                                 dtype, bar)
    finally:
        if bar is not None:
            bar.close()
    atomic_write_text(path / "meta.json", json.dumps(meta, indent=1) + "\n")
    splits = _read_cache(path)
    if splits is None:  # pragma: no cover - only if the disk is failing under us
        raise LexformerError(f"token cache {path} could not be read back; delete it and retry")
    return result(splits, False)


def get_tokenizer(corpus: Corpus, kind: str = "bpe", vocab_size: int = 4096,
                  cache_dir: str | os.PathLike | None = None,
                  progress: bool = True) -> Tokenizer:
    """The tokenizer of ``kind`` for ``corpus``, trained once (on ``train``) and cached by
    (corpus fingerprint, kind, vocab_size) in ``cache_dir/tokenizers/``. ``progress=False``
    silences the trainer's progress bar."""
    check_kind(kind)
    if kind == "bytes":
        return ByteTokenizer()
    cache = resolve_cache_dir(cache_dir)
    folder = cache / "tokenizers" / _digest("tokenizer", corpus.fingerprint, kind,
                                            str(vocab_size))
    target = folder / TOKENIZER_FILE
    if target.is_file():
        try:
            return load_tokenizer(target)
        except LexformerError:
            pass  # damaged: train again
    tokenizer = build_tokenizer(kind, corpus, vocab_size, progress)
    folder.mkdir(parents=True, exist_ok=True)
    tokenizer.save(target)
    atomic_write_text(folder / "info.json", json.dumps(
        {"corpus": corpus.name, "fingerprint": corpus.fingerprint, "kind": kind,
         "requested_vocab_size": vocab_size, "vocab_size": tokenizer.vocab_size}, indent=1))
    return tokenizer


__all__ = ["TokenizedCorpus", "TokenizedSplit", "get_tokenizer", "token_dtype",
           "tokenize_corpus"]
