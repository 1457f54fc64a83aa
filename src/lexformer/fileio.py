"""Files written so that a kill at any instant leaves the old content or the new, never a mix,
and output locations checked before any work is spent on what would be written there.

Every module that writes a file the user keeps (checkpoints' JSON, token caches, reports,
results) goes through :func:`atomic_write_bytes` and friends; every command that will write
somewhere calls :func:`ensure_writable_dir` / :func:`ensure_writable_file` first.
"""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any, BinaryIO

from .errors import LexformerError


def fsync_dir(path: str | Path) -> None:
    """Flush a folder's entry table (so a rename inside it survives a power cut)."""
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


#: what a temp file of :func:`atomic_write_with` is called, so a later run can find the ones a
#: kill left behind (:func:`remove_stale_temps`)
TEMP_PREFIX, TEMP_SUFFIX = ".", ".lexformer-tmp"


def _file_mode() -> int:
    """0666 less the process's umask: what ``open(path, "w")`` would give. mkstemp makes its
    file 0600, which would leave every output unreadable to the user's collaborators."""
    mask = os.umask(0o022)
    os.umask(mask)
    return 0o666 & ~mask


def atomic_write_with(path: str | Path, writer: Callable[[BinaryIO], object]) -> None:
    """Let ``writer`` fill a temp file in ``path``'s folder, then fsync and rename it onto
    ``path``. For content produced by a library that writes to a file object (``np.save``,
    ``Figure.savefig``); if ``writer`` raises, the temp file is removed and ``path`` keeps its
    old content. A symlink at ``path`` is replaced by the file, never written through."""
    path = Path(path)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f"{TEMP_PREFIX}{path.name}.",
                               suffix=TEMP_SUFFIX)
    try:
        os.fchmod(fd, _file_mode())
        with os.fdopen(fd, "wb") as f:
            writer(f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    fsync_dir(path.parent)


def atomic_write_bytes(path: str | Path, data: bytes) -> None:
    """Write ``data`` to ``path`` through a temp file in the same folder, fsync, rename."""
    atomic_write_with(path, lambda f: f.write(data))


def atomic_write_text(path: str | Path, text: str) -> None:
    atomic_write_bytes(path, text.encode("utf-8"))


def atomic_write_json(path: str | Path, data: Any) -> None:
    """JSON with sorted keys and an indent, written atomically."""
    atomic_write_text(path, json.dumps(data, indent=2, sort_keys=True) + "\n")


def remove_stale_temps(folder: str | Path) -> list[Path]:
    """Remove the temp files that a killed :func:`atomic_write_with` left under ``folder``
    (a SIGKILL skips its clean-up); returns what was removed. Call it only on a folder no other
    process is writing to."""
    folder = Path(folder)
    if not folder.is_dir():
        return []
    stale = [p for p in folder.rglob(f"{TEMP_PREFIX}*{TEMP_SUFFIX}")
             if p.is_file() and not p.is_symlink()]
    for p in stale:
        p.unlink(missing_ok=True)
    return stale


def _nearest_existing(path: Path) -> Path:
    p = path
    while not p.exists():
        if p.parent == p:
            break
        p = p.parent
    return p


def ensure_writable_dir(path: str | Path, what: str = "output folder") -> Path:
    """Check, before any work, that ``path`` is or can become a writable folder.

    Nothing is created; raises :class:`LexformerError` naming the problem: ``path`` is a
    file, lies under a file, or the nearest existing folder is not writable.
    """
    path = Path(path)
    if path.exists() and not path.is_dir():
        raise LexformerError(f"{what} {path} exists and is not a folder")
    base = _nearest_existing(path)
    if not base.is_dir():
        raise LexformerError(f"{what} {path} cannot be created: {base} is a file")
    if not os.access(base, os.W_OK | os.X_OK):
        raise LexformerError(f"{what} {path} is not writable ({base} does not allow writing)")
    return path


def ensure_writable_file(path: str | Path, what: str = "output file",
                         overwrite: bool = True) -> Path:
    """Check, before any work, that a file can be written at ``path``.

    ``overwrite=False`` also refuses an existing file (nothing the user has is lost).
    """
    path = Path(path)
    if path.is_dir():
        raise LexformerError(f"{what} {path} is a folder, not a file")
    if path.exists() and not overwrite:
        raise LexformerError(f"{what} {path} already exists (nothing was overwritten)")
    if path.exists() and not os.access(path, os.W_OK):
        raise LexformerError(f"{what} {path} is not writable")
    ensure_writable_dir(path.parent, what=f"folder of {what}")
    return path


def ensure_no_symlinked_folder(root: str | Path, path: str | Path,
                               what: str = "output file") -> Path:
    """Check that no folder between ``root`` (itself not checked: a run folder may be a link
    the user made) and ``path`` is a symbolic link, nor a file, before writing ``path``.

    A planted link (``plots/`` pointing elsewhere) would send a write outside ``root``, which
    :func:`atomic_write_with` guards against only for the file itself. Nothing is created;
    raises :class:`LexformerError` naming the link. ``path`` must lie under ``root``.
    """
    root, path = Path(root), Path(path)
    folder = root
    for part in path.parent.relative_to(root).parts:  # outermost first: name the first link
        folder = folder / part
        if folder.is_symlink():
            raise LexformerError(f"{what} {path}: {folder} is a symbolic link; lexformer "
                                 "does not write through links (remove it and run again)")
        if folder.exists() and not folder.is_dir():
            raise LexformerError(f"{what} {path}: {folder} exists and is not a folder")
    return path


__all__ = ["atomic_write_bytes", "atomic_write_json", "atomic_write_text", "atomic_write_with",
           "ensure_no_symlinked_folder", "ensure_writable_dir",
           "ensure_writable_file", "fsync_dir", "remove_stale_temps"]
