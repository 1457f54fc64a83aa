"""The reporting kit the three experiment reports share: cells, identical scores, tables,
provenance, the length figure, and the paired interval of a masked-token loss difference."""

from __future__ import annotations

import math
import sys

import numpy as np
import pytest

from lexformer.errors import LexformerError
from lexformer.experiments.reporting import (
    SAME_RTOL,
    SMOKE_FINDINGS,
    LengthPanel,
    figure_path,
    interval_cell,
    number,
    optional,
    plot_by_length,
    provenance_section,
    same_scores,
    shown_command,
    shown_path,
    smoke_banner,
    table,
    value_cell,
    write_report_files,
)
from lexformer.stats import (
    ratio_difference_interval,
    ratio_interval,
    resample_indices,
    resampled_ratio,
)


def test_cells_keep_each_reports_text():
    # the reproduction's and extend's perplexity cell: two decimals, none from 1000 on
    assert interval_cell(81.123, (80.2, 82.0)) == "81.12 ±0.90"
    assert interval_cell(3001.4, (2990.0, 3010.0)) == "3001 ±10.00"
    assert interval_cell(12.0, None) == "12.00"
    # the reproduction blanks what is not a number, extend prints it
    assert number(math.inf) == "–" and number(None) == "–"
    assert interval_cell(math.inf, None, blank_nonfinite=False) == "inf"
    # the masked-LM loss cell: three decimals at any size
    assert interval_cell(1234.5, (1234.0, 1235.0), digits=3, large=None) == "1234.500 ±0.500"
    # several seeds: mean ± standard deviation
    assert value_cell(5.0, 0.123) == "5.00 ±0.12"
    assert optional(None, ",d") == "–" and optional(30720, ",d") == "30,720"


def test_same_scores_bound():
    x = np.array([100.0, 200.0, 300.0])
    assert same_scores(x, x * (1 + SAME_RTOL / 10))          # float rounding of one kernel
    assert not same_scores(x, x * (1 + 10 * SAME_RTOL))      # a real, if small, difference


def test_table_lines():
    assert table(["model", "64"], [["a", "1.00"], ["b", "2.00"]]) == [
        "| model | 64 |", "|---|---|", "| a | 1.00 |", "| b | 2.00 |"]


def test_provenance_records_versions_and_machine():
    import torch

    lines = provenance_section("lexformer x", ["- wall-clock: 1 s"], started=0.0)
    text = "\n".join(lines)
    assert lines[:4] == ["## Provenance", "", "- command: `lexformer x`", "- wall-clock: 1 s"]
    assert f"torch {torch.__version__}" in text and f"numpy {np.__version__}" in text
    assert f"Python {sys.version_info.major}.{sys.version_info.minor}" in text
    machine = next(line for line in lines if line.startswith("- machine: "))
    assert " cores, " in machine and " torch threads, " in machine


def test_report_files(tmp_path):
    path = write_report_files(tmp_path, ["# t", "", "x"], {"a": 1})
    assert path.read_text() == "# t\n\nx" and (tmp_path / "results.json").exists()


def test_length_figure_with_bands(tmp_path):
    curves = {"full": {16: 10.0, 32: 9.0, 64: 8.5, 128: 400.0},
              "blockwise": {16: 10.0, 32: 9.0, 64: 8.5, 128: None}}
    bands = {"full": {16: (9.5, 10.5), 32: (8.5, 9.5), 64: (8.0, 9.0), 128: (300.0, 500.0)}}
    path = plot_by_length(tmp_path / "a" / "f.png",
                          [LengthPanel(curves, "one", 64, "L = 64", bands=bands),
                           LengthPanel(curves, "two", 64, "L = 64", guides=(0.0,))],
                          "perplexity", share_y=True, every_legend=False)
    data = path.read_bytes()
    assert len(data) > 1000 and data[:8] == b"\x89PNG\r\n\x1a\n"


def test_ratio_difference_interval_is_the_paired_bootstrap():
    rng = np.random.default_rng(0)
    masked = rng.integers(10, 20, size=8).astype(float)
    a = masked * 5.0 + rng.normal(0, 1, 8)
    b = a - 0.5 * masked                      # b is 0.5 nats lower on every masked token
    idx = resample_indices(8)
    direct = (a[idx].sum(axis=1) - b[idx].sum(axis=1)) / masked[idx].sum(axis=1)
    lo, hi = ratio_difference_interval(a, b, masked, idx)
    assert lo == pytest.approx(np.percentile(direct, 2.5))
    assert hi == pytest.approx(np.percentile(direct, 97.5))
    assert lo == pytest.approx(0.5) and hi == pytest.approx(0.5)
    assert np.allclose(resampled_ratio(a, masked, idx),
                       a[idx].sum(axis=1) / masked[idx].sum(axis=1))
    assert ratio_difference_interval(a[:1], b[:1], masked[:1]) is None
    ratios = a[idx].sum(axis=1) / masked[idx].sum(axis=1)
    assert ratio_interval(a, masked, idx) == pytest.approx(
        (np.percentile(ratios, 2.5), np.percentile(ratios, 97.5)))
    assert ratio_interval(a[:1], masked[:1]) is None
    with pytest.raises(LexformerError):
        ratio_difference_interval(a, b[:3], masked)


def test_figure_path_refuses_a_planted_symlinked_folder(tmp_path):
    out, elsewhere = tmp_path / "run", tmp_path / "elsewhere"
    out.mkdir()
    elsewhere.mkdir()
    (out / "plots").symlink_to(elsewhere, target_is_directory=True)
    with pytest.raises(LexformerError, match="plots is a symbolic link"):
        figure_path(out, "plots/perplexity_vs_length.png")
    with pytest.raises(LexformerError, match="symbolic link"):
        figure_path(out, "plots/deeper/f.png")  # the outermost link is named
    (out / "plots").unlink()
    (out / "plots").write_text("a file")
    with pytest.raises(LexformerError, match="not a folder"):
        figure_path(out, "plots/f.png")
    # the run folder itself may be a link the user made; a folder not made yet is fine
    (tmp_path / "link").symlink_to(out, target_is_directory=True)
    assert figure_path(tmp_path / "link", "new/f.png") == tmp_path / "link" / "new" / "f.png"
    assert list(elsewhere.iterdir()) == []


def test_reports_show_absolute_paths_relative_to_the_run_folder(tmp_path):
    out = tmp_path / "runs" / "extend"
    assert shown_path(str(out), out) == "."
    assert shown_path(str(tmp_path / "runs" / "model"), out) == "../model"
    assert shown_path("shakespeare", out) == "shakespeare"  # a corpus name stays a name
    command = (f"lexformer extend --model {tmp_path}/runs/model --corpus=texts "
               f"--out {out} --plots={out}/figs --no-progress")
    assert shown_command(command, out) == ("lexformer extend --model ../model --corpus=texts "
                                           "--out . --plots=figs --no-progress")
    lines = provenance_section(command, [], started=0.0, out=out)
    assert str(tmp_path) not in "\n".join(lines)
    assert lines[2] == ("- command: `lexformer extend --model ../model --corpus=texts --out . "
                        "--plots=figs --no-progress` (absolute paths shown relative to the "
                        "run folder)")
    # nothing to rewrite: the line as before
    assert provenance_section("lexformer x", [], out=out)[2] == "- command: `lexformer x`"


def test_smoke_presets_open_with_a_banner():
    for preset in ("smoke", "mlm-smoke"):
        banner = smoke_banner(preset)
        assert banner[0].startswith("> **Smoke run: these numbers mean nothing.**")
        assert f"`{preset}`" in banner[0] and "pipeline works" in banner[0]
    assert smoke_banner("tiny") == [] and smoke_banner("mlm-tiny") == []
    assert "No conclusions" in SMOKE_FINDINGS
