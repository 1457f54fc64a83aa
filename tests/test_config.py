"""Typed configs: validation, presets, JSON round trips (today's and the first checkpoints'
layout), config comparison, and the train options generated from the fields."""

from __future__ import annotations

import argparse
import json

import pytest

from lexformer import LexformerError, ModelConfig, TransformerLM
from lexformer.cli.options import add_dataclass_options, overrides_from_args
from lexformer.config import (
    POSITION_NAMES,
    ROTARY_SCHEMES,
    DataConfig,
    OptimConfig,
    RuntimeOptions,
    TrainConfig,
    config_differences,
    describe_differences,
)
from lexformer.positions import POSITION_SCHEMES, ROTARY, build_position_scheme
from lexformer.presets import PRESETS, from_preset

# What the presets held before they became functions (dict layout of lexformer 0.1); the
# values must not change, except paper's batch_size (8 was refused by the divisibility check
# with grad_accum 64; 512 = 64 micro-steps of 8 is what its token budget assumed) and its
# schedule (polynomial of power 1 is linear). The old ``tiny`` lives on as ``small``; today's
# ``tiny`` is a smaller default sized for 2-core AVX2 CPUs (checked below).
OLD_PRESETS = {
    "smoke": {
        "model": {"n_layer": 2, "n_head": 4, "d_model": 64, "d_ff": 256, "train_length": 64},
        "train": {"batch_size": 8, "tokens": 8 * 64 * 60, "lr": 3e-3, "warmup_steps": 10,
                  "eval_interval": 30, "eval_batches": 4, "checkpoint_interval": 30},
        "tokenizer": {"kind": "bpe", "vocab_size": 512},
    },
    "small": {
        "model": {"n_layer": 4, "n_head": 8, "d_model": 256, "d_ff": 1024, "train_length": 256},
        "train": {"batch_size": 16, "tokens": 16 * 256 * 600, "lr": 1e-3, "warmup_steps": 100,
                  "dtype": "auto", "eval_interval": 100, "eval_batches": 8,
                  "checkpoint_interval": 100},
        "tokenizer": {"kind": "bpe", "vocab_size": 4096},
    },
    "paper": {
        "model": {"n_layer": 24, "n_head": 16, "d_model": 1024, "d_ff": 4096,
                  "train_length": 1024},
        "train": {"batch_size": 512, "grad_accum": 64, "tokens": 512 * 1024 * 50_000,
                  "lr": 3e-4, "warmup_steps": 1000, "schedule": "linear",
                  "eval_interval": 1000, "eval_batches": 16, "checkpoint_interval": 1000},
        "tokenizer": {"kind": "bpe", "vocab_size": 32000},
    },
}
OPTIM_NAMES = ("lr", "warmup_steps", "schedule")


@pytest.mark.parametrize("name", sorted(OLD_PRESETS))
def test_presets_keep_their_values(name):
    cfg, old = PRESETS[name](), OLD_PRESETS[name]
    assert cfg.preset == name
    for key, value in old["model"].items():
        assert getattr(cfg.model, key) == value, key
    for key, value in old["train"].items():
        owner = cfg.optim if key in OPTIM_NAMES else cfg
        assert getattr(owner, key) == value, key
    assert (cfg.data.tokenizer, cfg.data.bpe_vocab_size) == (old["tokenizer"]["kind"],
                                                             old["tokenizer"]["vocab_size"])
    # everything else is the dataclasses' defaults, as before
    assert cfg.optim.min_lr_ratio == 0.1 and cfg.optim.betas == (0.9, 0.98)
    assert cfg.seed == 0 and cfg.model.position == "xpos" and cfg.data.corpus == "shakespeare"


def test_tiny_is_the_small_shape_scaled_down_for_the_default_run():
    tiny, small = PRESETS["tiny"](), PRESETS["small"]()
    # the same training length, tokenizer, batch and head size (so XPOS/RoPE keep their
    # frequencies); a narrower model with fewer tokens so five schemes fit ~45 min on 2 cores
    for path in ("model.train_length", "data.bpe_vocab_size", "batch_size", "dtype"):
        owner, name = (tiny, path) if "." not in path else (getattr(tiny, path.split(".")[0]),
                                                            path.split(".")[1])
        other = small if "." not in path else getattr(small, path.split(".")[0])
        assert getattr(owner, name) == getattr(other, name), path
    assert tiny.model.head_dim == small.model.head_dim == 32
    assert (tiny.model.n_layer, tiny.model.d_model, tiny.model.d_ff) == (4, 128, 512)
    assert tiny.tokens == 16 * 256 * 400 < small.tokens


@pytest.mark.parametrize("name", sorted(PRESETS))
def test_config_round_trips_through_json(name):
    cfg = PRESETS[name]().with_vocab_size(321)
    assert TrainConfig.from_dict(cfg.to_dict()) == cfg
    assert TrainConfig.from_dict(json.loads(json.dumps(cfg.to_dict()))) == cfg


def test_polynomial_schedule_is_recorded_as_linear():
    cfg = from_preset("smoke", schedule="polynomial")
    assert cfg.optim.schedule == "linear" and cfg.to_dict()["optim"]["schedule"] == "linear"
    assert PRESETS["paper"]().optim.schedule == "linear"


def test_from_preset_takes_field_paths_unique_names_and_none():
    cfg = from_preset("smoke", position="rope", corpus="milton", tokens=1000,
                                  seed=None, dtype=None, **{"optim.lr": 0.5, "d_model": 32})
    assert (cfg.model.position, cfg.data.corpus, cfg.tokens) == ("rope", "milton", 1000)
    assert (cfg.optim.lr, cfg.model.d_model, cfg.seed) == (0.5, 32, 0)
    # batch_size and grad_accum change together: validated once, as a whole
    assert from_preset("smoke", batch_size=12, grad_accum=4).grad_accum == 4
    with pytest.raises(LexformerError, match="unknown training setting 'vocab_size'"):
        from_preset("smoke", vocab_size=300)  # derived: use bpe_vocab_size
    with pytest.raises(LexformerError, match="unknown preset 'huge'"):
        from_preset("huge")


@pytest.mark.parametrize("overrides,words", [
    (dict(grad_accum=0), "grad_accum (--grad-accum) must be a positive integer"),
    (dict(batch_size=0), "batch_size (--batch-size) must be a positive integer"),
    (dict(batch_size=6, grad_accum=4), "divisible by grad_accum"),
    (dict(tokens=0), "tokens (--tokens) must be a positive integer"),
    (dict(tokens=2.5), "tokens (--tokens) must be an integer"),
    (dict(lr=-1.0), "optim.lr (--lr) must be > 0"),
    (dict(lr=float("nan")), "optim.lr"),
    (dict(lr="fast"), "optim.lr (--lr) must be a number"),
    (dict(warmup_steps=-1), "optim.warmup_steps"),
    (dict(min_lr_ratio=2.0), "optim.min_lr_ratio"),
    (dict(betas=(0.9,)), "optim.betas"),
    (dict(train_length=0), "train_length (--train-length) must be a positive integer"),
    (dict(train_length=63), "train_length must be even"),
    (dict(bpe_vocab_size=1), "bpe_vocab_size (--vocab-size) must be at least 256"),
    (dict(tokenizer="words"), "data.tokenizer (--tokenizer) must be one of bpe, bytes"),
    (dict(schedule="step"), "optim.schedule (--schedule) must be one of"),
    (dict(dtype="fp8"), "dtype (--dtype) must be one of auto, fp32, bf16"),
    (dict(compile=1), "compile (--compile) must be true or false"),
    (dict(seed=-3), "seed must be >= 0"),
    (dict(eval_interval=0), "eval_interval must be a positive integer"),
    (dict(position="xpoz"), "unknown position scheme"),
    (dict(corpus=" "), "data.corpus"),
])
def test_bad_settings_are_refused_naming_the_field(overrides, words):
    with pytest.raises(LexformerError, match="invalid") as info:
        from_preset("smoke", **overrides)
    assert words in str(info.value)


def test_runtime_options_validate_threads():
    assert RuntimeOptions(threads=2).threads == 2
    for bad in (0, -1):
        with pytest.raises(LexformerError, match="threads"):
            RuntimeOptions(threads=bad)


def test_from_dict_refuses_missing_unknown_and_wrongly_typed_fields():
    good = PRESETS["smoke"]().to_dict()
    cases = [
        ({k: v for k, v in good.items() if k != "seed"}, "missing field.*seed"),
        ({**good, "optim": {k: v for k, v in good["optim"].items() if k != "lr"}},
         "missing field.*optim.lr"),
        ({**good, "model": {**good["model"], "n_heads": 2}}, "unknown field.*model.n_heads"),
        ({**good, "optim": [1, 2]}, "optim must be a JSON object"),
        ({**good, "seed": "0"}, "seed.*must be an integer"),
        ({**good, "data": {**good["data"], "bpe_vocab_size": None}}, "bpe_vocab_size"),
    ]
    for data, pattern in cases:
        with pytest.raises(LexformerError, match=pattern):
            TrainConfig.from_dict(data)


# The first checkpoints' config.json (written by lexformer before the typed config): a flat
# "train" section with model overrides and runtime settings inside, the full model beside it.
OLD_META = {
    "model": {"block_size": None, "d_ff": 256, "d_model": 64, "dropout": 0.0, "extra": {},
              "n_head": 4, "n_layer": 2, "norm_eps": 1e-05, "position": "rope",
              "rope_base": 10000.0, "tie_embeddings": True, "train_length": 64,
              "vocab_size": 369, "window": None, "xpos_gamma": 0.4, "xpos_scale_base": 512.0},
    "train": {"batch_size": 8, "betas": [0.9, 0.98], "cache_dir": "/tmp/cache",
              "checkpoint_interval": 30, "compile": False, "corpus": "milton",
              "dtype": "auto", "eps": 1e-06, "eval_batches": 4, "eval_interval": 30,
              "grad_accum": 1, "grad_clip": 1.0, "lr": 0.003, "min_lr_ratio": 0.1,
              "model": {"n_layer": 2, "n_head": 4, "d_model": 64, "d_ff": 256,
                        "train_length": 64},
              "position": "rope", "preset": "smoke", "schedule": "polynomial", "seed": 0,
              "threads": 1, "tokenizer": "bpe", "tokens": 30720, "vocab_size": 512,
              "warmup_steps": 10, "weight_decay": 0.01},
    "step": 60, "corpus": {"name": "milton", "fingerprint": "abc"},
}


def test_the_first_checkpoint_layout_still_reads():
    cfg = TrainConfig.from_dict(OLD_META)
    wanted = from_preset("smoke", position="rope", corpus="milton",
                                     schedule="polynomial")
    assert config_differences(cfg, wanted) == []  # polynomial became linear on both sides
    assert cfg.model.vocab_size == 369 and cfg.data.bpe_vocab_size == 512
    broken = json.loads(json.dumps(OLD_META))
    del broken["train"]["lr"]
    with pytest.raises(LexformerError, match="missing field.*train.lr"):
        TrainConfig.from_dict(broken)


def test_config_differences_names_the_fields_and_ignores_the_derived_vocabulary():
    saved = PRESETS["smoke"]().with_vocab_size(300)
    assert config_differences(saved, PRESETS["smoke"]()) == []
    wanted = from_preset("smoke", lr=1e-2, seed=4, d_model=128)
    assert config_differences(saved, wanted) == ["model.d_model", "optim.lr", "seed"]
    assert "optim.lr 0.003 → 0.01" in describe_differences(saved, wanted)
    other = from_preset("tiny")
    assert {"preset", "model.n_layer", "data.bpe_vocab_size", "tokens"} <= set(
        config_differences(saved, other))


def test_config_knows_the_position_registry_without_importing_it():
    assert set(POSITION_NAMES) == set(POSITION_SCHEMES)
    probe = dict(vocab_size=16, n_layer=1, n_head=2, d_model=8, d_ff=8, train_length=8)
    rotary = {name for name in POSITION_SCHEMES
              if build_position_scheme(ModelConfig(position=name, **probe)).kind == ROTARY}
    assert set(ROTARY_SCHEMES) == rotary


def _expected_parameters(c: ModelConfig) -> int:
    """Counted from the architecture: per layer qkv + proj, the two FFN layers and two
    LayerNorms; a final LayerNorm; embeddings (tied or not); learned positions; the
    sinusoids' learned scale."""
    d, f = c.d_model, c.d_ff
    per_layer = (3 * d * d + 3 * d) + (d * d + d) + (d * f + f) + (f * d + d) + 2 * (2 * d)
    total = c.n_layer * per_layer + 2 * d + c.vocab_size * d * (1 if c.tie_embeddings else 2)
    total += c.train_length * d if c.position == "learned" else 0
    return total + (1 if c.position == "absolute" else 0)


@pytest.mark.parametrize("position", POSITION_NAMES)
def test_parameter_count_matches_the_architecture(position):
    for tie in (True, False):
        cfg = ModelConfig(vocab_size=61, n_layer=2, n_head=2, d_model=16, d_ff=32,
                          train_length=16, position=position, tie_embeddings=tie)
        assert TransformerLM(cfg).num_parameters() == _expected_parameters(cfg)


def _train_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(exit_on_error=False)
    add_dataclass_options(parser, TrainConfig)
    add_dataclass_options(parser, RuntimeOptions, "runtime.")
    return parser


def test_train_options_come_from_the_fields():
    parser = _train_parser()
    flags = {a.option_strings[0] for a in parser._actions if a.option_strings}
    assert {"--position", "--corpus", "--tokens", "--batch-size", "--grad-accum", "--lr",
            "--schedule", "--train-length", "--tokenizer", "--vocab-size", "--dtype",
            "--compile", "--seed", "--threads", "--device"} <= flags
    args = parser.parse_args(["--lr", "0.01", "--schedule", "polynomial", "--compile",
                              "--vocab-size", "300", "--threads", "2"])
    assert overrides_from_args(args, TrainConfig) == {
        "optim.lr": 0.01, "optim.schedule": "polynomial", "compile": True,
        "data.bpe_vocab_size": 300}
    assert overrides_from_args(args, RuntimeOptions, "runtime.") == {"threads": 2}
    assert overrides_from_args(parser.parse_args([]), TrainConfig) == {}
    cfg = from_preset("smoke", **overrides_from_args(args, TrainConfig))
    assert (cfg.optim.lr, cfg.optim.schedule, cfg.compile) == (0.01, "linear", True)


def test_literal_fields_give_choices():
    with pytest.raises(argparse.ArgumentError, match="invalid choice"):
        _train_parser().parse_args(["--dtype", "fp8"])


def test_data_and_optim_configs_check_types_on_their_own():
    with pytest.raises(LexformerError, match="data.bpe_vocab_size"):
        DataConfig(bpe_vocab_size="big")
    assert OptimConfig(lr=1).lr == 1.0 and isinstance(OptimConfig(lr=1).lr, float)
    assert OptimConfig(betas=[0.8, 0.9]).betas == (0.8, 0.9)
