"""``lexformer eval --task ...``: the context-use tasks through the real CLI on a tiny trained
model — the JSON shape, the printed tables, the figures, and one-line refusals of bad input
before any work."""

from __future__ import annotations

import argparse
import json

import pytest
from cli_harness import assert_clean_failure, run_cli, tree_hashes

from lexformer.cli.eval_tasks import plan_tasks, task_names
from lexformer.config import ModelConfig
from lexformer.errors import LexformerError
from lexformer.lm import LexformerLM
from lexformer.model import TransformerLM

L = 64  # the smoke preset's training length




@pytest.fixture(scope="module")
def all_tasks(smoke):
    """One run of every task (small sizes) beside perplexity, with figures beside the JSON."""
    base, env = smoke
    out = base / "all" / "eval.json"
    proc = run_cli("eval", "--checkpoint", base / "model", "--lengths", "16,32,64",
                   "--task", "passkey,copy,perplexity,position-loss", "--samples", "3",
                   "--passkey-lengths", "256", "--depths", "0,1", "--trials", "2",
                   "--json", out, "--no-progress", env=env)
    assert proc.returncode == 0, proc.stderr
    return proc, json.loads(out.read_text()), out


def test_json_keeps_perplexity_and_adds_tasks_in_the_agreed_shape(all_tasks):
    _, data, _ = all_tasks
    assert set(data["results"]) == {"full", "blockwise"}  # perplexity as before
    assert set(data["tasks"]) == {"copy", "position-loss", "passkey"}
    for attention in ("full", "blockwise"):
        copy = data["tasks"]["copy"][attention]
        # default distances L/8 … 16·L
        assert sorted(map(int, copy)) == [L * 2 ** k // 8 for k in range(8)]
        for cell in copy.values():
            assert set(cell) == {"gain", "loss_first", "loss_repeat", "loss_control",
                                 "samples"}
            assert cell["samples"] == 3
            # the gain is against the control (issue 21), no longer against loss_first
            assert cell["gain"] == pytest.approx(
                1 - cell["loss_repeat"] / cell["loss_control"], rel=1e-9, abs=1e-12)
        bins = data["tasks"]["position-loss"][attention]
        assert sorted(map(int, bins)) == [1, 2, 4, 8, 16, 32, 64]  # chunks of max(--lengths)
        assert all(b["tokens"] > 0 and b["loss"] > 0 for b in bins.values())
        passkey = data["tasks"]["passkey"][attention]
        assert set(passkey) == {"256"} and set(passkey["256"]) == {"0.0", "1.0"}
        assert all(c["trials"] == 2 and 0 <= c["accuracy"] <= 1
                   for c in passkey["256"].values())
    assert data["task_settings"]["samples"] == 3 and data["task_settings"]["seed"] == 0


def test_tables_print_the_numbers_of_the_json(all_tasks):
    proc, data, _ = all_tasks
    out = proc.stdout
    assert "copy gain" in out and "d=1024" in out and "loss by pos." in out
    line = next(x for x in out.splitlines() if x.startswith("full ") and "." in x
                and len(x.split()) == 9)  # the copy row: name + 8 distances
    shown = [float(v) for v in line.split()[1:]]
    measured = [data["tasks"]["copy"]["full"][str(d)]["gain"]
                for d in sorted(map(int, data["tasks"]["copy"]["full"]))]
    assert shown == pytest.approx(measured, abs=0.0006)
    assert "blockwise @1" in out  # passkey rows: attention × depth


def test_figures_land_beside_the_json(all_tasks):
    proc, _, out = all_tasks
    for name in ("position-loss", "copy-gain", "passkey"):
        png = out.parent / f"eval.{name}.png"
        assert png.read_bytes().startswith(b"\x89PNG"), png
        assert str(png) in proc.stdout


def test_tasks_alone_skip_perplexity_and_are_seeded(smoke, tmp_path):
    base, env = smoke
    args = ("eval", "--checkpoint", base / "model", "--lengths", "32,64", "--task", "copy",
            "--distances", "16,96", "--samples", "2", "--span", "8", "--seed", "3",
            "--attention", "blockwise", "--no-progress", "--plots", tmp_path / "figs")
    first = run_cli(*args, "--json", tmp_path / "a.json", env=env)
    second = run_cli(*args, "--json", tmp_path / "b.json", env=env)
    assert first.returncode == 0 and second.returncode == 0, first.stderr + second.stderr
    a, b = (json.loads((tmp_path / n).read_text()) for n in ("a.json", "b.json"))
    assert "results" not in a and a["model"] == "xpos" and a["step"] == 10
    assert set(a["tasks"]["copy"]) == {"blockwise"}
    assert set(a["tasks"]["copy"]["blockwise"]) == {"16", "96"}
    assert a["tasks"] == b["tasks"]  # same seed, same samples, same numbers
    assert (tmp_path / "figs" / "copy-gain.png").read_bytes().startswith(b"\x89PNG")
    assert "paired-bootstrap" not in first.stdout


@pytest.mark.parametrize("args, words", [
    (("--task", "copy,recall"), ("unknown task", "recall", "passkey")),
    (("--task", "copy", "--distances", "0,16"), ("distances", "positive")),
    (("--task", "copy", "--span", "1"), ("span",)),
    (("--span", "8"), ("--span", "copy task")),
    (("--plots", "figs"), ("--plots", "--task")),
    (("--task", "passkey", "--depths", "0.5,1.5"), ("depths", "[0, 1]")),
    (("--task", "passkey", "--passkey-lengths", "16"), ("passkey length 16", "too short")),
    (("--task", "copy", "--distances", "100000"), ("distance 100000", "--distances")),
])
def test_bad_task_input_fails_in_one_line_before_any_work(smoke, tmp_path, args, words):
    base, env = smoke
    before = tree_hashes(base / "model")
    proc = run_cli("eval", "--checkpoint", base / "model", "--lengths", "32,64",
                   "--json", tmp_path / "out.json", "--no-progress", *args, env=env)
    assert_clean_failure(proc, *words)
    assert not (tmp_path / "out.json").exists() and proc.stdout == ""
    assert tree_hashes(base / "model") == before


def test_task_names_are_checked_and_ordered_at_parse_time():
    assert task_names("passkey, perplexity,copy") == ["perplexity", "copy", "passkey"]
    with pytest.raises(argparse.ArgumentTypeError, match="unknown task"):
        task_names("")


def test_passkey_on_a_model_without_a_tokenizer_is_refused_before_scoring():
    cfg = ModelConfig(vocab_size=64, n_layer=1, n_head=2, d_model=16, d_ff=32,
                      train_length=32, position="xpos")
    model = LexformerLM(TransformerLM(cfg), tokenizer=None)
    args = argparse.Namespace(task=["passkey"], attention=["full"], seed=0, split="test",
                              max_docs=None)
    with pytest.raises(LexformerError, match="tokenizer"):
        plan_tasks(args, model, "unused-corpus", 64)
