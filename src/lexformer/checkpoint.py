"""Checkpoint folders: ``model.safetensors`` + ``config.json`` + ``tokenizer.json`` (+
``train_state.pt`` for resuming), written so that a kill at any instant leaves a usable one.

Layout of a run folder::

    runs/xpos/
      checkpoint -> checkpoints/step-000300   (symlink, swapped atomically)
      checkpoints/step-000300/{model.safetensors, config.json, tokenizer.json, train_state.pt}
      metrics.jsonl

A new checkpoint is written completely into a fresh folder, flushed, and only then does the
``checkpoint`` link switch to it (``os.replace`` of a symlink is atomic on POSIX), so a
reader sees either the old checkpoint or the new one, never a mixture.
"""

from __future__ import annotations

import json
import os
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file, save_file

from .config import ModelConfig
from .errors import LexformerError
from .model import TransformerLM

MODEL_FILE = "model.safetensors"
CONFIG_FILE = "config.json"
TOKENIZER_FILE = "tokenizer.json"
STATE_FILE = "train_state.pt"
LINK = "checkpoint"


def _fsync_dir(path: Path) -> None:
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def write_json(path: Path, data: Any) -> None:
    """Write JSON atomically (temp file in the same folder, fsync, rename)."""
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "w") as f:
        json.dump(data, f, indent=2, sort_keys=True)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def model_state(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    """State dict without wrappers (DDP ``module.``, torch.compile ``_orig_mod.``) and with
    tied weights stored once."""
    inner = model
    while hasattr(inner, "module") or hasattr(inner, "_orig_mod"):
        inner = getattr(inner, "module", None) or inner._orig_mod
    state = {k: v.detach().contiguous().cpu() for k, v in inner.state_dict().items()}
    if inner.config.tie_embeddings:
        state.pop("lm_head.weight", None)
    return state


def save_checkpoint(
    run_dir: str | Path,
    model: TransformerLM,
    meta: dict[str, Any],
    tokenizer=None,
    train_state: dict[str, Any] | None = None,
    keep: int = 1,
) -> Path:
    """Write a complete checkpoint under ``run_dir/checkpoints/step-N`` and point
    ``run_dir/checkpoint`` at it. ``meta`` must hold ``model`` (a ModelConfig dict) and
    ``step``. Older checkpoints beyond ``keep`` are removed after the switch."""
    run_dir = Path(run_dir)
    step = int(meta["step"])
    final = run_dir / "checkpoints" / f"step-{step:07d}"
    tmp = final.with_name(final.name + ".partial")
    if tmp.exists():
        shutil.rmtree(tmp)
    tmp.mkdir(parents=True)
    save_file(model_state(model), str(tmp / MODEL_FILE), metadata={"step": str(step)})
    write_json(tmp / CONFIG_FILE, meta)
    if tokenizer is not None:
        tokenizer.save(tmp / TOKENIZER_FILE)
    if train_state is not None:
        torch.save(train_state, tmp / STATE_FILE)
    for f in tmp.iterdir():
        with open(f, "rb") as fh:
            os.fsync(fh.fileno())
    if final.exists():
        shutil.rmtree(final)
    os.replace(tmp, final)
    _fsync_dir(final.parent)
    link_tmp = run_dir / (LINK + ".tmp")
    if link_tmp.is_symlink() or link_tmp.exists():
        link_tmp.unlink()
    os.symlink(os.path.relpath(final, run_dir), link_tmp)
    os.replace(link_tmp, run_dir / LINK)
    _fsync_dir(run_dir)
    old = sorted(p for p in final.parent.iterdir() if p.name.startswith("step-") and p != final
                 and not p.name.endswith(".partial"))
    for p in old[: max(0, len(old) - (keep - 1))]:
        shutil.rmtree(p, ignore_errors=True)
    return final


def resolve_checkpoint_dir(path: str | Path) -> Path:
    """A checkpoint folder from a run folder or a checkpoint folder; clear error otherwise."""
    path = Path(path)
    if not path.exists():
        raise LexformerError(f"checkpoint not found: {path} does not exist")
    if (path / LINK).exists():
        path = (path / LINK).resolve()
    if not (path / MODEL_FILE).is_file() or not (path / CONFIG_FILE).is_file():
        raise LexformerError(
            f"{path} is not a lexformer checkpoint (expected {MODEL_FILE} and {CONFIG_FILE}, "
            "or a run folder with a 'checkpoint' link)"
        )
    return path


def has_checkpoint(run_dir: str | Path) -> bool:
    try:
        resolve_checkpoint_dir(run_dir)
        return True
    except LexformerError:
        return False


@dataclass
class Checkpoint:
    """A loaded checkpoint: the model (eval mode), its tokenizer, and the saved metadata."""

    model: TransformerLM
    tokenizer: Any
    meta: dict[str, Any]
    path: Path

    @property
    def config(self) -> ModelConfig:
        return self.model.config


def read_meta(path: str | Path) -> dict[str, Any]:
    ckpt = resolve_checkpoint_dir(path)
    try:
        meta = json.loads((ckpt / CONFIG_FILE).read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise LexformerError(
            f"corrupt checkpoint {ckpt}: {CONFIG_FILE} is not valid JSON ({e})") from e
    if not isinstance(meta, dict) or "model" not in meta:
        raise LexformerError(f"corrupt checkpoint {ckpt}: {CONFIG_FILE} has no 'model' section")
    return meta


def load(path: str | Path, map_location: str | torch.device = "cpu") -> Checkpoint:
    """Rebuild the model (and tokenizer) from a checkpoint or run folder alone."""
    ckpt = resolve_checkpoint_dir(path)
    meta = read_meta(ckpt)
    config = ModelConfig.from_dict(meta["model"])
    model = TransformerLM(config)
    try:
        state = load_file(str(ckpt / MODEL_FILE), device=str(map_location))
    except Exception as e:  # safetensors raises its own error types for truncated files
        raise LexformerError(f"corrupt checkpoint {ckpt}: cannot read {MODEL_FILE} ({e})") from e
    if config.tie_embeddings:
        state.setdefault("lm_head.weight", state.get("tok_emb.weight"))
    missing, unexpected = model.load_state_dict(state, strict=False)
    if missing or unexpected:
        raise LexformerError(
            f"corrupt checkpoint {ckpt}: weights do not match its config "
            f"(missing {missing[:3]}, unexpected {unexpected[:3]})"
        )
    model.to(map_location).eval()
    tokenizer = None
    if (ckpt / TOKENIZER_FILE).is_file():
        from .data.tokenizer import load_tokenizer

        tokenizer = load_tokenizer(ckpt / TOKENIZER_FILE)
    return Checkpoint(model=model, tokenizer=tokenizer, meta=meta, path=ckpt)


def load_train_state(path: str | Path) -> dict[str, Any]:
    ckpt = resolve_checkpoint_dir(path)
    f = ckpt / STATE_FILE
    if not f.is_file():
        raise LexformerError(f"{ckpt} has no {STATE_FILE}: it cannot be resumed")
    return torch.load(f, map_location="cpu", weights_only=False)
