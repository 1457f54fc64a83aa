"""The reproduction pipeline end to end at smoke size: report structure, provenance of every
number, and resumability."""

from __future__ import annotations

import json
import re

import pytest
from test_train import _write_corpus

from lexformer import LexformerError
from lexformer.reproduce import reproduce


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    base = tmp_path_factory.mktemp("repro")
    corpus = _write_corpus(base / "texts", n_docs=8, words_per_doc=4000)
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("LEXFORMER_CACHE", str(base / "cache"))
        out = base / "out"
        report = reproduce(preset="smoke", corpus=str(corpus), out=out,
                           schemes=("alibi", "xpos"), tokens=8 * 64 * 8, progress=False)
        yield out, report, corpus


def test_report_has_every_section_and_plot(run):
    out, report, _ = run
    text = report.read_text()
    for heading in ("## Table 2 analogue", "## Table 5 analogue", "## Table 3 analogue",
                    "## Training", "## What this run shows", "## Provenance"):
        assert heading in text, heading
    for png in ("perplexity_vs_length.png", "expectation_curves.png", "expected_scores.png"):
        data = (out / "plots" / png).read_bytes()
        assert data.startswith(b"\x89PNG") and len(data) > 1000
        assert f"plots/{png}" in text
    assert "**LeX (xpos + blockwise)**" in text


def test_every_number_in_our_table_comes_from_this_runs_evaluation(run):
    out, report, _ = run
    results = json.loads((out / "results.json").read_text())
    lengths = results["lengths"]
    assert lengths == [16, 32, 64, 128, 256, 512, 1024]
    rows = {}
    for line in report.read_text().splitlines():
        m = re.match(r"\| (?:\*\*LeX \(xpos \+ blockwise\)\*\*|(\w+) / (\w+)) \|(.*)\|$", line)
        if m and "paper" not in line:
            scheme, attention = (m.group(1), m.group(2)) if m.group(1) else ("xpos", "blockwise")
            rows[(scheme, attention)] = [float(x) for x in m.group(3).split("|")]
    assert set(rows) == {(s, a) for s in ("alibi", "xpos") for a in ("full", "blockwise")}
    for (scheme, attention), values in rows.items():
        measured = results["perplexity"][scheme][attention]
        evaluated = json.loads((out / "eval" / f"{scheme}.json").read_text())["results"]
        for n, shown in zip(lengths, values):
            assert shown == pytest.approx(measured[str(n)], abs=0.006)
            assert measured[str(n)] == evaluated[attention][str(n)]["perplexity"]


def test_rerun_resumes_without_retraining(run):
    out, _, corpus = run
    ckpt = (out / "models" / "xpos" / "checkpoint" / "model.safetensors")
    before = ckpt.stat().st_mtime_ns
    timings = json.loads((out / "timings.json").read_text())
    reproduce(preset="smoke", corpus=str(corpus), out=out, schemes=("alibi", "xpos"),
              tokens=8 * 64 * 8, progress=False)
    assert ckpt.stat().st_mtime_ns == before
    assert json.loads((out / "timings.json").read_text()) == timings


def test_unknown_scheme_is_refused(tmp_path):
    with pytest.raises(LexformerError, match="unknown scheme"):
        reproduce(preset="smoke", out=tmp_path, schemes=("xpos", "fancy"))
