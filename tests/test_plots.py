"""Plots write non-empty PNG files into folders they create."""

from __future__ import annotations

import sys

import numpy as np

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
