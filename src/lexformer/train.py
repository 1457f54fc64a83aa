"""Training: one function, :func:`train`, behind ``lexformer train``.

Exact resume: the learning rate is a pure function of the step, the data stream a pure
function of (seed, step), and the optimizer and RNG states are saved with every checkpoint,
so a run killed and resumed on CPU reaches the same weights as an uninterrupted one.

Distributed: under ``torchrun --nproc_per_node=N`` the same call trains with DDP (gloo on
CPU, nccl on GPU); the global batch is split across ranks so that N processes see exactly
the data one process would, and only rank 0 writes.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import math
import os
import random
import signal
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from typing_extensions import Self

from . import __version__
from .checkpoint import has_checkpoint, load_train_state, model_state, save_checkpoint
from .config import ModelConfig
from .errors import LexformerError
from .model import TransformerLM
from .presets import PRESETS


@dataclass
class TrainConfig:
    """Everything that decides a training run. Written into every checkpoint's config.json."""

    preset: str = "smoke"
    position: str = "xpos"
    corpus: str = "shakespeare"
    model: dict[str, Any] = field(default_factory=dict)  # ModelConfig overrides
    tokenizer: str = "bpe"  # "bpe" or "bytes"
    vocab_size: int = 4096
    batch_size: int = 16  # sequences per optimizer step, all ranks and micro-steps together
    grad_accum: int = 1
    tokens: int = 1_000_000  # training budget in tokens (steps = tokens / (batch · L))
    lr: float = 1e-3
    min_lr_ratio: float = 0.1
    warmup_steps: int = 100
    schedule: str = "cosine"  # "cosine", "linear" or "polynomial" (power 1, as fairseq)
    weight_decay: float = 0.01
    betas: tuple[float, float] = (0.9, 0.98)
    eps: float = 1e-6
    grad_clip: float = 1.0
    seed: int = 0
    dtype: str = "auto"  # "fp32", "bf16" (autocast), "auto": bf16 on CUDA, fp32 on CPU
    compile: bool = False
    eval_interval: int = 100
    eval_batches: int = 8
    checkpoint_interval: int = 100
    threads: int | None = None
    cache_dir: str | None = None

    def __post_init__(self) -> None:
        self.betas = tuple(self.betas)
        checks = [
            (self.tokenizer in ("bpe", "bytes"), (f"tokenizer must be 'bpe' or 'bytes', got "
                                                 f"{self.tokenizer!r}")),
            (self.schedule in ("cosine", "linear", "polynomial"),
             f"schedule must be cosine, linear or polynomial, got {self.schedule!r}"),
            (self.dtype in ("auto", "fp32", "bf16"), (f"dtype must be auto, fp32 or bf16, got "
                                                     f"{self.dtype!r}")),
            (self.batch_size > 0 and self.grad_accum > 0, "batch_size and grad_accum must be > 0"),
            (self.batch_size % self.grad_accum == 0,
             (f"batch_size ({self.batch_size}) must be divisible by grad_accum "
             f"({self.grad_accum})")),
            (self.tokens > 0, "the token budget must be positive"),
            (self.lr > 0 and 0 <= self.min_lr_ratio <= 1, "lr must be > 0, min_lr_ratio in [0,1]"),
            (self.warmup_steps >= 0, "warmup_steps must be >= 0"),
            (self.vocab_size >= 256, "vocab_size must be at least 256"),
        ]
        for ok, msg in checks:
            if not ok:
                raise LexformerError(f"invalid training config: {msg}")

    @classmethod
    def from_preset(cls, preset: str, **overrides: Any) -> TrainConfig:
        if preset not in PRESETS:
            raise LexformerError(
                f"unknown preset {preset!r}; choose one of {', '.join(PRESETS)}")
        p = PRESETS[preset]
        values: dict[str, Any] = dict(p["train"])
        values["model"] = dict(p["model"])
        values["tokenizer"] = p["tokenizer"]["kind"]
        values["vocab_size"] = p["tokenizer"]["vocab_size"]
        model_overrides = overrides.pop("model", None) or {}
        values["model"].update(model_overrides)
        values.update({k: v for k, v in overrides.items() if v is not None})
        return cls(preset=preset, **values)

    def model_config(self, vocab_size: int) -> ModelConfig:
        return ModelConfig(vocab_size=vocab_size, position=self.position, **self.model)

    @property
    def train_length(self) -> int:
        return int(self.model.get("train_length", ModelConfig.train_length))

    def total_steps(self) -> int:
        return max(1, math.ceil(self.tokens / (self.batch_size * self.train_length)))

    def to_dict(self) -> dict[str, Any]:
        d = dataclasses.asdict(self)
        d["betas"] = list(self.betas)
        return d


def lr_at(step: int, cfg: TrainConfig, total: int) -> float:
    """Linear warm-up to ``lr``, then cosine or linear decay to ``lr·min_lr_ratio``."""
    if cfg.warmup_steps and step < cfg.warmup_steps:
        return cfg.lr * (step + 1) / cfg.warmup_steps
    progress = min(1.0, (step - cfg.warmup_steps) / max(1, total - cfg.warmup_steps))
    if cfg.schedule == "cosine":
        frac = 0.5 * (1 + math.cos(math.pi * progress))
    else:
        frac = 1 - progress
    return cfg.lr * (cfg.min_lr_ratio + (1 - cfg.min_lr_ratio) * frac)


# --------------------------------------------------------------------------- helpers
@dataclass
class _Dist:
    rank: int = 0
    world: int = 1
    local_rank: int = 0

    @property
    def enabled(self) -> bool:
        return self.world > 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    def barrier(self) -> None:
        if self.enabled:
            torch.distributed.barrier()

    def any(self, flag: bool) -> bool:
        """True on every rank if ``flag`` is true on any rank."""
        if not self.enabled:
            return flag
        t = torch.tensor([1.0 if flag else 0.0])
        torch.distributed.all_reduce(t, op=torch.distributed.ReduceOp.MAX)
        return bool(t.item())


def _init_distributed(device: torch.device) -> _Dist:
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return _Dist()
    if not torch.distributed.is_initialized():
        backend = "nccl" if device.type == "cuda" else "gloo"
        torch.distributed.init_process_group(backend=backend)
    return _Dist(torch.distributed.get_rank(), world, int(os.environ.get("LOCAL_RANK", "0")))


def _rng_state() -> dict[str, Any]:
    state = {"torch": torch.get_rng_state(), "numpy": np.random.get_state(),
             "python": random.getstate()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def _set_rng_state(state: dict[str, Any]) -> None:
    torch.set_rng_state(state["torch"])
    np.random.set_state(state["numpy"])
    random.setstate(state["python"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def _seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


class _StopRequest:
    """SIGINT/SIGTERM set a flag; the loop saves a checkpoint and exits at the next step."""

    def __init__(self) -> None:
        self.requested = False
        self._old: dict[int, Any] = {}

    def __enter__(self) -> Self:
        for sig in (signal.SIGINT, signal.SIGTERM):
            try:
                self._old[sig] = signal.signal(sig, self._handle)
            except ValueError:  # not the main thread
                pass
        return self

    def _handle(self, signum, frame) -> None:
        if self.requested:  # second signal: give up at once
            raise KeyboardInterrupt
        self.requested = True

    def __exit__(self, *exc) -> None:
        for sig, old in self._old.items():
            signal.signal(sig, old)


def prepare_data(cfg: TrainConfig):
    """Corpus, tokenizer and tokenized splits for a training config (cached on disk)."""
    from .data import get_tokenizer, load_corpus, tokenize_corpus

    corpus = load_corpus(cfg.corpus, cache_dir=cfg.cache_dir)
    tokenizer = get_tokenizer(corpus, cfg.tokenizer, cfg.vocab_size, cache_dir=cfg.cache_dir)
    tokens = tokenize_corpus(corpus, tokenizer, cache_dir=cfg.cache_dir)
    return corpus, tokenizer, tokens


def _autocast(device: torch.device, dtype: str):
    if dtype == "bf16":
        return torch.autocast(device.type, dtype=torch.bfloat16)
    return contextlib.nullcontext()


def _validation_windows(split, length: int, n: int) -> torch.Tensor | None:
    """The first ``n`` non-overlapping windows of length+1 of a split (fixed across runs)."""
    toks = np.asarray(split.tokens)
    n = min(n, (len(toks) - 1) // length)
    if n <= 0:
        return None
    return torch.from_numpy(
        np.stack([toks[i * length: i * length + length + 1] for i in range(n)]).astype(np.int64))


@torch.no_grad()
def _validation_loss(model, windows, device, dtype, batch_size) -> float:
    was_training = model.training
    model.eval()
    total, count = 0.0, 0
    for i in range(0, len(windows), batch_size):
        w = windows[i: i + batch_size].to(device)
        with _autocast(device, dtype):
            logits = model(w[:, :-1])
        loss = F.cross_entropy(logits.float().flatten(0, 1), w[:, 1:].flatten(), reduction="sum")
        total += loss.item()
        count += w[:, 1:].numel()
    model.train(was_training)
    return total / max(1, count)


# --------------------------------------------------------------------------- train
def train(
    cfg: TrainConfig,
    out_dir: str | Path,
    resume: bool = False,
    progress: bool = True,
    stop_after_steps: int | None = None,
    device: str | None = None,
) -> dict[str, Any]:
    """Train ``cfg`` into ``out_dir``; returns a summary (steps, final losses, tokens/s).

    ``resume`` continues from the checkpoint in ``out_dir``; without it an existing
    checkpoint there is an error (nothing is overwritten). ``stop_after_steps`` stops early
    as if interrupted (a checkpoint is written), which is how the resume test simulates a kill.
    """
    out_dir = Path(out_dir)
    dev = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
    dist = _init_distributed(dev)
    if dist.enabled and dev.type == "cuda":
        dev = torch.device("cuda", dist.local_rank)
        torch.cuda.set_device(dev)
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    dtype = cfg.dtype if cfg.dtype != "auto" else ("bf16" if dev.type == "cuda" else "fp32")

    if has_checkpoint(out_dir) and not resume:
        raise LexformerError(
            f"{out_dir} already holds a checkpoint; pass --resume to continue it or choose "
            "another --out (nothing was overwritten)")
    if resume and not has_checkpoint(out_dir):
        raise LexformerError(f"--resume given but {out_dir} holds no checkpoint to resume")

    per_rank = cfg.batch_size // cfg.grad_accum
    if per_rank % dist.world:
        raise LexformerError(
            f"batch_size/grad_accum ({per_rank}) must be divisible by the number of processes "
            f"({dist.world})")
    micro = per_rank // dist.world

    # Data: rank 0 builds the caches first so that other ranks only read them.
    if dist.is_main:
        corpus, tokenizer, tokens = prepare_data(cfg)
    dist.barrier()
    if not dist.is_main:
        corpus, tokenizer, tokens = prepare_data(cfg)
    from .data import BatchSampler

    L = cfg.train_length
    sampler = BatchSampler(tokens.splits["train"].tokens, L, micro, cfg.seed,
                           rank=dist.rank, world_size=dist.world)
    val_windows = _validation_windows(tokens.splits["validation"], L,
                                      cfg.eval_batches * max(1, micro))

    _seed_everything(cfg.seed)
    model_cfg = cfg.model_config(tokenizer.vocab_size)
    model = TransformerLM(model_cfg).to(dev)
    decay = [p for n, p in model.named_parameters() if p.dim() >= 2]
    no_decay = [p for n, p in model.named_parameters() if p.dim() < 2]
    fused = dev.type == "cuda"
    optimizer = torch.optim.AdamW(
        [{"params": decay, "weight_decay": cfg.weight_decay},
         {"params": no_decay, "weight_decay": 0.0}],
        lr=cfg.lr, betas=cfg.betas, eps=cfg.eps, fused=fused or None)

    total = cfg.total_steps()
    step = 0
    metrics_path = out_dir / "metrics.jsonl"
    if resume:
        from safetensors.torch import load_file

        from .checkpoint import resolve_checkpoint_dir

        ckpt = resolve_checkpoint_dir(out_dir)
        saved_cfg = json.loads((ckpt / "config.json").read_text()).get("train", {})
        if saved_cfg and saved_cfg.get("position") != cfg.position:
            raise LexformerError(
                f"cannot resume: the checkpoint in {out_dir} trains position "
                f"{saved_cfg.get('position')!r}, not {cfg.position!r}")
        state = load_file(str(ckpt / "model.safetensors"), device=str(dev))
        if model_cfg.tie_embeddings:
            state["lm_head.weight"] = state["tok_emb.weight"]
        model.load_state_dict(state)
        ts = load_train_state(out_dir)
        optimizer.load_state_dict(ts["optimizer"])
        sampler.load_state_dict(ts["sampler"])
        _set_rng_state(ts["rng"])
        step = int(ts["step"])
        if dist.is_main and metrics_path.exists():
            # drop lines logged after the checkpoint (a kill between log and save)
            lines = [ln for ln in metrics_path.read_text().splitlines()
                     if ln.strip() and json.loads(ln).get("step", 0) <= step]
            metrics_path.write_text("".join(ln + "\n" for ln in lines))
    elif dist.is_main:
        out_dir.mkdir(parents=True, exist_ok=True)
        metrics_path.write_text("")

    train_model = model
    if dist.enabled:
        from torch.nn.parallel import DistributedDataParallel as DDP

        train_model = DDP(model, device_ids=[dev.index] if dev.type == "cuda" else None)
    if cfg.compile:
        train_model = torch.compile(train_model)

    meta_base = {
        "lexformer_version": __version__,
        "model": model_cfg.to_dict(),
        "train": cfg.to_dict(),
        "tokenizer": {"kind": tokenizer.kind, "vocab_size": tokenizer.vocab_size},
        "corpus": {"name": corpus.name, "fingerprint": corpus.fingerprint},
        "torch_version": torch.__version__,
        "world_size": dist.world,
    }

    def save(step_: int, last_loss: float | None) -> None:
        if dist.is_main:
            meta = dict(meta_base, step=step_, tokens_seen=step_ * cfg.batch_size * L,
                        last_loss=last_loss)
            train_state = {"optimizer": optimizer.state_dict(), "sampler": sampler.state_dict(),
                           "rng": _rng_state(), "step": step_}
            save_checkpoint(out_dir, model, meta, tokenizer, train_state)
        dist.barrier()

    def log(record: dict[str, Any]) -> None:
        if dist.is_main:
            with open(metrics_path, "a") as f:
                f.write(json.dumps(record) + "\n")

    bar = None
    if progress and dist.is_main:
        from tqdm.auto import tqdm

        bar = tqdm(total=total, initial=step, desc=f"train {cfg.position}", unit="step",
                   dynamic_ncols=True)
    model.train()
    last_loss = None
    last_val = None
    t_window, tok_window = time.perf_counter(), 0
    tokens_per_s = 0.0
    stopped_early = False
    with _StopRequest() as stop:
        while step < total:
            lr = lr_at(step, cfg, total)
            for group in optimizer.param_groups:
                group["lr"] = lr
            loss_sum = torch.zeros((), device=dev)
            for micro_step in range(cfg.grad_accum):
                inputs, targets = sampler.next_batch()
                inputs, targets = inputs.to(dev), targets.to(dev)
                sync = (micro_step == cfg.grad_accum - 1) or not dist.enabled
                ctx = contextlib.nullcontext() if sync else train_model.no_sync()
                with ctx:
                    with _autocast(dev, dtype):
                        logits = train_model(inputs)
                    loss = F.cross_entropy(logits.float().flatten(0, 1), targets.flatten())
                    (loss / cfg.grad_accum).backward()
                loss_sum += loss.detach()
            if cfg.grad_clip:
                torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.grad_clip)
            optimizer.step()
            optimizer.zero_grad(set_to_none=True)
            step += 1
            loss_value = (loss_sum / cfg.grad_accum)
            if dist.enabled:
                torch.distributed.all_reduce(loss_value)
                loss_value = loss_value / dist.world
            last_loss = float(loss_value)
            tok_window += cfg.batch_size * L
            elapsed = time.perf_counter() - t_window
            if elapsed > 2.0 or step == total:
                tokens_per_s = tok_window / elapsed
                t_window, tok_window = time.perf_counter(), 0
            record: dict[str, Any] = {"step": step, "loss": round(last_loss, 5), "lr": lr,
                                      "tokens_per_s": round(tokens_per_s, 1)}
            if val_windows is not None and (step % cfg.eval_interval == 0 or step == total):
                last_val = _validation_loss(model, val_windows, dev, dtype, max(1, micro))
                record["val_loss"] = round(last_val, 5)
            log(record)
            if bar is not None:
                post = {"loss": f"{last_loss:.3f}", "tok/s": f"{tokens_per_s:,.0f}"}
                if last_val is not None:
                    post["val"] = f"{last_val:.3f}"
                bar.set_postfix(post)
                bar.update(1)
            interrupted = dist.any(stop.requested) or (
                stop_after_steps is not None and step >= stop_after_steps)
            if step % cfg.checkpoint_interval == 0 or step == total or interrupted:
                save(step, last_loss)
            if interrupted and step < total:
                stopped_early = True
                break
    if bar is not None:
        bar.close()
    return {
        "step": step,
        "total_steps": total,
        "loss": last_loss,
        "val_loss": last_val,
        "tokens_per_s": tokens_per_s,
        "stopped_early": stopped_early,
        "out_dir": str(out_dir),
        "parameters": model.num_parameters(),
    }


__all__ = ["TrainConfig", "lr_at", "model_state", "prepare_data", "train"]
