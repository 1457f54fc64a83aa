"""``lexformer eval``, ``generate`` and ``analyze`` through the real CLI on a tiny trained
model: what a user sees and what lands on disk."""

from __future__ import annotations

import json

import pytest
from cli_harness import assert_clean_failure, run_cli


def test_eval_prints_intervals_and_writes_json(smoke):
    base, env = smoke
    out = base / "results" / "eval.json"
    proc = run_cli("eval", "--checkpoint", base / "model", "--lengths", "16,32,64",
                   "--json", out, "--no-progress", env=env)
    assert proc.returncode == 0, proc.stderr
    assert "±" in proc.stdout and "95 % paired-bootstrap" in proc.stdout
    data = json.loads(out.read_text())
    assert set(data["results"]) == {"full", "blockwise"}
    assert "tasks" not in data  # perplexity alone keeps the JSON it always had
    for per in data["results"].values():
        assert set(per) == {"16", "32", "64"}
        for cell in per.values():
            lo, hi = cell["ci95"]
            assert lo < cell["perplexity"] < hi
            assert len(cell["doc_nll"]) == cell["documents"]
    # at lengths ≤ L blockwise attention sees what full attention sees
    assert data["results"]["full"]["64"]["perplexity"] == pytest.approx(
        data["results"]["blockwise"]["64"]["perplexity"], rel=1e-5)
    shown = f"{data['results']['full']['64']['perplexity']:.2f}"
    assert shown in proc.stdout


def test_eval_max_docs_limits_the_documents(smoke):
    base, env = smoke
    out = base / "one.json"
    proc = run_cli("eval", "--checkpoint", base / "model", "--lengths", "32,64",
                   "--attention", "full", "--max-docs", "1", "--json", out, "--no-progress",
                   env=env)
    assert proc.returncode == 0, proc.stderr
    cell = json.loads(out.read_text())["results"]["full"]["64"]
    assert cell["documents"] == 1 and cell["ci95"] is None


def test_generate_greedy_is_deterministic_and_continues_the_prompt(smoke):
    base, env = smoke
    args = ("generate", "--checkpoint", base / "model", "--prompt", "The king",
            "--max-new-tokens", "12", "--temperature", "0")
    first, second = run_cli(*args, env=env), run_cli(*args, env=env)
    assert first.returncode == 0, first.stderr
    assert first.stdout == second.stdout
    assert first.stdout.startswith("The king") and len(first.stdout) > len("The king\n")


def test_generate_zero_new_tokens_prints_the_prompt(smoke):
    base, env = smoke
    proc = run_cli("generate", "--checkpoint", base / "model", "--prompt", "The king",
                   "--max-new-tokens", "0", env=env)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout == "The king\n"


def test_analyze_writes_typed_results_and_plots(smoke):
    base, env = smoke
    out = base / "analysis"
    proc = run_cli("analyze", "--checkpoint", base / "model", "--out", out, "--max-docs", "2",
                   env=env)
    assert proc.returncode == 0, proc.stderr
    data = json.loads((out / "analysis.json").read_text())
    assert data["head_dim"] == 16  # the smoke model's d_model 64 / 4 heads, not 64
    measured = data["models"]["xpos"]["results"]
    assert {(r["attention"], r["length"]) for r in measured} == {
        (a, n) for a in ("full", "blockwise") for n in (64, 128)}
    for r in measured:  # four significant digits: R ~ 1e-4 must not print as 0.0000
        assert f"{r['resolution']:.4g}" in proc.stdout
    for png in ("expectation_curves.png", "expected_scores.png"):
        assert (out / png).read_bytes().startswith(b"\x89PNG")


@pytest.mark.parametrize("command", ["train", "eval", "analyze", "generate", "reproduce",
                                     "extend"])
def test_help_states_defaults_without_none(command):
    """--help teaches: it exits 0, and shows a default only where there is one to show."""
    proc = run_cli(command, "--help")
    assert proc.returncode == 0, proc.stderr
    assert "usage: lexformer " + command in proc.stdout
    assert "(default: None)" not in proc.stdout and "(default: False)" not in proc.stdout
    assert "(default: " in proc.stdout  # real defaults are still shown


def test_analyze_prints_small_resolutions_with_significant_digits(smoke):
    """R(ŝ) of a trained model is of order 1e-4: printed to four significant digits, not as
    0.0000 or 0.0001."""
    base, env = smoke
    out = base / "analysis-digits"
    proc = run_cli("analyze", "--checkpoint", base / "model", "--out", out, "--max-docs", "2",
                   env=env)
    assert proc.returncode == 0, proc.stderr
    measured = json.loads((out / "analysis.json").read_text())["models"]["xpos"]["results"]
    rows = {(line.split()[0], int(line.split()[1])): float(line.split()[2])
            for line in proc.stdout.splitlines()
            if line.split() and line.split()[0] in ("full", "blockwise")}
    assert len(rows) == len(measured)
    for r in measured:
        assert rows[(r["attention"], r["length"])] == pytest.approx(r["resolution"], rel=1e-3)


def test_eval_takes_a_block_size_for_a_lexformer_model(smoke):
    base, env = smoke
    outs = {h: base / f"block-{h}.json" for h in ("default", "16")}
    for h, out in outs.items():
        options = [] if h == "default" else ["--method-options", f"block={h}"]
        proc = run_cli("eval", "--checkpoint", base / "model", "--lengths", "32,128",
                       "--attention", "blockwise", "--max-docs", "2", "--json", out,
                       "--no-progress", *options, env=env)
        assert proc.returncode == 0, proc.stderr
    a, b = (json.loads(outs[h].read_text())["results"]["blockwise"] for h in outs)
    assert a["32"] == b["32"] and a["128"] != b["128"]  # L = 64: h 32 → 16
    proc = run_cli("eval", "--checkpoint", base / "model", "--method-options", "sinks=4",
                   "--lengths", "32", env=env)
    assert proc.returncode == 2 and "block and window only" in proc.stderr


PLACEMENT_CASES = [
    (["--device", "cuda"], ["cuda", "not available"]),
    (["--device", "tpu"], ["unknown device", "tpu"]),
    (["--dtype", "int8"], ["unknown dtype", "int8"]),
    (["--dtype", "fp16"], ["fp16", "cpu"]),
]
#: each command with the built-in model (analyze: a lexformer folder), in an empty cache
PLACEMENT_COMMANDS = {
    "eval": ["eval", "--model", "smollm2", "--no-progress"],
    "generate": ["generate", "--checkpoint", "smollm2", "--temperature", "0"],
    "analyze": ["analyze", "--checkpoint", "{base}/model", "--out", "{base}/analysis"],
}


@pytest.mark.parametrize("command", sorted(PLACEMENT_COMMANDS))
@pytest.mark.parametrize("extra,words", PLACEMENT_CASES, ids=lambda x: "-".join(x))
def test_bad_device_or_dtype_is_refused_before_loading(tmp_path, command, extra, words):
    """One line, exit 2, and the built-in model never fetched (the cache stays empty)."""
    import torch

    if "cuda" in extra and torch.cuda.is_available():
        pytest.skip("this machine has CUDA")
    args = [a.format(base=tmp_path) for a in PLACEMENT_COMMANDS[command]]
    cache = tmp_path / "empty-cache"
    proc = run_cli(*args, *extra, env={"LEXFORMER_CACHE": str(cache),
                                       "HF_HOME": str(tmp_path / "hf-home")})
    assert_clean_failure(proc, *words)
    assert len(proc.stderr.strip().splitlines()) == 1, proc.stderr
    assert not cache.exists() and not (tmp_path / "hf-home").exists()
    assert not (tmp_path / "analysis").exists()


@pytest.mark.parametrize("command", ["eval", "analyze", "generate"])
def test_a_lexformer_model_refuses_another_device_or_dtype(smoke, command):
    """A lexformer checkpoint runs on the CPU in float32: --dtype bf16 is refused, not
    ignored; --device cpu --dtype fp32 (the default, spelled out) runs as before."""
    base, env = smoke
    flag = "--model" if command == "eval" else "--checkpoint"
    extra = {"eval": ["--lengths", "64", "--max-docs", "1", "--no-progress"],
             "analyze": ["--out", str(base / "placement-analysis"), "--max-docs", "1"],
             "generate": ["--max-new-tokens", "2"]}[command]
    proc = run_cli(command, flag, base / "model", *extra, "--dtype", "bf16", env=env)
    assert_clean_failure(proc, "lexformer model", "cpu", "float32")
    if command == "generate":  # the cheapest full run
        proc = run_cli(command, flag, base / "model", *extra, "--device", "cpu", "--dtype",
                       "fp32", env=env)
        assert proc.returncode == 0, proc.stderr[-2000:]
