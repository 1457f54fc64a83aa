"""Progress bars only on a terminal, and tokens/s honest before it is measured."""

from __future__ import annotations

import io
import json

import pytest
from cli_harness import run_cli
from text_corpus import write_corpus

from lexformer import progress
from lexformer.train import _Clock, read_training_metrics


class _Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_no_bar_unless_asked_for_and_on_a_terminal(monkeypatch):
    monkeypatch.delenv(progress.FORCE_ENV, raising=False)
    monkeypatch.setattr("sys.stderr", io.StringIO())
    assert progress.progress_bar(3, "x") is None  # a log file or a pipe
    monkeypatch.setenv(progress.FORCE_ENV, "1")  # unless the user asks for bars in the log
    assert progress.bars_wanted() and not progress.bars_wanted(enabled=False)
    monkeypatch.delenv(progress.FORCE_ENV)
    monkeypatch.setattr("sys.stderr", _Terminal())
    assert progress.progress_bar(3, "x", enabled=False) is None
    bar = progress.progress_bar(3, "x", leave=False)
    assert bar is not None and bar.total == 3
    bar.close()


def test_progress_iter_yields_everything_with_or_without_a_bar(monkeypatch):
    for stream in (io.StringIO(), _Terminal()):
        monkeypatch.setattr("sys.stderr", stream)
        assert list(progress.progress_iter(range(4), "x")) == [0, 1, 2, 3]


def test_library_bars_silenced_off_a_terminal(monkeypatch):
    monkeypatch.setattr("sys.stderr", io.StringIO())
    monkeypatch.delenv(progress.FORCE_ENV, raising=False)
    monkeypatch.setenv("HF_HUB_DISABLE_PROGRESS_BARS", "0")  # restored after the test
    progress.quiet_library_bars(True)
    import os

    assert os.environ["HF_HUB_DISABLE_PROGRESS_BARS"] == "1"


def test_tokens_per_second_is_none_until_measured(monkeypatch):
    now = iter([0.0, 0.5, 1.0, 2.5, 3.0])
    monkeypatch.setattr("lexformer.train.time.perf_counter", lambda: next(now))
    clock = _Clock(tokens_per_step=100)          # start at 0.0
    assert clock.tick(last=False) is None        # 0.5 s: no window closed yet
    assert clock.tick(last=False) is None        # 1.0 s
    assert clock.tick(last=False) == pytest.approx(300 / 2.5)  # 2.5 s: the first window
    assert clock.final() == pytest.approx(300 / 2.5)


def test_training_through_a_pipe_draws_no_bar_and_logs_null_speeds(tmp_path):
    corpus = write_corpus(tmp_path / "texts", n_docs=6, words_per_doc=1500)
    proc = run_cli("train", "--preset", "smoke", "--corpus", corpus, "--tokenizer", "bytes",
                   "--tokens", str(8 * 64 * 2), "--threads", "1", "--out", tmp_path / "run",
                   env={"LEXFORMER_CACHE": str(tmp_path / "cache"), progress.FORCE_ENV: ""})
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "\r" not in proc.stderr and "it/s" not in proc.stderr
    lines = [json.loads(x) for x in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    speeds = [x["tokens_per_s"] for x in lines]
    assert all(s is None or s > 0 for s in speeds) and speeds[-1] is not None
    median_speed = read_training_metrics(tmp_path / "run")[1]  # the report's reader
    assert median_speed is not None and median_speed > 0
