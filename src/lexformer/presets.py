"""Named training presets: functions returning a complete :class:`TrainConfig` (a model
shape plus a budget in tokens); every field not set here keeps the dataclasses' default.

* ``smoke``  — about a minute on a 2-core CPU; what the tests and ``reproduce --preset smoke``
  use. Too small to show anything but that the pipeline works.
* ``tiny``   — the reproduction's default: five schemes train and are evaluated in about
  70 minutes on a 2-core AVX2 CPU in fp32 (69m50s measured from a fresh clone, set-up
  included, on an AVX2-only AMD EPYC without native bf16): 1.3 M parameters, 1.64 M tokens,
  ~3,500 tokens/s.
* ``small``  — the shape of the first reproduction (2026-11-27,
  docs/reproduction/2026-11-27-small/): 4.2 M parameters, 2.46 M tokens; 44 min on a CPU with
  native bf16, about 2 h on an AVX2-only one.
* ``mlm-smoke``, ``mlm-tiny`` — ``smoke`` and ``tiny`` as bidirectional masked-LM encoders
  (``lexformer reproduce --objective mlm``, ``docs/bidirectional.md``); ``mlm-tiny`` trains
  on 1.31 M tokens instead of 1.64 M, which keeps the five-scheme experiment near half an
  hour (36 min measured).
* ``paper``  — the paper's model (24 layers, d_model 1024, 16 heads, d_ff 4096, L = 1024), for
  GPU users; its budget is a placeholder to set with ``--tokens``.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any

from .config import DataConfig, ModelConfig, OptimConfig, TrainConfig
from .errors import LexformerError


def smoke() -> TrainConfig:
    return TrainConfig(
        preset="smoke",
        model=ModelConfig(n_layer=2, n_head=4, d_model=64, d_ff=256, train_length=64),
        data=DataConfig(tokenizer="bpe", bpe_vocab_size=512),
        optim=OptimConfig(lr=3e-3, warmup_steps=10),
        batch_size=8, tokens=8 * 64 * 60,
        eval_interval=30, eval_batches=4, checkpoint_interval=30)


def tiny() -> TrainConfig:
    return TrainConfig(
        preset="tiny",
        # head_dim 32 as in `small`, so XPOS/RoPE keep 16 frequencies; 400 steps × 16 × 256.
        # Sized by measured step rates on a 2-core AVX2 CPU (fp32, 2 threads): 4×128 trains at
        # 3,100–4,600 tokens/s, `small` at 1,700.
        model=ModelConfig(n_layer=4, n_head=4, d_model=128, d_ff=512, train_length=256),
        data=DataConfig(tokenizer="bpe", bpe_vocab_size=4096),
        optim=OptimConfig(lr=2e-3, warmup_steps=40),
        batch_size=16, tokens=16 * 256 * 400, dtype="auto",
        eval_interval=100, eval_batches=8, checkpoint_interval=100)


def small() -> TrainConfig:
    return TrainConfig(
        preset="small",
        model=ModelConfig(n_layer=4, n_head=8, d_model=256, d_ff=1024, train_length=256),
        data=DataConfig(tokenizer="bpe", bpe_vocab_size=4096),
        optim=OptimConfig(lr=1e-3, warmup_steps=100),
        # 600 steps × 16 × 256 = 2.46 M tokens (~1.9 epochs of Shakespeare's train split);
        # dtype auto: bf16 autocast where the CPU computes bf16 natively (~1.5× the fp32 step
        # rate there, docs/benchmarks.md), fp32 where bf16 would be emulated (~11× slower).
        batch_size=16, tokens=16 * 256 * 600, dtype="auto",
        eval_interval=100, eval_batches=8, checkpoint_interval=100)


def paper() -> TrainConfig:
    return TrainConfig(
        preset="paper",
        model=ModelConfig(n_layer=24, n_head=16, d_model=1024, d_ff=4096, train_length=1024),
        data=DataConfig(tokenizer="bpe", bpe_vocab_size=32000),
        # the paper's polynomial decay has power 1, i.e. it is linear decay
        optim=OptimConfig(lr=3e-4, warmup_steps=1000, schedule="linear"),
        # 512 sequences of 1024 tokens per optimizer step, as 64 micro-steps of 8 (the old
        # preset said batch_size=8, which its own divisibility check refused)
        batch_size=512, grad_accum=64, tokens=512 * 1024 * 50_000,
        eval_interval=1000, eval_batches=16, checkpoint_interval=1000)


def as_encoder(cfg: TrainConfig, preset: str) -> TrainConfig:
    """``cfg`` as a bidirectional masked-LM encoder run named ``preset``."""
    model = dataclasses.replace(cfg.model, causal=False)
    return dataclasses.replace(cfg, preset=preset, model=model, objective="mlm")


def mlm_smoke() -> TrainConfig:
    return as_encoder(smoke(), "mlm-smoke")


def mlm_tiny() -> TrainConfig:
    # 320 steps × 16 × 256: the encoders train at 3,700–4,400 tokens/s on the 2-core AVX2 CPU
    # (lexformer.experiments.encoder), so five schemes take ~36 min with evaluation (measured)
    return dataclasses.replace(as_encoder(tiny(), "mlm-tiny"), tokens=16 * 256 * 320)


#: the masked-LM presets (objective mlm, causal false), by the causal preset they encode
MLM_PRESETS: dict[str, Callable[[], TrainConfig]] = {"mlm-smoke": mlm_smoke,
                                                     "mlm-tiny": mlm_tiny}
#: preset name → a function building its config (a fresh object on every call)
PRESETS: dict[str, Callable[[], TrainConfig]] = {
    "smoke": smoke, "tiny": tiny, "small": small, "paper": paper, **MLM_PRESETS}


def preset_config(name: str) -> TrainConfig:
    """The preset ``name``'s config; a clear error for an unknown name."""
    if name not in PRESETS:
        raise LexformerError(f"unknown preset {name!r}; choose one of {', '.join(PRESETS)}")
    return PRESETS[name]()


def from_preset(name: str, **overrides: Any) -> TrainConfig:
    """The preset ``name`` with ``overrides`` applied (see :meth:`TrainConfig.with_overrides`:
    ``None`` keeps the preset's value; names are field paths such as ``optim.lr`` or unique
    field names such as ``lr``, ``position``, ``train_length``, ``bpe_vocab_size``)."""
    return preset_config(name).with_overrides(**overrides)


__all__ = ["MLM_PRESETS", "PRESETS", "as_encoder", "from_preset", "mlm_smoke", "mlm_tiny",
           "paper", "preset_config", "small", "smoke", "tiny"]
