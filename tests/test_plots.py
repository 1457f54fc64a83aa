"""Plots write non-empty PNG files into folders they create."""

from __future__ import annotations

import sys

import numpy as np
import pytest

from lexformer.analysis import expectation_curves
from lexformer.evaluate import Label
from lexformer.paper import TABLE2_BY_LABEL
from lexformer.plots import (
    plot_expectation_curves,
    plot_expected_scores,
    plot_perplexity_vs_length,
)

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def _is_png(path) -> bool:
    data = path.read_bytes()
    return len(data) > 1000 and data[:8] == PNG_SIGNATURE


def test_importing_lexformer_does_not_import_matplotlib():
    import subprocess

    code = "import lexformer, lexformer.plots, sys; print('matplotlib' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True)
    assert out.stdout.strip() == "False"


def test_expectation_curves_png(tmp_path):
    path = plot_expectation_curves(tmp_path / "new" / "fig1.png",
                                   expectation_curves(head_dim=64, max_distance=512))
    assert path == tmp_path / "new" / "fig1.png" and _is_png(path)


def test_perplexity_vs_length_png(tmp_path):
    results = {
        Label("xpos", "full"): {64: 160.0, 128: 150.0, 256: 149.0, 512: 152.0, 1024: 160.0},
        Label("xpos", "blockwise"): {64: 160.0, 128: 150.0, 256: 149.0, 512: 146.0, 1024: 145.0},
        Label("rope", "full"): {64: 158.0, 128: 151.0, 256: 150.0, 512: 400.0, 1024: 3000.0},
        Label("rope", "blockwise"): {64: 158.0, 128: 151.0, 256: 150.0, 512: 151.0, 1024: None},
    }
    path = plot_perplexity_vs_length(tmp_path / "a" / "b" / "ppl.png", results, 256)
    assert _is_png(path)
    path2 = plot_perplexity_vs_length(tmp_path / "ppl_paper.png", results, 256,
                                      paper=TABLE2_BY_LABEL)
    assert _is_png(path2)


def test_expected_scores_png(tmp_path):
    s = -0.01 * np.arange(64.0)
    blockwise = s.copy()
    blockwise[32:] = np.nan
    path = plot_expected_scores(tmp_path / "shat" / "s.png",
                                {Label("xpos", "full"): s, Label("xpos", "blockwise"): blockwise,
                                 Label("rope", "full"): np.cos(np.arange(64.0))})
    assert _is_png(path)


def _ppl_results():
    return {Label("xpos", "full"): {64: 160.0, 128: 150.0, 256: 149.0, 512: 400.0},
            Label("xpos", "blockwise"): {64: 160.0, 128: 150.0, 256: 149.0, 512: 146.0}}


def test_a_symlink_at_the_figure_path_is_replaced_not_written_through(tmp_path):
    victim = tmp_path / "elsewhere" / "victim.png"
    victim.parent.mkdir()
    victim.write_bytes(b"someone else's file")
    (tmp_path / "plots").mkdir()
    link = tmp_path / "plots" / "ppl.png"
    link.symlink_to(victim)
    plot_perplexity_vs_length(link, _ppl_results(), 256)
    assert victim.read_bytes() == b"someone else's file"
    assert not link.is_symlink() and _is_png(link)


def test_a_figure_that_fails_to_draw_leaves_the_old_file_and_no_temp_file(tmp_path,
                                                                          monkeypatch):
    import matplotlib.figure

    path = plot_perplexity_vs_length(tmp_path / "ppl.png", _ppl_results(), 256)
    before = path.read_bytes()

    def killed(self, f, **kwargs):  # half a PNG, then the drawing dies
        f.write(before[:100])
        raise RuntimeError("killed while drawing")

    monkeypatch.setattr(matplotlib.figure.Figure, "savefig", killed)
    with pytest.raises(RuntimeError, match="killed"):
        plot_perplexity_vs_length(path, _ppl_results(), 256)
    assert path.read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ppl.png"]


def test_perplexity_figure_log_y_bands_and_legend_outside(tmp_path, monkeypatch):
    import lexformer.plots as plots

    drawn = []
    monkeypatch.setattr(plots, "save_figure", lambda fig, path: drawn.append(fig) or path)
    bands = {Label("xpos", "full"): {n: (0.9 * v, 1.1 * v) for n, v in
                                     _ppl_results()[Label("xpos", "full")].items()}}
    plot_perplexity_vs_length(tmp_path / "ppl.png", _ppl_results(), 256, bands=bands,
                              paper=TABLE2_BY_LABEL)
    fig = drawn[0]
    fig.canvas.draw()
    ours, paper = fig.axes
    assert ours.get_yscale() == paper.get_yscale() == "log"
    assert len(ours.collections) == 1 and not paper.collections  # one band: ours, xpos/full
    legends = [ax.get_legend() for ax in fig.axes if ax.get_legend() is not None]
    assert len(legends) == 1  # one legend for both panels, right of the last one
    box, right = legends[0].get_window_extent(), paper.get_window_extent()
    assert box.x0 >= right.x1
    labels = [t.get_text() for t in legends[0].get_texts()]
    assert len(labels) == len(set(labels)) and "xpos / full" in labels
    plots.pyplot().close(fig)
