"""Training end to end on a small synthetic corpus: checkpoints, exact resume, SIGTERM, DDP."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from ddp_reference import ddp_order_reference
from safetensors.torch import load_file
from text_corpus import write_corpus

from lexformer import LexformerError, load
from lexformer.config import OptimConfig
from lexformer.optim import lr_at
from lexformer.presets import from_preset
from lexformer.train import TrainConfig, train


@pytest.fixture(scope="module")
def corpus_dir(tmp_path_factory) -> Path:
    return write_corpus(tmp_path_factory.mktemp("corpus") / "texts")


def _cfg(corpus_dir: Path, **kw) -> TrainConfig:
    base = dict(corpus=str(corpus_dir), tokenizer="bytes", bpe_vocab_size=256,
                tokens=8 * 64 * 6, checkpoint_interval=2, eval_interval=3, eval_batches=2,
                position="xpos")
    base.update(kw)
    return from_preset("smoke", **base)


def _train(cfg: TrainConfig, out: Path, cache: Path, **kw):
    """``train`` with one thread, no progress bar and the test's cache folder."""
    return train(cfg, out, progress=False, threads=1, cache_dir=str(cache), **kw)


def _weights(run: Path) -> dict[str, torch.Tensor]:
    return load_file(str(run / "checkpoint" / "model.safetensors"))


def _losses(run: Path) -> list[float]:
    return [json.loads(x)["loss"] for x in (run / "metrics.jsonl").read_text().splitlines()]


def test_smoke_training_writes_a_loadable_checkpoint(corpus_dir, tmp_path):
    cfg = _cfg(corpus_dir)
    summary = _train(cfg, tmp_path / "run", tmp_path / "cache")
    assert summary.step == cfg.total_steps() == 6
    ckpt = load(tmp_path / "run")
    files = {p.name for p in ckpt.path.iterdir()}
    assert {"model.safetensors", "config.json", "tokenizer.json", "train_state.pt"} <= files
    meta = ckpt.meta
    assert meta["model"]["position"] == "xpos" and meta["step"] == 6
    assert meta["corpus"]["fingerprint"] and meta["lexformer_version"]
    assert meta["train"]["tokens"] == cfg.tokens
    ids = torch.tensor([ckpt.tokenizer.encode("the king speaks")])
    assert ckpt.model(ids).shape == (1, ids.shape[1], 256)
    lines = [json.loads(x) for x in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    assert [x["step"] for x in lines] == list(range(1, 7))
    assert all({"loss", "lr", "tokens_per_s"} <= set(x) for x in lines)
    assert any("val_loss" in x for x in lines)


def test_loss_falls_with_training(corpus_dir, tmp_path):
    cfg = _cfg(corpus_dir, tokens=8 * 64 * 40, lr=3e-3, warmup_steps=5)
    _train(cfg, tmp_path / "run", tmp_path / "cache")
    losses = _losses(tmp_path / "run")
    assert np.mean(losses[-5:]) < np.mean(losses[:3]) - 1.0  # bytes: ln 256 = 5.5 at start


def test_resume_reaches_the_same_weights_as_an_uninterrupted_run(corpus_dir, tmp_path):
    cache = tmp_path / "cache"
    full = _train(_cfg(corpus_dir), tmp_path / "full", cache)
    part = _train(_cfg(corpus_dir), tmp_path / "cut", cache, stop_after_steps=3)
    assert part.stopped_early and part.step == 3
    resumed = _train(_cfg(corpus_dir), tmp_path / "cut", cache, resume=True)
    assert resumed.step == full.step == 6
    a, b = _weights(tmp_path / "full"), _weights(tmp_path / "cut")
    assert a.keys() == b.keys()
    for k in a:
        assert torch.equal(a[k], b[k]), k
    assert _losses(tmp_path / "full") == _losses(tmp_path / "cut")


def test_existing_checkpoint_is_never_overwritten(corpus_dir, tmp_path):
    cfg = _cfg(corpus_dir, tokens=8 * 64 * 2)
    cache = tmp_path / "cache"
    _train(cfg, tmp_path / "run", cache)
    before = (tmp_path / "run" / "checkpoint" / "model.safetensors").read_bytes()
    with pytest.raises(LexformerError, match="already holds a checkpoint"):
        _train(cfg, tmp_path / "run", cache)
    assert (tmp_path / "run" / "checkpoint" / "model.safetensors").read_bytes() == before
    with pytest.raises(LexformerError, match="no checkpoint"):
        _train(cfg, tmp_path / "other", cache, resume=True)


def test_lr_schedule_warms_up_then_decays_to_the_floor():
    cfg = OptimConfig(lr=1e-3, warmup_steps=10, min_lr_ratio=0.1, schedule="cosine")
    lrs = [lr_at(s, cfg, 100) for s in range(100)]
    assert lrs[0] == pytest.approx(1e-4) and lrs[9] == pytest.approx(1e-3)
    assert all(a >= b for a, b in zip(lrs[9:], lrs[10:]))
    assert lr_at(100, cfg, 100) == pytest.approx(1e-4)


def test_bad_training_configs_are_refused():
    with pytest.raises(LexformerError, match="unknown preset"):
        from_preset("huge")
    with pytest.raises(LexformerError, match="divisible by grad_accum"):
        TrainConfig(batch_size=6, grad_accum=4)
    with pytest.raises(LexformerError, match="dtype"):
        TrainConfig(dtype="fp8")


def test_corrupt_or_missing_checkpoints_get_clear_errors(corpus_dir, tmp_path):
    with pytest.raises(LexformerError, match="does not exist"):
        load(tmp_path / "nowhere")
    (tmp_path / "empty").mkdir()
    with pytest.raises(LexformerError, match="not a lexformer checkpoint"):
        load(tmp_path / "empty")
    _train(_cfg(corpus_dir, tokens=8 * 64 * 2), tmp_path / "run", tmp_path / "cache")
    weights = tmp_path / "run" / "checkpoint" / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[:100])
    with pytest.raises(LexformerError, match="corrupt checkpoint"):
        load(tmp_path / "run")


def _cli_env(tmp_path: Path) -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = str(Path(__file__).resolve().parents[1] / "src")
    env["LEXFORMER_CACHE"] = str(tmp_path / "cache")
    env["OMP_NUM_THREADS"] = "1"
    return env


def _cli_args(corpus_dir: Path, out: Path, tokens: int) -> list[str]:
    return ["train", "--preset", "smoke", "--corpus", str(corpus_dir), "--tokenizer", "bytes",
            "--tokens", str(tokens), "--threads", "1", "--out", str(out), "--no-progress"]


def test_sigterm_saves_a_checkpoint_and_resume_matches(corpus_dir, tmp_path):
    env = _cli_env(tmp_path)
    tokens = 8 * 64 * 400  # long enough to be interrupted
    proc = subprocess.Popen([sys.executable, "-m", "lexformer",
                             *_cli_args(corpus_dir, tmp_path / "run", tokens)],
                            env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    metrics = tmp_path / "run" / "metrics.jsonl"
    deadline = time.time() + 120
    while time.time() < deadline:
        if metrics.exists() and len(metrics.read_text().splitlines()) >= 3:
            break
        time.sleep(0.2)
    proc.send_signal(signal.SIGTERM)
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 0, err
    assert "stopped early" in out
    meta = json.loads((tmp_path / "run" / "checkpoint" / "config.json").read_text())
    stopped_at = meta["step"]
    assert 3 <= stopped_at < 400
    # the checkpoint is complete and consistent: resuming runs to a given later step
    _train(from_preset("smoke", corpus=str(corpus_dir), tokenizer="bytes",
                                   tokens=tokens),
           tmp_path / "run", tmp_path / "cache", resume=True, stop_after_steps=stopped_at + 2)
    assert json.loads((tmp_path / "run" / "checkpoint" / "config.json").read_text())[
        "step"] == stopped_at + 2


def test_cli_bad_input_is_one_line_and_exit_2(tmp_path):
    env = _cli_env(tmp_path)
    r = subprocess.run([sys.executable, "-m", "lexformer", "train", "--corpus",
                        str(tmp_path / "missing.txt"), "--out", str(tmp_path / "o")],
                       env=env, capture_output=True, text=True)
    assert r.returncode == 2
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("lexformer: error:"), r.stderr
    assert not (tmp_path / "o" / "checkpoint").exists()


@pytest.mark.skipif(not torch.distributed.is_available(), reason="no torch.distributed")
def test_two_process_ddp_matches_single_process(corpus_dir, tmp_path):
    env = _cli_env(tmp_path)
    tokens = 8 * 64 * 4
    ddp = tmp_path / "ddp"
    r = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone",
                        "--nproc_per_node=2", "-m", "lexformer",
                        *_cli_args(corpus_dir, ddp, tokens), "--device", "cpu"], env=env,
                       capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr[-3000:]
    assert json.loads((ddp / "checkpoint" / "config.json").read_text())["world_size"] == 2
    # Same data, same global batch, and a one-process reference that adds the two ranks'
    # gradients in DDP's order: nothing may differ (tests/ddp_reference.py says why a
    # reference with the whole batch in one sum can only be bounded by 2·Σ lr).
    cfg = from_preset("smoke", corpus=str(corpus_dir), tokenizer="bytes", tokens=tokens)
    a, la = ddp_order_reference(cfg, tmp_path / "cache")
    b = _weights(ddp)
    assert a.keys() == b.keys()
    worst = max((a[k] - b[k]).abs().max().item() for k in a)
    assert worst == 0, worst
    lb = _losses(ddp)
    assert np.allclose(la, lb, rtol=1e-4), (la, lb)
    # the comparison catches a real bug: one rank's gradient dropped
    wrong, _ = ddp_order_reference(cfg, tmp_path / "cache", drop_rank=1)
    assert max((wrong[k] - b[k]).abs().max().item() for k in b) > 1e-4
