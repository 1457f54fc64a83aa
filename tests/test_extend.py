"""``lexformer extend`` end to end on a tiny random Llama (no network, no hub): the stages,
their reuse, the report's sections and plot; the stopping rule; the findings' wording."""

from __future__ import annotations

import argparse
import json
import math
from pathlib import Path

import pytest

transformers = pytest.importorskip("transformers")

from tiny_hf import CONTEXT, TEST_FILES, write_corpus, write_model  # noqa: E402

from lexformer.errors import LexformerError  # noqa: E402
from lexformer.evaluate import LengthResult, PerplexityResult  # noqa: E402
from lexformer.experiments.extend import (  # noqa: E402
    ExtendRun,
    ExtendSettings,
    StageRecord,
    method_lengths,
    run_extend,
)
from lexformer.experiments.extend_report import findings  # noqa: E402
from lexformer.stats import perplexity_interval  # noqa: E402

#: lambda's default 100 global tokens exceed the tiny model's whole context: must still run
METHODS = ("full", "blockwise", "sinks", "lambda", "self-extend", "yarn")
SECTIONS = ("# Length extension of", "## Methods", "## Perplexity by length",
            "## Perplexity against length", "## Time and memory", "## What this means",
            "## Provenance")


@pytest.fixture(scope="module", autouse=True)
def _own_cache(tmp_path_factory):
    """Token caches of this module in a temporary folder, not the user's cache."""
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("LEXFORMER_CACHE", str(tmp_path_factory.mktemp("cache")))
        yield


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    root = tmp_path_factory.mktemp("extend")
    corpus = write_corpus(root / "corpus")
    return write_model(root / "model", corpus), corpus


def _cli(*argv: str) -> int:
    """``lexformer extend ARGV`` through its own parser (it is not yet in cli.SUBCOMMANDS), in
    float32 unless ARGV says otherwise (``auto`` would be bf16 on some CPUs only, and these
    tests compare scores to rounding) and at the old default lengths L/4, L, 2L unless ARGV
    gives its own (the tiny corpus's documents are short)."""
    from lexformer.cli import extend

    parser = argparse.ArgumentParser()
    extend.add_parser(parser.add_subparsers())
    fixed = [*(() if "--dtype" in argv else ("--dtype", "fp32")),
             *(() if "--lengths" in argv else ("--lengths", f"{CONTEXT // 4},{CONTEXT},"
                                                            f"{2 * CONTEXT}"))]
    args = parser.parse_args(["extend", *argv, *fixed])
    return args.handler(args)


def _settings(**fields) -> ExtendSettings:
    """:class:`ExtendSettings` as :func:`_cli` makes them: float32, lengths L/4, L, 2L."""
    return ExtendSettings(**{"dtype": "fp32", "lengths": [CONTEXT // 4, CONTEXT, 2 * CONTEXT],
                             **fields})


@pytest.fixture(scope="module", autouse=True)
def _tiny_ruler_data(tmp_path_factory):
    """RULER's data, tiny and local: the extend runs here score RULER beside perplexity and
    must download nothing."""
    from test_ruler import write_tiny_ruler_files

    from lexformer.tasks.ruler import load_ruler_data
    from lexformer.tasks.ruler import scores as ruler_scores

    root = tmp_path_factory.mktemp("ruler-cache")
    write_tiny_ruler_files(root / "ruler")
    data = load_ruler_data(root)
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(ruler_scores, "load_ruler_data", lambda: data)
        yield


@pytest.fixture(scope="module")
def first_run(tiny, tmp_path_factory):
    """One extend run (full attention stopped at L) and the times of its stage files."""
    model, corpus = tiny
    out = tmp_path_factory.mktemp("extend-out")
    assert _cli("--model", str(model), "--methods", ",".join(METHODS), "--corpus", str(corpus),
                "--out", str(out), "--max-docs", "3", "--full-up-to", "1",
                "--no-progress") == 0
    return out, {p.name: p.stat().st_mtime_ns for p in (out / "eval").iterdir()}


def test_report_has_every_section_and_the_plot(first_run):
    out, stages = first_run
    report = (out / "report.md").read_text()
    positions = [report.index(s) for s in SECTIONS]
    assert positions == sorted(positions)  # every section, in order
    plot = out / "plots" / "perplexity_vs_length.png"
    assert plot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert "plots/perplexity_vs_length.png" in report
    for method in METHODS:
        assert f"| {method} |" in report
    assert "arXiv 2309.17453" in report and "arXiv 2212.10554" in report
    assert len(stages) == len(METHODS)


def test_quadratic_methods_stop_at_full_up_to(first_run):
    """Default lengths L/4, L, 2L; full, self-extend and yarn stop at 1·L (--full-up-to 1),
    the window methods go on to 2L; the report says where and why."""
    out, _ = first_run
    lengths = {}
    for path in (out / "eval").iterdir():
        data = json.loads(path.read_text())
        lengths[data["method"]] = sorted(map(int, data["results"][data["method"]]))
        assert data["settings"]["documents"] == len(TEST_FILES)
    assert lengths["full"] == lengths["yarn"] == lengths["self-extend"] == [16, 64]
    assert lengths["blockwise"] == lengths["sinks"] == lengths["lambda"] == [16, 64, 128]
    report = (out / "report.md").read_text()
    assert "**full** stops at 64" in report and "--full-up-to" in report


def test_second_run_reuses_every_stage(tiny, first_run, capfd):
    model, corpus = tiny
    out, stages = first_run
    capfd.readouterr()
    assert _cli("--model", str(model), "--methods", ",".join(METHODS), "--corpus", str(corpus),
                "--out", str(out), "--max-docs", "3", "--full-up-to", "1",
                "--no-progress") == 0
    assert {p.name: p.stat().st_mtime_ns for p in (out / "eval").iterdir()} == stages
    assert capfd.readouterr().err.count("reused") == len(METHODS)
    assert "earlier run (reused)" in (out / "report.md").read_text()


def test_changed_settings_measure_again(tiny, first_run, tmp_path):
    """A stage saved with other documents is not reused."""
    model, corpus = tiny
    out, _ = first_run
    copy = tmp_path / "out"
    (copy / "eval").mkdir(parents=True)
    saved = (out / "eval" / "blockwise.json").read_text()
    (copy / "eval" / "blockwise.json").write_text(saved)
    run_extend(_settings(model=str(model), methods=["blockwise"], corpus=str(corpus),
                              out=copy, max_docs=1, progress=False))
    data = json.loads((copy / "eval" / "blockwise.json").read_text())
    assert data["settings"]["documents"] == 1


def test_raising_full_up_to_measures_only_the_quadratic_stages_again(tiny, first_run,
                                                                      tmp_path):
    """The lengths a method runs at are part of its stage's settings: with --full-up-to 2
    full reaches 2L (measured again) while blockwise, whose lengths are unchanged, is reused."""
    import shutil

    model, corpus = tiny
    out = tmp_path / "out"
    shutil.copytree(first_run[0], out)
    before = {p.name: p.read_text() for p in (out / "eval").iterdir()}
    run_extend(_settings(model=str(model), methods=["full", "blockwise"],
                              corpus=str(corpus), out=out, max_docs=3, full_up_to=2,
                              progress=False))
    full = json.loads((out / "eval" / "full.json").read_text())
    assert sorted(map(int, full["results"]["full"])) == [16, 64, 128]
    assert (out / "eval" / "blockwise.json").read_text() == before["blockwise.json"]


def test_unknown_method_fails_before_any_work(tiny, tmp_path):
    with pytest.raises(LexformerError, match="warp-drive"):
        run_extend(_settings(model=str(tiny[0]), methods=["full", "warp-drive"],
                                  corpus=str(tiny[1]), out=tmp_path / "out", progress=False))
    assert not (tmp_path / "out" / "eval").exists()


def test_bad_settings_fail_before_loading(tmp_path):
    for settings, words in ((ExtendSettings(max_docs=0, out=tmp_path), "--max-docs"),
                            (ExtendSettings(full_up_to=0, out=tmp_path), "--full-up-to"),
                            (ExtendSettings(methods=["full", "full"], out=tmp_path), "twice")):
        with pytest.raises(LexformerError, match=words):
            run_extend(settings)


class _Stub:
    context_length = 100
    attention_methods = ("full", "blockwise", "self-extend", "yarn")

    def max_length(self, method):
        return 300 if method == "self-extend" else None


def test_method_lengths_rule():
    lengths = [25, 100, 200, 400, 800]
    assert method_lengths(_Stub(), "blockwise", lengths, 2.0) == (lengths, "")
    kept, why = method_lengths(_Stub(), "yarn", lengths, 2.0)
    assert kept == [25, 100, 200] and "O(n²)" in why
    kept, why = method_lengths(_Stub(), "self-extend", lengths, 8.0)
    assert kept == [25, 100, 200] and "cannot score past 300" in why


def _stage(method: str, doc_nll: list[float]) -> StageRecord:
    n, docs = 200, len(doc_nll)
    tokens = docs * (n - 1)
    cell = LengthResult(n, math.exp(sum(doc_nll) / tokens), sum(doc_nll) / tokens, tokens,
                        docs, perplexity_interval(doc_nll, n - 1), tuple(doc_nll))
    result = PerplexityResult(model="m", corpus="c", split="test", results={method: {n: cell}})
    return StageRecord(method, result, 1.0, 10.0, "test")


def test_findings_order_only_where_the_interval_excludes_zero():
    """a is lower than b on every document (clear); c beats a on half the documents and
    loses on the other half (no ordering); d is a copy of a (same up to rounding)."""
    a = [400.0, 410.0, 420.0, 430.0, 440.0, 450.0]
    b = [x + 30.0 for x in a]
    c = [x + (-6.0 if i % 2 else 6.5) for i, x in enumerate(a)]
    run = ExtendRun(ExtendSettings(), "m", 100, [200], 6,
                    [_stage("a", a), _stage("b", b), _stage("c", c), _stage("d", list(a))])
    text = findings(run)[0]
    assert text.startswith("At 200 (2·L) a has the lowest perplexity")
    assert "It is below b" in text
    assert "cannot order it against c" in text
    assert "d score(s) the same up to rounding" in text


def test_one_document_orders_nothing():
    run = ExtendRun(ExtendSettings(), "m", 100, [200], 1,
                    [_stage("a", [400.0]), _stage("b", [500.0])])
    lines = findings(run)
    assert "cannot order it against b" in lines[0]
    assert "--max-docs" in lines[-1]


def test_context_constant_matches_the_model(first_run):
    out, _ = first_run
    assert f"L = {CONTEXT}" in (out / "report.md").read_text()
    assert Path(out / "eval" / "self-extend.json").exists()


def test_nothing_at_or_past_the_context_is_said_so():
    run = ExtendRun(ExtendSettings(), "m", 1000, [200], 6,
                    [_stage("a", [400.0] * 6), _stage("b", [410.0] * 6)])
    assert findings(run)[0].startswith("No length at or past the declared context")


def test_report_figure_never_writes_through_a_planted_symlink(tiny, tmp_path):
    """A link at the figure's path is replaced by the figure; a ``plots`` folder planted as a
    link elsewhere is refused in one line, and nothing is written through either."""
    model, corpus = tiny
    out, elsewhere = tmp_path / "out", tmp_path / "elsewhere"
    elsewhere.mkdir()
    victim = elsewhere / "victim.png"
    victim.write_bytes(b"not yours")
    argv = ("--model", str(model), "--methods", "full,blockwise", "--corpus", str(corpus),
            "--split", "test", "--out", str(out), "--max-docs", "2", "--no-progress")
    assert _cli(*argv) == 0
    plot = out / "plots" / "perplexity_vs_length.png"
    plot.unlink()
    plot.symlink_to(victim)
    assert _cli(*argv) == 0  # the stages are reused; the report and figure are written again
    assert victim.read_bytes() == b"not yours"
    assert not plot.is_symlink() and plot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    (out / "plots").rename(out / "plots.real")
    (out / "plots").symlink_to(elsewhere, target_is_directory=True)
    with pytest.raises(LexformerError, match="symbolic link|symlink"):
        _cli(*argv)
    assert sorted(p.name for p in elsewhere.iterdir()) == ["victim.png"]
    report = (out / "report.md").read_text()
    # the corpus was given as an absolute path: shown relative to the run folder
    assert str(corpus) not in report and f"/{Path(corpus).name}` (lexformer's" in report


def test_a_changed_corpus_is_measured_again_saying_why(tiny, first_run, tmp_path, capfd):
    """The stage key holds the corpus's content fingerprint, not only its name: the same
    folder with one document edited is measured again, and the run says which input changed."""
    import shutil

    model, corpus = tiny
    edited, out = tmp_path / "corpus", tmp_path / "out"
    shutil.copytree(corpus, edited)
    shutil.copytree(first_run[0], out)
    argv = ("--model", str(model), "--methods", "blockwise", "--corpus", str(edited),
            "--out", str(out), "--max-docs", "3", "--full-up-to", "1", "--no-progress")
    # the first run named the corpus by another path: copy its key's name so only the
    # content can differ
    saved = json.loads((out / "eval" / "blockwise.json").read_text())
    saved["settings"]["corpus"] = str(edited)
    (out / "eval" / "blockwise.json").write_text(json.dumps(saved))
    capfd.readouterr()
    assert _cli(*argv) == 0
    assert "reused" in capfd.readouterr().err  # same text: reused
    doc = edited / "doc00.txt"
    doc.write_text(doc.read_text().replace("king", "queen"))
    assert _cli(*argv) == 0
    err = capfd.readouterr().err
    assert "saved with other corpus_fingerprint, measured again" in err
    after = json.loads((out / "eval" / "blockwise.json").read_text())
    assert after["settings"]["corpus_fingerprint"] != saved["settings"]["corpus_fingerprint"]


def test_out_is_refused_when_it_holds_files_extend_did_not_write(tiny, tmp_path):
    """A folder with the user's own report.md is not a run of extend: refused before any
    work, the file untouched; a run folder carries a marker and is accepted again; a folder
    of an older extend (eval/ but no marker) is still reused; a temp file a kill left is
    removed on the next run."""
    model, corpus = tiny
    out = tmp_path / "mine"
    out.mkdir()
    (out / "report.md").write_text("my own notes\n")
    argv = ("--model", str(model), "--methods", "blockwise", "--corpus", str(corpus),
            "--max-docs", "1", "--no-progress")
    with pytest.raises(LexformerError, match="not empty and is not a run of lexformer extend"):
        _cli(*argv, "--out", str(out))
    assert sorted(p.name for p in out.iterdir()) == ["report.md"]
    assert (out / "report.md").read_text() == "my own notes\n"

    run = tmp_path / "run"
    assert _cli(*argv, "--out", str(run)) == 0
    assert json.loads((run / "lexformer-run.json").read_text())["command"] == "extend"
    stale = run / "eval" / ".blockwise.json.x1y2.lexformer-tmp"
    stale.write_text("{half")
    (run / "lexformer-run.json").unlink()  # as an older version left it
    assert _cli(*argv, "--out", str(run)) == 0
    assert not stale.exists() and (run / "lexformer-run.json").is_file()


def test_rescalings_deploy_one_fixed_factor_and_the_oracle_only_on_request(tiny, first_run,
                                                                          tmp_path):
    """yarn runs with one factor set before any input: the run's longest length over L
    (128 / 64 = 2), the same at every length, so it changes the model inside L too; the
    window methods' stages keep the options the user gave; --rope-oracle is labelled."""
    out, _ = first_run
    yarn = json.loads((out / "eval" / "yarn.json").read_text())
    assert yarn["settings"]["method_options"]["rope_factor"] == 2
    assert json.loads((out / "eval" / "blockwise.json").read_text())["settings"][
        "method_options"] is None
    full = json.loads((out / "eval" / "full.json").read_text())
    # inside L a fixed factor 2 is not the unchanged model (the per-length oracle would be)
    assert yarn["results"]["yarn"]["16"]["perplexity"] != pytest.approx(
        full["results"]["full"]["16"]["perplexity"], rel=1e-9)
    assert "factor 2, fixed" in (out / "report.md").read_text()

    model, corpus = tiny
    oracle = tmp_path / "oracle"
    assert _cli("--model", str(model), "--methods", "yarn", "--corpus", str(corpus),
                "--out", str(oracle), "--max-docs", "1", "--rope-oracle", "--no-progress") == 0
    data = json.loads((oracle / "eval" / "yarn.json").read_text())
    assert data["settings"]["method_options"] is None
    assert "oracle" in (oracle / "report.md").read_text()
    with pytest.raises(LexformerError, match="exclude each other"):
        _cli("--model", str(model), "--methods", "yarn", "--corpus", str(corpus), "--out",
             str(tmp_path / "x"), "--rope-oracle", "--rope-factor", "4", "--no-progress")


# --------------------------------------------------------------------------- RULER
def test_ruler_is_scored_beside_perplexity_and_reused(tiny, tmp_path, capfd):
    """Window methods score RULER at 8·L; full attention, quadratic, stops at --full-up-to
    for RULER as for perplexity; every method sees the same samples; a second run reuses the
    RULER stages; the report has the retrieval table and names which method serves which
    need."""
    model, corpus = tiny
    only, tmp_path = tmp_path / "only", tmp_path / "all"
    argv = ("--model", str(model), "--methods", "full,blockwise,sinks", "--corpus", str(corpus),
            "--out", str(tmp_path), "--max-docs", "2", "--ruler-tasks", "niah_single_1,fwe",
            "--ruler-lengths", str(8 * CONTEXT), "--ruler-samples", "2", "--no-progress")
    assert _cli(*argv, "--ruler-methods", "sinks", "--out", str(only)) == 0
    assert [p.name for p in (only / "eval").glob("*.ruler.json")] == [
        "sinks.ruler.json"]
    assert _cli(*argv) == 0
    files = sorted(p.name for p in (tmp_path / "eval").glob("*.ruler.json"))
    assert files == ["blockwise.ruler.json", "sinks.ruler.json"]
    data = json.loads((tmp_path / "eval" / "sinks.ruler.json").read_text())
    assert data["settings"]["ruler_tasks"] == ["niah_single_1", "fwe"]
    cell = data["ruler"]["fwe"][str(8 * CONTEXT)]
    assert cell["samples"] == 2 and len(cell["per_sample"]) == 2
    assert 0.0 <= cell["ci95"][0] <= cell["score"] <= cell["ci95"][1] <= 1.0
    report = (tmp_path / "report.md").read_text()
    retrieval = report[report.index("## Retrieval (RULER)"):report.index("## Time and memory")]
    assert "| blockwise |" in retrieval and "| sinks |" in retrieval
    assert "| full |" not in retrieval
    assert "Which method for which need" in report and "Retrieval (RULER) at 512" in report
    capfd.readouterr()
    assert _cli(*argv) == 0
    assert capfd.readouterr().err.count("RULER") >= 2  # "RULER …: already scored …, reused"
    assert sorted(p.name for p in (tmp_path / "eval").glob("*.ruler.json")) == files


def test_ruler_none_leaves_retrieval_out(tiny, tmp_path):
    model, corpus = tiny
    assert _cli("--model", str(model), "--methods", "blockwise", "--corpus", str(corpus),
                "--out", str(tmp_path), "--max-docs", "1", "--ruler-tasks", "none",
                "--no-progress") == 0
    assert not list((tmp_path / "eval").glob("*.ruler.json"))
    assert "## Retrieval (RULER)" not in (tmp_path / "report.md").read_text()


@pytest.mark.parametrize("argv, words", [
    (("--ruler-tasks", "niah_single_9"), "unknown RULER task"),
    (("--ruler-samples", "0"), "--ruler-samples"),
    (("--ruler-lengths", "0"), "integers ≥ 2"),
    (("--seed", "-1"), "--seed"),
    (("--preset", "huge"), "invalid choice"),
    (("--methods", "full,sinks", "--ruler-methods", "yarn"), "not a method of this run"),
])
def test_bad_ruler_options_are_refused_before_loading(tmp_path, argv, words, capsys):
    with pytest.raises((SystemExit, LexformerError)) as caught:
        _cli("--model", str(tmp_path / "no-such-model"), "--out", str(tmp_path / "o"), *argv)
    text = str(caught.value) + capsys.readouterr().err
    assert isinstance(caught.value, LexformerError) or caught.value.code == 2
    assert words in text and "no-such-model" not in text


def test_long_preset_fills_only_what_the_user_left_at_its_default():
    from lexformer.experiments.extend import LONG_PRESET, apply_preset
    from lexformer.hf import HF_METHODS
    from lexformer.tasks.ruler import RULER_TASKS

    long = apply_preset(ExtendSettings(preset="long"))
    assert list(long.methods) == list(HF_METHODS) and long.full_up_to == LONG_PRESET["full_up_to"]
    assert list(long.ruler_tasks) == list(RULER_TASKS) and long.ruler_samples == 10
    mine = apply_preset(ExtendSettings(preset="long", max_docs=1, methods=["sinks"]))
    assert mine.max_docs == 1 and list(mine.methods) == ["sinks"]
    assert apply_preset(ExtendSettings()) == ExtendSettings()


def test_one_long_file_is_measured_whole_by_default(tiny, tmp_path):
    """The issue's example through ``extend``: one file longer than any of its 14 test parts
    at the longest length; by default (``all`` for the user's files) it is one whole
    document, and the report says so."""
    model, corpus = tiny
    novel = tmp_path / "novel.txt"
    novel.write_text("".join(p.read_text() for p in sorted(corpus.glob("*.txt"))))
    argv = ("--model", str(model), "--methods", "blockwise", "--corpus", str(novel),
            "--lengths", "64,4096", "--out", str(tmp_path / "out"), "--no-progress")
    with pytest.raises(LexformerError, match="4096"):
        _cli(*argv, "--split", "test")
    assert _cli(*argv) == 0
    saved = json.loads((tmp_path / "out" / "eval" / "blockwise.json").read_text())
    assert saved["split"] == "all" and saved["settings"]["split"] == "all"
    assert saved["results"]["blockwise"]["4096"]["documents"] == 1
    assert "your text, whole" in (tmp_path / "out" / "report.md").read_text()


def test_stage_key_holds_a_device_or_dtype_other_than_cpu_float32():
    """A run at another dtype is measured again, not reused; one on the CPU in float32 keys
    its stages as before --dtype existed (saved stages stay reusable)."""
    from lexformer.experiments.extend import ExtendSettings, stage_settings

    plain = stage_settings(ExtendSettings(dtype=None), "m", [64], 1, 64)
    assert "dtype" not in plain and "device" not in plain
    assert stage_settings(ExtendSettings(device="cpu", dtype="float32"), "m", [64], 1, 64) == plain
    bf16 = stage_settings(ExtendSettings(dtype="bfloat16"), "m", [64], 1, 64)
    assert (bf16["device"], bf16["dtype"]) == ("cpu", "bfloat16")


def _two_lengths(method: str, short: list[float], long: list[float]) -> StageRecord:
    cells = {}
    for n, doc_nll in ((50, short), (200, long)):
        tokens = len(doc_nll) * (n - 1)
        cells[n] = LengthResult(n, math.exp(sum(doc_nll) / tokens), sum(doc_nll) / tokens,
                                tokens, len(doc_nll), perplexity_interval(doc_nll, n - 1),
                                tuple(doc_nll))
    result = PerplexityResult(model="m", corpus="c", split="test", results={method: cells})
    return StageRecord(method, result, 1.0, 10.0, "test")


def test_a_gap_within_the_runs_rounding_floor_is_not_an_ordering():
    """In bf16 two kernels computing the same attention differ by ~0.1 %: at L/4, where
    blockwise and sinks both see every key, they differ by 0.2 % of NLL here; at 2·L a
    consistent gap smaller than that is called the same, not an ordering."""
    from lexformer.experiments.extend_report import rounding_floor

    base = [100.0, 104.0, 98.0, 101.0, 99.0, 103.0]
    run = ExtendRun(ExtendSettings(), "m", 100, [50, 200], 6, [
        _two_lengths("blockwise", base, [4 * x for x in base]),
        _two_lengths("sinks", [x * 1.002 for x in base], [4 * x * 1.0005 for x in base])])
    assert rounding_floor(run) > 0.0
    lines = findings(run)
    assert "sinks score(s) the same up to rounding" in lines[0]
    assert any(line.startswith("Rounding: up to L") for line in lines)
