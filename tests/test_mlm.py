"""Masked-LM objective: BERT masking, training, resume, DDP, evaluation by length, and the
``reproduce --objective mlm`` pipeline end to end on a synthetic corpus."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from cli_harness import assert_clean_failure, run_cli
from ddp_reference import ddp_order_reference
from safetensors.torch import load_file
from text_corpus import write_corpus

from lexformer import LexformerError, ModelConfig, TransformerLM
from lexformer.data import BatchSampler
from lexformer.experiments.encoder import MLMSettings, mlm_config, run_mlm_pipeline
from lexformer.mlm import (
    MASK_RATE,
    MaskedBatchSampler,
    evaluate_masked_lm,
    mask_token_id,
    mask_tokens,
    masked_documents,
)
from lexformer.model import IGNORE_INDEX, lm_loss
from lexformer.presets import MLM_PRESETS, PRESETS, from_preset
from lexformer.train import train


@pytest.fixture(scope="module")
def corpus_dir(tmp_path_factory) -> Path:
    return write_corpus(tmp_path_factory.mktemp("corpus") / "texts")


# --------------------------------------------------------------------------- masking
def test_mask_tokens_follows_bert_rates():
    vocab, mask_id = 100, 100
    tokens = np.random.default_rng(1).integers(0, vocab, size=(200, 500))
    inputs, targets = mask_tokens(tokens, mask_id, vocab, np.random.default_rng(2))
    tokens = torch.from_numpy(tokens)
    chosen = targets != IGNORE_INDEX
    assert torch.equal(targets[chosen], tokens[chosen])
    assert torch.equal(inputs[~chosen], tokens[~chosen])  # unchosen tokens untouched
    assert ((inputs == mask_id) <= chosen).all() and (inputs <= mask_id).all()
    n = chosen.sum().item()
    # 100k tokens: 5 standard deviations of each binomial share
    assert abs(n / tokens.numel() - MASK_RATE) < 0.006
    masked = (inputs[chosen] == mask_id).float().mean().item()
    replaced = ((inputs[chosen] != mask_id) & (inputs[chosen] != tokens[chosen])).float().mean()
    kept = (inputs[chosen] == tokens[chosen]).float().mean().item()
    assert abs(masked - 0.8) < 0.017
    assert abs(replaced.item() - 0.1 * 0.99) < 0.013  # a random token equals the original 1 %
    assert abs(kept - (0.1 + 0.1 * 0.01)) < 0.013


def test_masked_batches_depend_on_seed_and_step_and_ranks_split_the_global_batch():
    tokens = np.random.default_rng(0).integers(0, 50, size=5000)

    def sampler(rank, world, batch):
        return MaskedBatchSampler(BatchSampler(tokens, 32, batch, seed=3, rank=rank,
                                               world_size=world), mask_id=50, vocab_size=50)

    one = sampler(0, 1, 8)
    halves = [sampler(0, 2, 4), sampler(1, 2, 4)]
    for step in (0, 5):
        x, y = one.batch_at(step)
        x0, y0 = halves[0].batch_at(step)
        x1, y1 = halves[1].batch_at(step)
        assert torch.equal(torch.cat((x0, x1)), x) and torch.equal(torch.cat((y0, y1)), y)
        assert torch.equal(one.batch_at(step)[0], x)  # a pure function of (seed, step)
    assert not torch.equal(one.batch_at(0)[1], one.batch_at(1)[1])
    # the loss scale counts every masked token of the step on all ranks
    masked = sum(int((h.batch_at(0)[1] != IGNORE_INDEX).sum()) for h in halves)
    assert halves[0].global_masked(0) == masked == one.global_masked(0)
    assert halves[1].loss_scale(1) == pytest.approx(2 / masked)
    assert one.loss_scale(2) == pytest.approx(2 / (masked + one.global_masked(1)))
    x, y = one.next_batch()
    assert one.step == 1 and x.shape == y.shape == (8, 32)
    state = one.state_dict()
    other = sampler(0, 1, 8)
    other.load_state_dict(state)
    assert torch.equal(other.next_batch()[1], one.next_batch()[1])


def test_mask_token_id_is_the_last_id_of_an_encoder():
    assert mask_token_id(ModelConfig(vocab_size=513, causal=False)) == 512
    with pytest.raises(LexformerError, match="no \\[MASK\\] token"):
        mask_token_id(ModelConfig())


# --------------------------------------------------------------------------- training
def _cfg(corpus_dir: Path, **kw):
    base = dict(corpus=str(corpus_dir), tokenizer="bytes", bpe_vocab_size=256,
                tokens=8 * 64 * 6, checkpoint_interval=2, eval_interval=3, eval_batches=2,
                position="xpos", objective="mlm", causal=False)
    base.update(kw)
    return from_preset("smoke", **base)


def _train(cfg, out: Path, cache: Path, **kw):
    return train(cfg, out, progress=False, threads=1, cache_dir=str(cache), **kw)


def _weights(run: Path) -> dict[str, torch.Tensor]:
    return load_file(str(run / "checkpoint" / "model.safetensors"))


def test_mlm_training_checkpoint_and_exact_resume(corpus_dir, tmp_path):
    cache = tmp_path / "cache"
    full = _train(_cfg(corpus_dir), tmp_path / "full", cache)
    meta = json.loads((tmp_path / "full" / "checkpoint" / "config.json").read_text())
    assert meta["train"]["objective"] == "mlm" and meta["model"]["causal"] is False
    assert meta["tokenizer"]["vocab_size"] == 256
    assert meta["model"]["vocab_size"] == 257 and meta["mask_token_id"] == 256
    lines = [json.loads(x) for x in (tmp_path / "full" / "metrics.jsonl").read_text()
             .splitlines()]
    assert all(np.isfinite(x["loss"]) for x in lines) and any("val_loss" in x for x in lines)
    part = _train(_cfg(corpus_dir), tmp_path / "cut", cache, stop_after_steps=3)
    assert part.stopped_early
    resumed = _train(_cfg(corpus_dir), tmp_path / "cut", cache, resume=True)
    assert resumed.step == full.step == 6
    a, b = _weights(tmp_path / "full"), _weights(tmp_path / "cut")
    for k in a:
        assert torch.equal(a[k], b[k]), k


def test_mlm_loss_falls_with_training(corpus_dir, tmp_path):
    cfg = _cfg(corpus_dir, tokens=8 * 64 * 40, lr=3e-3, warmup_steps=5)
    _train(cfg, tmp_path / "run", tmp_path / "cache")
    losses = [json.loads(x)["loss"] for x in (tmp_path / "run" / "metrics.jsonl").read_text()
              .splitlines()]
    assert np.mean(losses[-5:]) < np.mean(losses[:3]) - 1.0  # ln 257 = 5.5 at the start


def test_old_causal_checkpoints_still_load_and_resume(corpus_dir, tmp_path):
    """A checkpoint written before ``causal``/``objective`` existed loads, and resumes."""
    from lexformer.checkpoint import load

    cache = tmp_path / "cache"
    cfg = _cfg(corpus_dir, objective="clm", causal=True, tokens=8 * 64 * 4)
    _train(cfg, tmp_path / "run", cache, stop_after_steps=2)
    path = (tmp_path / "run" / "checkpoint").resolve() / "config.json"
    meta = json.loads(path.read_text())
    del meta["model"]["causal"], meta["train"]["model"]["causal"], meta["train"]["objective"]
    path.write_text(json.dumps(meta))
    assert load(tmp_path / "run").model.config.causal
    assert _train(cfg, tmp_path / "run", cache, resume=True).step == 4


def _cli_env(tmp_path: Path) -> dict[str, str]:
    return {"PYTHONPATH": str(Path(__file__).resolve().parents[1] / "src"),
            "LEXFORMER_CACHE": str(tmp_path / "cache")}


def _train_args(corpus_dir: Path, out: Path, tokens: int) -> list[str]:
    return ["train", "--preset", "smoke", "--objective", "mlm", "--corpus", str(corpus_dir),
            "--tokenizer", "bytes", "--tokens", str(tokens), "--threads", "1", "--out",
            str(out), "--no-progress"]


def test_cli_train_objective_mlm(corpus_dir, tmp_path):
    r = run_cli(*_train_args(corpus_dir, tmp_path / "run", 8 * 64 * 2),
                env=_cli_env(tmp_path))
    assert r.returncode == 0, r.stderr[-3000:]
    meta = json.loads((tmp_path / "run" / "checkpoint" / "config.json").read_text())
    assert meta["train"]["objective"] == "mlm" and not meta["model"]["causal"]
    r = run_cli("train", "--objective", "bert", "--out", str(tmp_path / "x"))
    assert r.returncode == 2 and "invalid choice" in r.stderr
    # perplexity and attention resolution are causal measures: an encoder is refused cleanly
    r = run_cli("eval", "--model", str(tmp_path / "run"), "--lengths", "64",
                "--corpus", str(corpus_dir), env=_cli_env(tmp_path))
    assert_clean_failure(r, "bidirectional masked-LM encoder")
    r = run_cli("analyze", "--checkpoint", str(tmp_path / "run"), "--corpus", str(corpus_dir),
                "--out", str(tmp_path / "a"), env=_cli_env(tmp_path))
    assert_clean_failure(r, "defined for causal models")


@pytest.mark.skipif(not torch.distributed.is_available(), reason="no torch.distributed")
def test_two_process_ddp_mlm_matches_single_process(corpus_dir, tmp_path):
    env = dict(os.environ, OMP_NUM_THREADS="1", **_cli_env(tmp_path))
    tokens = 8 * 64 * 4
    ddp = tmp_path / "ddp"
    r = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone",
                        "--nproc_per_node=2", "-m", "lexformer",
                        *_train_args(corpus_dir, ddp, tokens), "--device", "cpu"], env=env,
                       capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr[-3000:]
    # same batches and masks, and a one-process reference that adds the ranks' gradients in
    # DDP's order: nothing may differ (as for clm; tests/ddp_reference.py says why)
    cfg = from_preset("smoke", objective="mlm", causal=False, corpus=str(corpus_dir),
                      tokenizer="bytes", tokens=tokens)
    a, _ = ddp_order_reference(cfg, tmp_path / "cache")
    b = _weights(ddp)
    assert a.keys() == b.keys()
    assert max((a[k] - b[k]).abs().max().item() for k in a) == 0
    wrong, _ = ddp_order_reference(cfg, tmp_path / "cache", drop_rank=1)  # a real bug shows
    assert max((wrong[k] - b[k]).abs().max().item() for k in b) > 1e-4


# --------------------------------------------------------------------------- evaluation
def _encoder(position="xpos", vocab=41) -> TransformerLM:
    torch.manual_seed(0)
    return TransformerLM(ModelConfig(vocab_size=vocab, n_layer=2, n_head=2, d_model=16,
                                     d_ff=32, train_length=16, position=position,
                                     causal=False)).eval()


def test_evaluate_masked_lm_scores_the_same_tokens_at_every_length():
    model = _encoder()
    docs = [np.random.default_rng(i).integers(0, 40, size=64) for i in range(3)]
    results = evaluate_masked_lm(model, docs, [16, 32, 64], ("full", "blockwise"))
    counts = {r.masked for per in results.values() for r in per.values()}
    assert len(counts) == 1 and counts.pop() > 0
    # by hand at length 32: chunks as standalone sequences, loss over the masked positions
    inputs, targets = masked_documents(docs, 40, 40)
    x, t = inputs.reshape(-1, 32), targets.reshape(-1, 32)
    with torch.no_grad():
        logits = model(x, attention="full")
    scored = t != IGNORE_INDEX
    nll = lm_loss(logits, t, reduction="none")[scored]
    r = results["full"][32]
    assert r.loss == pytest.approx(nll.double().mean().item(), rel=1e-6)
    assert r.accuracy == pytest.approx((logits.argmax(-1)[scored] == t[scored]).double().mean()
                                       .item())
    assert r.loss_ci95 is not None and r.loss_ci95[0] <= r.loss <= r.loss_ci95[1]
    # up to two blocks (L = 16, h = 8) blockwise is full attention
    assert results["blockwise"][16].loss == pytest.approx(results["full"][16].loss, rel=1e-6)


def test_evaluate_masked_lm_refuses_bad_inputs():
    with pytest.raises(LexformerError, match="exactly 64 tokens"):
        evaluate_masked_lm(_encoder(), [np.zeros(60, dtype=np.int64)], [16, 64])
    with pytest.raises(LexformerError, match="learned"):
        evaluate_masked_lm(_encoder("learned"), [np.zeros(64, dtype=np.int64)], [16, 64])


# --------------------------------------------------------------------------- pipeline
def test_mlm_presets_are_encoders_in_the_one_registry():
    assert set(MLM_PRESETS) <= set(PRESETS)
    for name, build in PRESETS.items():
        cfg = build()
        assert (name in MLM_PRESETS) == (cfg.objective == "mlm")
    for build in MLM_PRESETS.values():
        cfg = build()
        assert cfg.objective == "mlm" and not cfg.model.causal
    assert mlm_config("tiny") == mlm_config("mlm-tiny")
    with pytest.raises(LexformerError, match="no masked-LM preset"):
        mlm_config("paper")


def test_mlm_pipeline_end_to_end(corpus_dir, tmp_path, monkeypatch):
    monkeypatch.setenv("LEXFORMER_CACHE", str(tmp_path / "cache"))
    settings = MLMSettings(preset="smoke", corpus=str(corpus_dir), out=tmp_path / "out",
                           schemes=("xpos", "none"), tokens=8 * 64 * 3, progress=False,
                           max_docs=2, ood_corpus="none")  # offline: no built-in milton
    report = run_mlm_pipeline(settings)
    text = report.read_text()
    assert "## Masked-token loss by length" in text and "64 (L)" in text
    assert "## Does bidirectional XPOS extrapolate?" in text and "At 1024 tokens" in text
    assert (tmp_path / "out" / "plots" / "mlm_loss_vs_length.png").stat().st_size > 0
    results = json.loads((tmp_path / "out" / "results.json").read_text())
    assert set(results["evals"]) == {"xpos", "none"}
    assert results["lengths"] == [16, 32, 64, 128, 256, 512, 1024]
    # a second run reuses every stage
    evals_before = (tmp_path / "out" / "eval" / "xpos.json").read_text()
    run_mlm_pipeline(settings)
    assert (tmp_path / "out" / "eval" / "xpos.json").read_text() == evals_before
    # and a changed experiment is refused before any work
    with pytest.raises(LexformerError, match="trained with other settings"):
        run_mlm_pipeline(MLMSettings(preset="smoke", corpus=str(corpus_dir),
                                     out=tmp_path / "out", schemes=("xpos",),
                                     tokens=8 * 64 * 4, progress=False))


def test_reproduce_mlm_cli_bad_input(tmp_path):
    # --seeds and --ood-corpus are the encoder's too now (issue 19); the copy task is not
    r = run_cli("reproduce", "--objective", "mlm", "--task-samples", "2",
                "--out", str(tmp_path / "o"))
    assert_clean_failure(r, "--task-samples", "causal experiment only")
    r = run_cli("reproduce", "--objective", "mlm", "--seeds", "0", "--out", str(tmp_path / "o"))
    assert_clean_failure(r, "--seeds must be at least 1")
    r = run_cli("reproduce", "--objective", "mlm", "--schemes", "", "--out", str(tmp_path / "o"))
    assert_clean_failure(r, "no schemes")
    r = run_cli("reproduce", "--preset", "mlm-tiny", "--out", str(tmp_path / "o"))
    assert_clean_failure(r, "masked-LM preset", "--objective mlm")
    r = run_cli("reproduce", "--objective", "mlm", "--preset", "paper",
                "--out", str(tmp_path / "o"))
    assert_clean_failure(r, "no masked-LM preset")
    r = run_cli("reproduce", "--objective", "mlm", "--schemes", "xpos,bogus",
                "--out", str(tmp_path / "o"))
    assert_clean_failure(r, "unknown scheme")
    assert not (tmp_path / "o" / "models").exists()


def _report_inputs(preset, corpus, command):
    from lexformer.experiments.encoder_report import MLMReportInputs
    from lexformer.mlm import MaskedLengthResult, MaskedLMResult

    def result(scheme, shift):
        per = {n: MaskedLengthResult.of(n, 5.0 + shift, 0.1, 30, 3,
                                        loss_ci95=(4.9 + shift, 5.1 + shift),
                                        doc_nll=(50.0 + 10 * shift, 49.0, 51.0),
                                        doc_correct=(1, 1, 1), doc_masked=(10, 10, 10))
               for n in (16, 64)}
        return MaskedLMResult(scheme, corpus, "test", {"full": per, "blockwise": per})

    return MLMReportInputs(preset=preset, corpus=corpus, train_length=16, lengths=[16, 64],
                           schemes=["xpos", "none"], seed=0, tokens=1024,
                           evals={"xpos": result("xpos", 0.0), "none": result("none", 0.2)},
                           command=command)


def test_smoke_mlm_report_says_its_numbers_mean_nothing_in_relative_paths(tmp_path):
    from lexformer.experiments.encoder_report import write_mlm_report
    from lexformer.experiments.reporting import SMOKE_FINDINGS

    out, corpus = tmp_path / "runs" / "mlm", tmp_path / "texts"
    command = f"lexformer reproduce --objective mlm --corpus {corpus} --out {out}"
    text = write_mlm_report(out, _report_inputs("mlm-smoke", str(corpus), command)).read_text()
    assert text.splitlines()[2].startswith("> **Smoke run: these numbers mean nothing.**")
    findings = text.split("## Does bidirectional XPOS extrapolate?", 1)[1].split("\n## ")[0]
    assert SMOKE_FINDINGS in findings and "These are one training seed" not in findings
    assert str(tmp_path) not in text
    assert "`../../texts`" in text and "--corpus ../../texts --out .`" in text
    other = write_mlm_report(tmp_path / "tiny", _report_inputs("mlm-tiny", "wiki", "x"))
    assert "Smoke run" not in other.read_text() and "These are one training seed" in \
        other.read_text()


def test_mlm_report_refuses_a_planted_plots_link(tmp_path):
    from lexformer.experiments.encoder_report import write_mlm_report

    out, elsewhere = tmp_path / "out", tmp_path / "elsewhere"
    out.mkdir()
    elsewhere.mkdir()
    (out / "plots").symlink_to(elsewhere, target_is_directory=True)
    with pytest.raises(LexformerError, match="symbolic link"):
        write_mlm_report(out, _report_inputs("mlm-smoke", "wiki", "x"))
    assert list(elsewhere.iterdir()) == [] and not (out / "report.md").exists()


def test_masked_results_are_length_results_with_the_masked_json_form():
    """The encoder goes through the one evaluation loop; its cells are LengthResults whose
    JSON keeps the masked-LM keys, and a result file reads back equal."""
    from lexformer.evaluate import LengthResult, evaluate_by_length
    from lexformer.lm import LexformerLM
    from lexformer.mlm import MaskedLMResult

    model = _encoder()
    docs = [np.random.default_rng(i).integers(0, 40, size=32) for i in range(3)]
    results = evaluate_masked_lm(LexformerLM(model), docs, [16, 32], ("full",))
    inputs, targets = masked_documents(docs, 40, 40)
    assert evaluate_by_length(LexformerLM(model), inputs, [16, 32], ["full"], targets=targets,
                              progress=False) == results
    cell = results["full"][32]
    assert isinstance(cell, LengthResult) and cell.loss == cell.nll
    assert set(cell.to_json()) == {"loss", "accuracy", "masked", "documents", "loss_ci95",
                                   "doc_nll", "doc_correct", "doc_masked"}
    saved = MaskedLMResult(model="xpos", corpus="c", split="test", results=results, step=3)
    assert "checkpoint" not in saved.to_json()
    assert MaskedLMResult.from_json(json.loads(json.dumps(saved.to_json()))) == saved


def test_reproduce_mlm_cli_seeds_and_out_of_domain(corpus_dir, tmp_path):
    """``reproduce --objective mlm --preset smoke --seeds 2`` with an out-of-domain corpus
    (issue 19): the tables over seeds and the out-of-domain table; the stages of an earlier
    one-seed run without out-of-domain corpus are reused (their keys do not change)."""
    other = write_corpus(tmp_path / "other", n_docs=3, words_per_doc=2000)
    out = tmp_path / "out"
    env = {"LEXFORMER_CACHE": str(tmp_path / "cache")}
    argv = ("reproduce", "--objective", "mlm", "--preset", "smoke", "--corpus", str(corpus_dir),
            "--schemes", "xpos,none", "--tokens", str(8 * 64 * 3), "--lengths", "32,64,128",
            "--out", str(out), "--no-progress")
    r = run_cli(*argv, "--ood-corpus", "none", env=env)
    assert r.returncode == 0, r.stderr
    first = (out / "eval" / "xpos.json").read_text()
    r = run_cli(*argv, "--seeds", "2", "--ood-corpus", str(other), env=env)
    assert r.returncode == 0, r.stderr
    said = r.stdout + r.stderr
    assert "xpos: already trained" in said and "xpos: already evaluated" in said
    assert (out / "eval" / "xpos.json").read_text() == first
    assert (out / "models" / "xpos-seed1").is_dir() and (out / "ood" / "none-seed1.json").exists()
    text = (out / "report.md").read_text()
    assert "mean over 2 seeds (0, 1)" in text and "## Out-of-domain masked-token loss" in text
    assert "seeds 0, 1" in text
    results = json.loads((out / "results.json").read_text())
    assert results["seeds"] == [0, 1] and results["ood_corpus"] == str(other)
    assert [len(results["evals_by_seed"][s]) for s in ("xpos", "none")] == [2, 2]
    assert [len(results["ood"][s]) for s in ("xpos", "none")] == [2, 2]
    assert set(results["evals"]) == {"xpos", "none"}
