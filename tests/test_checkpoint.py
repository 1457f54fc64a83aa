"""Checkpoint folders: atomic layout, and every field and tensor of a loaded one checked, with
one-line errors naming what is wrong."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file, save_file

from lexformer import LexformerError, TransformerLM, load
from lexformer.checkpoint import (
    CONFIG_FILE,
    MODEL_FILE,
    STATE_FILE,
    load_train_state,
    read_meta,
    read_train_config,
    save_checkpoint,
)
from lexformer.config import TrainConfig
from lexformer.data import ByteTokenizer
from lexformer.presets import from_preset


def _config() -> TrainConfig:
    cfg = from_preset("smoke", tokenizer="bytes", d_model=16, n_head=2, d_ff=32,
                                  n_layer=1, train_length=8)
    return cfg.with_vocab_size(256)


def _save(run: Path, step: int = 3, keep: int = 1) -> Path:
    cfg = _config()
    torch.manual_seed(step)
    model = TransformerLM(cfg.model)
    meta = {"model": cfg.model.to_dict(), "train": cfg.to_dict(), "step": step,
            "corpus": {"name": "test", "fingerprint": "abc"}, "last_loss": 1.5}
    state = {"optimizer": {}, "sampler": {"step": step}, "rng": {}, "step": step}
    return save_checkpoint(run, model, meta, ByteTokenizer(), state, keep=keep)


def test_save_then_load_gives_back_model_config_and_state(tmp_path):
    folder = _save(tmp_path / "run")
    ckpt = load(tmp_path / "run")
    assert ckpt.path == folder and ckpt.step == 3 and ckpt.train_config == _config()
    saved = load_file(str(folder / MODEL_FILE))
    assert "lm_head.weight" not in saved  # tied weights stored once
    assert torch.equal(ckpt.model.lm_head.weight, saved["tok_emb.weight"])
    assert read_train_config(tmp_path / "run") == _config()
    assert load_train_state(tmp_path / "run")["step"] == 3


def test_a_new_save_replaces_the_link_and_clears_partial_folders(tmp_path):
    run = tmp_path / "run"
    _save(run, step=3)
    stale = run / "checkpoints" / "step-0000004.partial"
    stale.mkdir()
    (stale / MODEL_FILE).write_bytes(b"half")
    _save(run, step=5)
    names = sorted(p.name for p in (run / "checkpoints").iterdir())
    assert names == ["step-0000005"]
    assert (run / "checkpoint").resolve().name == "step-0000005"
    assert read_meta(run)["step"] == 5


def _edit_meta(run: Path, edit) -> None:
    path = run / "checkpoint" / CONFIG_FILE
    meta = json.loads(path.read_text())
    edit(meta)
    path.write_text(json.dumps(meta))


@pytest.mark.parametrize("edit,words", [
    (lambda m: m.pop("step"), "missing field 'step'"),
    (lambda m: m.pop("train"), "missing field 'train'"),
    (lambda m: m.update(step="three"), "'step' must be a non-negative integer"),
    (lambda m: m.update(corpus="test"), "'corpus' must hold"),
    (lambda m: m["model"].pop("n_layer"), "missing field(s) n_layer"),
    (lambda m: m["model"].update(d_model="16"), "d_model must be a positive integer"),
    (lambda m: m["train"]["optim"].update(lr="fast"), "optim.lr (--lr) must be a number"),
    (lambda m: m["train"]["optim"].pop("betas"), "missing field(s) train.optim.betas"),
    (lambda m: m["train"].update(data=[1]), "train.data must be a JSON object"),
    (lambda m: m["train"]["model"].update(n_layer=2), "describe different models"),
    (lambda m: m.update(last_loss="low"), "'last_loss' must be a number"),
])
def test_config_json_is_checked_field_by_field(tmp_path, edit, words):
    _save(tmp_path / "run")
    _edit_meta(tmp_path / "run", edit)
    with pytest.raises(LexformerError, match="corrupt checkpoint") as info:
        load(tmp_path / "run")
    message = str(info.value)
    assert words in message and "\n" not in message


def test_config_json_that_is_not_json(tmp_path):
    _save(tmp_path / "run")
    (tmp_path / "run" / "checkpoint" / CONFIG_FILE).write_text("{not json")
    with pytest.raises(LexformerError, match="config.json: Expecting"):
        load(tmp_path / "run")


def test_every_weight_shape_is_checked_against_the_config(tmp_path):
    folder = _save(tmp_path / "run")
    state = load_file(str(folder / MODEL_FILE))
    state["blocks.0.ffn.up.weight"] = torch.zeros(33, 16)
    save_file(state, str(folder / MODEL_FILE))
    with pytest.raises(LexformerError, match=r"blocks\.0\.ffn\.up\.weight has shape \(33, 16\)"):
        load(tmp_path / "run")
    del state["blocks.0.ffn.up.weight"]
    save_file(state, str(folder / MODEL_FILE))
    with pytest.raises(LexformerError, match="missing.*blocks.0.ffn.up.weight"):
        load(tmp_path / "run")


def test_damaged_files_get_one_line_errors(tmp_path):
    folder = _save(tmp_path / "run")
    weights = folder / MODEL_FILE
    weights.write_bytes(weights.read_bytes()[:100])
    with pytest.raises(LexformerError, match=f"cannot read {MODEL_FILE}"):
        load(tmp_path / "run")
    state = folder / STATE_FILE
    state.write_bytes(state.read_bytes()[:50])
    with pytest.raises(LexformerError, match=f"cannot read {STATE_FILE}") as info:
        load_train_state(tmp_path / "run")
    assert "\n" not in str(info.value)
    torch.save({"step": 3}, state)
    with pytest.raises(LexformerError, match="lacks optimizer, sampler, rng"):
        load_train_state(tmp_path / "run")
    state.unlink()
    with pytest.raises(LexformerError, match="cannot be resumed"):
        load_train_state(tmp_path / "run")


def test_missing_or_foreign_folders_are_refused(tmp_path):
    with pytest.raises(LexformerError, match="does not exist"):
        load(tmp_path / "nowhere")
    (tmp_path / "empty").mkdir()
    with pytest.raises(LexformerError, match="not a lexformer checkpoint"):
        load(tmp_path / "empty")


def test_run_meta_reads_what_was_saved_and_writes_the_same_json(tmp_path):
    from lexformer.checkpoint import RunMeta, read_run_meta

    _save(tmp_path / "run", step=4)
    meta = read_run_meta(tmp_path / "run")
    assert meta.step == 4 and meta.train == _config() and meta.model == _config().model
    assert (meta.corpus_name, meta.corpus_fingerprint, meta.last_loss) == ("test", "abc", 1.5)
    assert meta.mask_token_id is None and meta.numerics is None
    saved = read_meta(tmp_path / "run")
    assert meta.to_json() == saved
    assert RunMeta.from_json({**saved, "future_field": 1}).to_json()["future_field"] == 1
    assert load(tmp_path / "run").run_meta == meta
    with pytest.raises(LexformerError, match="missing field 'corpus'"):
        RunMeta.from_json({k: v for k, v in saved.items() if k != "corpus"})
