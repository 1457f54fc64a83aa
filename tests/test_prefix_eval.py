"""extend's protocol (lexformer.prefix_eval): one pass per document serves every length.

The fast path reads a document once at its longest length and scores the prefixes; the slow,
obvious reference reads each prefix as its own input. They must agree for every method that
``length_dependent`` calls independent of the input's length — and must NOT agree for those it
calls dependent, or the flag would be unnecessary (and a wrong flag would go unseen).
"""

from __future__ import annotations

import math

import numpy as np
import pytest
from tiny_hf import sharp_llama

from lexformer.hf import HF_METHODS, MethodOptions, open_hf_model
from lexformer.hf.rope_scaling import length_dependent
from lexformer.prefix_eval import (
    UNIT_TOKENS,
    measure_prefixes,
    position_loss,
    prefix_result,
    unit_bounds,
)

CONTEXT = 64
VOCAB = 97
LONG, SHORT = 168, 100  # both past L; self-extend with these options scores up to 172
OPTIONS = MethodOptions(block=16, window=20, sinks=3, global_tokens=3, local_window=20,
                        distance_cap=24, group=3, neighbours=10)
FIXED = MethodOptions(**{**OPTIONS.__dict__, "rope_factor": 4})


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    model = sharp_llama(VOCAB, CONTEXT)
    folder = tmp_path_factory.mktemp("tiny-llama")
    model.save_pretrained(folder)
    return folder


def _lm(folder, options):
    lm = open_hf_model(str(folder), options=options)
    lm.model.double()  # float64: a real difference is ≫ rounding (~1e-13 here)
    return lm


def _doc(seed: int) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, VOCAB, size=LONG)


@pytest.mark.parametrize("method", list(HF_METHODS))
@pytest.mark.parametrize("options", [OPTIONS, FIXED], ids=["per-length", "fixed-factor"])
def test_one_pass_equals_a_pass_per_length_exactly_where_promised(tiny, method, options):
    lm = _lm(tiny, options)
    docs = [_doc(1), _doc(2)]
    one, _ = measure_prefixes(lm, docs, [SHORT, LONG], method, one_pass=True)
    each, _ = measure_prefixes(lm, docs, [SHORT, LONG], method, one_pass=False)
    assert one[LONG].doc_nll == pytest.approx(each[LONG].doc_nll, rel=1e-12)  # same pass
    gap = max(abs(a - b) / abs(b) for a, b in zip(one[SHORT].doc_nll, each[SHORT].doc_nll))
    # 1e-9 bounds float64 rounding of two passes (below); a real change is 100× that or more
    if length_dependent(method, options):
        assert gap > 1e-7, f"{method} is flagged length-dependent, yet a prefix is the same"
    else:
        # float64: the two passes differ only in how the kernels batch the work
        assert gap < 1e-9, f"{method}: a prefix of a long pass is not a short pass ({gap:.1e})"


def test_which_methods_depend_on_the_length():
    """Pinned: dynamic NTK always; the rescalings only with the per-length (oracle) factor."""
    dependent = {m for m in HF_METHODS if length_dependent(m, OPTIONS)}
    assert dependent == {"pi", "yarn", "llama3", "dynamic-ntk"}
    assert {m for m in HF_METHODS if length_dependent(m, FIXED)} == {"dynamic-ntk"}
    target = MethodOptions(target_length=4096)
    assert not length_dependent("yarn", target)
    assert not length_dependent("lexformer-blockwise-not-hf", None)


def test_unit_bounds_cover_every_target_once():
    for length in (2, 5, UNIT_TOKENS, UNIT_TOKENS + 1, 3 * UNIT_TOKENS):
        bounds = unit_bounds(length)
        covered = [t for a, b in bounds for t in range(a, b)]
        assert covered == list(range(1, length))
        assert all(b - a <= UNIT_TOKENS for a, b in bounds)
    assert unit_bounds(4096) == [(1, 1024), (1024, 2048), (2048, 3072), (3072, 4096)]


def test_prefix_result_is_the_mean_over_the_prefix_targets():
    rng = np.random.default_rng(0)
    losses = rng.uniform(0.5, 3.0, size=(3, 9))  # 3 documents, targets at positions 1 … 9
    cell = prefix_result(losses, 7, unit=3)  # targets 1 … 6: blocks [1, 3), [3, 6), [6, 7)
    assert cell.tokens == 3 * 6 and cell.documents == 3
    assert cell.nll == pytest.approx(losses[:, :6].mean(), rel=1e-12)
    assert cell.perplexity == pytest.approx(math.exp(losses[:, :6].mean()), rel=1e-12)
    assert cell.unit_tokens == (2, 3, 1) * 3
    assert cell.doc_nll[:3] == pytest.approx([losses[0, :2].sum(), losses[0, 2:5].sum(),
                                              losses[0, 5]])
    lo, hi = cell.ci95
    assert lo < cell.perplexity < hi
    single = prefix_result(losses[:1], 3, unit=3)  # one block: nothing to resample
    assert single.ci95 is None


def test_position_loss_bins_are_log2_and_exact():
    losses = np.arange(1.0, 10.0)[None, :]  # positions 1 … 9 have losses 1 … 9
    assert position_loss(losses) == {1: 1.0, 2: 2.5, 4: 5.5, 8: 8.5}
