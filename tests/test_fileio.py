"""Atomic writes: readable by collaborators, never through a symlink, and the temp files a
kill leaves behind are found and removed by the next run."""

from __future__ import annotations

import os
import stat

import pytest

from lexformer.errors import LexformerError
from lexformer.fileio import (
    TEMP_PREFIX,
    TEMP_SUFFIX,
    atomic_write_text,
    atomic_write_with,
    remove_stale_temps,
)


@pytest.mark.parametrize("umask", [0o022, 0o077, 0o002])
def test_written_files_follow_the_umask_not_mkstemps_0600(tmp_path, umask):
    old = os.umask(umask)
    try:
        atomic_write_text(tmp_path / "report.md", "hello\n")
        plain = tmp_path / "plain.txt"
        plain.write_text("x")  # what open() gives under the same umask
    finally:
        os.umask(old)
    mode = stat.S_IMODE((tmp_path / "report.md").stat().st_mode)
    assert mode == stat.S_IMODE(plain.stat().st_mode) == 0o666 & ~umask


def test_a_symlink_at_the_path_is_replaced_not_followed(tmp_path):
    outside = tmp_path / "outside.txt"
    outside.write_text("the user's own file\n")
    link = tmp_path / "out" / "plot.png"
    link.parent.mkdir()
    link.symlink_to(outside)
    atomic_write_text(link, "new\n")
    assert outside.read_text() == "the user's own file\n"
    assert not link.is_symlink() and link.read_text() == "new\n"


def test_a_failing_writer_leaves_the_old_content_and_no_temp(tmp_path):
    path = tmp_path / "r.json"
    path.write_text("old")

    def boom(f):
        f.write(b"half")
        raise RuntimeError("killed")

    with pytest.raises(RuntimeError):
        atomic_write_with(path, boom)
    assert path.read_text() == "old"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["r.json"]


def test_stale_temps_of_a_killed_write_are_removed_and_nothing_else(tmp_path):
    (tmp_path / "eval").mkdir()
    stale = tmp_path / "eval" / f"{TEMP_PREFIX}xpos.json.abc123{TEMP_SUFFIX}"
    stale.write_text("{half")
    keep = [tmp_path / "eval" / "xpos.json", tmp_path / "notes.tmp", tmp_path / ".hidden"]
    for p in keep:
        p.write_text("keep")
    assert remove_stale_temps(tmp_path) == [stale]
    assert not stale.exists() and all(p.exists() for p in keep)
    assert remove_stale_temps(tmp_path / "missing") == []


def test_no_symlinked_folder_between_the_run_folder_and_a_file(tmp_path):
    from lexformer.fileio import ensure_no_symlinked_folder

    run, elsewhere = tmp_path / "run", tmp_path / "elsewhere"
    (run / "a").mkdir(parents=True)
    elsewhere.mkdir()
    (run / "a" / "b").symlink_to(elsewhere, target_is_directory=True)
    assert ensure_no_symlinked_folder(run, run / "a" / "f") == run / "a" / "f"
    assert ensure_no_symlinked_folder(run, run / "f") == run / "f"
    with pytest.raises(LexformerError, match=r"a/b is a symbolic link"):
        ensure_no_symlinked_folder(run, run / "a" / "b" / "c" / "f", "figure")
    # the run folder itself may be a link; a link at the file is atomic_write_with's to replace
    (tmp_path / "to-run").symlink_to(run, target_is_directory=True)
    assert ensure_no_symlinked_folder(tmp_path / "to-run", tmp_path / "to-run" / "a" / "f")
