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
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file, save_file

from .config import ModelConfig, TrainConfig
from .errors import LexformerError, hub_hint
from .fileio import atomic_write_json, fsync_dir
from .model import TransformerLM

MODEL_FILE = "model.safetensors"
CONFIG_FILE = "config.json"
TOKENIZER_FILE = "tokenizer.json"
STATE_FILE = "train_state.pt"
LINK = "checkpoint"
PARTIAL_SUFFIX = ".partial"
#: what ``train_state.pt`` must hold to resume
TRAIN_STATE_KEYS = ("optimizer", "sampler", "rng", "step")


def _one_line(error: BaseException, limit: int = 200) -> str:
    text = " ".join(str(error).split())
    return text if len(text) <= limit else text[: limit - 1] + "…"


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


# --------------------------------------------------------------------------- writing
def remove_partial_checkpoints(run_dir: str | Path) -> None:
    """Remove ``step-N.partial`` folders a killed save left behind (never a complete one)."""
    folder = Path(run_dir) / "checkpoints"
    if folder.is_dir():
        for p in folder.iterdir():
            if p.is_dir() and p.name.endswith(PARTIAL_SUFFIX):
                shutil.rmtree(p, ignore_errors=True)


def _write_folder(tmp: Path, model, meta, tokenizer, train_state) -> None:
    tmp.mkdir(parents=True)
    save_file(model_state(model), str(tmp / MODEL_FILE), metadata={"step": str(meta["step"])})
    atomic_write_json(tmp / CONFIG_FILE, meta)
    if tokenizer is not None:
        tokenizer.save(tmp / TOKENIZER_FILE)
    if train_state is not None:
        torch.save(train_state, tmp / STATE_FILE)
    for f in tmp.iterdir():
        with open(f, "rb") as fh:
            os.fsync(fh.fileno())


def _point_link_at(run_dir: Path, target: Path) -> None:
    link_tmp = run_dir / (LINK + ".tmp")
    if link_tmp.is_symlink() or link_tmp.exists():
        link_tmp.unlink()
    os.symlink(os.path.relpath(target, run_dir), link_tmp)
    os.replace(link_tmp, run_dir / LINK)
    fsync_dir(run_dir)


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
    remove_partial_checkpoints(run_dir)
    final = run_dir / "checkpoints" / f"step-{int(meta['step']):07d}"
    tmp = final.with_name(final.name + PARTIAL_SUFFIX)
    _write_folder(tmp, model, meta, tokenizer, train_state)
    if final.exists():
        shutil.rmtree(final)
    os.replace(tmp, final)
    fsync_dir(final.parent)
    _point_link_at(run_dir, final)
    old = sorted(p for p in final.parent.iterdir() if p.name.startswith("step-") and p != final
                 and not p.name.endswith(PARTIAL_SUFFIX))
    for p in old[: max(0, len(old) - (keep - 1))]:
        shutil.rmtree(p, ignore_errors=True)
    return final


# --------------------------------------------------------------------------- reading
def resolve_checkpoint_dir(path: str | Path) -> Path:
    """A checkpoint folder from a run folder or a checkpoint folder; clear error otherwise."""
    path = Path(path)
    if not path.exists():
        raise LexformerError(f"checkpoint not found: {path} does not exist"
                             + hub_hint(str(path)))
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


def _require(ok: bool, message: str) -> None:
    if not ok:
        raise LexformerError(message)


def validate_meta(meta: Any) -> TrainConfig:
    """Check a ``config.json`` field by field (:meth:`RunMeta.from_json`); returns its
    training config. Required: ``model``, ``train`` (today's layout or the first, flat one),
    ``step``, ``corpus``."""
    return RunMeta.from_json(meta).train


@dataclass(frozen=True)
class RunMeta:
    """The metadata written beside every checkpoint (``config.json``), typed.

    ``train`` holds the model config too (``model`` is ``train.model``); the JSON keeps both
    sections, as every checkpoint has. Fields that the first checkpoints lacked are None
    there. Keys this class does not know are kept in ``extra`` and written back unchanged.
    """

    train: TrainConfig
    step: int
    corpus_name: str
    corpus_fingerprint: str
    last_loss: float | None = None
    lexformer_version: str | None = None
    torch_version: str | None = None
    tokenizer: dict[str, Any] | None = None
    world_size: int | None = None
    #: what decides the last bits of the numbers (docs/reproducibility.md)
    numerics: dict[str, Any] | None = None
    tokens_seen: int | None = None
    #: the [MASK] id of a masked-LM encoder (lexformer.mlm); None for a causal model
    mask_token_id: int | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        _require(isinstance(self.train, TrainConfig), "'train' must be a TrainConfig")
        _require(isinstance(self.step, int) and not isinstance(self.step, bool)
                 and self.step >= 0, f"'step' must be a non-negative integer, got {self.step!r}")
        _require(isinstance(self.corpus_name, str) and isinstance(self.corpus_fingerprint, str),
                 "the corpus name and fingerprint must be strings")
        loss = self.last_loss
        _require(loss is None or (isinstance(loss, (int, float)) and not isinstance(loss, bool)),
                 f"'last_loss' must be a number or null, got {loss!r}")

    @property
    def model(self) -> ModelConfig:
        return self.train.model

    def to_json(self) -> dict[str, Any]:
        """``config.json``'s object, keys in the order checkpoints have always had; an
        optional field that is None (absent from an old checkpoint) stays absent."""
        data = {"lexformer_version": self.lexformer_version,
                "torch_version": self.torch_version, "model": self.model.to_dict(),
                "train": self.train.to_dict(), "tokenizer": self.tokenizer,
                "corpus": {"name": self.corpus_name, "fingerprint": self.corpus_fingerprint},
                "world_size": self.world_size, "step": self.step, "numerics": self.numerics,
                "tokens_seen": self.tokens_seen, "last_loss": self.last_loss,
                "mask_token_id": self.mask_token_id}
        return {**{k: v for k, v in data.items() if v is not None or k == "last_loss"},
                **self.extra}

    @classmethod
    def from_json(cls, data: Any) -> RunMeta:
        """From ``config.json``'s object, checked field by field; one-line errors."""
        _require(isinstance(data, dict), "the file is not a JSON object")
        for key in ("model", "train", "step", "corpus"):
            _require(key in data, f"missing field {key!r}")
        model = ModelConfig.from_dict(data["model"])
        train = TrainConfig.from_dict(data)
        _require(train.model == model, "'train.model' and 'model' describe different models")
        corpus = data["corpus"]
        _require(isinstance(corpus, dict) and isinstance(corpus.get("name"), str)
                 and isinstance(corpus.get("fingerprint"), str),
                 "'corpus' must hold the strings 'name' and 'fingerprint'")
        optional = {f.name: data.get(f.name) for f in fields(cls) if f.name in _OPTIONAL_META}
        return cls(train=train, step=data["step"], corpus_name=data["corpus"]["name"],
                   corpus_fingerprint=data["corpus"]["fingerprint"], **optional,
                   extra={k: v for k, v in data.items() if k not in _KNOWN_META})


#: the optional fields of :class:`RunMeta`, read as they are from ``config.json``
_OPTIONAL_META = ("last_loss", "lexformer_version", "torch_version", "tokenizer", "world_size",
                  "numerics", "tokens_seen", "mask_token_id")
_KNOWN_META = {"model", "train", "corpus", "step", *_OPTIONAL_META}


def read_meta(path: str | Path) -> dict[str, Any]:
    """The validated ``config.json`` of a checkpoint (or of a run folder's checkpoint)."""
    ckpt = resolve_checkpoint_dir(path)
    try:
        meta = json.loads((ckpt / CONFIG_FILE).read_text())
        validate_meta(meta)
    except (json.JSONDecodeError, UnicodeDecodeError, LexformerError) as e:
        raise LexformerError(f"corrupt checkpoint {ckpt}: {CONFIG_FILE}: {_one_line(e)}") from e
    return meta


def read_run_meta(path: str | Path) -> RunMeta:
    """The typed ``config.json`` of a checkpoint (or of a run folder's checkpoint)."""
    return RunMeta.from_json(read_meta(path))


def read_train_config(path: str | Path) -> TrainConfig:
    """The training config a checkpoint was made with (first checkpoints' layout too)."""
    return TrainConfig.from_dict(read_meta(path))


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

    @property
    def train_config(self) -> TrainConfig:
        return TrainConfig.from_dict(self.meta)

    @property
    def step(self) -> int:
        return self.meta["step"]

    @property
    def run_meta(self) -> RunMeta:
        """:attr:`meta` typed."""
        return RunMeta.from_json(self.meta)


def _read_weights(ckpt: Path, model: TransformerLM, device: str) -> dict[str, torch.Tensor]:
    """The saved tensors, each checked by name and shape against ``model``."""
    try:
        state = load_file(str(ckpt / MODEL_FILE), device=device)
    except Exception as e:  # safetensors raises its own error types for truncated files
        raise LexformerError(f"corrupt checkpoint {ckpt}: cannot read {MODEL_FILE} "
                             f"({_one_line(e)})") from e
    expected = {k: v.shape for k, v in model.state_dict().items()}
    if model.config.tie_embeddings:
        expected.pop("lm_head.weight", None)
    missing, unexpected = sorted(expected.keys() - state.keys()), sorted(state.keys() - expected)
    _require(not missing and not unexpected,
             f"corrupt checkpoint {ckpt}: {MODEL_FILE} does not match its {CONFIG_FILE} "
             f"(missing {missing[:3]}, unexpected {unexpected[:3]})")
    for name, tensor in state.items():
        _require(tensor.shape == expected[name],
                 f"corrupt checkpoint {ckpt}: weight {name} has shape {tuple(tensor.shape)}, "
                 f"its {CONFIG_FILE} needs {tuple(expected[name])}")
    if model.config.tie_embeddings:
        state["lm_head.weight"] = state["tok_emb.weight"]
    return state


def load(path: str | Path, map_location: str | torch.device = "cpu") -> Checkpoint:
    """Rebuild the model (and tokenizer) from a checkpoint or run folder alone."""
    ckpt = resolve_checkpoint_dir(path)
    meta = read_meta(ckpt)
    model = TransformerLM(ModelConfig.from_dict(meta["model"]))
    model.load_state_dict(_read_weights(ckpt, model, str(map_location)))
    model.to(map_location).eval()
    tokenizer = None
    if (ckpt / TOKENIZER_FILE).is_file():
        from .data.tokenizer import load_tokenizer

        tokenizer = load_tokenizer(ckpt / TOKENIZER_FILE)
    return Checkpoint(model=model, tokenizer=tokenizer, meta=meta, path=ckpt)


def _legacy_numpy_globals() -> list[Any]:
    """What a numpy RNG state pickled by lexformer before train states were written in safe
    types needs: the array reconstructor, the array and dtype classes, and the uint32 dtype
    of the MT19937 key only. None of them runs code; an object array (its dtype is not
    allowed) and any other global are still refused."""
    import numpy as np

    reconstruct = np.empty(0).__reduce__()[0]  # numpy._core's under numpy 2
    # a file written under numpy 1 names it numpy.core.multiarray._reconstruct
    return [reconstruct, (reconstruct, "numpy.core.multiarray._reconstruct"), np.ndarray,
            np.dtype, type(np.dtype(np.uint32))]


def load_train_state(path: str | Path) -> dict[str, Any]:
    """The optimizer, sampler and RNG states saved for resuming; one-line error when the
    file is missing, damaged, or holds anything a ``weights_only`` load refuses."""
    import pickle

    ckpt = resolve_checkpoint_dir(path)
    f = ckpt / STATE_FILE
    if not f.is_file():
        raise LexformerError(f"{ckpt} has no {STATE_FILE}: it cannot be resumed")
    try:
        # weights_only: a train state is tensors, lists, dicts and numbers (train._rng_state);
        # an arbitrary pickle from someone else's run folder must never execute
        with torch.serialization.safe_globals(_legacy_numpy_globals()):
            state = torch.load(f, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as e:
        if "weights only" not in str(e).lower():
            raise LexformerError(f"corrupt checkpoint {ckpt}: cannot read {STATE_FILE} "
                                 f"({_one_line(e)}); it cannot be resumed") from e
        raise LexformerError(
            f"{ckpt}: this {STATE_FILE} holds objects a safe load refuses (written by an "
            "older lexformer in an unsafe format, or crafted); resume is refused, the model "
            "itself still loads") from None
    except Exception as e:  # zip and EOF errors of a truncated or overwritten file
        raise LexformerError(f"corrupt checkpoint {ckpt}: cannot read {STATE_FILE} "
                             f"({_one_line(e)}); it cannot be resumed") from e
    _require(isinstance(state, dict) and all(k in state for k in TRAIN_STATE_KEYS),
             f"corrupt checkpoint {ckpt}: {STATE_FILE} lacks "
             + ", ".join(k for k in TRAIN_STATE_KEYS if not isinstance(state, dict)
                         or k not in state))
    return state


__all__ = ["CONFIG_FILE", "Checkpoint", "LINK", "MODEL_FILE", "RunMeta", "STATE_FILE",
           "TOKENIZER_FILE", "has_checkpoint", "load", "load_train_state", "model_state",
           "read_meta", "read_run_meta", "read_train_config", "remove_partial_checkpoints",
           "resolve_checkpoint_dir", "save_checkpoint", "validate_meta"]
