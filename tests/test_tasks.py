"""Context-use tasks: mechanics on stub language models with known answers, validation, JSON,
plots, and one end-to-end run on a tiny random TransformerLM in every attention mode."""

from __future__ import annotations

import json
import math
import re

import numpy as np
import pytest
import torch

from lexformer.config import ATTENTION_MODES, ModelConfig
from lexformer.data import ByteTokenizer, train_bpe_tokenizer
from lexformer.errors import LexformerError
from lexformer.lm import LanguageModel, LexformerLM
from lexformer.model import TransformerLM
from lexformer.tasks import (
    BinLoss,
    CopyScore,
    PasskeyCell,
    TaskResults,
    TaskSettings,
    build_passkey_prompt,
    copy_at_distance,
    default_distances,
    log_bin_ends,
    passkey_accuracy,
    position_loss,
    run_tasks,
)
from lexformer.tasks.copying import control_sequences, copy_sequences
from lexformer.tasks.passkey import FILLER, KEY_LINE, first_integer

VOCAB = 50_000  # large, so random "text" has no accidental repeats for the copy oracle


class StubLM:
    """A LanguageModel whose per-token probabilities come from ``next_probability``."""

    name = "stub"
    attention_methods = ("full", "blockwise")

    def __init__(self, context_length: int = 64, limit: int | None = None) -> None:
        self.context_length = context_length
        self.limit = limit
        self.tokenizer = ByteTokenizer()

    def next_nll(self, seq: list[int], attention: str) -> list[float]:
        raise NotImplementedError

    def token_nll(self, ids: torch.Tensor, attention: str) -> torch.Tensor:
        assert attention in self.attention_methods
        return torch.tensor([self.next_nll(row, attention) for row in ids.tolist()],
                            dtype=torch.float32)

    def greedy(self, ids: torch.Tensor, max_new_tokens: int, attention: str) -> torch.Tensor:
        raise NotImplementedError

    def encode(self, text: str) -> list[int]:
        return self.tokenizer.encode(text)

    def decode(self, ids) -> str:
        return self.tokenizer.decode(ids)

    def max_length(self, attention: str) -> int | None:
        return self.limit


class UnigramLM(StubLM):
    """Ignores context: each token costs −log p(token) under a fixed Zipf distribution."""

    def __init__(self, **kw) -> None:
        super().__init__(**kw)
        p = 1.0 / np.arange(1, VOCAB + 1)
        self.cost = -np.log(p / p.sum())

    def next_nll(self, seq, attention):
        return [float(self.cost[t]) for t in seq[1:]]


class CopyOracle(StubLM):
    """Predicts the token that followed the latest earlier occurrence of the current token
    (probability 1 − ε), else uniform; under blockwise attention it only looks back
    ``context_length`` tokens, as a model with a window of L would."""

    EPS = 1e-3

    def next_nll(self, seq, attention):
        window = self.context_length if attention == "blockwise" else len(seq)
        last: dict[int, int] = {}
        hit, miss = -math.log(1 - self.EPS), -math.log(self.EPS / (VOCAB - 1))
        uniform = math.log(VOCAB)
        out = []
        for t in range(len(seq) - 1):
            j = last.get(seq[t])
            if j is None or t - j > window:
                out.append(uniform)
            else:
                out.append(hit if seq[j + 1] == seq[t + 1] else miss)
            last[seq[t]] = t
        return out


class PositionCostLM(StubLM):
    """The token with p tokens before it costs 1 + log p nats."""

    def next_nll(self, seq, attention):
        return [1.0 + math.log(p) for p in range(1, len(seq))]


class EchoKeyLM(StubLM):
    """Reads the pass key from its prompt and answers it (or a constant that is never a key)."""

    def __init__(self, constant: int | None = None, **kw) -> None:
        super().__init__(**kw)
        self.constant = constant

    def greedy(self, ids, max_new_tokens, attention):
        prompt = self.decode(ids[0].tolist())
        key = re.search(r"The pass key is (\d+)\.", prompt).group(1)
        answer = self.encode(f" {self.constant if self.constant is not None else key}. ")
        return torch.tensor([(answer * max_new_tokens)[:max_new_tokens]])


def random_documents(n: int = 6, length: int = 1024, seed: int = 1) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    return [rng.integers(0, VOCAB, size=length) for _ in range(n)]


def test_stubs_satisfy_the_language_model_protocol():
    assert isinstance(UnigramLM(), LanguageModel) and isinstance(CopyOracle(), LanguageModel)


# ---------------------------------------------------------------------------- copy
def test_a_model_that_ignores_context_gains_nothing_from_a_repeat():
    scores = copy_at_distance(UnigramLM(), random_documents(), "full", samples=8)
    assert sorted(scores) == default_distances(64)  # L/8 … 16·L
    for score in scores.values():
        assert abs(score.gain) < 0.05 and score.samples == 8
        assert score.loss_first > 0


def test_an_exact_copier_recovers_the_whole_span():
    scores = copy_at_distance(CopyOracle(), random_documents(), "full", [8, 128, 1024],
                              samples=4)
    for score in scores.values():
        assert score.gain > 0.95, score
        assert score.loss_first == pytest.approx(math.log(VOCAB), rel=0.01)  # nothing to copy


def test_distance_is_measured_from_the_end_of_the_first_occurrence():
    # A window of L = 64 sees a copy d + span tokens back: span 32 → d ≤ 32 copies, d ≥ 33 not.
    oracle = CopyOracle(context_length=64)
    scores = copy_at_distance(oracle, random_documents(), "blockwise", [8, 32, 33, 128],
                              span=32, samples=4)
    assert scores[8].gain > 0.95 and scores[32].gain > 0.95
    assert abs(scores[33].gain) < 0.05 and abs(scores[128].gain) < 0.05
    assert copy_at_distance(oracle, random_documents(), "full", [128], samples=4
                            )[128].gain > 0.95


class WindowCopyOracle(StubLM):
    """Copies the token ``lag`` (= span + gap) positions back (NLL 0.01) when that position is
    inside its window of ``window`` tokens (lag < window); otherwise it is a model of the text's
    natural order: a token that continues a run of the two before it (``t−2, t−1, t`` in the
    ``arange`` text below) costs 1 nat, any other 3 nats.

    That left-context term is what a real model has and what biased the old gain: the repeat's
    second token follows the gap's last token, not the span's natural left context, so it
    costs 3 nats where the first occurrence's costs 1. With span 8 (tokens 2…8 scored) a
    repeat the window cannot reach costs (3 + 6·1)/7 = 9/7 nats and the first occurrence 1, so
    the old gain ``1 − loss_repeat / loss_first`` reads 1 − 9/7 = −0.286 where nothing can be
    copied; against the control (9/7 as well) the gain is exactly 0."""

    def __init__(self, lag: int, window: int, **kw) -> None:
        super().__init__(**kw)
        self.lag, self.window = lag, window

    def next_nll(self, seq, attention):
        out = []
        for t in range(1, len(seq)):
            if self.lag < self.window and t >= self.lag and seq[t] == seq[t - self.lag]:
                out.append(0.01)
            elif t >= 2 and seq[t] == seq[t - 1] + 1 == seq[t - 2] + 2:
                out.append(1.0)
            else:
                out.append(3.0)
        return out


def test_the_gain_against_the_control_is_zero_exactly_where_the_window_cannot_see_the_span():
    span, window, docs = 8, 64, [np.arange(4000)]
    for d in (16, 55, 56, 300):  # lag span + d: 24, 63 inside the window; 64, 308 outside
        oracle = WindowCopyOracle(span + d, window)
        score = copy_at_distance(oracle, docs, "full", [d], span=span, samples=4)[d]
        assert score.loss_first == pytest.approx(1.0)
        assert score.loss_control == pytest.approx(9 / 7)  # nothing to copy in the control
        if span + d < window:
            assert score.loss_repeat == pytest.approx(0.01)
            assert score.gain == pytest.approx(1 - 0.01 / (9 / 7)) and score.gain > 0.99
        else:
            assert score.gain == 0.0
            # what the old definition read there: below 0 for a span it cannot see
            assert 1 - score.loss_repeat / score.loss_first == pytest.approx(-2 / 7)


def test_the_control_replaces_only_the_first_occurrence_by_another_span():
    pool, prefix, span, d = np.arange(5000), 32, 8, 100
    copies = copy_sequences(pool, prefix, span, d, 64, seed=3)
    controls = control_sequences(pool, prefix, span, d, 64, seed=3)
    assert controls.shape == copies.shape == (64, prefix + 2 * span + d)
    first = slice(prefix, prefix + span)
    outside = torch.ones(copies.shape[1], dtype=torch.bool)
    outside[first] = False
    assert torch.equal(controls[:, outside], copies[:, outside])
    for copy, control in zip(copies, controls):
        c = int(control[prefix])
        assert torch.equal(control[first], torch.arange(c, c + span))  # a span of the text
        assert abs(c - int(copy[prefix])) >= span  # not overlapping the copied one
    assert torch.equal(controls, control_sequences(pool, prefix, span, d, 64, seed=3))
    # 3·span − 1 tokens always leave room for a control beside the copied span; with fewer,
    # one line says so
    assert control_sequences(np.arange(23), 1, span, 6, 16, seed=0).shape == (16, 23)
    with pytest.raises(LexformerError, match="control span"):
        control_sequences(np.arange(22), 1, span, 5, 1, seed=0)


def test_copy_scores_saved_without_a_control_read_back_and_are_refused_for_reuse(tmp_path):
    from lexformer.experiments.reproduce import TASK_CODEC
    from lexformer.experiments.stages import STALE_ERRORS

    old = {"copy": {"full": {"64": {"gain": -0.2, "loss_first": 5.0, "loss_repeat": 6.0,
                                    "samples": 4}}}}
    score = TaskResults.from_json(old).copy["full"][64]
    assert not score.controlled and math.isnan(score.loss_control) and score.gain == -0.2
    path = tmp_path / "xpos.json"
    path.write_text(json.dumps({"model": "xpos", "task": "copy", "corpus": "c", "step": 1,
                                "settings": {}, "results": old}))
    with pytest.raises(STALE_ERRORS, match="without a control"):  # so the stage measures again
        TASK_CODEC.load(path)
    new = TaskResults(copy={"full": {64: CopyScore(0.5, 4.0, 2.0, 4, loss_control=4.0)}})
    assert TaskResults.from_json(json.loads(json.dumps(new.to_json()))) == new
    new.require_copy_control("here")


def test_copy_refuses_distances_the_model_or_the_text_cannot_hold():
    with pytest.raises(LexformerError, match="at most 256"):
        copy_at_distance(UnigramLM(limit=256), random_documents(), "full", [512])
    with pytest.raises(LexformerError, match="documents hold 1024"):
        copy_at_distance(UnigramLM(), random_documents(n=1), "full", [2048])
    with pytest.raises(LexformerError, match="positive"):
        copy_at_distance(UnigramLM(), random_documents(), "full", [0])
    # unset distances keep the defaults that fit: prefix 32 + 2·32 + d ≤ 128 → d ≤ 32
    assert sorted(copy_at_distance(UnigramLM(limit=128), random_documents(), "full",
                                   samples=1)) == [8, 16, 32]


# ------------------------------------------------------------------- position loss
def test_loss_by_position_is_recovered_bin_by_bin():
    docs = [np.zeros(200, dtype=np.int64), np.zeros(150, dtype=np.int64)]  # 2 + 1 chunks of 100
    bins = position_loss(PositionCostLM(), docs, "full", length=100)
    assert list(bins) == [1, 2, 4, 8, 16, 32, 64, 100] == log_bin_ends(100)
    lo = 1
    for end, got in bins.items():
        positions = np.arange(lo, min(end, 99) + 1)
        assert got.tokens == 3 * len(positions)  # three chunks of 100
        assert got.loss == pytest.approx(np.mean(1.0 + np.log(positions)), rel=1e-6)
        lo = end + 1


def test_position_loss_defaults_to_the_document_length_cut_to_the_model_limit():
    docs = [np.zeros(512, dtype=np.int64)]
    assert max(position_loss(PositionCostLM(), docs, "full")) == 512
    assert max(position_loss(PositionCostLM(limit=128), docs, "full")) == 128
    with pytest.raises(LexformerError, match="longer than"):
        position_loss(PositionCostLM(limit=128), docs, "full", length=256)


# ------------------------------------------------------------------------- passkey
def _bpe():
    text = " ".join(FILLER) + " There is an important info hidden in the pass key 123 456. "
    return train_bpe_tokenizer([text * 20, "What is the pass key? Remember it."] * 5, 300)


@pytest.mark.parametrize("tokenizer", [ByteTokenizer(), _bpe()], ids=["bytes", "bpe"])
@pytest.mark.parametrize("length", [400, 1000, 5000])
@pytest.mark.parametrize("depth", [0.0, 0.3, 1.0])
def test_passkey_prompt_hits_the_length_and_the_depth(tokenizer, length, depth):
    prompt = build_passkey_prompt(tokenizer.encode, length, depth, key=31415)
    assert prompt.ids == tokenizer.encode(prompt.text)
    # tolerance: never over, short by less than one filler sentence (+1 for a BPE merge)
    sentence = max(len(tokenizer.encode(" " + s)) for s in FILLER)
    assert length - sentence - 1 <= len(prompt.ids) <= length
    before, after = prompt.text.split(KEY_LINE.format(key=31415))
    n_before = sum(before.count(s) for s in FILLER)
    n_total = n_before + sum(after.count(s) for s in FILLER)
    assert n_total > 0 and abs(n_before / n_total - depth) <= 1 / n_total + 1e-12
    assert prompt.text.endswith("The pass key is")


def test_passkey_refuses_a_length_shorter_than_its_fixed_text():
    with pytest.raises(LexformerError, match="too short"):
        build_passkey_prompt(ByteTokenizer().encode, 100, 0.5, key=7)


def test_a_model_that_echoes_the_key_passes_and_a_constant_fails():
    kw = dict(lengths=[300, 600], depths=[0.0, 0.5, 1.0], trials=3)
    good = passkey_accuracy(EchoKeyLM(), "full", **kw)
    bad = passkey_accuracy(EchoKeyLM(constant=0), "full", **kw)
    assert {n: sorted(row) for n, row in good.items()} == {300: [0.0, 0.5, 1.0],
                                                          600: [0.0, 0.5, 1.0]}
    assert all(c == PasskeyCell(1.0, 3) for row in good.values() for c in row.values())
    assert all(c == PasskeyCell(0.0, 3) for row in bad.values() for c in row.values())
    assert first_integer(" 0042 is it") == 42 and first_integer("none") is None


# ------------------------------------------------------------ registry, JSON, plots
def test_run_tasks_validates_before_work():
    with pytest.raises(LexformerError, match="unknown task.*choose from position-loss"):
        run_tasks(UnigramLM(), ["copy", "nope"], ["full"], random_documents())
    with pytest.raises(LexformerError, match="no attention method 'sliding'"):
        run_tasks(UnigramLM(), ["copy"], ["sliding"], random_documents())
    with pytest.raises(LexformerError, match="positive"):
        run_tasks(UnigramLM(), ["copy"], ["full"], random_documents(), distances=[64, -1])
    with pytest.raises(LexformerError, match="need evaluation documents"):
        run_tasks(UnigramLM(), ["copy"], ["full"])
    with pytest.raises(LexformerError, match="depths"):
        TaskSettings(depths=(0.5, 1.5))


def test_run_tasks_checks_every_task_before_scoring_any():
    class Counting(PositionCostLM):
        calls = 0

        def token_nll(self, ids, attention):
            Counting.calls += 1
            return super().token_nll(ids, attention)

    lm = Counting(limit=256)
    with pytest.raises(LexformerError, match="copy at distance 512 .* at most 256"):
        run_tasks(lm, ["position-loss", "copy"], ["full"], random_documents(), distances=[512])
    with pytest.raises(LexformerError, match="passkey length 100 is too short"):
        run_tasks(lm, ["position-loss", "passkey"], ["full"], random_documents(),
                  passkey_lengths=[100])
    assert Counting.calls == 0


def test_importing_the_tasks_does_not_import_matplotlib():
    import subprocess
    import sys

    code = "import lexformer.tasks, sys; print('matplotlib' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True)
    assert out.stdout.strip() == "False"


def test_results_json_has_the_agreed_shape_and_round_trips():
    results = TaskResults(
        copy={"full": {64: CopyScore(0.5, 4.0, 2.0, 16)}},
        position_loss={"blockwise": {1: BinLoss(5.0, 10), 2: BinLoss(float("nan"), 0)}},
        passkey={"full": {512: {0.25: PasskeyCell(0.8, 10)}}})
    data = json.loads(json.dumps(results.to_json()))  # plain JSON, nothing else
    assert data == {
        "copy": {"full": {"64": {"gain": 0.5, "loss_first": 4.0, "loss_repeat": 2.0,
                                 "samples": 16}}},
        "position-loss": {"blockwise": {"1": {"loss": 5.0, "tokens": 10},
                                        "2": {"loss": None, "tokens": 0}}},
        "passkey": {"full": {"512": {"0.25": {"accuracy": 0.8, "trials": 10}}}}}
    back = TaskResults.from_json(data)
    assert back.copy == results.copy and back.passkey == results.passkey
    assert back.position_loss["blockwise"][1] == BinLoss(5.0, 10)
    assert math.isnan(back.position_loss["blockwise"][2].loss)
    with pytest.raises(LexformerError, match="lacks"):
        TaskResults.from_json({"copy": {"full": {"64": {"gain": 1.0}}}})


# ------------------------------------------------------------- a real TransformerLM
def test_a_one_layer_model_gains_nothing_where_its_window_cannot_reach_the_span():
    """Under blockwise attention one layer sees less than L tokens back, so from d + span ≥ L
    on the repeat is computed from the same tokens with and without the first occurrence: the
    gain against the control is 0 (to rounding), where the old gain against the first
    occurrence read whatever the two contexts' difference made it (±3e-4 on this model)."""
    config = ModelConfig(vocab_size=256, n_layer=1, n_head=2, d_model=32, d_ff=64,
                         train_length=32)
    lm = LexformerLM(TransformerLM(config), ByteTokenizer(), name="tiny")
    docs = [np.random.default_rng(i).integers(0, 256, size=512) for i in range(4)]
    scores = copy_at_distance(lm, docs, "blockwise", [24, 64, 128], span=8, samples=3)
    for score in scores.values():
        assert abs(score.gain) < 1e-6 and score.controlled, score


def test_every_task_runs_on_a_tiny_transformer_in_every_attention_mode(tmp_path):
    from lexformer.tasks.plots import plot_task_results

    config = ModelConfig(vocab_size=256, n_layer=1, n_head=2, d_model=32, d_ff=64,
                         train_length=32)
    lm = LexformerLM(TransformerLM(config), ByteTokenizer(), name="tiny")
    docs = [np.random.default_rng(i).integers(0, 256, size=512) for i in range(4)]
    results = run_tasks(lm, ["passkey", "copy", "position-loss"], list(ATTENTION_MODES), docs,
                        samples=2, span=8, passkey_lengths=[256, 512], depths=[0.0, 1.0],
                        trials=2, progress=False)
    assert set(results.copy) == set(results.position_loss) == set(results.passkey) \
        == set(ATTENTION_MODES)
    for attention in ATTENTION_MODES:
        copy = results.copy[attention]
        assert sorted(copy) == default_distances(32)  # 4 … 512 all fit 4·512 tokens of text
        assert all(math.isfinite(s.gain) and s.loss_first > 0 for s in copy.values())
        bins = results.position_loss[attention]
        assert list(bins) == log_bin_ends(512)
        assert sum(b.tokens for b in bins.values()) == 4 * 511
        assert all(math.isfinite(b.loss) for b in bins.values())
        cells = [c for row in results.passkey[attention].values() for c in row.values()]
        assert len(cells) == 4 and all(0.0 <= c.accuracy <= 1.0 and c.trials == 2
                                       for c in cells)
    # the three windowed/unwindowed modes agree within one window (all see the same tokens)
    assert results.position_loss["blockwise"][1].loss == pytest.approx(
        results.position_loss["full"][1].loss, rel=1e-4)
    paths = plot_task_results(results, tmp_path / "figs", train_length=32)
    assert [p.name for p in paths] == ["position-loss.png", "copy-gain.png", "passkey.png"]
    assert all(p.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" for p in paths)
