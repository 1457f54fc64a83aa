"""The built-in ``sword`` corpus: King James Bible plus two public-domain commentaries.

Three Debian packages are fetched with ``apt-get download`` (no install, no root needed,
but the package lists must be present: ``apt-get update`` is never run automatically) and
unpacked with ``dpkg -x`` into the cache:

* ``sword-text-kjv`` — the King James Version (zText, ~4.3 M characters of text);
* ``sword-comm-mhcc`` — Matthew Henry's Concise Commentary (zCom);
* ``sword-comm-tdavid`` — Spurgeon's Treasury of David, on the Psalms (zCom).

The modules are read by :mod:`lexformer.data.sword_format`, which gives the plain text of
each block (a book for the BOOK-blocked KJV and MHCC, a psalm for the CHAPTER-blocked
Treasury of David) as a section. KJV: one document per book, short books merged with the
following ones until a document has at least 20 000 characters. Commentaries: sections
merged (or long ones cut at paragraph breaks) into documents of about 100 000 characters.
Each module's documents are split with the usual rule
(:func:`lexformer.data.corpus.split_index`), so every module is in every split.

The ``sword-long`` corpus (:func:`load_sword_long`) reads the same three modules for
long-context evaluation: each document is a contiguous run of one module's sections in order,
cut at the first section boundary where it reaches :data:`LONG_DOC_CHARS` (a short tail joins
the module's last document). The usual rule splits each module's documents, so document 0 of
every module is held out: the three modules give at least three test documents (checked).
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from pathlib import Path

from ..config import SPLITS
from ..errors import LexformerError
from ..fileio import atomic_write_text
from .cachedir import publish_folder, resolve_cache_dir, write_split_json
from .corpus import Corpus, Document, assign_splits, split_text
from .external import run_tool
from .sword_format import SwordModule, find_modules, read_sections

SWORD_PACKAGES = ("sword-text-kjv", "sword-comm-mhcc", "sword-comm-tdavid")
#: Documents are at least this long (shorter sections are merged).
MIN_DOC_CHARS = 20_000
#: Target document length for commentaries.
COMMENTARY_DOC_CHARS = 100_000
#: Bump when parsing or grouping changes, so that cached documents are rebuilt.
PARSER_VERSION = 1
#: ``sword-long`` documents reach this many characters: an 8·L run needs every test document
#: to hold 8·L = 65,536 tokens for L = 8192. Measured with SmolLM2's tokenizer: 4.1
#: characters a token on these texts; the shortest of the 40 documents has 96,352 tokens.
LONG_DOC_CHARS = 400_000
#: Fewest held-out ``sword-long`` documents: paired intervals over documents need several.
MIN_LONG_TEST_DOCS = 3
#: Bump when the ``sword-long`` grouping changes (its cache also follows PARSER_VERSION).
LONG_VERSION = 1


# --------------------------------------------------------------------------- documents


def _cut_long(sections: list[tuple[str, str]], target_chars: int | None
              ) -> list[tuple[str, str]]:
    """Sections longer than 1.5 × ``target_chars`` cut into pieces of about the target."""
    pieces: list[tuple[str, str]] = []
    for label, text in sections:
        if target_chars and len(text) > 1.5 * target_chars:
            parts = split_text(text, round(len(text) / target_chars))
            pieces += [(f"{label}#{k}", t) for k, t in enumerate(parts)]
        else:
            pieces.append((label, text))
    return pieces


def group_sections(module: str, sections: list[tuple[str, str]], min_chars: int = MIN_DOC_CHARS,
                   target_chars: int | None = None) -> list[Document]:
    """Documents from consecutive sections: each at least ``min_chars`` long (short sections
    merged with the next); with ``target_chars``, sections longer than 1.5 × target are cut
    and short ones merged until a document reaches the target."""
    threshold = max(min_chars, target_chars or 0)
    groups: list[list[tuple[str, str]]] = []
    current: list[tuple[str, str]] = []
    for piece in _cut_long(sections, target_chars):
        current.append(piece)
        if sum(len(t) for _, t in current) >= threshold:
            groups.append(current)
            current = []
    if current:  # a short tail joins the last group
        if groups and sum(len(t) for _, t in current) < min_chars:
            groups[-1] += current
        else:
            groups.append(current)
    docs = []
    for g in groups:
        label = g[0][0] if len(g) == 1 else f"{g[0][0]}..{g[-1][0]}"
        docs.append(Document(f"{module}/{label}", "\n\n".join(t for _, t in g)))
    return docs


def module_documents(module: SwordModule) -> list[Document]:
    """One module's documents (see the module docstring for the grouping)."""
    prefer = 12 if module.driver.endswith("4") else 10
    sections = read_sections(module.path, module.name, prefer_entry_size=prefer)
    target = COMMENTARY_DOC_CHARS if module.is_commentary else None
    return group_sections(module.name, sections, MIN_DOC_CHARS, target)


def long_documents(module: str, sections: list[tuple[str, str]],
                   target_chars: int | None = None) -> list[Document]:
    """``sword-long`` documents: runs of consecutive sections, each cut at the first section
    boundary where it holds ``target_chars`` (default :data:`LONG_DOC_CHARS`); a tail that
    falls short joins the last document, so only a module shorter than the target gives a
    shorter document. Never cut inside a section."""
    target = LONG_DOC_CHARS if target_chars is None else target_chars
    return group_sections(module, sections, min_chars=target)


def long_library_corpus(library: str | os.PathLike, name: str = "sword-long") -> Corpus:
    """The ``sword-long`` corpus of a SWORD library folder: every module's long documents
    split by :func:`~lexformer.data.corpus.split_index` (document 0 of each is test); fewer
    than :data:`MIN_LONG_TEST_DOCS` test documents is refused in one line."""
    splits: dict[str, list[Document]] = {s: [] for s in SPLITS}
    for module in _modules(library):
        prefer = 12 if module.driver.endswith("4") else 10
        sections = read_sections(module.path, module.name, prefer_entry_size=prefer)
        for split, docs in assign_splits(long_documents(module.name, sections)).items():
            splits[split] += docs
    if len(splits["test"]) < MIN_LONG_TEST_DOCS:
        raise LexformerError(
            f"{library} gives {len(splits['test'])} held-out {name} document(s), fewer than "
            f"{MIN_LONG_TEST_DOCS}: it needs the three modules of {', '.join(SWORD_PACKAGES)}; "
            "delete it and run again")
    return Corpus(name, splits)


def _modules(library: str | os.PathLike) -> list[SwordModule]:
    modules = find_modules(library)
    if not modules:
        raise LexformerError(f"no compressed SWORD modules (mods.d/*.conf with ModDrv zText/zCom) "
                             f"in {library}; delete it and run again")
    return modules


def library_corpus(library: str | os.PathLike, name: str = "sword") -> Corpus:
    """A corpus from every compressed module of a SWORD library folder; each module's
    documents are split by :func:`~lexformer.data.corpus.split_index`."""
    splits: dict[str, list[Document]] = {s: [] for s in SPLITS}
    for module in _modules(library):
        for split, docs in assign_splits(module_documents(module)).items():
            splits[split] += docs
    return Corpus(name, splits)


# --------------------------------------------------------------------------- fetching


def _download_packages(downloads: Path) -> list[Path]:
    """The newest ``.deb`` of each of :data:`SWORD_PACKAGES`, downloaded if absent."""
    downloads.mkdir(parents=True, exist_ok=True)
    debs = []
    for pkg in SWORD_PACKAGES:
        have = sorted(downloads.glob(f"{pkg}_*.deb"))
        if not have:
            failed = f"apt-get download {pkg} failed"
            hint = ("the package lists may be missing (run `apt-get update` as root), the "
                    "network may be down or apt unavailable; or use --corpus PATH")
            run_tool(["apt-get", "download", pkg], failed, hint, cwd=downloads)
            have = sorted(downloads.glob(f"{pkg}_*.deb"))
            if not have:
                raise LexformerError(f"{failed} (no {pkg}_*.deb was written); {hint}")
        debs.append(have[-1])
    return debs


def _unpack(debs: list[Path], root: Path) -> None:
    """``dpkg -x`` every package into ``root``, which appears complete or not at all."""
    tmp = Path(tempfile.mkdtemp(dir=root.parent, prefix=".root."))
    try:
        for deb in debs:
            run_tool(["dpkg", "-x", str(deb), str(tmp)], f"dpkg -x {deb.name} failed",
                     f"delete {deb} and run again to download it anew")
        publish_folder(tmp, root)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)


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
    _unpack(_download_packages(cache / "downloads" / "sword"), root)
    if not library.is_dir():
        raise LexformerError(f"the sword packages hold no usr/share/sword in {root}; delete "
                             f"{cache / 'sword'} and run again")
    return library


# --------------------------------------------------------------------------- entry point


def _read_parsed(path: Path, name: str, version) -> Corpus | None:
    """The documents cached by an earlier parse with this ``version``, if any."""
    if not path.is_file():
        return None
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
        if data.get("version") != version:
            return None
        return Corpus(name, {s: [Document(n, t) for n, t in data["splits"][s]]
                             for s in SPLITS})
    except (OSError, ValueError, KeyError, TypeError):
        return None  # unreadable: parse again


def _cached_corpus(cache_dir, file: str, name: str, version, build) -> Corpus:
    """``cache/sword/<file>`` if it holds this ``version``, else ``build(library)`` (the
    library fetched once) written there: parsing takes seconds, a cache read milliseconds."""
    cache = resolve_cache_dir(cache_dir)
    (cache / "sword").mkdir(parents=True, exist_ok=True)
    parsed = cache / "sword" / file
    cached = _read_parsed(parsed, name, version)
    if cached is not None:
        return cached
    corpus = build(fetch_sword_library(cache))
    data = {"version": version,
            "splits": {s: [[d.name, d.text] for d in corpus.splits[s]] for s in SPLITS}}
    atomic_write_text(parsed, json.dumps(data, ensure_ascii=False))
    write_split_json(cache, corpus)
    return corpus


def load_sword(cache_dir: str | os.PathLike | None = None) -> Corpus:
    """The ``sword`` corpus (downloads with apt-get on first use; the parsed documents are
    cached in ``cache/sword/documents.json``, as parsing takes a few seconds)."""
    return _cached_corpus(cache_dir, "documents.json", "sword", PARSER_VERSION,
                          lambda library: library_corpus(library, "sword"))


def load_sword_long(cache_dir: str | os.PathLike | None = None) -> Corpus:
    """The ``sword-long`` corpus: the same packages as ``sword`` (fetched once, shared),
    documents of at least :data:`LONG_DOC_CHARS` characters, cached in
    ``cache/sword/long-documents.json``."""
    return _cached_corpus(cache_dir, "long-documents.json", "sword-long",
                          [PARSER_VERSION, LONG_VERSION],
                          lambda library: long_library_corpus(library, "sword-long"))


__all__ = [
    "LONG_DOC_CHARS", "MIN_LONG_TEST_DOCS", "SWORD_PACKAGES", "fetch_sword_library",
    "group_sections", "library_corpus", "load_sword", "load_sword_long", "long_documents",
    "long_library_corpus", "module_documents",
]
