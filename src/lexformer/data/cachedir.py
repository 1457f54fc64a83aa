"""Where the data layer keeps what it downloads and computes, and the record of each built-in
corpus's split written there."""

from __future__ import annotations

import json
import os
from pathlib import Path

from ..config import SPLITS
from ..errors import LexformerError
from ..fileio import atomic_write_text
from .corpus import Corpus


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


def write_split_json(cache: Path, corpus: Corpus) -> Path:
    """Record which documents went to which split (for inspection) in ``cache/splits``."""
    path = cache / "splits" / f"{corpus.name}.json"
    data = {"corpus": corpus.name, "fingerprint": corpus.fingerprint,
            "splits": {s: [d.name for d in corpus.splits[s]] for s in SPLITS}}
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_text(path, json.dumps(data, indent=2) + "\n")
    return path

def publish_folder(tmp: Path, root: Path) -> None:
    """Move a completely built folder ``tmp`` into place at ``root`` in one rename; if another
    process published ``root`` first, keep theirs (the caller removes ``tmp``)."""
    try:
        os.replace(tmp, root)
    except OSError:
        if not root.is_dir():  # not another process that finished first
            raise


__all__ = ["default_cache_dir", "publish_folder", "resolve_cache_dir", "write_split_json"]
