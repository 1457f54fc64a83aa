"""The optimizer and its learning-rate schedule.

The learning rate is a pure function of the step (:func:`lr_at`), so a resumed run follows
the same schedule as an uninterrupted one without saving a scheduler.
"""

from __future__ import annotations

import math

import torch

from .config import OptimConfig


def lr_at(step: int, optim: OptimConfig, total: int) -> float:
    """Linear warm-up to ``lr``, then cosine or linear decay to ``lr·min_lr_ratio`` at
    ``total``."""
    if optim.warmup_steps and step < optim.warmup_steps:
        return optim.lr * (step + 1) / optim.warmup_steps
    progress = min(1.0, (step - optim.warmup_steps) / max(1, total - optim.warmup_steps))
    if optim.schedule == "cosine":
        frac = 0.5 * (1 + math.cos(math.pi * progress))
    else:  # "linear" ("polynomial" is resolved to it when the config is built)
        frac = 1 - progress
    return optim.lr * (optim.min_lr_ratio + (1 - optim.min_lr_ratio) * frac)


def build_optimizer(model: torch.nn.Module, optim: OptimConfig,
                    device: torch.device) -> torch.optim.AdamW:
    """AdamW with weight decay on matrices only (not on biases, LayerNorms, scales)."""
    decay = [p for p in model.parameters() if p.dim() >= 2]
    no_decay = [p for p in model.parameters() if p.dim() < 2]
    return torch.optim.AdamW(
        [{"params": decay, "weight_decay": optim.weight_decay},
         {"params": no_decay, "weight_decay": 0.0}],
        lr=optim.lr, betas=optim.betas, eps=optim.eps, fused=(device.type == "cuda") or None)


def set_lr(optimizer: torch.optim.Optimizer, lr: float) -> None:
    for group in optimizer.param_groups:
        group["lr"] = lr


__all__ = ["build_optimizer", "lr_at", "set_lr"]
