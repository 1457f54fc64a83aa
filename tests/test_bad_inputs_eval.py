"""Every bad input to eval, generate, analyze and reproduce: exit code 2, one line naming
the problem, no traceback, and nothing on disk changed — all before any work.

The whole table runs through the CLI's entry point in this process (a subprocess costs ~3 s
of torch import per case); a sample of it also runs as a real ``python -m lexformer``
subprocess, to show the entry point behaves the same there."""

from __future__ import annotations

import contextlib
import io
import subprocess

import pytest
from cli_harness import assert_clean_failure, run_cli, tree_hashes
from text_corpus import write_corpus

from lexformer.cli import main
from lexformer.presets import from_preset
from lexformer.train import train


@pytest.fixture(scope="module")
def place(tmp_path_factory):
    """A trained 10-step smoke model, a plain file, a short corpus, and the cache."""
    base = tmp_path_factory.mktemp("bad")
    corpus = write_corpus(base / "texts", n_docs=8, words_per_doc=3000)
    write_corpus(base / "short", n_docs=6, words_per_doc=60)
    (base / "afile").write_text("not a folder\n")
    (base / "existing").mkdir()
    env = {"LEXFORMER_CACHE": str(base / "cache")}
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("LEXFORMER_CACHE", env["LEXFORMER_CACHE"])
        cfg = from_preset("smoke", corpus=str(corpus), tokens=8 * 64 * 10)
        train(cfg, base / "model", progress=False)
    return base, env


M = "{base}/model"
CASES = [
    # eval
    (["eval", "--checkpoint", M, "--json", "{base}/existing"], ["folder"]),
    (["eval", "--checkpoint", M, "--json", "{base}/afile/out.json"], ["afile"]),
    (["eval", "--checkpoint", M, "--max-docs", "0"], ["--max-docs", "at least 1"]),
    (["eval", "--checkpoint", M, "--max-docs", "-1"], ["--max-docs", "at least 1"]),
    (["eval", "--checkpoint", M, "--lengths", ""], ["lengths", "≥ 2"]),
    (["eval", "--checkpoint", M, "--lengths", "0,64"], ["lengths", "≥ 2"]),
    (["eval", "--checkpoint", M, "--lengths=-16,64"], ["lengths", "≥ 2"]),
    (["eval", "--checkpoint", M, "--lengths", "24,64"], ["divide", "24"]),
    (["eval", "--checkpoint", M, "--split", "dev"], ["--split", "invalid choice"]),
    (["eval", "--checkpoint", "{base}/nowhere"], ["not found"]),
    (["eval", "--checkpoint", M, "--lengths", "65536"], ["no document has 65536"]),
    (["eval", "--checkpoint", M, "--task", "copy", "--seed", "-1"], ["--seed", "-1"]),
    (["eval", "--checkpoint", M, "--task", "copy", "--seed", "4294967296"],
     ["--seed", "4294967296", "4294967295"]),
    (["eval", "--checkpoint", M, "--task", "bogus"], ["--task", "unknown task", "bogus"]),
    (["eval", "--checkpoint", M, "--method-options", "foo=3"], ["method option", "foo"]),
    (["eval", "--checkpoint", M, "--method-options", "block=0"], ["block", "positive"]),
    (["eval", "--checkpoint", M, "--method-options", "window=-1"], ["window", "positive"]),
    (["eval", "--checkpoint", M, "--method-options", "sinks=2"], ["lexformer model", "sinks"]),
    # a Hub id: lexformer downloads no model, and says how to get the folder
    (["eval", "--model", "HuggingFaceTB/SmolLM2-135M"], ["Hub id", "hf download",
                                                         "--model SmolLM2-135M"]),
    (["generate", "--checkpoint", "Qwen/Qwen2.5-0.5B", "--prompt", "hi"], ["Hub id"]),
    # generate
    (["generate", "--checkpoint", M, "--top-k", "0"], ["--top-k", "at least 1"]),
    (["generate", "--checkpoint", M, "--temperature", "-1"], ["--temperature", ">= 0"]),
    (["generate", "--checkpoint", M, "--max-new-tokens", "-5"], ["--max-new-tokens", ">= 0"]),
    (["generate", "--checkpoint", M, "--seed", str(2**64)], ["--seed", str(2**64)]),
    # analyze
    (["analyze", "--checkpoint", M, "--out", "{base}/afile"], ["afile", "not a folder"]),
    (["analyze", "--checkpoint", M, "--out", "{base}/afile/sub"], ["afile", "is a file"]),
    (["analyze", "--checkpoint", M, "--out", "{base}/a", "--max-docs", "0"], ["--max-docs"]),
    (["analyze", "--checkpoint", M, "--out", "{base}/a", "--lengths", "1"], ["--lengths"]),
    # reproduce
    (["reproduce", "--preset", "smoke", "--out", "{base}/r", "--schemes", ""], ["no schemes"]),
    (["reproduce", "--preset", "smoke", "--out", "{base}/r", "--schemes", "xpos,fancy"],
     ["unknown scheme", "fancy"]),
    (["reproduce", "--preset", "smoke", "--out", "{base}/r", "--seeds", "0"], ["--seeds"]),
    (["reproduce", "--preset", "smoke", "--out", "{base}/r", "--task-samples", "0"],
     ["copy samples", "at least 1"]),
    (["reproduce", "--preset", "smoke", "--out", "{base}/afile"], ["afile", "not a folder"]),
    (["reproduce", "--preset", "smoke", "--out", "{base}/r", "--lengths", "24,64"],
     ["divide"]),
    (["reproduce", "--preset", "smoke", "--out", "{base}/r", "--corpus", "{base}/short",
      "--schemes", "xpos", "--ood-corpus", "none"], ["no document has"]),
    (["reproduce", "--preset", "smoke", "--out", "{base}/r", "--seeds", "100000000"],
     ["--seeds 100000000", "at most"]),
    (["reproduce", "--preset", "smoke", "--out", "{base}/r", "--seed", "4294967290", "--seeds",
      "10"], ["4294967295", "4294967299"]),
    (["reproduce", "--objective", "mlm", "--preset", "smoke", "--out", "{base}/r", "--corpus",
      "{base}/short", "--schemes", "xpos"], ["no document has"]),
]


def _run_in_process(*args: str) -> subprocess.CompletedProcess:
    """``lexformer ARGS`` through :func:`lexformer.cli.main`, output captured. An exception
    other than the CLI's own exit escapes and fails the test, as a traceback would."""
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            code = main(list(args))
        except SystemExit as e:  # argparse's own usage errors
            code = e.code
    return subprocess.CompletedProcess(list(args), code, out.getvalue(), err.getvalue())


def _check(place, args, words, runner, monkeypatch=None):
    base, env = place
    if monkeypatch is not None:
        monkeypatch.setenv("LEXFORMER_CACHE", env["LEXFORMER_CACHE"])
        # main() silences transformers' bars through the environment: undone after the test
        monkeypatch.setenv("HF_HUB_DISABLE_PROGRESS_BARS", "0")
    watched = [base / "model", base / "afile", base / "existing"]
    before = [tree_hashes(p) for p in watched]
    proc = runner(*[a.format(base=base) for a in args])
    assert_clean_failure(proc, *words)
    errors = [x for x in proc.stderr.splitlines() if "error:" in x]
    assert len(errors) == 1 and proc.stderr.strip().splitlines()[-1] == errors[0]
    assert [tree_hashes(p) for p in watched] == before
    assert not (base / "a").exists() and not (base / "r" / "models").exists()


@pytest.mark.parametrize("args, words", CASES, ids=[" ".join(a[:1] + a[3:])[:60]
                                                     for a, _ in CASES])
def test_bad_input_fails_cleanly_and_changes_nothing(place, args, words, monkeypatch):
    _check(place, args, words, _run_in_process, monkeypatch)


#: one case per command, and the one that reads a corpus, as real subprocesses
SUBPROCESS_SAMPLE = [CASES[i] for i in (0, 3, 12, 14, 18, 23)]
#: argparse's own refusals (a type or a choice), which printed its usage block before
USAGE_ERRORS = [c for c in CASES if any(w in c[1] for w in ("--seed", "--task", "invalid choice",
                                                            "method option"))]


@pytest.mark.parametrize("args, words", SUBPROCESS_SAMPLE,
                         ids=[" ".join(a[:1] + a[3:])[:60] for a, _ in SUBPROCESS_SAMPLE])
def test_bad_input_through_the_real_command(place, args, words):
    env = place[1]
    _check(place, args, words, lambda *a: run_cli(*a, env=env))


@pytest.mark.parametrize("args, words", USAGE_ERRORS,
                         ids=[" ".join(a[:1] + a[3:])[:60] for a, _ in USAGE_ERRORS])
def test_usage_errors_are_one_line_without_the_usage_block(place, args, words):
    base, env = place
    proc = run_cli(*[a.format(base=base) for a in args], env=env)
    assert_clean_failure(proc, *words)
    assert len(proc.stderr.strip().splitlines()) == 1, proc.stderr
    assert proc.stderr.startswith("lexformer: error:") and "usage:" not in proc.stderr


def test_damaged_timings_are_set_aside_and_timed_again(place, tmp_path):
    """A timings.json cut short (a kill mid-write) is not a traceback: the run notes it,
    finishes, and leaves a readable file with the stages it ran."""
    import json

    base, env = place
    out = tmp_path / "run"
    out.mkdir()
    (out / "timings.json").write_text('{"train/xpos": 3.')
    proc = run_cli("reproduce", "--preset", "smoke", "--corpus", base / "texts", "--schemes",
                   "xpos", "--ood-corpus", "none", "--no-progress", "--out", out, env=env)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "Traceback" not in proc.stderr and "timings.json is damaged" in proc.stderr
    assert "train/xpos" in json.loads((out / "timings.json").read_text())
