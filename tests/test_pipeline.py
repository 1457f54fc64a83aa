"""The reproduction pipeline end to end at smoke size: report structure, provenance of every
number, out-of-domain table, seeds, resumability, and refusal of changed settings."""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pytest
from cli_harness import tree_hashes
from text_corpus import WORDS, write_corpus

from lexformer import LexformerError
from lexformer.experiments.reproduce import reproduce

TOKENS = 8 * 64 * 8  # 8 smoke steps
CONTEXT = "## Does the model use its context?"
DISTANCES = [8, 16, 32, 64, 128, 256, 512, 1024]  # L/8 … 16·L at the smoke preset's L = 64


def _write_other_corpus(folder, n_docs=10, words_per_doc=2500):
    """A second corpus (other word order) for the out-of-domain stage, offline."""
    rng = np.random.default_rng(1)
    folder.mkdir(parents=True, exist_ok=True)
    for i in range(n_docs):
        words = rng.choice(WORDS, size=words_per_doc)
        (folder / f"other{i:02d}.txt").write_text(
            "\n".join(" ".join(words[j:j + 12]) + "." for j in range(0, len(words), 12)))
    return folder


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    base = tmp_path_factory.mktemp("repro")
    corpus = write_corpus(base / "texts", n_docs=8, words_per_doc=4000)
    other = _write_other_corpus(base / "other")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("LEXFORMER_CACHE", str(base / "cache"))
        out = base / "out"
        report = reproduce(preset="smoke", corpus=str(corpus), out=out,
                           schemes=("alibi", "xpos"), tokens=TOKENS, progress=False,
                           ood_corpus=str(other))
        yield out, report, corpus, other


def _table_rows(text: str, heading: str) -> dict[tuple[str, str], list[float]]:
    """``| scheme / attention | 81.12 ±0.90 | …`` rows of the section under ``heading``."""
    section = text.split(heading, 1)[1].split("\n## ", 1)[0]
    rows = {}
    for line in section.splitlines():
        m = re.match(r"\| (?:\*\*LeX \(xpos \+ blockwise\)\*\*|(\w+) / (\w+)) \|(.*)\|$", line)
        if m and "paper" not in line:
            scheme, attention = (m.group(1), m.group(2)) if m.group(1) else ("xpos", "blockwise")
            rows[(scheme, attention)] = [float(x.split()[0]) for x in m.group(3).split("|")]
    return rows


def test_report_has_every_section_and_plot(run):
    out, report, _, _ = run
    text = report.read_text()
    for heading in ("## Table 2 analogue", "## Table 5 analogue", "## Table 3 analogue",
                    "## Paired differences", "## Out-of-domain perplexity",
                    "## Training", "## What this run shows", "## Provenance", CONTEXT):
        assert heading in text, heading
    for png in ("perplexity_vs_length.png", "expectation_curves.png", "expected_scores.png"):
        data = (out / "plots" / png).read_bytes()
        assert data.startswith(b"\x89PNG") and len(data) > 1000
        assert f"plots/{png}" in text
    assert "**LeX (xpos + blockwise)**" in text


def test_every_number_in_our_table_comes_from_this_runs_evaluation(run):
    out, report, _, _ = run
    results = json.loads((out / "results.json").read_text())
    lengths = results["lengths"]
    assert lengths == [16, 32, 64, 128, 256, 512, 1024]
    rows = _table_rows(report.read_text(), "## Table 2 analogue")
    assert set(rows) == {(s, a) for s in ("alibi", "xpos") for a in ("full", "blockwise")}
    for (scheme, attention), values in rows.items():
        measured = results["perplexity"][scheme][attention]
        evaluated = json.loads((out / "eval" / f"{scheme}.json").read_text())["results"]
        for n, shown in zip(lengths, values):
            assert shown == pytest.approx(measured[str(n)], abs=0.006)
            assert measured[str(n)] == evaluated[attention][str(n)]["perplexity"]


def test_table_cells_carry_the_bootstrap_interval(run):
    out, report, _, _ = run
    evaluated = json.loads((out / "eval" / "alibi.json").read_text())["results"]["full"]["64"]
    lo, hi = evaluated["ci95"]
    assert lo < evaluated["perplexity"] < hi
    line = next(x for x in report.read_text().splitlines() if x.startswith("| alibi / full |"))
    assert f"±{(hi - lo) / 2:.2f}" in line


def test_out_of_domain_table_comes_from_the_other_corpus(run):
    out, report, _, other = run
    ood = json.loads((out / "ood" / "xpos.json").read_text())
    assert ood["corpus"] == str(other)
    rows = _table_rows(report.read_text(), "## Out-of-domain perplexity")
    shown = rows[("xpos", "blockwise")][2]  # length 64
    assert shown == pytest.approx(ood["results"]["blockwise"]["64"]["perplexity"], abs=0.006)
    in_domain = json.loads((out / "eval" / "xpos.json").read_text())
    assert ood["results"]["full"]["64"]["perplexity"] != in_domain["results"]["full"]["64"][
        "perplexity"]


def test_findings_state_orderings_only_with_their_interval(run):
    _, report, _, _ = run
    text = report.read_text().split("## What this run shows", 1)[1].split("\n## ", 1)[0]
    best_at_L = next(x for x in text.splitlines() if x.startswith("At the training length"))
    assert "95 % interval" in best_at_L
    assert ("tie at this scale" in best_at_L) != ("ahead of the next best" in best_at_L)


def test_smoke_report_says_its_numbers_mean_nothing_and_prints_no_absolute_path(run):
    from lexformer.experiments.reporting import SMOKE_FINDINGS

    out, report, corpus, other = run
    text = report.read_text()
    assert text.splitlines()[2].startswith("> **Smoke run: these numbers mean nothing.**")
    findings = text.split("## What this run shows", 1)[1].split("\n## ", 1)[0]
    assert findings.strip().startswith(SMOKE_FINDINGS)
    assert "paper's Table 2" not in findings and "shapes of the curves" not in findings
    for path in (out, corpus, other):
        assert str(path) not in text
    # both corpora were given as absolute paths: shown relative to the run folder
    assert f"`../{Path(corpus).name}`" in text and f"`../{Path(other).name}`" in text


def test_report_refuses_a_planted_plots_link(run, tmp_path):
    """A ``plots`` folder planted as a link elsewhere: the report's figures are refused, in
    one line naming the link, and nothing is written through it."""
    out, _, corpus, other = run
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    (out / "plots").rename(out / "plots.real")
    (out / "plots").symlink_to(elsewhere, target_is_directory=True)
    try:
        with pytest.raises(LexformerError, match="symbolic link|symlink"):
            reproduce(preset="smoke", corpus=str(corpus), out=out, schemes=("alibi", "xpos"),
                      tokens=TOKENS, progress=False, ood_corpus=str(other))
        assert list(elsewhere.iterdir()) == []
    finally:
        (out / "plots").unlink()
        (out / "plots.real").rename(out / "plots")


def test_rerun_resumes_without_retraining(run):
    out, _, corpus, other = run
    ckpt = (out / "models" / "xpos" / "checkpoint" / "model.safetensors")
    before = ckpt.stat().st_mtime_ns
    timings = json.loads((out / "timings.json").read_text())
    reproduce(preset="smoke", corpus=str(corpus), out=out, schemes=("alibi", "xpos"),
              tokens=TOKENS, progress=False, ood_corpus=str(other))
    assert ckpt.stat().st_mtime_ns == before
    assert json.loads((out / "timings.json").read_text()) == timings


def test_evaluation_of_another_checkpoint_is_redone(run):
    """A saved evaluation that names another step (another checkpoint) is measured again."""
    out, _, corpus, other = run
    path = out / "eval" / "alibi.json"
    saved = json.loads(path.read_text())
    stale = json.loads(path.read_text())
    stale["step"] += 1000
    stale["results"]["full"]["64"]["perplexity"] = 1.0
    path.write_text(json.dumps(stale))
    reproduce(preset="smoke", corpus=str(corpus), out=out, schemes=("alibi", "xpos"),
              tokens=TOKENS, progress=False, ood_corpus=str(other))
    again = json.loads(path.read_text())
    assert again["step"] == saved["step"]
    assert again["results"]["full"]["64"]["perplexity"] == pytest.approx(
        saved["results"]["full"]["64"]["perplexity"], rel=1e-12)


@pytest.mark.parametrize("change, field", [({"seed": 1}, "seed"),
                                            ({"tokens": 2 * TOKENS}, "tokens")])
def test_rerun_with_other_settings_is_refused(run, change, field):
    out, _, corpus, other = run
    kwargs = dict(preset="smoke", corpus=str(corpus), out=out, schemes=("alibi", "xpos"),
                  tokens=TOKENS, progress=False, ood_corpus=str(other))
    kwargs.update(change)
    before = tree_hashes(out)
    with pytest.raises(LexformerError, match=field):
        reproduce(**kwargs)
    assert tree_hashes(out) == before  # refused before any work: nothing changed


def test_two_seeds_give_mean_and_spread(tmp_path, monkeypatch):
    corpus = write_corpus(tmp_path / "texts", n_docs=6, words_per_doc=3000)
    monkeypatch.setenv("LEXFORMER_CACHE", str(tmp_path / "cache"))
    report = reproduce(preset="smoke", corpus=str(corpus), out=tmp_path / "out",
                       schemes=("xpos",), tokens=8 * 64 * 3, lengths=[32, 64, 128],
                       progress=False, seeds=2, ood_corpus="none")
    models = tmp_path / "out" / "models"
    assert sorted(p.name for p in models.iterdir()) == ["xpos", "xpos-seed1"]
    seeds = [json.loads((tmp_path / "out" / "eval" / f"{n}.json").read_text())
             for n in ("xpos", "xpos-seed1")]
    values = [s["results"]["full"]["64"]["perplexity"] for s in seeds]
    assert values[0] != values[1]  # another seed: another model
    line = next(x for x in report.read_text().splitlines() if x.startswith("| xpos / full |"))
    cell = line.split("|")[3].strip()  # length 64
    assert cell == f"{np.mean(values):.2f} ±{np.std(values, ddof=1):.2f}"
    assert "mean over 2 seeds" in report.read_text()
    # the paired differences carry the interval over seeds as well as over documents
    rows = report.read_text().split("## Paired differences", 1)[1].split("\n## ", 1)[0]
    assert "; seeds " in rows and "docs " in rows


def test_context_section_shows_this_runs_copy_gains_and_plots(run):
    out, report, _, _ = run
    text = report.read_text()
    assert CONTEXT in text
    section = text.split(CONTEXT, 1)[1].split("\n## ", 1)[0]
    assert "| 64 (L) |" in section and "| 1024 (16·L) |" in section
    rows = _table_rows(text, CONTEXT)
    assert set(rows) == {(s, a) for s in ("alibi", "xpos") for a in ("full", "blockwise")}
    results = json.loads((out / "results.json").read_text())
    for (scheme, attention), shown in rows.items():
        saved = json.loads((out / "copy" / f"{scheme}.json").read_text())
        gains = saved["results"]["copy"][attention]
        assert sorted(map(int, gains)) == DISTANCES
        measured = [gains[str(d)]["gain"] for d in DISTANCES]
        assert shown == pytest.approx(measured, abs=0.0006)
        summary = results["copy_gain"][scheme][attention]
        assert [summary[str(d)] for d in DISTANCES] == pytest.approx(measured, rel=1e-12)
        assert all(g["samples"] == 4 for g in gains.values())  # the smoke preset's samples
    for png in ("position_loss.png", "copy_gain.png"):
        assert (out / "plots" / png).read_bytes().startswith(b"\x89PNG")
        assert f"plots/{png}" in section


def test_task_stages_measure_the_trained_checkpoint_in_both_attention_modes(run):
    out, _, _, _ = run
    step = json.loads((out / "eval" / "xpos.json").read_text())["step"]
    for task, key in (("position-loss", "position-loss"), ("copy", "copy")):
        saved = json.loads((out / task / "xpos.json").read_text())
        assert saved["step"] == step and saved["task"] == task
        assert set(saved["results"][key]) == {"full", "blockwise"}
    bins = json.loads((out / "position-loss" / "xpos.json").read_text())["results"][
        "position-loss"]["full"]
    assert sorted(map(int, bins)) == [2 ** k for k in range(11)]  # chunks of 1024 tokens


def test_context_paragraph_follows_the_measured_gains(run):
    """Each scheme's reach under each attention mode, recomputed from the saved JSON."""
    out, report, _, _ = run
    section = report.read_text().split(CONTEXT, 1)[1].split("\n## ", 1)[0]
    for attention in ("full", "blockwise"):
        sentence = section.split(f"With {attention} attention, ", 1)[1].split(". ", 1)[0]
        for scheme in ("alibi", "xpos"):
            gains = json.loads((out / "copy" / f"{scheme}.json").read_text())["results"][
                "copy"][attention]
            copying = [d for d in DISTANCES if gains[str(d)]["gain"] > 0.05]
            expected = (f"{scheme} copies up to {copying[-1]} tokens" if copying
                        else f"{scheme} copies at no distance")
            assert expected in sentence, (attention, sentence)


def _context_inputs(full, blockwise):
    from lexformer.experiments.context_report import ContextInputs
    from lexformer.tasks import BinLoss, CopyScore, TaskResults

    def scores(gains):
        return {d: CopyScore(g, 4.0, 4.0 * (1 - g), 8) for d, g in zip(DISTANCES, gains)}

    bins = {e: BinLoss(5.0 - 0.1 * k, 10) for k, e in enumerate([1, 2, 4, 8, 16, 32, 64, 1024])}
    results = TaskResults(copy={"full": scores(full), "blockwise": scores(blockwise)},
                          position_loss={"full": bins, "blockwise": bins})
    return ContextInputs(train_length=64, schemes=["xpos"], tasks={"xpos": [results]},
                         samples=8, span=32, chunk_length=1024)


def test_context_paragraph_states_where_blockwise_gain_falls_and_full_copies_past_L():
    from lexformer.experiments.context_report import context_paragraph

    text = context_paragraph(_context_inputs(
        full=[0.9, 0.9, 0.8, 0.8, 0.7, 0.6, 0.5, 0.4],
        blockwise=[0.9, 0.8, 0.5, 0.2, 0.01, 0.0, -0.01, 0.0]))
    assert ("With full attention, xpos copies up to 1024 tokens (16·L, gain 0.40), the longest "
            "distance measured.") in text
    assert "Past L (64 tokens) under full attention: xpos still copies." in text
    assert ("With blockwise attention, xpos copies up to 64 tokens (L, gain 0.20); its gain "
            "falls to about 0 from 128 (2·L) on.") in text
    assert "Past L (64 tokens) under blockwise attention: no scheme copies." in text
    assert "full: xpos 4.40 → 4.30" in text  # bin ending at L (64) → the last bin (1024)


def test_stale_task_results_are_measured_again(run):
    """A saved task result of another step, or of other settings, is redone."""
    out, _, corpus, other = run
    path = out / "copy" / "xpos.json"
    saved = json.loads(path.read_text())
    gain = saved["results"]["copy"]["full"]["64"]["gain"]
    for change in ({"step": saved["step"] + 1000}, {"settings": {**saved["settings"],
                                                                 "samples": 99}}):
        stale = json.loads(path.read_text())
        stale.update(change)
        stale["results"]["copy"]["full"]["64"]["gain"] = 0.75
        path.write_text(json.dumps(stale))
        reproduce(preset="smoke", corpus=str(corpus), out=out, schemes=("alibi", "xpos"),
                  tokens=TOKENS, progress=False, ood_corpus=str(other))
        again = json.loads(path.read_text())
        assert again["step"] == saved["step"] and again["settings"] == saved["settings"]
        assert again["results"]["copy"]["full"]["64"]["gain"] == pytest.approx(gain, rel=1e-12)


def test_unknown_scheme_is_refused(tmp_path):
    with pytest.raises(LexformerError, match="unknown scheme"):
        reproduce(preset="smoke", out=tmp_path, schemes=("xpos", "fancy"))


def test_no_scheme_is_refused(tmp_path):
    with pytest.raises(LexformerError, match="no schemes"):
        reproduce(preset="smoke", out=tmp_path, schemes=())


def _first_doc(folder: Path) -> Path:
    return sorted(p for p in Path(folder).iterdir() if p.is_file())[0]


def test_a_changed_out_of_domain_corpus_is_measured_again(run, tmp_path, capfd):
    """Stage keys hold the corpus's content fingerprint: the out-of-domain text edited under
    the same name is measured again (saying so) while the in-domain stages are reused."""
    import shutil

    out, _, corpus, other = run
    copy_out, copy_other = tmp_path / "out", tmp_path / "other"
    shutil.copytree(out, copy_out)
    shutil.copytree(other, copy_other)
    for path in (copy_out / "ood").glob("*.json"):  # the copy's name, the same text
        data = json.loads(path.read_text())
        data["corpus"] = str(copy_other)
        path.write_text(json.dumps(data))
    kwargs = dict(preset="smoke", corpus=str(corpus), out=copy_out, schemes=("alibi", "xpos"),
                  tokens=TOKENS, progress=False, ood_corpus=str(copy_other))
    capfd.readouterr()
    reproduce(**kwargs)
    assert "measured again" not in capfd.readouterr().err
    doc = _first_doc(copy_other)
    doc.write_text(doc.read_text()[::-1])
    reproduce(**kwargs)
    err = capfd.readouterr().err
    assert err.count("saved with other corpus_fingerprint, measured again") == 2  # both ood
    assert "alibi: already evaluated" in err and "xpos: already evaluated" in err


def test_a_model_trained_on_text_changed_since_is_refused(run):
    """The training corpus edited under the same path: the run's models were trained on
    other text, so reusing them (or their measurements) is refused, nothing changed."""
    out, _, corpus, other = run
    doc = _first_doc(corpus)
    text = doc.read_text()
    before = tree_hashes(out)
    try:
        doc.write_text(text + " an added sentence")
        with pytest.raises(LexformerError, match="trained on other text"):
            reproduce(preset="smoke", corpus=str(corpus), out=out, schemes=("alibi", "xpos"),
                      tokens=TOKENS, progress=False, ood_corpus=str(other))
    finally:
        doc.write_text(text)
    assert tree_hashes(out) == before


def test_out_holding_other_files_is_refused(tmp_path):
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "notes.md").write_text("mine\n")
    with pytest.raises(LexformerError, match="not a run of lexformer reproduce"):
        reproduce(preset="smoke", out=mine, schemes=("xpos",), progress=False)
    assert [p.name for p in mine.iterdir()] == ["notes.md"]
