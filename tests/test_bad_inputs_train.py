"""Every bad input to ``lexformer train``, through the real CLI: exit code 2, one line naming
the problem, no traceback, and nothing already on disk changed — all before any work. And
the resumes that must not fail: a finished run is left alone, a killed save is cleaned up."""

from __future__ import annotations

import errno
import os
import shutil

import pytest
import torch
from cli_harness import assert_clean_failure, run_cli, tree_hashes
from text_corpus import write_corpus

from lexformer import cli
from lexformer.checkpoint import CONFIG_FILE, MODEL_FILE, STATE_FILE
from lexformer.presets import from_preset
from lexformer.train import train

STEP_TOKENS = 8 * 64  # one smoke step


@pytest.fixture(scope="module")
def place(tmp_path_factory):
    """A corpus, a plain file, a run stopped after 1 of 3 steps, a finished 1-step run."""
    base = tmp_path_factory.mktemp("bad_train")
    corpus = write_corpus(base / "texts", n_docs=6, words_per_doc=1500)
    (base / "afile").write_text("not a folder\n")
    cache = base / "cache"
    for run, tokens, stop in (("stopped", 3 * STEP_TOKENS, 1), ("finished", STEP_TOKENS, None)):
        cfg = from_preset("smoke", corpus=str(corpus), tokenizer="bytes",
                                      tokens=tokens)
        train(cfg, base / run, progress=False, stop_after_steps=stop, threads=1,
              cache_dir=str(cache))
    return base, {"LEXFORMER_CACHE": str(cache)}


def _args(base, out: str, tokens: int = 3 * STEP_TOKENS, *extra: str) -> list[str]:
    return ["train", "--preset", "smoke", "--corpus", str(base / "texts"), "--tokenizer",
            "bytes", "--tokens", str(tokens), "--threads", "1", "--no-progress",
            "--out", str(base / out), *extra]


OPTION_CASES = [
    ("grad_accum_zero", ["--grad-accum", "0"], ["--grad-accum", "positive integer"]),
    ("batch_size_zero", ["--batch-size", "0"], ["--batch-size", "positive integer"]),
    ("tokens_zero", ["--tokens", "0"], ["--tokens", "positive integer"]),
    ("negative_lr", ["--lr", "-1"], ["--lr", "> 0"]),
    ("negative_threads", ["--threads", "-1"], ["--threads", "positive integer"]),
    ("zero_train_length", ["--train-length", "0"], ["--train-length", "positive integer"]),
    ("odd_train_length", ["--train-length", "63"], ["train_length", "even"]),
    ("tiny_vocabulary", ["--vocab-size", "1"], ["--vocab-size", "at least 256"]),
    ("unknown_device", ["--device", "foo"], ["device", "foo"]),
    ("negative_seed", ["--seed", "-1"], ["seed", ">= 0"]),
    ("seed_past_numpy", ["--seed", "4294967296"], ["seed", "4294967295"]),
    pytest.param("no_cuda", ["--device", "cuda"], ["cuda", "not available"],
                 marks=pytest.mark.skipif(torch.cuda.is_available(), reason="CUDA present")),
]


@pytest.mark.parametrize("name,extra,words", OPTION_CASES)
def test_bad_options_fail_before_any_work(place, name, extra, words):
    base, env = place
    before = tree_hashes(base / "cache")
    proc = run_cli(*_args(base, f"out_{name}"), *extra, env=env)
    assert_clean_failure(proc, *words)
    assert not (base / f"out_{name}").exists()
    assert tree_hashes(base / "cache") == before


@pytest.mark.parametrize("out,words", [
    ("afile", ["afile", "not a folder"]),
    ("afile/run", ["afile", "is a file"]),
])
def test_unusable_output_folders_fail_before_data_preparation(place, out, words):
    base, env = place
    before = tree_hashes(base / "afile")
    proc = run_cli(*_args(base, out), env={"LEXFORMER_CACHE": str(base / "fresh_cache")})
    assert_clean_failure(proc, *words)
    assert tree_hashes(base / "afile") == before
    assert not (base / "fresh_cache").exists()  # no data was prepared


@pytest.mark.skipif(os.geteuid() == 0, reason="root may write anywhere")
def test_output_folder_without_write_permission(place, tmp_path):
    base, env = place
    locked = tmp_path / "locked"
    locked.mkdir()
    locked.chmod(0o555)
    try:
        proc = run_cli(*_args(base, str(locked / "run")), env=env)
    finally:
        locked.chmod(0o755)
    assert_clean_failure(proc, "not writable")


def _copy_run(base, name: str, tmp_path):
    run = tmp_path / name
    shutil.copytree(base / name, run, symlinks=True)
    return run


def _damage_state(ckpt):
    (ckpt / STATE_FILE).write_bytes(b"PK\x03\x04 truncated")


def _damage_weights(ckpt):
    data = (ckpt / MODEL_FILE).read_bytes()
    (ckpt / MODEL_FILE).write_bytes(data[: len(data) // 3])


def _drop_step(ckpt):
    text = (ckpt / CONFIG_FILE).read_text().replace('"step"', '"stepp"')
    (ckpt / CONFIG_FILE).write_text(text)


@pytest.mark.parametrize("name,damage,extra,words", [
    ("other_settings", None, ["--lr", "0.01", "--seed", "3", "--position", "rope",
                              "--tokens", str(5 * STEP_TOKENS)],
     ["cannot resume", "optim.lr", "seed", "model.position", "tokens"]),
    ("damaged_state", _damage_state, [], [STATE_FILE, "cannot read"]),
    ("damaged_weights", _damage_weights, [], [MODEL_FILE, "cannot read"]),
    ("config_without_step", _drop_step, [], [CONFIG_FILE, "step"]),
])
def test_bad_resumes_are_refused_and_change_nothing(place, tmp_path, name, damage, extra,
                                                    words):
    base, env = place
    run = _copy_run(base, "stopped", tmp_path)
    if damage is not None:
        damage((run / "checkpoint").resolve())
    before = tree_hashes(run)
    proc = run_cli(*_args(base, str(run), 3 * STEP_TOKENS, "--resume"), *extra, env=env)
    assert_clean_failure(proc, *words)
    assert tree_hashes(run) == before


def test_resume_on_an_edited_corpus_is_refused(tmp_path):
    """config.json records the corpus fingerprint; a user folder edited between the runs
    is noticed on --resume, named, and nothing in the run changes."""
    corpus = write_corpus(tmp_path / "texts", n_docs=6, words_per_doc=1500)
    cache = tmp_path / "cache"
    cfg = from_preset("smoke", corpus=str(corpus), tokenizer="bytes", tokens=3 * STEP_TOKENS)
    train(cfg, tmp_path / "run", progress=False, stop_after_steps=1, threads=1,
          cache_dir=str(cache))
    doc = sorted(corpus.iterdir())[0]
    doc.write_text(doc.read_text().replace("king", "queen", 1))
    before = tree_hashes(tmp_path / "run")
    proc = run_cli(*_args(tmp_path, "run", 3 * STEP_TOKENS, "--resume"),
                   env={"LEXFORMER_CACHE": str(cache)})
    assert_clean_failure(proc, "cannot resume", str(corpus), "not the text it was trained on")
    assert len(proc.stderr.strip().splitlines()) == 1, proc.stderr
    assert tree_hashes(tmp_path / "run") == before


def test_resume_of_a_finished_run_is_a_no_op(place, tmp_path):
    base, env = place
    run = _copy_run(base, "finished", tmp_path)
    before = tree_hashes(run)
    proc = run_cli(*_args(base, str(run), STEP_TOKENS, "--resume"), env=env)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "nothing to do" in proc.stdout and "Traceback" not in proc.stderr
    assert tree_hashes(run) == before


def test_resume_clears_a_killed_save_and_finishes(place, tmp_path):
    base, env = place
    run = _copy_run(base, "stopped", tmp_path)
    partial = run / "checkpoints" / "step-0000002.partial"
    partial.mkdir()
    (partial / MODEL_FILE).write_bytes(b"half written")
    proc = run_cli(*_args(base, str(run), 3 * STEP_TOKENS, "--resume"), env=env)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "done: step 3/3" in proc.stdout
    assert sorted(p.name for p in (run / "checkpoints").iterdir()) == ["step-0000003"]


@pytest.mark.parametrize("error,words", [
    (OSError(errno.ENOSPC, "No space left on device", "runs/x/model.safetensors"),
     ["No space left", "runs/x/model.safetensors"]),
    (PermissionError(errno.EACCES, "Permission denied", "runs/x"), ["Permission denied"]),
    (IsADirectoryError(errno.EISDIR, "Is a directory", "runs/x/metrics.jsonl"),
     ["Is a directory"]),
])
def test_os_errors_during_work_are_one_line(monkeypatch, capsys, tmp_path, error, words):
    def fail(*args, **kwargs):
        raise error

    monkeypatch.setattr("lexformer.train.train", fail)
    assert cli.main(["train", "--out", str(tmp_path / "run")]) == 2
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1 and err.startswith("lexformer: error:")
    assert all(w in err for w in words), err
