"""Typed configuration: the model's shape (:class:`ModelConfig`) and everything that decides a
training run (:class:`TrainConfig`), each validating itself and round-tripping through JSON.

Every field checks its type and range when the dataclass is built, so a bad value is refused
once, at the boundary, with a message naming the field. Fields that the ``lexformer train``
command line exposes carry their option name and help in ``metadata`` (see :func:`option`);
``lexformer.cli.options`` builds the parser from them, so a field, its option and its preset
override are written once.

This module imports nothing from the rest of the library but :mod:`lexformer.errors` and
:mod:`lexformer.typed_fields` (the position registry and the attention code depend on it,
not the other way round).
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field
from typing import Any, Literal, get_args

from .errors import LexformerError
from .typed_fields import (
    build_dataclass,
    check_field_types,
    invalid,
    leaf_paths,
    option,
    positive_ints,
)

#: the largest seed every random generator a run seeds accepts (numpy's legacy seeding)
MAX_SEED = 2**32 - 1

# The allowed values of every enumerated option, once. Everything else (argparse choices,
# validation, docs) derives its list from these.
AttentionMode = Literal["full", "blockwise", "sliding"]
ATTENTION_MODES: tuple[str, ...] = get_args(AttentionMode)
Split = Literal["train", "validation", "test"]
SPLITS: tuple[str, ...] = get_args(Split)
#: the split choice of ``eval`` and ``extend`` that scores every document of the user's own
#: files whole (no train/validation/test parts): the default for a user corpus there
ALL_SPLIT = "all"
#: the splits an evaluation may score: a corpus's three, or all of the user's text whole
EVAL_SPLITS: tuple[str, ...] = (*SPLITS, ALL_SPLIT)
Schedule = Literal["cosine", "linear", "polynomial"]
SCHEDULES: tuple[str, ...] = get_args(Schedule)
DType = Literal["auto", "fp32", "bf16"]
DTYPES: tuple[str, ...] = get_args(DType)
TokenizerKind = Literal["bpe", "bytes"]
TOKENIZER_KINDS: tuple[str, ...] = get_args(TokenizerKind)
#: clm: next-token prediction by a causal model; mlm: masked tokens by an encoder
Objective = Literal["clm", "mlm"]
OBJECTIVES: tuple[str, ...] = get_args(Objective)
PositionName = Literal["xpos", "rope", "alibi", "absolute", "learned", "none"]
#: the names of ``lexformer.positions.POSITION_SCHEMES`` (a test keeps the two equal)
POSITION_NAMES: tuple[str, ...] = get_args(PositionName)
#: the schemes that rotate query/key pairs and so need an even head dimension (a test keeps
#: this equal to the registry's schemes of kind ROTARY)
ROTARY_SCHEMES: tuple[str, ...] = ("xpos", "rope")


# --------------------------------------------------------------------------- model
@dataclass
class ModelConfig:
    """Shape and position scheme of a :class:`lexformer.TransformerLM`.

    ``train_length`` (L) is the length the model is trained at. Blockwise attention at
    inference uses blocks of ``block_size`` (default L/2: a query sees its own block and the
    previous one, so it never looks L or more tokens back); sliding attention uses a window of
    ``window`` keys (default L). ``vocab_size`` is the tokenizer's real vocabulary; a training
    run fills it in once the tokenizer is built (plus one [MASK] id for a masked-LM encoder).

    ``causal=False`` makes the model an encoder: every query sees keys on both sides (full),
    or the neighbouring blocks on both sides (blockwise); ``docs/bidirectional.md``.
    """

    vocab_size: int = 4096
    n_layer: int = 4
    n_head: int = 8
    d_model: int = 256
    d_ff: int = 1024
    train_length: int = field(default=256, metadata=option(
        "--train-length", "training length L (overrides preset)"))
    position: PositionName = field(default="xpos", metadata=option(
        "--position", "position scheme"))
    dropout: float = 0.0
    tie_embeddings: bool = True
    xpos_gamma: float = 0.4
    xpos_scale_base: float = 512.0
    rope_base: float = 10000.0
    block_size: int | None = None
    window: int | None = None
    norm_eps: float = 1e-5
    extra: dict[str, Any] = field(default_factory=dict)
    causal: bool = True

    def __post_init__(self) -> None:
        where = "model config"
        positive_ints(self, where, "", "vocab_size", "n_layer", "n_head", "d_model", "d_ff",
                       "train_length")
        if self.position not in POSITION_NAMES:
            raise invalid(where, f"unknown position scheme {self.position!r}; known schemes: "
                          + ", ".join(sorted(POSITION_NAMES)))
        for name in ("block_size", "window"):
            value = getattr(self, name)
            if value is not None and (not isinstance(value, int) or isinstance(value, bool)
                                      or value <= 0):
                raise invalid(where, f"{name} must be a positive integer or None, got "
                              f"{value!r}")
        check_field_types(self, where)
        self._check_shape(where)

    def _check_shape(self, where: str) -> None:
        def require(ok: bool, message: str) -> None:
            if not ok:
                raise invalid(where, message)

        require(self.d_model % self.n_head == 0,
                f"d_model ({self.d_model}) must be divisible by n_head ({self.n_head})")
        require(self.position not in ROTARY_SCHEMES or self.head_dim % 2 == 0,
                f"the rotary scheme {self.position!r} needs an even head dimension, got "
                f"d_model/n_head = {self.head_dim}")
        require(self.position != "absolute" or self.d_model % 2 == 0,
                f"sinusoidal 'absolute' positions need an even d_model, got {self.d_model}")
        require(self.train_length >= 2 and self.train_length % 2 == 0,
                "train_length must be even and at least 2 (blocks are L/2), got "
                f"{self.train_length}")
        require(0.0 <= self.dropout < 1.0, f"dropout must be in [0, 1), got {self.dropout}")
        require(self.xpos_gamma > 0 and self.xpos_scale_base > 0 and self.rope_base > 1,
                "xpos_gamma and xpos_scale_base must be positive and rope_base > 1")
        require(self.norm_eps > 0, f"norm_eps must be positive, got {self.norm_eps}")

    @property
    def head_dim(self) -> int:
        return self.d_model // self.n_head

    @property
    def attention_block(self) -> int:
        """Block size h of blockwise attention (L/2 unless set)."""
        return self.block_size or self.train_length // 2

    @property
    def attention_window(self) -> int:
        """Window W of sliding attention (L unless set)."""
        return self.window or self.train_length

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ModelConfig:
        """Every field required (a checkpoint never falls back to a default silently), except
        those added after checkpoints were first written (:data:`ADDED_MODEL_FIELDS`)."""
        return build_dataclass(cls, _with_added(data, ADDED_MODEL_FIELDS), "model config")


#: fields added after checkpoints were first written, with the value every config written
#: before them implied; a saved config that lacks one gets that value (and nothing else is
#: filled in)
ADDED_MODEL_FIELDS: dict[str, Any] = {"causal": True}
ADDED_TRAIN_FIELDS: dict[str, Any] = {"objective": "clm"}


def _with_added(data: Any, added: dict[str, Any]) -> Any:
    if not isinstance(data, dict):
        return data  # build_dataclass names the error
    return {**{k: v for k, v in added.items() if k not in data}, **data}


def _with_added_train(data: Any) -> Any:
    """A saved training section with the added fields filled in, its model's too."""
    data = _with_added(data, ADDED_TRAIN_FIELDS)
    if isinstance(data, dict) and isinstance(data.get("model"), dict):
        data = {**data, "model": _with_added(data["model"], ADDED_MODEL_FIELDS)}
    return data


# --------------------------------------------------------------------------- training
@dataclass
class DataConfig:
    """Which text the model learns and how it is tokenized."""

    corpus: str = field(default="shakespeare", metadata=option(
        "--corpus", "built-in corpus (shakespeare, milton, sword) or a path: a .txt file, a "
                    "folder of .txt files, or a .jsonl file with a 'text' field"))
    tokenizer: TokenizerKind = field(default="bpe", metadata=option(
        "--tokenizer", "byte-level BPE or raw bytes"))
    # The vocabulary *asked of* the BPE trainer; the model's real one (model.vocab_size) is
    # whatever the trained tokenizer ends up with (256 for bytes).
    bpe_vocab_size: int = field(default=4096, metadata=option(
        "--vocab-size", "BPE vocabulary size"))

    def __post_init__(self) -> None:
        where = "training config"
        check_field_types(self, where, "data.")
        if not self.corpus.strip():
            raise invalid(where, "data.corpus must name a corpus or a path")
        if self.bpe_vocab_size < 256:
            raise invalid(where, "data.bpe_vocab_size (--vocab-size) must be at least 256 "
                                 f"(the byte alphabet), got {self.bpe_vocab_size}")


@dataclass
class OptimConfig:
    """AdamW and its learning-rate schedule."""

    lr: float = field(default=1e-3, metadata=option("--lr", "peak learning rate"))
    min_lr_ratio: float = 0.1
    warmup_steps: int = 100
    schedule: Schedule = field(default="cosine", metadata=option(
        "--schedule", "learning-rate decay after warm-up"))
    weight_decay: float = 0.01
    betas: tuple[float, float] = (0.9, 0.98)
    eps: float = 1e-6
    grad_clip: float = 1.0

    def __post_init__(self) -> None:
        where = "training config"
        check_field_types(self, where, "optim.")
        # A polynomial decay of power 1 (fairseq's default power) is exactly linear decay;
        # the name stays accepted for old commands and checkpoints, but config.json records
        # what actually runs.
        if self.schedule == "polynomial":
            self.schedule = "linear"
        checks = [
            (self.lr > 0 and math.isfinite(self.lr), f"optim.lr (--lr) must be > 0, got "
                                                     f"{self.lr}"),
            (0 <= self.min_lr_ratio <= 1, f"optim.min_lr_ratio must be in [0, 1], got "
                                          f"{self.min_lr_ratio}"),
            (self.warmup_steps >= 0, f"optim.warmup_steps must be >= 0, got "
                                     f"{self.warmup_steps}"),
            (self.weight_decay >= 0, f"optim.weight_decay must be >= 0, got "
                                     f"{self.weight_decay}"),
            (all(0 <= b < 1 for b in self.betas), f"optim.betas must lie in [0, 1), got "
                                                  f"{self.betas}"),
            (self.eps > 0, f"optim.eps must be > 0, got {self.eps}"),
            (self.grad_clip >= 0, f"optim.grad_clip must be >= 0 (0: no clipping), got "
                                  f"{self.grad_clip}"),
        ]
        for ok, message in checks:
            if not ok:
                raise invalid(where, message)


@dataclass
class TrainConfig:
    """Everything that decides a training run's result; written into every checkpoint's
    config.json and compared field by field on ``--resume`` (:func:`config_differences`).

    Settings that do not change the result (threads, device, progress bar, cache folder) are
    not here: see :class:`RuntimeOptions`.
    """

    preset: str = "smoke"
    model: ModelConfig = field(default_factory=ModelConfig)
    data: DataConfig = field(default_factory=DataConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    # budget: steps = ceil(tokens / (batch_size · L))
    batch_size: int = field(default=16, metadata=option(
        "--batch-size", "sequences per optimizer step (global)"))
    grad_accum: int = field(default=1, metadata=option(
        "--grad-accum", "micro-steps per optimizer step"))
    tokens: int = field(default=1_000_000, metadata=option(
        "--tokens", "training budget in tokens (overrides preset)"))
    seed: int = field(default=0, metadata=option("--seed", "seed of weights and data order"))
    dtype: DType = field(default="auto", metadata=option(
        "--dtype", "bf16 autocast (auto: bf16 where the device computes it natively, else fp32)"))
    compile: bool = field(default=False, metadata=option(
        "--compile", "torch.compile the model"))
    eval_interval: int = 100
    eval_batches: int = 8
    checkpoint_interval: int = 100
    objective: Objective = field(default="clm", metadata=option(
        "--objective", "clm: next-token prediction (causal model); mlm: masked-token "
                       "prediction, BERT-style (bidirectional encoder)"))

    def __post_init__(self) -> None:
        where = "training config"
        check_field_types(self, where)
        if self.objective == "mlm" and self.model.causal:
            raise invalid(where, "objective mlm trains an encoder: model.causal must be false "
                                 "(lexformer train --objective mlm sets it)")
        if self.objective == "clm" and not self.model.causal:
            raise invalid(where, "a bidirectional model (model.causal false) would see the "
                                 "token it predicts; train it with objective mlm")
        if not self.preset:
            raise invalid(where, "preset must be a non-empty name")
        positive_ints(self, where, "", "batch_size", "grad_accum", "tokens", "eval_interval",
                       "eval_batches", "checkpoint_interval")
        if self.batch_size % self.grad_accum:
            raise invalid(where, f"batch_size ({self.batch_size}) must be divisible by "
                                 f"grad_accum ({self.grad_accum})")
        if self.seed < 0:
            raise invalid(where, f"seed must be >= 0, got {self.seed}")
        if self.seed > MAX_SEED:  # numpy's legacy seeding refuses it deep inside the run
            raise invalid(where, f"seed must be <= {MAX_SEED} (2**32 - 1), got {self.seed}")
        # warmup_steps may exceed the budget on purpose: a few-step smoke run then stays in
        # warm-up, which lr_at handles; refusing it would refuse every short test run.

    def with_overrides(self, **overrides: Any) -> TrainConfig:
        """A copy with ``overrides`` applied (``None`` keeps a value; names are field paths such
        as ``optim.lr`` or unique field names such as ``lr``, ``position``), validated
        once as a whole (so e.g. batch_size and grad_accum may change together)."""
        data = self.to_dict()
        for name, value in overrides.items():
            if value is None:
                continue
            *parents, leaf = override_path(name).split(".")
            node = data
            for part in parents:
                node = node[part]
            node[leaf] = value
        return TrainConfig.from_dict(data)

    def with_vocab_size(self, vocab_size: int) -> TrainConfig:
        """This config with the tokenizer's real vocabulary filled into the model."""
        return dataclasses.replace(self, model=dataclasses.replace(self.model,
                                                                   vocab_size=vocab_size))

    @property
    def train_length(self) -> int:
        return self.model.train_length

    @property
    def position(self) -> str:
        return self.model.position

    def total_steps(self) -> int:
        return max(1, math.ceil(self.tokens / (self.batch_size * self.train_length)))

    def to_dict(self) -> dict[str, Any]:
        d = dataclasses.asdict(self)
        d["optim"]["betas"] = list(self.optim.betas)
        return d

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> TrainConfig:
        """From :meth:`to_dict`'s output, or from a whole checkpoint ``config.json`` (the
        current layout, or the flat one of lexformer ≤ 0.1's first checkpoints)."""
        if isinstance(data, dict) and "train" in data:
            return _from_checkpoint_meta(data)
        return build_dataclass(cls, _with_added_train(data), "training config")


def _from_checkpoint_meta(meta: dict[str, Any]) -> TrainConfig:
    train = meta["train"]
    if isinstance(train, dict) and "optim" not in train:  # the first, flat layout
        train = _upgrade_flat_train_section(train, meta.get("model"))
    return build_dataclass(TrainConfig, _with_added_train(train), "training config", "train.")


#: fields of the first checkpoints' flat "train" section that went into OptimConfig
_FLAT_OPTIM_FIELDS = ("lr", "min_lr_ratio", "warmup_steps", "schedule", "weight_decay",
                      "betas", "eps", "grad_clip")
_FLAT_TOP_FIELDS = ("preset", "batch_size", "grad_accum", "tokens", "seed", "dtype", "compile",
                    "eval_interval", "eval_batches", "checkpoint_interval")


def _upgrade_flat_train_section(old: dict[str, Any], model: Any) -> dict[str, Any]:
    """The flat ``train`` section (model overrides inside it, the full model config beside
    it, runtime settings mixed in) rewritten in today's nested layout."""
    needed = ("corpus", "tokenizer", "vocab_size", *_FLAT_OPTIM_FIELDS, *_FLAT_TOP_FIELDS)
    missing = [name for name in needed if name not in old]
    if missing:
        raise invalid("training config", "missing field(s) "
                      + ", ".join(f"train.{m}" for m in missing))
    if model is None:
        raise invalid("training config", "missing field model")
    upgraded = {name: old[name] for name in _FLAT_TOP_FIELDS}
    upgraded["model"] = model
    upgraded["data"] = {"corpus": old["corpus"], "tokenizer": old["tokenizer"],
                        "bpe_vocab_size": old["vocab_size"]}
    upgraded["optim"] = {name: old[name] for name in _FLAT_OPTIM_FIELDS}
    return upgraded


# --------------------------------------------------------------------------- comparison
#: fields that follow from others and so are not compared: the real vocabulary is what the
#: tokenizer named by data.* produced.
DERIVED_FIELDS = ("model.vocab_size",)


def override_path(name: str) -> str:
    """The field path an override name means (``lr`` → ``optim.lr``); clear error if none."""
    paths = [p for p in leaf_paths(TrainConfig) if p not in DERIVED_FIELDS]
    if name in paths:
        return name
    matches = [p for p in paths if p.rsplit(".", 1)[-1] == name]
    if len(matches) == 1:
        return matches[0]
    raise LexformerError(f"unknown training setting {name!r}; known settings: "
                         + ", ".join(paths))


def _get_path(obj: Any, path: str) -> Any:
    for part in path.split("."):
        obj = getattr(obj, part)
    return obj


def config_differences(saved: TrainConfig, wanted: TrainConfig) -> list[str]:
    """Dotted names of the fields whose values differ (``optim.lr``, ``seed``,
    ``model.d_model``), in field order; empty when ``wanted`` would give the same run.
    ``model.vocab_size`` is not compared: it is derived from the data settings."""
    return [path for path in leaf_paths(TrainConfig) if path not in DERIVED_FIELDS
            and _get_path(saved, path) != _get_path(wanted, path)]


def describe_differences(saved: TrainConfig, wanted: TrainConfig) -> str:
    """``optim.lr 0.003 → 0.001, seed 0 → 1`` (saved → wanted), for one-line messages."""
    return ", ".join(f"{p} {_get_path(saved, p)!r} → {_get_path(wanted, p)!r}"
                     for p in config_differences(saved, wanted))


# --------------------------------------------------------------------------- runtime
@dataclass
class RuntimeOptions:
    """How a run executes, not what it computes: these may change between a run and its
    resume, and are not written into the training config."""

    threads: int | None = field(default=None, metadata=option(
        "--threads", "torch CPU threads"))
    device: str | None = field(default=None, metadata=option(
        "--device", "cpu, cuda, cuda:1 (default: cuda if available)"))
    cache_dir: str | None = None
    progress: bool = True

    def __post_init__(self) -> None:
        check_field_types(self, "runtime options")
        if self.threads is not None and self.threads <= 0:
            raise invalid("runtime options", f"threads (--threads) must be a positive "
                                             f"integer, got {self.threads}")


__all__ = [
    "ADDED_MODEL_FIELDS", "ADDED_TRAIN_FIELDS", "ALL_SPLIT", "ATTENTION_MODES", "DTYPES",
    "EVAL_SPLITS", "MAX_SEED", "OBJECTIVES",
    "POSITION_NAMES", "ROTARY_SCHEMES", "SCHEDULES", "SPLITS", "TOKENIZER_KINDS",
    "AttentionMode", "DType", "DataConfig", "ModelConfig", "Objective", "OptimConfig",
    "PositionName", "RuntimeOptions", "Schedule", "Split", "TokenizerKind", "TrainConfig",
    "config_differences", "describe_differences", "override_path",
]
