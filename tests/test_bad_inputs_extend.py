"""Every bad input to ``lexformer extend``, through the real CLI: exit code 2, one line naming
the problem, no traceback, and all before the model is fetched or loaded (the default model,
smollm2, would be downloaded into an empty cache: the cache stays empty)."""

from __future__ import annotations

import os

import pytest
from cli_harness import assert_clean_failure, run_cli, tree_hashes


@pytest.fixture()
def place(tmp_path):
    """An empty model cache, a plain file, and --out folders with a wrong entry in them."""
    (tmp_path / "afile").write_text("not a folder\n")
    for run, entry, is_file in (("eval_is_file", "eval", True),
                                ("report_is_folder", "report.md", False),
                                ("plots_is_file", "plots", True),
                                ("stage_is_folder", "eval/yarn.json", False)):
        path = tmp_path / run / entry
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text("x\n") if is_file else path.mkdir()
    return tmp_path


CASES = [
    ("full_up_to_inf", ["--full-up-to", "inf"], ["--full-up-to", "finite", "inf"]),
    ("full_up_to_nan", ["--full-up-to", "nan"], ["--full-up-to", "nan"]),
    ("unknown_method", ["--methods", "full,warp-drive"], ["unknown attention method",
                                                          "warp-drive"]),
    ("block_zero", ["--method-options", "block=0"], ["block", "must be positive"]),
    ("window_negative", ["--method-options", "window=-1"], ["window", "must be positive"]),
    ("unknown_knob", ["--method-options", "blok=3"], ["blok", "block"]),
    ("out_is_a_file", ["--out", "{base}/afile"], ["afile", "not a folder"]),
    ("eval_is_a_file", ["--out", "{base}/eval_is_file"], ["eval", "not a folder"]),
    ("plots_is_a_file", ["--out", "{base}/plots_is_file"], ["plots", "not a folder"]),
    ("report_is_a_folder", ["--out", "{base}/report_is_folder"], ["report.md", "folder"]),
    ("stage_is_a_folder", ["--out", "{base}/stage_is_folder"], ["yarn.json", "folder"]),
    ("device_absent", ["--device", "cuda:0"], ["cuda:0", "not available"]),
    ("device_unknown", ["--device", "tpu"], ["unknown device", "tpu"]),
    ("dtype_unknown", ["--dtype", "int8"], ["unknown dtype", "int8"]),
    ("fp16_on_cpu", ["--dtype", "fp16"], ["fp16", "cpu"]),
]


@pytest.mark.parametrize("name,extra,words", CASES, ids=[c[0] for c in CASES])
def test_bad_inputs_fail_before_the_model_is_fetched(place, name, extra, words):
    extra = [a.format(base=place) for a in extra]
    if "--out" not in extra:
        extra += ["--out", str(place / "run")]
    before = tree_hashes(place)
    cache = place / "empty-cache"
    proc = run_cli("extend", "--no-progress", *extra,
                   env={"LEXFORMER_CACHE": str(cache), "HF_HOME": str(place / "hf-home")})
    assert_clean_failure(proc, *words)
    assert len(proc.stderr.strip().splitlines()) == 1, proc.stderr
    assert not cache.exists() and not (place / "hf-home").exists()  # nothing fetched
    assert tree_hashes(place) == before and not (place / "run").exists()


@pytest.mark.skipif(os.geteuid() == 0, reason="root may write anywhere")
def test_unwritable_out_is_refused_before_the_model_is_fetched(tmp_path):
    locked = tmp_path / "locked"
    locked.mkdir()
    locked.chmod(0o555)
    try:
        proc = run_cli("extend", "--out", str(locked / "run"),
                       env={"LEXFORMER_CACHE": str(tmp_path / "cache")})
    finally:
        locked.chmod(0o755)
    assert_clean_failure(proc, "not writable")
    assert not (tmp_path / "cache").exists()
