"""Where a pretrained model runs and in which precision: ``--device`` and ``--dtype``.

Both are checked, and "auto" resolved, before any weight is read, so a device this machine
lacks or a precision it cannot use ends in one line, not after a download or a load.

- device: ``cpu`` (the default), ``cuda``, ``cuda:N``, ``mps``, or ``auto``: every CUDA device
  there is, the model spread over them by accelerate's ``device_map="auto"`` (the engine
  transformers itself uses), else mps, else the CPU.
- dtype: ``fp32`` (the default, what lexformer always loaded, so numbers stay comparable),
  ``bf16``, ``fp16`` (long names too), or ``auto``: bf16 where the device computes it natively,
  else fp32, by the rule training uses (:func:`lexformer.distributed.resolve_dtype`). fp16 is
  refused on the CPU: there it is emulated in software, slower than fp32, and it overflows
  where bf16 does not, so it would only ever be a worse bf16.

Importing this module imports no torch: the CLI parses these options before any work.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from ..errors import LexformerError

DEVICE_HELP = "cpu, cuda, cuda:N, mps or auto"
#: the help of the --device and --dtype options (eval, extend, generate, analyze)
DEVICE_OPTION_HELP = (f"where a pretrained model runs: {DEVICE_HELP} (auto: every CUDA device, "
                      "the model spread over them by accelerate, else mps, else cpu; "
                      "default: cpu)")
DTYPE_OPTION_HELP = ("the pretrained model's weights: fp32, bf16, fp16 (not on the CPU) or "
                     "auto (bf16 where the device computes it natively, else fp32; "
                     "default: fp32)")
#: the names --dtype takes, each to the torch dtype's name
DTYPE_NAMES = {"fp32": "float32", "float32": "float32", "bf16": "bfloat16",
               "bfloat16": "bfloat16", "fp16": "float16", "float16": "float16"}
#: the torch dtypes a caller of the Python API may pass (float64 for references and tests)
TORCH_DTYPES = ("float32", "bfloat16", "float16", "float64")
#: resolve_dtype's names (training's) to the torch dtype's name
_TRAINING_NAMES = {"fp32": "float32", "bf16": "bfloat16"}


@dataclass(frozen=True)
class Placement:
    """The resolved choice: ``device`` takes the inputs (the embedding's device); ``spread``:
    the weights go through accelerate's ``device_map="auto"`` over every CUDA device."""

    device: str
    dtype: str
    spread: bool = False

    @property
    def torch_dtype(self):
        import torch

        return getattr(torch, self.dtype)

    def device_map(self) -> Any:
        """``from_pretrained``'s ``device_map``: None on the CPU (loads there, as before)."""
        if self.spread:
            return "auto"
        return None if self.device == "cpu" else {"": self.device}

    @property
    def is_default(self) -> bool:
        """CPU and float32: what lexformer loaded before these options existed."""
        return self.device == "cpu" and self.dtype == "float32" and not self.spread


def parse_device(name: str) -> str:
    """``--device``: a name of :data:`DEVICE_HELP` that this machine has (one line if not)."""
    import torch

    name = name.strip()
    if name in ("cpu", "auto"):
        return name
    if name == "mps":
        if not torch.backends.mps.is_available():
            raise LexformerError("device 'mps' asked for, but this machine has no MPS (Apple "
                                 "GPU) device; use --device cpu or auto")
        return name
    try:
        device = torch.device(name)
    except (RuntimeError, ValueError):
        device = None
    if device is None or device.type != "cuda":
        raise LexformerError(f"unknown device {name!r}; use {DEVICE_HELP}")
    from ..distributed import resolve_device

    return str(resolve_device(name))  # "cuda" without CUDA, or a cuda:N past the last, refused


def parse_dtype(name: str) -> str:
    """``--dtype``: ``auto`` or a name of :data:`DTYPE_NAMES`, as the torch dtype's name."""
    name = name.strip().lower()
    if name == "auto":
        return name
    if name not in DTYPE_NAMES:
        raise LexformerError(f"unknown dtype {name!r}; use auto, fp32, bf16 or fp16 "
                             "(float32, bfloat16, float16)")
    return DTYPE_NAMES[name]


def resolve_placement(device: str | None = None, dtype: Any = None) -> Placement:
    """``device`` and ``dtype`` (names as above, or a ``torch.dtype``; None: cpu, float32)
    checked and resolved, before a model is loaded."""
    import torch

    spread = False
    name = parse_device(device) if device is not None else "cpu"
    if name == "auto":
        spread = torch.cuda.is_available()
        has_mps = torch.backends.mps.is_available()
        name = "cuda:0" if spread else "mps" if has_mps else "cpu"
    chosen = _dtype_name(dtype, torch.device(name))
    if chosen == "float16" and name == "cpu":
        raise LexformerError("dtype fp16 is refused on the CPU: it is emulated there (slower "
                             "than fp32) and overflows where bf16 does not; use bf16 or fp32")
    return Placement(name, chosen, spread)


def placement_key(device: str | None, dtype: Any) -> dict[str, str]:
    """The resolved device and dtype for a reuse key: empty for the CPU in float32, so a key
    made before these options existed (when nothing else was possible) still matches."""
    placement = resolve_placement(device, dtype)
    if placement.is_default:
        return {}
    where = f"auto:{placement.device}" if placement.spread else placement.device
    return {"device": where, "dtype": placement.dtype}


def _dtype_name(dtype: Any, device) -> str:
    import torch

    from .. import distributed

    if dtype is None:
        return "float32"
    if isinstance(dtype, torch.dtype):
        chosen = str(dtype).removeprefix("torch.")
        if chosen not in TORCH_DTYPES:
            raise LexformerError(f"dtype {dtype} is not one a model can be loaded in; use "
                                 + ", ".join(f"torch.{d}" for d in TORCH_DTYPES))
        return chosen
    if not isinstance(dtype, str):
        raise LexformerError(f"dtype must be a name or a torch.dtype, got {dtype!r}")
    chosen = parse_dtype(dtype)
    if chosen == "auto":  # training's rule, looked up at call time (tests replace it)
        return _TRAINING_NAMES[distributed.resolve_dtype("auto", device)]
    return chosen


__all__ = ["DEVICE_HELP", "DEVICE_OPTION_HELP", "DTYPE_NAMES", "DTYPE_OPTION_HELP", "Placement",
           "parse_device", "parse_dtype", "placement_key", "resolve_placement"]
