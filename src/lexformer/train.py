"""Training: :func:`train`, behind ``lexformer train``, and the :class:`Trainer` it drives.

Exact resume: the learning rate is a pure function of the step, the data stream a pure
function of (seed, step), and the optimizer and RNG states are saved with every checkpoint,
so a run killed and resumed on CPU reaches the same weights as an uninterrupted one.

Everything the user can get wrong (options, output folder, device, a resume that does not
match its checkpoint) is checked by :func:`check_run_folder` and the config dataclasses
before any data is prepared. Under ``torchrun`` the same call trains with DDP
(:mod:`lexformer.distributed`).
"""

from __future__ import annotations

import contextlib
import json
import random
import signal
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from typing_extensions import Self

from . import __version__
from .checkpoint import (
    Checkpoint,
    RunMeta,
    has_checkpoint,
    load,
    load_train_state,
    read_run_meta,
    remove_partial_checkpoints,
    save_checkpoint,
)
from .config import RuntimeOptions, TrainConfig, describe_differences
from .distributed import init_distributed, resolve_device, resolve_dtype
from .errors import LexformerError
from .fileio import atomic_write_text, ensure_writable_dir
from .model import TransformerLM
from .optim import build_optimizer, lr_at, set_lr

METRICS_FILE = "metrics.jsonl"


@dataclass
class TrainSummary:
    """What :func:`train` reports. ``loss`` is None only when nothing was trained
    (``already_finished``: the run in ``out_dir`` had reached its budget before)."""

    step: int
    total_steps: int
    loss: float | None
    val_loss: float | None
    tokens_per_s: float
    stopped_early: bool
    out_dir: str
    parameters: int
    already_finished: bool = False


# --------------------------------------------------------------------------- process state
def read_training_metrics(run_dir: str | Path) -> tuple[float | None, float | None]:
    """(last validation loss, median tokens/s) from a run's ``metrics.jsonl``; None for
    what the file does not hold (or when there is no file)."""
    path = Path(run_dir) / METRICS_FILE
    if not path.exists():
        return None, None
    lines = [json.loads(x) for x in path.read_text().splitlines() if x.strip()]
    vals = [x["val_loss"] for x in lines if "val_loss" in x]
    speeds = [x["tokens_per_s"] for x in lines if x.get("tokens_per_s")]
    return (vals[-1] if vals else None), (float(np.median(speeds)) if speeds else None)


def _rng_state() -> dict[str, Any]:
    """Every RNG's state as tensors, lists, ints, floats and strings only, so that
    ``train_state.pt`` loads with ``torch.load(weights_only=True)`` (a pickle of numpy or
    Python objects could run code on resume)."""
    numpy_state = np.random.get_state(legacy=False)
    version, internal, gauss_next = random.getstate()
    state = {"torch": torch.get_rng_state(),
             "numpy": {"bit_generator": numpy_state["bit_generator"],
                       "key": torch.from_numpy(numpy_state["state"]["key"].astype(np.int64)),
                       "pos": int(numpy_state["state"]["pos"]),
                       "has_gauss": int(numpy_state["has_gauss"]),
                       "gauss": float(numpy_state["gauss"])},
             "python": [version, list(internal), gauss_next]}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def _numpy_state(saved: Any) -> Any:
    """What ``np.random.set_state`` takes, from :func:`_rng_state`'s form or from the legacy
    tuple of train states written before it (read through checkpoint's numpy allowlist)."""
    if not isinstance(saved, dict):
        return saved
    key = np.asarray(saved["key"].numpy() if torch.is_tensor(saved["key"]) else saved["key"])
    return {"bit_generator": saved["bit_generator"],
            "state": {"key": key.astype(np.uint32), "pos": int(saved["pos"])},
            "has_gauss": int(saved["has_gauss"]), "gauss": float(saved["gauss"])}


def _set_rng_state(state: dict[str, Any]) -> None:
    try:
        torch.set_rng_state(state["torch"])
        np.random.set_state(_numpy_state(state["numpy"]))
        version, internal, gauss_next = state["python"]
        random.setstate((version, tuple(internal), gauss_next))
        if "cuda" in state and torch.cuda.is_available():
            torch.cuda.set_rng_state_all(state["cuda"])
    except (KeyError, TypeError, ValueError, RuntimeError, AttributeError) as e:
        # as for the optimizer state (Trainer.restore)
        raise LexformerError(f"the checkpoint's train state has a damaged RNG state "
                             f"({type(e).__name__}: {' '.join(str(e).split())[:120]}); "
                             "it cannot be resumed") from None


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


# --------------------------------------------------------------------------- data
def prepare_data(cfg: TrainConfig, cache_dir: str | None = None, progress: bool = True):
    """Corpus, tokenizer and tokenized splits for a training config (cached on disk)."""
    from .data import get_tokenizer, load_corpus, tokenize_corpus

    corpus = load_corpus(cfg.data.corpus, cache_dir=cache_dir)
    tokenizer = get_tokenizer(corpus, cfg.data.tokenizer, cfg.data.bpe_vocab_size,
                              cache_dir=cache_dir, progress=progress)
    tokens = tokenize_corpus(corpus, tokenizer, cache_dir=cache_dir, progress=progress)
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
def _validation_loss(model, batches, device, dtype, batch_size) -> float:
    """Mean loss per scored token over ``batches`` = (inputs, targets), each (n, L)."""
    from .model import IGNORE_INDEX

    was_training = model.training
    model.eval()
    total, count = 0.0, 0
    inputs, targets = batches
    for i in range(0, len(inputs), batch_size):
        x, t = inputs[i: i + batch_size].to(device), targets[i: i + batch_size].to(device)
        with _autocast(device, dtype):
            loss = model(x, targets=t, reduction="sum")
        total += loss.item()
        count += int((t != IGNORE_INDEX).sum())
    model.train(was_training)
    return total / max(1, count)


# --------------------------------------------------------------------------- checks
def check_run_folder(cfg: TrainConfig, out_dir: Path, resume: bool) -> RunMeta | None:
    """Refuse, before any work, an output folder that cannot be used for this run; returns
    the saved checkpoint's metadata when resuming. A resume must ask for exactly the saved
    config (runtime options aside); stale ``.partial`` folders of a killed save go."""
    ensure_writable_dir(out_dir, "output folder (--out)")
    if has_checkpoint(out_dir) and not resume:
        raise LexformerError(
            f"{out_dir} already holds a checkpoint; pass --resume to continue it or choose "
            "another --out (nothing was overwritten)")
    if not resume:
        return None
    if not has_checkpoint(out_dir):
        raise LexformerError(f"--resume given but {out_dir} holds no checkpoint to resume")
    meta = read_run_meta(out_dir)
    differences = describe_differences(meta.train, cfg)
    if differences:
        raise LexformerError(
            f"cannot resume {out_dir}: its checkpoint was trained with other settings "
            f"(saved → asked: {differences}); use the same options or another --out")
    remove_partial_checkpoints(out_dir)
    return meta


def check_same_corpus(cfg: TrainConfig, out_dir: Path, meta: RunMeta,
                      cache_dir: str | None = None) -> None:
    """Refuse to resume on text other than the run was trained on: the corpus of the same
    name (a user's folder edited since, a file replaced) is compared by content fingerprint
    with the one ``config.json`` recorded, before any data is prepared."""
    from .data import load_corpus

    now = load_corpus(cfg.data.corpus, cache_dir=cache_dir).fingerprint
    if now != meta.corpus_fingerprint:
        raise LexformerError(
            f"cannot resume {out_dir}: the corpus {cfg.data.corpus} is not the text it was "
            f"trained on (content fingerprint {meta.corpus_fingerprint} when saved, {now} "
            "now); restore that text or train into another --out (nothing was changed)")


@dataclass
class ResumePoint:
    """A checkpoint to continue from, read and checked before any data is prepared."""

    checkpoint: Checkpoint
    state: dict[str, Any]

    @classmethod
    def read(cls, out_dir: Path) -> ResumePoint:
        return cls(load(out_dir), load_train_state(out_dir))


def _finished_summary(cfg: TrainConfig, out_dir: Path, meta: RunMeta) -> TrainSummary:
    """The summary of a run that had already reached its budget (nothing is trained)."""
    return TrainSummary(step=meta.step, total_steps=cfg.total_steps(),
                        loss=meta.last_loss, val_loss=None, tokens_per_s=0.0,
                        stopped_early=False, out_dir=str(out_dir),
                        parameters=load(out_dir).model.num_parameters(), already_finished=True)


# --------------------------------------------------------------------------- trainer
class Trainer:
    """One training run: :meth:`setup` (data, model, optimizer), :meth:`restore` (from the
    checkpoint in ``out_dir``), :meth:`step` (one optimizer step) and :meth:`loop`."""

    def __init__(self, cfg: TrainConfig, out_dir: Path, runtime: RuntimeOptions,
                 device: torch.device) -> None:
        self.cfg, self.out_dir, self.runtime = cfg, out_dir, runtime
        self.dist, self.device = init_distributed(device)
        self.dtype = resolve_dtype(cfg.dtype, self.device)
        self.total = cfg.total_steps()
        self.step_no = 0
        self.metrics_path = out_dir / METRICS_FILE
        self.last_loss: float | None = None
        self.last_val: float | None = None
        self.tokens_per_s: float | None = None

    def setup(self) -> None:
        """Data (rank 0 builds the caches first so that other ranks only read them), the
        sampler of this rank's share of each batch, the model and its optimizer."""
        from .data import BatchSampler

        cfg, dist = self.cfg, self.dist
        per_rank = cfg.batch_size // cfg.grad_accum
        if per_rank % dist.world:
            raise LexformerError(
                f"batch_size/grad_accum ({per_rank}) must be divisible by the number of "
                f"processes ({dist.world})")
        self.micro = per_rank // dist.world
        if dist.is_main:
            self.corpus, self.tokenizer, tokens = prepare_data(
                cfg, self.runtime.cache_dir, self.runtime.progress)
        dist.barrier()
        if not dist.is_main:
            self.corpus, self.tokenizer, tokens = prepare_data(cfg, self.runtime.cache_dir,
                                                               progress=False)
        self.sampler = BatchSampler(tokens.splits["train"].tokens, cfg.train_length, self.micro,
                                    cfg.seed, rank=dist.rank, world_size=dist.world)
        windows = _validation_windows(tokens.splits["validation"], cfg.train_length,
                                      cfg.eval_batches * max(1, self.micro))
        # (inputs, targets): next-token pairs, or masked ones for an encoder
        self.val_windows = None if windows is None else (windows[:, :-1], windows[:, 1:])
        vocab = self.tokenizer.vocab_size
        if cfg.objective == "mlm":  # masked batches, and one more id for [MASK]
            from .mlm import masked_training

            self.sampler, self.val_windows, vocab = masked_training(self.sampler, windows, vocab)
        self.cfg = cfg = cfg.with_vocab_size(vocab)
        _seed_everything(cfg.seed)
        self.model = TransformerLM(cfg.model).to(self.device)
        self.optimizer = build_optimizer(self.model, cfg.optim, self.device)

    def start_fresh(self) -> None:
        if self.dist.is_main:
            self.out_dir.mkdir(parents=True, exist_ok=True)
            atomic_write_text(self.metrics_path, "")

    def restore(self, point: ResumePoint) -> None:
        """Weights, optimizer, data position and RNG states from the checkpoint in
        ``out_dir``; metrics logged after that checkpoint (a kill between log and save)
        are dropped."""
        ckpt, state = point.checkpoint, point.state
        if ckpt.config != self.model.config:
            raise LexformerError(
                f"cannot resume {self.out_dir}: its model ({ckpt.config}) differs from the one "
                f"this data gives ({self.model.config}); was the corpus changed?")
        self.model.load_state_dict(ckpt.model.state_dict())
        try:
            self.optimizer.load_state_dict(state["optimizer"])
        except (KeyError, TypeError, ValueError, RuntimeError, AttributeError, IndexError) as e:
            # a file that loads safely can still hold the wrong things
            raise LexformerError(f"cannot resume {self.out_dir}: the optimizer state in its "
                                 f"train state is damaged ({type(e).__name__})") from None
        self.sampler.load_state_dict(state["sampler"])
        _set_rng_state(state["rng"])
        if isinstance(state["step"], bool) or not isinstance(state["step"], int):
            raise LexformerError(f"cannot resume {self.out_dir}: the step in its train state is "
                                 f"not an integer ({state['step']!r:.40})")
        self.step_no = state["step"]
        if self.dist.is_main and self.metrics_path.exists():
            lines = [ln for ln in self.metrics_path.read_text().splitlines()
                     if ln.strip() and json.loads(ln).get("step", 0) <= self.step_no]
            atomic_write_text(self.metrics_path, "".join(ln + "\n" for ln in lines))

    def wrap(self) -> None:
        """The module the loop calls: DDP and/or torch.compile around the model."""
        self.train_model = self.model
        if self.dist.enabled:
            from torch.nn.parallel import DistributedDataParallel as DDP

            ids = [self.device.index] if self.device.type == "cuda" else None
            self.train_model = DDP(self.model, device_ids=ids)
        if self.cfg.compile:
            self.train_model = torch.compile(self.train_model)

    def step(self) -> tuple[float, float]:
        """One optimizer step over ``grad_accum`` micro-batches; returns (lr, mean loss over
        the global batch)."""
        cfg, dev = self.cfg, self.device
        lr = lr_at(self.step_no, cfg.optim, self.total)
        set_lr(self.optimizer, lr)
        loss_sum = torch.zeros((), device=dev)
        # masked LM: ranks and micro-steps hold different numbers of masked tokens, so each
        # sums its NLL and takes its share of the whole step's mean (lexformer.mlm)
        scale = self.sampler.loss_scale(cfg.grad_accum) if cfg.objective == "mlm" else None
        for micro_step in range(cfg.grad_accum):
            inputs, targets = (t.to(dev) for t in self.sampler.next_batch())
            # DDP all-reduces gradients on the last micro-step only
            sync = micro_step == cfg.grad_accum - 1 or not self.dist.enabled
            with contextlib.nullcontext() if sync else self.train_model.no_sync():
                with _autocast(dev, self.dtype):
                    if scale is None:
                        loss = self.train_model(inputs, targets=targets)
                    else:
                        loss = self.train_model(inputs, targets=targets,
                                                reduction="sum") * scale
                (loss / cfg.grad_accum).backward()
            loss_sum += loss.detach()
        if cfg.optim.grad_clip:
            torch.nn.utils.clip_grad_norm_(self.model.parameters(), cfg.optim.grad_clip)
        self.optimizer.step()
        self.optimizer.zero_grad(set_to_none=True)
        self.step_no += 1
        return lr, float(self.dist.mean(loss_sum / cfg.grad_accum))

    def run_meta(self) -> RunMeta:
        """What is written beside the checkpoint of the current step."""
        cfg, step = self.cfg, self.step_no
        return RunMeta(
            train=cfg, step=step, corpus_name=self.corpus.name,
            corpus_fingerprint=self.corpus.fingerprint, last_loss=self.last_loss,
            lexformer_version=__version__, torch_version=torch.__version__,
            tokenizer={"kind": self.tokenizer.kind, "vocab_size": self.tokenizer.vocab_size},
            world_size=self.dist.world,
            # what decides the last bits of the numbers (docs/reproducibility.md): another
            # thread count or CPU kind rounds differently
            numerics={"torch_threads": torch.get_num_threads(),
                      "cpu_capability": torch.backends.cpu.get_cpu_capability(),
                      "dtype": self.dtype, "device": str(self.device)},
            tokens_seen=step * cfg.batch_size * cfg.train_length,
            mask_token_id=cfg.model.vocab_size - 1 if cfg.objective == "mlm" else None)

    def save(self) -> None:
        if self.dist.is_main:
            step = self.step_no
            meta = self.run_meta().to_json()
            state = {"optimizer": self.optimizer.state_dict(),
                     "sampler": self.sampler.state_dict(), "rng": _rng_state(), "step": step}
            save_checkpoint(self.out_dir, self.model, meta, self.tokenizer, state)
        self.dist.barrier()

    def _record(self, lr: float) -> dict[str, Any]:
        """This step's metrics line (validation loss every eval_interval and at the end)."""
        cfg, speed = self.cfg, self.tokens_per_s
        record: dict[str, Any] = {"step": self.step_no, "loss": round(self.last_loss, 5),
                                  "lr": lr,  # tokens/s null until its first window closes
                                  "tokens_per_s": None if speed is None else round(speed, 1)}
        if self.val_windows is not None and (self.step_no % cfg.eval_interval == 0
                                             or self.step_no == self.total):
            self.last_val = _validation_loss(self.model, self.val_windows, self.device,
                                             self.dtype, max(1, self.micro))
            record["val_loss"] = round(self.last_val, 5)
        if self.dist.is_main:
            with open(self.metrics_path, "a") as f:
                f.write(json.dumps(record) + "\n")
        return record

    def loop(self, stop_after_steps: int | None = None) -> TrainSummary:
        """Train to the budget, saving every checkpoint_interval steps; SIGINT/SIGTERM or
        ``stop_after_steps`` save and stop early."""
        cfg, stopped_early = self.cfg, False
        bar = _progress_bar(self, self.runtime.progress and self.dist.is_main)
        clock = _Clock(cfg.batch_size * cfg.train_length)
        self.model.train()
        with _StopRequest() as stop:
            while self.step_no < self.total:
                lr, self.last_loss = self.step()
                self.tokens_per_s = clock.tick(self.step_no == self.total)
                record = self._record(lr)
                if bar is not None:
                    _show(bar, record, self.last_val)
                interrupted = self.dist.any(stop.requested) or (
                    stop_after_steps is not None and self.step_no >= stop_after_steps)
                if (self.step_no % cfg.checkpoint_interval == 0 or self.step_no == self.total
                        or interrupted):
                    self.save()
                if interrupted and self.step_no < self.total:
                    stopped_early = True
                    break
        if bar is not None:
            bar.close()
        return TrainSummary(self.step_no, self.total, self.last_loss, self.last_val,
                            clock.final(), stopped_early, str(self.out_dir),
                            self.model.num_parameters())


class _Clock:
    """Tokens per second over windows of at least two seconds (and at the last step);
    ``None`` until the first window is measured: a 0.0 there read as a stalled run."""

    def __init__(self, tokens_per_step: int) -> None:
        self.tokens_per_step = tokens_per_step
        self.start, self.tokens = time.perf_counter(), 0
        self.rate: float | None = None

    def tick(self, last: bool) -> float | None:
        self.tokens += self.tokens_per_step
        elapsed = time.perf_counter() - self.start
        if elapsed > 2.0 or last:
            self.rate = self.tokens / elapsed
            self.start, self.tokens = time.perf_counter(), 0
        return self.rate

    def final(self) -> float:
        """The last measured rate, else the rate of the window still open (a run stopped
        before its first window closed)."""
        if self.rate is not None:
            return self.rate
        return self.tokens / max(time.perf_counter() - self.start, 1e-9)


def _show(bar, record: dict[str, Any], last_val: float | None) -> None:
    speed = record["tokens_per_s"]
    post = {"loss": f"{record['loss']:.3f}", "tok/s": "–" if speed is None else f"{speed:,.0f}"}
    if last_val is not None:
        post["val"] = f"{last_val:.3f}"
    bar.set_postfix(post)
    bar.update(1)


def _progress_bar(trainer: Trainer, enabled: bool):
    from .progress import progress_bar

    return progress_bar(trainer.total, f"train {trainer.cfg.position}", enabled,
                        initial=trainer.step_no, unit="step")


# --------------------------------------------------------------------------- entry point
def train(
    cfg: TrainConfig,
    out_dir: str | Path,
    resume: bool = False,
    progress: bool = True,
    stop_after_steps: int | None = None,
    device: str | None = None,
    threads: int | None = None,
    cache_dir: str | None = None,
) -> TrainSummary:
    """Train ``cfg`` into ``out_dir``.

    ``resume`` continues from the checkpoint in ``out_dir`` (it must have been made with
    the same config; a finished run is left as it is); without it an existing checkpoint
    there is an error (nothing is overwritten). ``stop_after_steps`` stops early as if
    interrupted (a checkpoint is written), which is how the tests simulate a kill.
    ``device``, ``threads``, ``cache_dir`` and ``progress`` do not change the result.
    """
    runtime = RuntimeOptions(threads=threads, device=device, cache_dir=cache_dir,
                             progress=progress)
    dev = resolve_device(runtime.device)
    out_dir = Path(out_dir)
    meta = check_run_folder(cfg, out_dir, resume)
    if meta is not None and meta.step >= cfg.total_steps():
        return _finished_summary(cfg, out_dir, meta)
    if meta is not None:
        check_same_corpus(cfg, out_dir, meta, runtime.cache_dir)
    point = ResumePoint.read(out_dir) if resume else None
    if runtime.threads:
        torch.set_num_threads(runtime.threads)
    trainer = Trainer(cfg, out_dir, runtime, dev)
    trainer.setup()
    if point is not None:
        trainer.restore(point)
    else:
        trainer.start_fresh()
    trainer.wrap()
    return trainer.loop(stop_after_steps)


__all__ = ["ResumePoint", "TrainSummary", "Trainer", "check_run_folder", "check_same_corpus",
           "prepare_data", "train"]
