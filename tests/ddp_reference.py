"""A one-process reference for a ``torchrun --nproc_per_node=N`` training run that adds up
the gradients in DDP's order, so that the DDP run must equal it bit for bit.

Why bit for bit is the right bound. A plain single-process run differs from DDP in its
rounding, not only in the last bit of each weight: it computes the weight gradient of the
whole global batch in one GEMM (one long sum over batch × length rows, under bf16 autocast
rounded once to bf16), DDP as N shorter sums added afterwards. That perturbs each gradient
entry by a relative δ (fp32: ~eps·√rows ≈ 1e-6; bf16: ~2⁻⁸ ≈ 4e-3) and, where the entry
is close to zero, by far more, since the rounding is relative to Σ|terms|, not to |g|.
Adam turns the gradient into a step of lr·m̂/(√v̂+ε): a weight whose gradient changes sign
moves by up to 2·lr instead of ~0, whatever δ was. So the largest weight difference between
the two runs is bounded only by 2·Σ lr_t: 6e-3 for the smoke preset's 4 steps (lr 3e-4,
6e-4, 9e-4, 1.2e-3 in warm-up). Measured on an AMD EPYC with AVX-512 and avx512_bf16, where
``dtype auto`` picks bf16: 1.7e-4 (causal) and 2.4e-4 (masked LM), the issue's Intel AMX
machine 2.0e-4 and 2.8e-4, all over the old guessed bound of 1e-4; in fp32 the same machine
differs by 1e-7. A run that drops one rank's gradient differs by 5.5e-3: inside 2·Σ lr_t
too. A bound that catches bugs must therefore remove the difference, not tolerate it.

Here each of the N shards of a global batch is run through the same model in its own
forward and backward, exactly the shapes (and so the same kernels and roundings) each rank
computes; the N gradients are then summed and divided by N as DDP does. With N = 2 that is
one addition, which is commutative in IEEE arithmetic, and a division by a power of two,
which is exact, so nothing is left to differ: the reference equals the DDP run exactly, on
every CPU kind and in fp32 as in bf16. The plain single-process run is not needed to test
DDP; that run equals its own resume exactly (``test_train``'s resume tests).
"""

from __future__ import annotations

import contextlib
from pathlib import Path

import torch

from lexformer.checkpoint import model_state
from lexformer.config import RuntimeOptions, TrainConfig
from lexformer.optim import lr_at, set_lr
from lexformer.train import Trainer


def _shard_grads(trainer: Trainer, inputs, targets, scale: float | None) -> tuple[list, float]:
    """This shard's gradients (one tensor per parameter) and loss, as one rank makes them."""
    autocast = (torch.autocast("cpu", dtype=torch.bfloat16) if trainer.dtype == "bf16"
                else contextlib.nullcontext())
    with autocast:
        if scale is None:
            loss = trainer.model(inputs, targets=targets)
        else:
            loss = trainer.model(inputs, targets=targets, reduction="sum") * scale
    loss.backward()  # grad_accum = 1: the trainer's division by it is by 1
    grads = [p.grad.clone() for p in trainer.model.parameters()]
    trainer.optimizer.zero_grad(set_to_none=True)
    return grads, loss.detach()


def ddp_order_reference(cfg: TrainConfig, cache_dir: Path, world: int = 2,
                        drop_rank: int | None = None) -> tuple[dict[str, torch.Tensor], list]:
    """(final weights as saved, loss per step) of ``cfg`` trained in one CPU process with
    DDP's gradient order over ``world`` ranks. ``drop_rank`` leaves that rank's gradient out
    of the sum: a deliberately wrong run, to show the comparison catches one."""
    assert cfg.grad_accum == 1, "the reference mirrors one micro-step per optimizer step"
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # as the ranks run (--threads 1): same kernels, same roundings
    try:
        trainer = Trainer(cfg, Path(cache_dir) / "unused-out",
                          RuntimeOptions(threads=1, cache_dir=str(cache_dir), progress=False),
                          torch.device("cpu"))
        trainer.setup()
        trainer.model.train()
        rows = trainer.micro // world  # one process: the sampler yields the global batch
        losses = []
        for step in range(trainer.total):
            set_lr(trainer.optimizer, lr_at(step, trainer.cfg.optim, trainer.total))
            # masked LM: each rank scales its summed NLL by world / (masked tokens of all)
            scale = (world * trainer.sampler.loss_scale(1) if trainer.cfg.objective == "mlm"
                     else None)
            inputs, targets = trainer.sampler.next_batch()
            shards = [_shard_grads(trainer, inputs[r * rows:(r + 1) * rows],
                                   targets[r * rows:(r + 1) * rows], scale)
                      for r in range(world)]
            for i, p in enumerate(trainer.model.parameters()):
                kept = [g[i] for r, (g, _) in enumerate(shards) if r != drop_rank]
                p.grad = sum(kept[1:], kept[0]) / world  # DDP: all-reduce sum, / world
            if trainer.cfg.optim.grad_clip:
                torch.nn.utils.clip_grad_norm_(trainer.model.parameters(),
                                               trainer.cfg.optim.grad_clip)
            trainer.optimizer.step()
            trainer.optimizer.zero_grad(set_to_none=True)
            losses.append(float(sum(loss for _, loss in shards) / world))  # Dist.mean
        return model_state(trainer.model), losses
    finally:
        torch.set_num_threads(threads)
