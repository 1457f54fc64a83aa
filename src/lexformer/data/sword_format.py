"""Reading SWORD compressed modules (zText/zCom and their 4-byte variants zText4/zCom4).

Per testament (``ot``/``nt``) and with a block-type letter ``?`` (``b`` book, ``c``
chapter, ``v`` verse), a module folder holds:

* ``??.?zs`` — block index: 12-byte entries ``<III`` (offset in ``.?zz``, compressed size,
  raw size);
* ``??.?zz`` — the zlib-compressed blocks;
* ``??.?zv`` — verse index, one entry per verse key (module/testament/book/chapter headings
  included): ``<IIH`` (10 bytes) or ``<III`` (12 bytes) = (block number, offset in the
  decompressed block, size). Which one is used is found from the file itself: the entry
  size must divide the file size and every entry must point inside its block (the
  ``ModDrv`` in the ``.conf`` only breaks a tie, as it is not always right: the Debian
  MHCC says zCom4 but has 10-byte entries). Commentaries point several verses at one
  text; repeated ``(block, offset)`` entries are kept once.

(``pysword`` on PyPI reads zText/zText4 only, takes the entry size from ``ModDrv``, and
skips the heading entries, so it cannot replace this reader for the ``sword`` corpus.)
"""

from __future__ import annotations

import os
import re
import zlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..errors import LexformerError
from .text import strip_osis

_BLOCK_DTYPE = np.dtype([("offset", "<u4"), ("csize", "<u4"), ("size", "<u4")])
_OSIS_ID = re.compile(r'osisID="([^"\s]+)')
_VERSE_DTYPES = {
    10: np.dtype([("block", "<u4"), ("offset", "<u4"), ("size", "<u2")]),
    12: np.dtype([("block", "<u4"), ("offset", "<u4"), ("size", "<u4")]),
}


@dataclass
class SwordModule:
    """A module found in a SWORD library: conf section name, data folder, driver."""

    name: str
    path: Path
    driver: str  # ModDrv, e.g. "zText", "zCom4"

    @property
    def is_commentary(self) -> bool:
        return self.driver.lower().startswith(("zcom", "rawcom", "hrefcom"))


class CorruptModule(Exception):
    """A module file that contradicts the format (reported as a LexformerError)."""


def _read(path: Path) -> bytes:
    try:
        return path.read_bytes()
    except OSError as e:
        raise LexformerError(f"cannot read SWORD file {path}: {e.strerror}") from None


def _tiled_blocks(entries: np.ndarray, block_sizes: np.ndarray) -> int:
    """How many blocks the distinct non-empty entries cover exactly, end to end (as a real
    index does: a block is the concatenation of its entries' texts)."""
    used = np.unique(entries[entries["size"] > 0][["block", "offset", "size"]])
    tiled = 0
    for b in np.unique(used["block"]):
        e = used[used["block"] == b]  # sorted by offset (np.unique sorts)
        ends = e["offset"].astype(np.int64) + e["size"]
        if e["offset"][0] == 0 and (e["offset"][1:] == ends[:-1]).all() \
                and ends[-1] == block_sizes[b]:
            tiled += 1
    return tiled


def verse_entry_size(index: bytes, block_sizes: np.ndarray, prefer: int | None = None) -> int:
    """10 or 12: the verse-index entry size that fits the files.

    A size fits if it divides the file size and every entry points inside its block; if
    both fit, the one whose entries tile more blocks exactly wins, then ``prefer``, then 10.
    """
    scores = {}
    for size, dtype in _VERSE_DTYPES.items():
        if len(index) % size:
            continue
        entries = np.frombuffer(index, dtype=dtype)
        used = entries[entries["size"] > 0]
        if len(used) and (used["block"] >= len(block_sizes)).any():
            continue
        if len(used):
            end = used["offset"].astype(np.int64) + used["size"]
            if (end > block_sizes[used["block"]]).any():
                continue
        scores[size] = _tiled_blocks(entries, block_sizes) if len(used) else 0
    if not scores:
        raise CorruptModule(
            f"verse index of {len(index)} bytes fits neither 10- nor 12-byte entries")
    return max(scores, key=lambda size: (scores[size], size == prefer, size == 10))


def _block(blocks: np.ndarray, data: bytes, b: int, prefix: str) -> bytes:
    """Decompressed block ``b`` of ``prefix + "z"``, checked against the block index."""
    if b >= len(blocks):
        raise CorruptModule(f"{prefix}v points at block {b}, but there are {len(blocks)}")
    off, csize, size = (int(x) for x in blocks[b])
    try:
        raw = zlib.decompress(data[off:off + csize])
    except zlib.error as e:
        raise CorruptModule(f"block {b} of {prefix}z does not decompress ({e})") from None
    if len(raw) != size:
        raise CorruptModule(f"block {b} of {prefix}z has {len(raw)} bytes, index says {size}")
    return raw


def read_testament(prefix: str | os.PathLike, entry_size: int | None = None,
                   prefer: int | None = None) -> list[tuple[int, int, bytes]]:
    """Entries of one testament as (verse index, block number, raw bytes), in index order.

    ``prefix`` is the path without its last letter, e.g. ``.../ot.bz`` for
    ``ot.bzs``/``ot.bzv``/``ot.bzz``. Empty entries and repeats of an earlier
    ``(block, offset)`` are dropped.
    """
    prefix = os.fspath(prefix)
    blocks_raw = _read(Path(prefix + "s"))
    data = _read(Path(prefix + "z"))
    index = _read(Path(prefix + "v"))
    if len(blocks_raw) % 12:
        raise CorruptModule(f"{prefix}s has {len(blocks_raw)} bytes, not a multiple of 12")
    blocks = np.frombuffer(blocks_raw, dtype=_BLOCK_DTYPE)
    if entry_size is None:
        entry_size = verse_entry_size(index, blocks["size"].astype(np.int64), prefer)
    if len(index) % entry_size:
        raise CorruptModule(f"{prefix}v has {len(index)} bytes, not a multiple of {entry_size}")
    entries = np.frombuffer(index, dtype=_VERSE_DTYPES[entry_size])
    decompressed: dict[int, bytes] = {}
    out = []
    seen: set[tuple[int, int]] = set()
    for i, (b, off, size) in enumerate(entries.tolist()):
        if size == 0 or (b, off) in seen:
            continue
        seen.add((b, off))
        if b not in decompressed:
            decompressed[b] = _block(blocks, data, b, prefix)
        raw = decompressed[b]
        if off + size > len(raw):
            raise CorruptModule(f"entry {i} of {prefix}v runs past the end of block {b}")
        out.append((i, b, raw[off:off + size]))
    return out


def _testament_prefix(module_dir: Path, testament: str) -> str | None:
    """``module_dir/<testament>.?z`` if that testament has data (the Treasury of David's NT
    files exist but are empty)."""
    found = sorted(module_dir.glob(f"{testament}.?zs"))
    if not found:
        return None
    prefix = str(found[0])[:-1]
    if Path(prefix + "s").stat().st_size == 0 or \
            not all(Path(prefix + s).is_file() for s in "vz"):
        return None
    return prefix


def _block_texts(entries: list[tuple[int, int, bytes]]) -> list[tuple[int, str]]:
    """(block number, raw markup) per run of consecutive entries in the same block."""
    runs: list[tuple[int, list[bytes]]] = []
    for _, b, raw in entries:
        if runs and runs[-1][0] == b:
            runs[-1][1].append(raw)
        else:
            runs.append((b, [raw]))
    return [(b, " ".join(p.decode("utf-8", errors="replace") for p in parts))
            for b, parts in runs]


def read_sections(module_dir: str | os.PathLike, name: str = "",
                  prefer_entry_size: int | None = None) -> list[tuple[str, str]]:
    """(label, plain text) per block of a compressed module, OT then NT; empty ones dropped.

    The label is the first ``osisID`` in the block (``Gen``, ``Ps.23``) or ``ot7``.
    """
    module_dir = Path(module_dir)
    sections = []
    for testament in ("ot", "nt"):
        prefix = _testament_prefix(module_dir, testament)
        if prefix is None:
            continue
        try:
            entries = read_testament(prefix, prefer=prefer_entry_size)
        except CorruptModule as e:
            raise LexformerError(
                f"SWORD module {name or module_dir} is corrupt: {e}; delete the cache folder "
                f"{module_dir} and run again") from None
        for b, raw in _block_texts(entries):
            text = strip_osis(raw)
            if text:
                m = _OSIS_ID.search(raw)
                sections.append((m.group(1) if m else f"{testament}{b}", text))
    return sections


def _read_conf(path: Path) -> dict[str, str]:
    """The first section's name (as ``__name__``) and its first value of each key."""
    conf: dict[str, str] = {}
    text = path.read_text(encoding="utf-8", errors="replace")
    for line in text.splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        if line.startswith("[") and line.endswith("]") and "__name__" not in conf:
            conf["__name__"] = line[1:-1]
        elif "=" in line:
            key, value = line.split("=", 1)
            conf.setdefault(key.strip(), value.strip())
    return conf


def find_modules(library: str | os.PathLike) -> list[SwordModule]:
    """Compressed modules of a SWORD library folder (the one holding ``mods.d``), by conf name."""
    library = Path(library)
    modules = []
    for conf_path in sorted(library.glob("mods.d/*.conf")):
        conf = _read_conf(conf_path)
        data_path = conf.get("DataPath", "").lstrip("./")
        driver = conf.get("ModDrv", "")
        if not data_path or not driver.lower().startswith(("ztext", "zcom")):
            continue
        modules.append(SwordModule(conf.get("__name__", conf_path.stem),
                                   library / data_path, driver))
    return modules


__all__ = ["CorruptModule", "SwordModule", "find_modules", "read_sections", "read_testament",
           "verse_entry_size"]
