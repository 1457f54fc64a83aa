"""Files from someone else never run code: a crafted ``train_state.pt`` on resume, a Hugging
Face folder with its own Python, and weights that would be silently random. Each payload is
real: loading it the unsafe way would create a marker file, and the tests assert it is absent.
"""

from __future__ import annotations

import random
from pathlib import Path

import numpy as np
import pytest
import torch
from cli_harness import assert_clean_failure, run_cli
from text_corpus import write_corpus

from lexformer import LexformerError
from lexformer.checkpoint import STATE_FILE, load_train_state
from lexformer.presets import from_preset
from lexformer.train import train

TOKENS = 8 * 64 * 6


class _WritesMarker:
    """Unpickling this calls ``open(marker, "w")``: the file appears iff the pickle ran."""

    def __init__(self, marker: Path) -> None:
        self.marker = str(marker)

    def __reduce__(self):
        return (open, (self.marker, "w"))


@pytest.fixture(scope="module")
def unfinished_run(tmp_path_factory) -> tuple[Path, Path, dict[str, str]]:
    """(corpus, run folder stopped after 2 of 6 steps, CLI env with its cache)."""
    base = tmp_path_factory.mktemp("sec")
    corpus = write_corpus(base / "texts")
    env = {"LEXFORMER_CACHE": str(base / "cache")}
    cfg = from_preset("smoke", corpus=str(corpus), tokenizer="bytes", tokens=TOKENS)
    train(cfg, base / "run", progress=False, threads=1, cache_dir=env["LEXFORMER_CACHE"],
          stop_after_steps=2)
    return corpus, base / "run", env


def _resume_cli(corpus: Path, run: Path, env: dict[str, str]):
    return run_cli("train", "--preset", "smoke", "--corpus", corpus, "--tokenizer", "bytes",
                   "--tokens", TOKENS, "--threads", "1", "--out", run, "--no-progress",
                   "--resume", env=env)


def _copy_run(run: Path, to: Path) -> Path:
    import shutil

    shutil.copytree(run, to, symlinks=True)
    return to


def test_a_saved_train_state_loads_with_plain_weights_only(unfinished_run):
    """No allowlist needed: what lexformer writes is tensors, lists, dicts and numbers."""
    _, run, _ = unfinished_run
    state = torch.load(run / "checkpoint" / STATE_FILE, weights_only=True)
    assert state["step"] == 2 and isinstance(state["rng"]["python"], list)
    assert torch.is_tensor(state["rng"]["numpy"]["key"])


def test_a_crafted_train_state_never_runs_on_resume(unfinished_run, tmp_path):
    corpus, run, env = unfinished_run
    run = _copy_run(run, tmp_path / "run")
    marker = tmp_path / "PWNED"
    state_file = run / "checkpoint" / STATE_FILE
    state = torch.load(state_file, weights_only=True)
    state["optimizer"] = _WritesMarker(marker)
    torch.save(state, state_file)
    proc = _resume_cli(corpus, run, env)
    assert_clean_failure(proc, STATE_FILE, "resume is refused", "the model itself still loads")
    assert len(proc.stderr.strip().splitlines()) == 1, proc.stderr
    assert not marker.exists()
    # the same file read by the library: refused too, still without running
    with pytest.raises(LexformerError, match="older lexformer in an unsafe format"):
        load_train_state(run)
    assert not marker.exists()
    torch.load(state_file, weights_only=False)  # the payload is real: the unsafe load runs it
    assert marker.exists()


def _as_legacy(state: dict) -> dict:
    """The RNG states as lexformer wrote them before: numpy's legacy tuple (with an array)
    and Python's tuple, restored to the saved values."""
    np_state = state["rng"]["numpy"]
    py = state["rng"]["python"]
    legacy = dict(state)
    legacy["rng"] = dict(state["rng"],
                         numpy=(np_state["bit_generator"],
                                np_state["key"].numpy().astype(np.uint32), np_state["pos"],
                                np_state["has_gauss"], np_state["gauss"]),
                         python=(py[0], tuple(py[1]), py[2]))
    return legacy


def test_an_old_train_state_resumes_where_a_safe_load_can_read_it(unfinished_run, tmp_path):
    corpus, run, env = unfinished_run
    old = _copy_run(run, tmp_path / "old")
    state_file = old / "checkpoint" / STATE_FILE
    state = torch.load(state_file, weights_only=True)
    torch.save(_as_legacy(state), state_file)
    proc = _resume_cli(corpus, old, env)
    assert proc.returncode == 0, proc.stderr[-2000:]
    new = _copy_run(run, tmp_path / "new")
    assert _resume_cli(corpus, new, env).returncode == 0
    a = (old / "checkpoint" / "model.safetensors").read_bytes()
    assert a == (new / "checkpoint" / "model.safetensors").read_bytes()


def test_an_old_train_state_with_other_objects_is_refused_in_one_line(unfinished_run,
                                                                       tmp_path):
    corpus, run, env = unfinished_run
    run = _copy_run(run, tmp_path / "run")
    state_file = run / "checkpoint" / STATE_FILE
    state = torch.load(state_file, weights_only=True)
    state["rng"]["numpy"] = np.random.RandomState(0)  # a numpy object, not an array
    state["rng"]["python"] = random.Random(0)
    torch.save(state, state_file)
    proc = _resume_cli(corpus, run, env)
    assert_clean_failure(proc, "older lexformer in an unsafe format", "resume is refused")
