"""Perplexity by length through the LanguageModel interface: the protocol's numbers, typed
results and their JSON form."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from lexformer import LexformerError, ModelConfig, TransformerLM
from lexformer.evaluate import (
    LengthResult,
    PerplexityResult,
    check_lengths,
    evaluate_perplexity,
    format_table,
)
from lexformer.lm import LexformerLM

LENGTHS = [8, 16, 32]


@pytest.fixture(scope="module")
def model():
    torch.manual_seed(0)
    cfg = ModelConfig(vocab_size=64, n_layer=1, n_head=2, d_model=16, d_ff=32, train_length=16,
                      position="xpos")
    return TransformerLM(cfg).eval()


@pytest.fixture(scope="module")
def docs():
    rng = np.random.default_rng(0)
    return [rng.integers(0, 64, size=32) for _ in range(5)]


def _reference(model, docs, n, attention):
    """The protocol spelt out: every document's first N tokens in chunks of n, each chunk
    scored on its own with cross-entropy of logits, the first token unscored."""
    total, count = 0.0, 0
    for d in docs:
        for chunk in torch.as_tensor(np.stack([d])).reshape(-1, n):
            logits = model(chunk[None], attention=attention)
            total += F.cross_entropy(logits[0, :-1].double(), chunk[1:], reduction="sum").item()
            count += n - 1
    return total / count, count


@pytest.mark.parametrize("attention", ["full", "blockwise"])
def test_perplexity_matches_the_protocol_reference(model, docs, attention):
    results = evaluate_perplexity(model, docs, LENGTHS, [attention], progress=False)
    for n in LENGTHS:
        nll, count = _reference(model, docs, n, attention)
        r = results[attention][n]
        assert r.tokens == count and r.documents == len(docs)
        # float32 logits, summed in another order: agreement to ~1e-6 relative
        assert r.nll == pytest.approx(nll, rel=1e-5)
        assert r.perplexity == pytest.approx(math.exp(nll), rel=1e-5)
        assert sum(r.doc_nll) == pytest.approx(r.nll * r.tokens, rel=1e-9)
        assert r.ci95[0] < r.perplexity < r.ci95[1]


def test_bare_model_and_adapter_give_the_same_numbers(model, docs):
    a = evaluate_perplexity(model, docs, LENGTHS, ["full"], progress=False)
    b = evaluate_perplexity(LexformerLM(model), docs, LENGTHS, ["full"], progress=False)
    assert a == b


class UniformLM:
    """A LanguageModel that is not a lexformer model: every token costs log(V) nats."""

    name = "uniform"
    context_length = 8
    attention_methods = ("full",)

    def __init__(self, vocab: int) -> None:
        self.vocab = vocab

    def token_nll(self, ids, attention):
        return torch.full((ids.shape[0], ids.shape[1] - 1), math.log(self.vocab))

    def max_length(self, attention):
        return None


def test_any_language_model_plugs_in(docs):
    results = evaluate_perplexity(UniformLM(64), docs, LENGTHS, ["full"], progress=False)
    for n in LENGTHS:
        assert results["full"][n].perplexity == pytest.approx(64.0, rel=1e-6)
        assert results["full"][n].ci95 == pytest.approx((64.0, 64.0), rel=1e-6)


def test_result_json_round_trip(model, docs):
    results = evaluate_perplexity(model, docs, LENGTHS, ["full", "blockwise"], progress=False)
    r = PerplexityResult(model="xpos", corpus="c", split="test", results=results, step=3)
    text = json.dumps(r.to_json())
    back = PerplexityResult.from_json(json.loads(text))
    assert back == r
    data = json.loads(text)
    assert set(data["results"]["full"]) == {"8", "16", "32"}  # JSON keys stay strings
    assert data["results"]["full"]["8"]["ci95"] == list(results["full"][8].ci95)


def test_format_table_shows_half_interval():
    r = LengthResult(64, 81.123, 4.4, 100, 5, ci95=(80.2, 82.0))
    assert "81.12 ±0.90" in format_table({"full": {64: r}})


@pytest.mark.parametrize("lengths, words", [([], "≥ 2"), ([0, 8], "≥ 2"), ([-8, 16], "≥ 2"),
                                            ([8, 12], "divide")])
def test_bad_lengths_are_refused(lengths, words):
    with pytest.raises(LexformerError, match=words):
        check_lengths(lengths)


def test_learned_positions_stop_at_their_training_length():
    cfg = ModelConfig(vocab_size=64, n_layer=1, n_head=2, d_model=16, d_ff=32, train_length=16,
                      position="learned")
    with pytest.raises(LexformerError, match="cannot evaluate past length 16"):
        check_lengths([16, 32], TransformerLM(cfg))


def test_documents_of_the_wrong_length_are_refused(model, docs):
    with pytest.raises(LexformerError, match="exactly 32 tokens"):
        evaluate_perplexity(model, [d[:16] for d in docs], LENGTHS, ["full"], progress=False)


def test_default_lengths_stop_at_16L_for_models_trained_here_and_2L_for_pretrained_ones():
    from types import SimpleNamespace

    from lexformer.cli.eval import _default_lengths
    from lexformer.evaluate import default_lengths
    from lexformer.lm import LexformerLM

    assert default_lengths(256) == [64, 128, 256, 512, 1024, 2048, 4096]
    assert default_lengths(8192, up_to=2) == [2048, 4096, 8192, 16384]
    here = LexformerLM.__new__(LexformerLM)
    here.context_length = 64
    assert _default_lengths(here)[-1] == 16 * 64
    pretrained = SimpleNamespace(context_length=8192)  # any other LanguageModel
    assert _default_lengths(pretrained)[-1] == 2 * 8192


def test_a_lexformer_checkpoint_is_evaluated_at_another_block_size(model, docs, tmp_path):
    """Blockwise attention's h is an inference-time choice: h = L/4 instead of the default
    L/2 changes blockwise scores past 2h and leaves them identical up to 2h (where both are
    full attention)."""
    from lexformer.checkpoint import save_checkpoint
    from lexformer.config import TrainConfig
    from lexformer.hf.methods import MethodOptions
    from lexformer.models import open_model

    meta = {"model": model.config.to_dict(), "train": TrainConfig(model=model.config).to_dict(),
            "step": 1, "corpus": {"name": "test", "fingerprint": "abc"}, "last_loss": None}
    save_checkpoint(tmp_path / "run", model, meta)
    default = open_model(tmp_path / "run")
    smaller = open_model(tmp_path / "run", block=4)
    assert default.provenance()["block"] == 8 and smaller.provenance()["block"] == 4
    assert open_model(tmp_path / "run", MethodOptions(block=4)).provenance()["block"] == 4
    a = evaluate_perplexity(default, docs, LENGTHS, ["blockwise"], progress=False)["blockwise"]
    b = evaluate_perplexity(smaller, docs, LENGTHS, ["blockwise"], progress=False)["blockwise"]
    assert a[8] == b[8]  # 8 = 2h of the smaller block: both see the whole chunk
    assert a[32].nll != b[32].nll  # past L: the smaller block sees fewer keys
    with pytest.raises(LexformerError, match="block and window only, got sinks"):
        open_model(tmp_path / "run", sinks=4)
    with pytest.raises(LexformerError, match="unknown method option"):
        open_model(tmp_path / "run", blocks=4)


def test_provenance_and_default_lengths_come_from_the_model(model, tmp_path):
    from types import SimpleNamespace

    from lexformer.lm import model_default_lengths, model_provenance

    lm = LexformerLM(model)
    assert lm.default_lengths() == [4, 8, 16, 32, 64, 128, 256]
    assert model_provenance(lm)["checkpoint"] is None and lm.provenance()["block"] == 8
    other = SimpleNamespace(name="x", context_length=8)
    assert model_provenance(other)["model"] == "x" and model_default_lengths(other)[-1] == 16
