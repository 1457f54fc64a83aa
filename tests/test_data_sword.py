"""Tests of the SWORD reader (lexformer.data.sword_format) and the ``sword`` corpus built from
it (lexformer.data.sword), on synthetic modules; downloads are faked."""

from __future__ import annotations

import struct
import subprocess
import zlib
from pathlib import Path

import numpy as np
import pytest

from lexformer.data import load_corpus, resolve_source, sword_format
from lexformer.data import sword as sword_mod
from lexformer.data.text import strip_osis
from lexformer.errors import LexformerError


def write_testament(prefix: Path, blocks: list[list[str]], entry_size: int,
                    extra: list[tuple[int, int, int]] = ()) -> list[tuple[int, int, int]]:
    """A synthetic compressed testament: files prefix+'s'/'z'/'v'. Returns the verse index
    (with a leading empty entry, a repeat of every entry and the ``extra`` ones)."""
    bzs, bzz, index = b"", b"", [(0, 0, 0)]
    for b, entries in enumerate(blocks):
        raw = b""
        for text in entries:
            data = text.encode()
            index.append((b, len(raw), len(data)))
            index.append((b, len(raw), len(data)))  # commentary-style repeated pointer
            raw += data
        comp = zlib.compress(raw)
        bzs += struct.pack("<III", len(bzz), len(comp), len(raw))
        bzz += comp
    index += list(extra)
    fmt = "<IIH" if entry_size == 10 else "<III"
    prefix.parent.mkdir(parents=True, exist_ok=True)
    Path(str(prefix) + "s").write_bytes(bzs)
    Path(str(prefix) + "z").write_bytes(bzz)
    Path(str(prefix) + "v").write_bytes(b"".join(struct.pack(fmt, *e) for e in index))
    return index


BLOCKS = [
    ['<div osisID="Gen" type="book"/><title type="main">Genesis</title>',
     'In the <w lemma="H7225">beginning</w> God created.<note type="x">a note</note>',
     'And the earth &amp; the sea.<div eID="p1" type="x-p"/>'],
    ['<div osisID="Exod" type="book"/>Now these <l>line one</l><l>line two</l>',
     'Names &lt;here&gt;.<br/>Next'],
]


@pytest.mark.parametrize("entry_size", [10, 12])
def test_sword_testament_both_index_sizes(tmp_path, entry_size):
    prefix = tmp_path / "ot.bz"
    index = write_testament(prefix, BLOCKS, entry_size)
    entries = sword_format.read_testament(prefix)  # entry size detected from the files
    assert [raw.decode() for _, _, raw in entries] == [t for blk in BLOCKS for t in blk]
    assert len(index) == 11 and len(entries) == 5  # empty entry and repeats dropped
    assert [b for _, b, _ in entries] == [0, 0, 0, 1, 1]
    assert [i for i, _, _ in entries] == [1, 3, 5, 7, 9]  # first of each repeated pair


def test_sword_entry_size_tie_resolved_by_validity(tmp_path):
    # 5 entries of 12 bytes = 60 bytes = 6 entries of 10 bytes: only 12 points inside blocks
    prefix = tmp_path / "ot.cz"
    write_testament(prefix, [["abc", "defg"]], 12)
    vdata = Path(str(prefix) + "v").read_bytes()
    assert len(vdata) == 60
    sizes = np.array([7], dtype=np.int64)
    assert sword_format.verse_entry_size(vdata, sizes) == 12
    assert sword_format.verse_entry_size(vdata, sizes, prefer=10) == 12
    with pytest.raises(sword_format.CorruptModule):
        sword_format.verse_entry_size(b"\x00" * 7, sizes)


def test_strip_osis():
    raw = ('<title>Psalm 1</title><div sID="a" type="x-p"/>Blessed <hi type="italic">is'
           '</hi> the man<note placement="foot">Heb. happy</note> that &quot;walketh&quot;.'
           '<lg><l>one</l><l>two</l></lg>end<br/>x')
    assert strip_osis(raw) == (
        'Psalm 1\n\nBlessed is the man that "walketh".\n\none\ntwo\n\nend\nx')


def test_sword_library_and_grouping(tmp_path):
    lib = tmp_path / "share" / "sword"
    (lib / "mods.d").mkdir(parents=True)
    (lib / "mods.d" / "kjv.conf").write_text(
        "[KJVT]\nDataPath=./modules/texts/ztext/kjvt/\nModDrv=zText\nEncoding=UTF-8\n")
    (lib / "mods.d" / "comm.conf").write_text(
        "[CommT]\nDataPath=./modules/comments/zcom/commt/\nModDrv=zCom4\nModDrv=zText\n")
    (lib / "mods.d" / "dict.conf").write_text("[Dict]\nDataPath=./x/\nModDrv=zLD\n")
    write_testament(lib / "modules/texts/ztext/kjvt/ot.bz", BLOCKS, 10)
    write_testament(lib / "modules/texts/ztext/kjvt/nt.bz", [["<div osisID='Matt'/>Matthew"]],
                    10)
    write_testament(lib / "modules/comments/zcom/commt/ot.cz", BLOCKS, 12)
    for suffix in "szv":  # empty NT, as in the Treasury of David
        (lib / f"modules/comments/zcom/commt/nt.cz{suffix}").write_bytes(b"")
    modules = sword_format.find_modules(lib)
    assert [(m.name, m.driver, m.is_commentary) for m in modules] == [
        ("CommT", "zCom4", True), ("KJVT", "zText", False)]
    sections = sword_format.read_sections(modules[1].path)
    assert [label for label, _ in sections] == ["Gen", "Exod", "nt0"]
    assert sections[0][1] == "Genesis\n\nIn the beginning God created. And the earth & the sea."
    docs = sword_mod.group_sections("K", sections, min_chars=40)
    assert [d.name for d in docs] == ["K/Gen", "K/Exod..nt0"]  # short tail merged
    corpus = sword_mod.library_corpus(lib)
    assert [d.name for d in corpus.splits["test"]] == ["CommT/Gen..Exod", "KJVT/Gen..nt0"]


def test_sword_group_sections_cuts_long_commentary():
    sections = [("Ps.1", "para. " * 10 + "\n\n" + "word " * 2000), ("Ps.2", "short")]
    docs = sword_mod.group_sections("C", sections, min_chars=100, target_chars=3000)
    assert [d.name for d in docs] == ["C/Ps.1#0", "C/Ps.1#1", "C/Ps.1#2..Ps.2"]
    assert all(len(d.text) >= 100 for d in docs)


def test_sword_needs_apt(tmp_path, monkeypatch):
    monkeypatch.setattr(sword_mod.shutil, "which", lambda name: None)
    with pytest.raises(LexformerError, match="Debian-based machine with apt"):
        load_corpus("sword", cache_dir=tmp_path)


def test_sword_download_failure(tmp_path, monkeypatch):
    monkeypatch.setattr(sword_mod.shutil, "which", lambda name: f"/usr/bin/{name}")
    monkeypatch.setattr(subprocess, "run", lambda cmd, **kw: subprocess.CompletedProcess(
        cmd, 100, "", "E: Unable to locate package sword-text-kjv\n"))
    with pytest.raises(LexformerError,
                       match=r"apt-get download sword-text-kjv failed \(E: Unable to locate.*"
                             r"apt-get update"):
        load_corpus("sword", cache_dir=tmp_path)


def _fake_library(root: Path, modules: int = 3, books: int = 9) -> Path:
    """A SWORD library of ``modules`` zText modules, each of ``books`` books of ~480 characters
    (the fake modules above, with more blocks)."""
    lib = root / "share" / "sword"
    (lib / "mods.d").mkdir(parents=True)
    for m in range(modules):
        (lib / "mods.d" / f"m{m}.conf").write_text(
            f"[Mod{m}]\nDataPath=./modules/texts/ztext/m{m}/\nModDrv=zText\n")
        blocks = [[f'<div osisID="B{b}" type="book"/>' + f"m{m} book {b} text. " * 30]
                  for b in range(books)]
        write_testament(lib / f"modules/texts/ztext/m{m}/ot.bz", blocks, 10)
    return lib


def test_sword_long_documents_are_whole_sections_past_the_target():
    sections = [(f"S{i}", "x" * (100 + 10 * i)) for i in range(11)]
    docs = sword_mod.long_documents("M", sections, target_chars=300)
    # in order, each a run of whole sections cut once it holds 300 characters
    assert "\n\n".join(d.text for d in docs) == "\n\n".join(t for _, t in sections)
    assert all(len(d.text) >= 300 for d in docs)
    assert [d.name for d in docs] == ["M/S0..S2", "M/S3..S5", "M/S6..S7",
                                      "M/S8..S10"]  # the short tail S10 joins the last one
    assert sword_mod.long_documents("M", sections, target_chars=300) == docs  # deterministic
    assert sword_mod.LONG_DOC_CHARS >= 400_000  # ~100k SmolLM2 tokens, past 8 x 8192


def test_sword_long_corpus_splits_and_at_least_three_test_documents(tmp_path, monkeypatch):
    monkeypatch.setattr(sword_mod, "LONG_DOC_CHARS", 1000)
    lib = _fake_library(tmp_path)
    corpus = sword_mod.long_library_corpus(lib)
    # 9 books of ~480 characters: 3 documents of 3 books per module, the first one test
    names = {s: [d.name for d in corpus.splits[s]] for s in ("train", "validation", "test")}
    assert names["test"] == ["Mod0/B0..B2", "Mod1/B0..B2", "Mod2/B0..B2"]
    assert names["validation"] == []  # a module needs five documents for index 4
    assert names["train"] == [f"Mod{m}/B{b}..B{b + 2}" for m in range(3) for b in (3, 6)]
    assert all(len(d.text) >= 1000 for s in corpus.splits.values() for d in s)
    again = sword_mod.long_library_corpus(lib)
    assert again.fingerprint == corpus.fingerprint


def test_sword_long_refuses_fewer_than_three_test_documents(tmp_path, monkeypatch):
    monkeypatch.setattr(sword_mod, "LONG_DOC_CHARS", 1000)
    lib = _fake_library(tmp_path, modules=2)
    with pytest.raises(LexformerError, match="2 held-out sword-long document.*fewer than 3"):
        sword_mod.long_library_corpus(lib)


def test_sword_long_is_registered_and_cached_once(tmp_path, monkeypatch):
    """Built from the library once, then read from ``cache/sword/long-documents.json``; a
    cache of another version is rebuilt."""
    monkeypatch.setattr(sword_mod, "LONG_DOC_CHARS", 1000)
    lib = _fake_library(tmp_path / "lib")
    fetched = []
    monkeypatch.setattr(sword_mod, "fetch_sword_library",
                        lambda cache: fetched.append(cache) or lib)
    first = load_corpus("sword-long", cache_dir=tmp_path / "cache")
    second = load_corpus("sword-long", cache_dir=tmp_path / "cache")
    assert len(fetched) == 1 and second.fingerprint == first.fingerprint
    assert first.name == "sword-long" and len(first.splits["test"]) == 3
    assert resolve_source("sword-long").builtin  # held-out split by default; `all` refused
    cached = tmp_path / "cache" / "sword" / "long-documents.json"
    cached.write_text(cached.read_text().replace('"version": [1, 1]', '"version": [1, 0]'))
    load_corpus("sword-long", cache_dir=tmp_path / "cache")
    assert len(fetched) == 2
