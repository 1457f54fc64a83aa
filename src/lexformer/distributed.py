"""Where a training process runs: its device, and its rank under ``torchrun``.

Under ``torchrun --nproc_per_node=N`` the global batch is split across ranks (gloo on CPU,
nccl on GPU) so that N processes see exactly the data one process would; only rank 0 writes.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import torch

from .errors import LexformerError


def resolve_device(name: str | None) -> torch.device:
    """``name`` (``cpu``, ``cuda``, ``cuda:1``; ``None``: cuda when available) as a device
    this machine has, or a one-line error before any work is done."""
    if name is None:
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(name)
    except (RuntimeError, ValueError):
        raise LexformerError(f"unknown device {name!r}; use cpu, cuda or cuda:N") from None
    if device.type == "cpu":
        return device
    if device.type != "cuda":
        raise LexformerError(f"device {name!r} is not supported; use cpu, cuda or cuda:N")
    if not torch.cuda.is_available():
        raise LexformerError(f"device {name!r} asked for, but CUDA is not available on this "
                             "machine; use --device cpu")
    if device.index is not None and device.index >= torch.cuda.device_count():
        raise LexformerError(f"device {name!r} does not exist: this machine has "
                             f"{torch.cuda.device_count()} CUDA device(s)")
    return device


@dataclass
class Dist:
    """This process's place among the ranks (rank 0 of 1 without torchrun)."""

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

    def mean(self, value: torch.Tensor) -> torch.Tensor:
        """The mean of ``value`` over ranks (``value`` itself with one process)."""
        if not self.enabled:
            return value
        torch.distributed.all_reduce(value)
        return value / self.world


def native_bf16(device: torch.device) -> bool:
    """Does ``device`` multiply bf16 in hardware? CUDA does; an x86 CPU does only with
    AVX512-BF16 or AMX. Without it bf16 autocast is emulated and ~11x slower than fp32 on
    this project's AVX2 machines (tiny preset step, 1 thread), so ``auto`` picks fp32."""
    if device.type == "cuda":
        return True
    try:
        with open("/proc/cpuinfo") as f:
            flags = f.read()
    except OSError:
        return False
    return "avx512_bf16" in flags or "amx_bf16" in flags


def resolve_dtype(requested: str, device: torch.device) -> str:
    """``auto`` → bf16 where the device computes it natively, else fp32."""
    if requested != "auto":
        return requested
    return "bf16" if native_bf16(device) else "fp32"


def init_distributed(device: torch.device) -> tuple[Dist, torch.device]:
    """Join the process group when started by torchrun; each rank then gets its own GPU."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return Dist(), device
    if not torch.distributed.is_initialized():
        backend = "nccl" if device.type == "cuda" else "gloo"
        torch.distributed.init_process_group(backend=backend)
    dist = Dist(torch.distributed.get_rank(), world, int(os.environ.get("LOCAL_RANK", "0")))
    if device.type == "cuda":
        device = torch.device("cuda", dist.local_rank)
        torch.cuda.set_device(device)
    return dist, device


def is_main_process() -> bool:
    """Rank 0 (or no torchrun): the process that prints and writes."""
    return int(os.environ.get("RANK", "0")) == 0


__all__ = ["Dist", "init_distributed", "is_main_process", "resolve_device"]
