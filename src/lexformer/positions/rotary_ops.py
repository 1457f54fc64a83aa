"""The two ways of applying a rotary table to interleaved pairs (``docs/method.md#xpos``).

Pair j of a vector is coordinates (2j, 2j+1). Both functions compute, per pair,
``(x0·c − x1·s, x1·c + x0·s)`` with ``c = ζ^(±n/B)cos(nθ)``, ``s = ζ^(±n/B)sin(nθ)``:

* :func:`rotate_complex`: the pair as one complex number times a complex64 table entry. In
  eager mode on a CPU this is one pass over fp32 data, the cheapest rotation there is; other
  dtypes go through fp32 (a custom autograd function keeps that to one fp32 buffer).
* :func:`rotate_real`: per pair ``(x0·c − x1·s, x1·c + x0·s)`` with real tables in x's own
  dtype (no fp32 round trip in bf16, no complex tensors), which ``torch.compile`` fuses into
  one kernel forward and one backward. In eager mode it is several strided passes.

Which one runs is decided by :class:`~lexformer.positions.rotary.RotaryEmbedding` from a
measurement (``docs/benchmarks.md``, "Real-arithmetic rotary, ALiBi and compile").
"""

from __future__ import annotations

import torch


def rotate_real(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    """x (…, d) rotated pairwise by tables cos, sin (…, d/2): ``x·C + rot(x)·S`` per pair.

    Written on the even and odd coordinates, then re-interleaved: of the forms tried
    (a pair flip, a swap by concatenation, 2×2 broadcasting), the one inductor vectorises
    best on a CPU (docs/benchmarks.md). Tables in x's dtype keep the result in x's dtype.
    """
    x0, x1 = x[..., 0::2], x[..., 1::2]
    return torch.stack((x0 * cos - x1 * sin, x1 * cos + x0 * sin), dim=-1).flatten(-2)


def _as_complex(x: torch.Tensor) -> torch.Tensor:
    """A complex view of fp32 pairs; copies only if the layout does not allow a view."""
    pairs = x.unflatten(-1, (-1, 2))
    try:
        return torch.view_as_complex(pairs)
    except RuntimeError:  # last dim not contiguous, or an odd stride elsewhere
        return torch.view_as_complex(pairs.contiguous())


class _ComplexRotationLowPrecision(torch.autograd.Function):
    """bf16/fp16 through one fp32 buffer, rotated in place; backward by the conjugate.

    Autograd of ``x.float() * table`` then ``.to(dtype)`` would keep a second fp32 buffer
    and convert the gradient twice; this keeps only the table for backward.
    """

    @staticmethod
    def forward(ctx, x: torch.Tensor, table: torch.Tensor) -> torch.Tensor:
        ctx.save_for_backward(table)
        buf = x.float()  # a fresh buffer: safe to rotate in place
        _as_complex(buf).mul_(table)
        return buf.to(x.dtype)

    @staticmethod
    def backward(ctx, grad: torch.Tensor):
        (table,) = ctx.saved_tensors
        buf = grad.float()
        if buf.data_ptr() == grad.data_ptr():  # fp32 gradient: do not write into it
            buf = buf.clone()
        _as_complex(buf).mul_(table.conj())
        return buf.to(grad.dtype), None


def rotate_complex(x: torch.Tensor, table: torch.Tensor) -> torch.Tensor:
    """x (…, d) real times a complex64 table (…, d/2) pairwise, in x's dtype."""
    if x.dtype == torch.float32:
        return torch.view_as_real(_as_complex(x) * table).flatten(-2)
    return _ComplexRotationLowPrecision.apply(x, table)
