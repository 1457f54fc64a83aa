"""The ``sword`` corpus: King James Bible plus two public-domain commentaries.

Three Debian packages are fetched with ``apt-get download`` (no install, no root needed,
but the package lists must be present: ``apt-get update`` is never run automatically) and
unpacked with ``dpkg -x`` into the cache:

* ``sword-text-kjv`` — the King James Version (zText, ~4.3 M characters of text);
* ``sword-comm-mhcc`` — Matthew Henry's Concise Commentary (zCom);
* ``sword-comm-tdavid`` — Spurgeon's Treasury of David, on the Psalms (zCom).

SWORD compressed modules (zText/zCom, and their 4-byte-size variants zText4/zCom4) store,
per testament (``ot``/``nt``) and with a block-type letter ``?`` (``b`` book, ``c``
chapter, ``v`` verse):

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

Markup (OSIS/ThML) is stripped: notes become a space, paragraph-like tags (``p``, ``div``,
``lg``, ``title``, ...) a blank line, line tags (``l``, ``br``, ``lb``, ...) a newline,
other tags are removed (their text kept) and entities unescaped.

Documents: the text of each block (a book for the BOOK-blocked KJV and MHCC, a psalm for
the CHAPTER-blocked Treasury of David) is a section. KJV: one document per book, short
books merged with the following ones until a document has at least 20 000 characters.
Commentaries: sections merged (or long ones cut at paragraph breaks) into documents of
about 100 000 characters. Each module's documents are split with the usual rule
(:func:`lexformer.data.corpora.split_index`), so every module is in every split.
"""

from __future__ import annotations

import html
import json
import os
import re
import shutil
import subprocess
import tempfile
import zlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..errors import LexformerError
from .corpora import (
    SPLITS,
    Corpus,
    Document,
    assign_splits,
    atomic_write_text,
    resolve_cache_dir,
    split_text,
    write_split_json,
)

SWORD_PACKAGES = ("sword-text-kjv", "sword-comm-mhcc", "sword-comm-tdavid")
#: Documents are at least this long (shorter sections are merged).
MIN_DOC_CHARS = 20_000
#: Target document length for commentaries.
COMMENTARY_DOC_CHARS = 100_000

_BLOCK_DTYPE = np.dtype([("offset", "<u4"), ("csize", "<u4"), ("size", "<u4")])
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


class _Corrupt(Exception):
    pass


# --------------------------------------------------------------------------- parsing


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
        raise _Corrupt(f"verse index of {len(index)} bytes fits neither 10- nor 12-byte entries")
    return max(scores, key=lambda size: (scores[size], size == prefer, size == 10))


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
        raise _Corrupt(f"{prefix}s has {len(blocks_raw)} bytes, not a multiple of 12")
    blocks = np.frombuffer(blocks_raw, dtype=_BLOCK_DTYPE)
    if entry_size is None:
        entry_size = verse_entry_size(index, blocks["size"].astype(np.int64), prefer)
    if len(index) % entry_size:
        raise _Corrupt(f"{prefix}v has {len(index)} bytes, not a multiple of {entry_size}")
    entries = np.frombuffer(index, dtype=_VERSE_DTYPES[entry_size])

    cache: dict[int, bytes] = {}

    def block(b: int) -> bytes:
        if b not in cache:
            if b >= len(blocks):
                raise _Corrupt(f"{prefix}v points at block {b}, but there are {len(blocks)}")
            off, csize, size = (int(x) for x in blocks[b])
            try:
                raw = zlib.decompress(data[off:off + csize])
            except zlib.error as e:
                raise _Corrupt(f"block {b} of {prefix}z does not decompress ({e})") from None
            if len(raw) != size:
                raise _Corrupt(f"block {b} of {prefix}z has {len(raw)} bytes, index says {size}")
            cache[b] = raw
        return cache[b]

    out = []
    seen: set[tuple[int, int]] = set()
    for i, (b, off, size) in enumerate(entries.tolist()):
        if size == 0 or (b, off) in seen:
            continue
        seen.add((b, off))
        raw = block(b)
        if off + size > len(raw):
            raise _Corrupt(f"entry {i} of {prefix}v runs past the end of block {b}")
        out.append((i, b, raw[off:off + size]))
    return out


_NOTE = re.compile(r"<note\b[^>]*/>|<note\b[^>]*>.*?</note\s*>", re.S | re.I)
_PARA_TAGS = {"p", "div", "lg", "title", "head", "chapter", "list", "table", "book"}
_LINE_TAGS = {"br", "lb", "l", "item", "row"}
_TAG = re.compile(r"<\s*(/?)\s*([A-Za-z][\w:.-]*)[^>]*>")


def _tag_replacement(m: re.Match) -> str:
    closing, name = m.group(1), m.group(2).lower()
    if name in _PARA_TAGS:
        return "\n\n"
    if name in _LINE_TAGS:
        return "" if closing else "\n"
    return ""


def strip_osis(raw: str) -> str:
    """Plain text of an OSIS/ThML fragment (see the module docstring)."""
    text = _NOTE.sub(" ", raw)
    text = _TAG.sub(_tag_replacement, text)
    text = re.sub(r"<[^>]*>", "", text)  # anything left that looks like a tag
    text = html.unescape(text)
    text = re.sub(r"[ \t\r\f\v\u00a0]+", " ", text)
    text = re.sub(r" ?\n ?", "\n", text)
    text = re.sub(r"\n{3,}", "\n\n", text)
    return text.strip()


_OSIS_ID = re.compile(r'osisID="([^"\s]+)')


def read_sections(module_dir: str | os.PathLike, name: str = "",
                  prefer_entry_size: int | None = None) -> list[tuple[str, str]]:
    """(label, plain text) per block of a compressed module, OT then NT; empty ones dropped.

    The label is the first ``osisID`` in the block (``Gen``, ``Ps.23``) or ``ot7``.
    """
    module_dir = Path(module_dir)
    sections = []
    for testament in ("ot", "nt"):
        found = sorted(module_dir.glob(f"{testament}.?zs"))
        if not found:
            continue
        prefix = str(found[0])[:-1]
        if Path(prefix + "s").stat().st_size == 0 or \
                not all(Path(prefix + s).is_file() for s in "vz"):
            continue
        try:
            entries = read_testament(prefix, prefer=prefer_entry_size)
        except _Corrupt as e:
            raise LexformerError(
                f"SWORD module {name or module_dir} is corrupt: {e}; delete the cache folder "
                f"{module_dir} and run again") from None
        runs: list[tuple[int, list[bytes]]] = []
        for _, b, raw in entries:
            if runs and runs[-1][0] == b:
                runs[-1][1].append(raw)
            else:
                runs.append((b, [raw]))
        for b, parts in runs:
            raw = " ".join(p.decode("utf-8", errors="replace") for p in parts)
            text = strip_osis(raw)
            if not text:
                continue
            m = _OSIS_ID.search(raw)
            sections.append((m.group(1) if m else f"{testament}{b}", text))
    return sections


def group_sections(module: str, sections: list[tuple[str, str]], min_chars: int = MIN_DOC_CHARS,
                   target_chars: int | None = None) -> list[Document]:
    """Documents from consecutive sections: each at least ``min_chars`` long (short sections
    merged with the next); with ``target_chars``, sections longer than 1.5 × target are cut
    and short ones merged until a document reaches the target."""
    pieces: list[tuple[str, str]] = []
    for label, text in sections:
        if target_chars and len(text) > 1.5 * target_chars:
            parts = split_text(text, round(len(text) / target_chars))
            pieces += [(f"{label}#{k}", t) for k, t in enumerate(parts)]
        else:
            pieces.append((label, text))
    threshold = max(min_chars, target_chars or 0)
    groups: list[list[tuple[str, str]]] = []
    current: list[tuple[str, str]] = []
    for piece in pieces:
        current.append(piece)
        if sum(len(t) for _, t in current) >= threshold:
            groups.append(current)
            current = []
    if current:
        if groups and sum(len(t) for _, t in current) < min_chars:
            groups[-1] += current
        else:
            groups.append(current)
    docs = []
    for g in groups:
        label = g[0][0] if len(g) == 1 else f"{g[0][0]}..{g[-1][0]}"
        docs.append(Document(f"{module}/{label}", "\n\n".join(t for _, t in g)))
    return docs


def _read_conf(path: Path) -> dict[str, str]:
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


def module_documents(module: SwordModule) -> list[Document]:
    """One module's documents (see the module docstring for the grouping)."""
    prefer = 12 if module.driver.endswith("4") else 10
    sections = read_sections(module.path, module.name, prefer_entry_size=prefer)
    target = COMMENTARY_DOC_CHARS if module.is_commentary else None
    return group_sections(module.name, sections, MIN_DOC_CHARS, target)


def library_corpus(library: str | os.PathLike, name: str = "sword") -> Corpus:
    """A corpus from every compressed module of a SWORD library folder; each module's
    documents are split by :func:`~lexformer.data.corpora.split_index`."""
    modules = find_modules(library)
    if not modules:
        raise LexformerError(f"no compressed SWORD modules (mods.d/*.conf with ModDrv zText/zCom) "
                             f"in {library}; delete it and run again")
    splits: dict[str, list[Document]] = {s: [] for s in SPLITS}
    for module in modules:
        for split, docs in assign_splits(module_documents(module)).items():
            splits[split] += docs
    return Corpus(name, splits)


# --------------------------------------------------------------------------- fetching


def _run(cmd: list[str], cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run(cmd, cwd=cwd, capture_output=True, text=True, timeout=900)


def _last_line(proc: subprocess.CompletedProcess) -> str:
    lines = [ln.strip() for ln in (proc.stderr + "\n" + proc.stdout).splitlines() if ln.strip()]
    errors = [ln for ln in lines if ln.startswith(("E:", "dpkg", "error"))]
    return ((errors or lines or ["no output"])[-1])[:200]


def fetch_sword_library(cache: Path) -> Path:
    """``cache/sword/root/usr/share/sword``: the three packages downloaded and unpacked once."""
    root = cache / "sword" / "root"
    library = root / "usr" / "share" / "sword"
    if library.is_dir():
        return library
    missing = [t for t in ("apt-get", "dpkg") if shutil.which(t) is None]
    if missing:
        raise LexformerError(
            f"the sword corpus needs a Debian-based machine with apt ({' and '.join(missing)} "
            f"not found); use another corpus or --corpus PATH")
    downloads = cache / "downloads" / "sword"
    downloads.mkdir(parents=True, exist_ok=True)
    debs = []
    for pkg in SWORD_PACKAGES:
        have = sorted(downloads.glob(f"{pkg}_*.deb"))
        if not have:
            try:
                proc = _run(["apt-get", "download", pkg], downloads)
            except (OSError, subprocess.TimeoutExpired) as e:
                raise LexformerError(f"apt-get download {pkg} failed ({e}); use --corpus PATH "
                                     f"instead") from None
            have = sorted(downloads.glob(f"{pkg}_*.deb"))
            if proc.returncode != 0 or not have:
                raise LexformerError(
                    f"apt-get download {pkg} failed ({_last_line(proc)}); the package lists may "
                    f"be missing (run `apt-get update` as root), the network may be down or apt "
                    f"unavailable; or use --corpus PATH")
        debs.append(have[-1])
    tmp = Path(tempfile.mkdtemp(dir=cache / "sword", prefix=".root."))
    try:
        for deb in debs:
            proc = _run(["dpkg", "-x", str(deb), str(tmp)], downloads)
            if proc.returncode != 0:
                raise LexformerError(f"dpkg -x {deb.name} failed ({_last_line(proc)}); delete "
                                     f"{deb} and run again to download it anew")
        try:
            os.replace(tmp, root)
        except OSError:
            if not root.is_dir():
                raise
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
    if not library.is_dir():
        raise LexformerError(f"the sword packages hold no usr/share/sword in {root}; delete "
                             f"{cache / 'sword'} and run again")
    return library


#: Bump when parsing or grouping changes, so that cached documents are rebuilt.
PARSER_VERSION = 1


def load_sword(cache_dir: str | os.PathLike | None = None) -> Corpus:
    """The ``sword`` corpus (downloads with apt-get on first use; the parsed documents are
    cached in ``cache/sword/documents.json``, as parsing takes a few seconds)."""
    cache = resolve_cache_dir(cache_dir)
    (cache / "sword").mkdir(parents=True, exist_ok=True)
    parsed = cache / "sword" / "documents.json"
    if parsed.is_file():
        try:
            data = json.loads(parsed.read_text(encoding="utf-8"))
            if data.get("version") == PARSER_VERSION:
                return Corpus("sword", {s: [Document(n, t) for n, t in data["splits"][s]]
                                        for s in SPLITS})
        except (OSError, ValueError, KeyError, TypeError):
            pass  # unreadable: parse again
    corpus = library_corpus(fetch_sword_library(cache), "sword")
    data = {"version": PARSER_VERSION,
            "splits": {s: [[d.name, d.text] for d in corpus.splits[s]] for s in SPLITS}}
    atomic_write_text(parsed, json.dumps(data, ensure_ascii=False))
    write_split_json(cache, corpus)
    return corpus


__all__ = [
    "SWORD_PACKAGES", "SwordModule", "find_modules", "group_sections", "library_corpus",
    "load_sword", "module_documents", "read_sections", "read_testament", "strip_osis",
    "verse_entry_size",
]
