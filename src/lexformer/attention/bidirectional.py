"""Bidirectional (encoder) self-attention in two modes, with position schemes applied inside.

Modes, for models with ``causal=False`` (``docs/bidirectional.md``):

* ``full``       every query sees every key;
* ``blockwise``  blocks of ``h`` tokens (L/2); a query in block b sees the keys of blocks
  b−1, b and b+1, so no query looks L or more tokens away on either side: the two-sided
  analogue of blockwise causal attention.

The fast path for a whole sequence never builds an n×n matrix in ``blockwise`` mode: queries
are cut into blocks of h and each block attends, in one batched call, to an unfolded window
of its three blocks (3h keys), which is O(n·L). The padding keys at both ends are hidden by a
(windows, 3h) key mask. :func:`attend_bidirectional` is the general path over explicit
positions and :func:`attend_bidirectional_eager` the one that also returns scores and
probabilities (analysis, tests).

Bidirectional XPOS cannot go through ``scaled_dot_product_attention``: its keys behind and
ahead of a query need two different factorisations of the decay
(:mod:`lexformer.positions.bidirectional`). Two exact implementations:

* its logits formed explicitly and softmaxed once over their union, in chunks of queries past
  :data:`XPOS_CHUNK_THRESHOLD` tokens (which bounds memory and the XPOS factors): any device,
  any length, the cheapest below ~512 tokens (about 1.8× causal XPOS's time at 256, 3× at
  1,024);
* full attention on a CPU from :data:`FLASH_MIN_LENGTH` tokens: two fused causal attention
  calls, one over the keys behind each query with the ordinary factors and one over the keys
  ahead with the mirrored ones (time reversed, so they too are causal), merged by their
  log-sum-exp (:class:`TwoSidedAttention`): O(n) memory and 2.0× causal XPOS's time from 512
  to 2,048 tokens (``docs/bidirectional.md``, ``benchmarks/bench_bidirectional.py``).

Every other scheme uses SDPA.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from ..positions import BIAS, ROTARY, PositionScheme
from ..positions.bidirectional import bidirectional_logits
from ..positions.rotary import centre_on_queries
from .causal import FULL_CHUNK, FULL_CHUNK_THRESHOLD
from .kernels import AttentionIntermediates, eager_softmax, positioned, sdpa_masked, windowed
from .spec import AttentionSpec

#: full bidirectional XPOS over more tokens than this runs in query chunks of XPOS_CHUNK:
#: its (chunk, n) logits are materialised, so the chunk bounds memory as well as the factors
XPOS_CHUNK_THRESHOLD = 1024
XPOS_CHUNK = 512
#: full bidirectional XPOS on a CPU takes the two fused causal calls merged by log-sum-exp
#: (TwoSidedAttention) from this length up to the scheme's safe span; below it the explicit
#: logits are cheaper (measured: 1.8× vs 2.1× causal XPOS at 256 tokens, 2.2× vs 2.0× at 512,
#: 3.1× vs 2.0× at 1,024; benchmarks/bench_bidirectional.py)
FLASH_MIN_LENGTH = 512


def _has_symmetric_decay(scheme: PositionScheme) -> bool:
    return scheme.kind == ROTARY and scheme.has_decay


def _cpu_flash_ops():
    """torch's fused CPU attention forward and backward, which return and take the
    log-sum-exp of each row (private operators: None where this torch lacks them)."""
    try:
        return (torch.ops.aten._scaled_dot_product_flash_attention_for_cpu.default,
                torch.ops.aten._scaled_dot_product_flash_attention_for_cpu_backward.default)
    except (AttributeError, RuntimeError):
        return None


class TwoSidedAttention(torch.autograd.Function):
    """Exact attention of each query over the keys at or behind it (logits ``q_b·k_b``) and
    the keys strictly ahead of it (logits ``q_a·k_a``), through two fused causal calls.

    All inputs (B, H, T, D), scale already applied to the queries. Behind: one causal call.
    Ahead: time reversed, the keys strictly ahead are strictly behind; a causal call of
    queries 1..T−1 over keys 0..T−2 of the reversed sequence sees exactly those (the last
    query has none: log-sum-exp −inf). The two partial outputs are merged by their
    log-sum-exp: ``o = e^(lse_b − lse)·o_b + e^(lse_a − lse)·o_a``.

    Backward: given the merged output and log-sum-exp, each call's own backward computes the
    gradient of the *merged* softmax restricted to its keys (its probabilities are
    ``exp(s − lse)`` with the merged lse, and its row term Σ dO·O uses the merged output), so
    the two backward calls sum to the exact gradient.
    """

    @staticmethod
    def forward(ctx, qb, kb, qa, ka, v):
        fwd, _ = _cpu_flash_ops()
        out_b, lse_b = fwd(qb, kb, v, 0.0, True, scale=1.0)
        qr, kr, vr = qa.flip(-2), ka.flip(-2), v.flip(-2)
        out_r, lse_r = fwd(qr[..., 1:, :], kr[..., :-1, :], vr[..., :-1, :], 0.0, True,
                           scale=1.0)
        out_a = F.pad(out_r, (0, 0, 1, 0)).flip(-2)
        lse_a = F.pad(lse_r, (1, 0), value=float("-inf")).flip(-1)
        lse = torch.logaddexp(lse_b, lse_a)  # float32, (B, H, T)
        out = (torch.exp(lse_b - lse)[..., None] * out_b
               + torch.exp(lse_a - lse)[..., None] * out_a).to(v.dtype)
        ctx.save_for_backward(qb, kb, qa, ka, v, out, lse)
        return out

    @staticmethod
    def backward(ctx, grad):
        _, bwd = _cpu_flash_ops()
        qb, kb, qa, ka, v, out, lse = ctx.saved_tensors
        grad = grad.contiguous()
        dqb, dkb, dv = bwd(grad, qb, kb, v, out, lse, 0.0, True, scale=1.0)
        gr, outr, lser = grad.flip(-2), out.flip(-2), lse.flip(-1)
        qr, kr, vr = qa.flip(-2), ka.flip(-2), v.flip(-2)
        dq_r, dk_r, dv_r = bwd(gr[..., 1:, :], qr[..., 1:, :], kr[..., :-1, :],
                               vr[..., :-1, :], outr[..., 1:, :], lser[..., 1:], 0.0, True,
                               scale=1.0)
        dqa = F.pad(dq_r, (0, 0, 1, 0)).flip(-2)
        dka = F.pad(dk_r, (0, 0, 0, 1)).flip(-2)
        return dqb, dkb, dqa, dka, dv + F.pad(dv_r, (0, 0, 0, 1)).flip(-2)


def _two_sided_applies(scheme, q, dropout_p: float) -> bool:
    T = q.shape[-2]
    return (_has_symmetric_decay(scheme) and q.device.type == "cpu" and not dropout_p
            and q.dtype in (torch.float32, torch.bfloat16) and FLASH_MIN_LENGTH <= T
            and T <= scheme.max_safe_span(q.dtype) and not torch.compiler.is_compiling()
            and _cpu_flash_ops() is not None)


def _two_sided(q, k, v, scheme):
    """Full bidirectional XPOS through :class:`TwoSidedAttention`, positions centred."""
    T = q.shape[-2]
    centre = (T - 1) // 2
    rel = range(-centre, T - centre)
    q = q * q.shape[-1] ** -0.5
    return TwoSidedAttention.apply(
        scheme.rotate_queries(q, rel), scheme.rotate_keys(k, rel),  # behind: ordinary
        scheme.rotate_keys(q, rel), scheme.rotate_queries(k, rel),  # ahead: mirrored
        v.contiguous())


def _attend(q, k, v, q_rel, k_rel, scheme, visible, bias, dropout_p):
    """q (…, Tq, D) over k, v (…, Tk, D) at centred positions ``q_rel``, ``k_rel``.

    ``visible``: boolean, broadcastable to (…, Tq, Tk), or None (every key); ``bias``: ALiBi's
    (H, Tq, Tk) or None.
    """
    scale = q.shape[-1] ** -0.5
    if _has_symmetric_decay(scheme):
        logits = bidirectional_logits(scheme, q * scale, k, q_rel, k_rel)
        if visible is not None:
            logits = logits.masked_fill(~visible, float("-inf"))
        # softmax in float32 also under bf16 autocast; the product with v in v's dtype
        probs = torch.softmax(logits, dim=-1, dtype=torch.float32)
        if dropout_p:
            probs = F.dropout(probs, dropout_p)
        return probs.to(v.dtype) @ v
    if scheme.kind == ROTARY:
        q, k = scheme.rotate_queries(q, q_rel), scheme.rotate_keys(k, k_rel)
    return sdpa_masked(q, k, v, visible, bias, dropout_p)


# --------------------------------------------------------------------------- fast paths
def bidirectional_attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor,
                            scheme: PositionScheme, spec: AttentionSpec, dropout_p: float = 0.0,
                            memo: dict | None = None) -> torch.Tensor:
    """Bidirectional self-attention over a whole sequence at positions 0..T−1.

    q, k, v: (B, H, T, D) before any rotary transform. Returns (B, H, T, D). ``memo``: a dict
    shared by the layers of one forward pass (ALiBi's bias is built once).
    """
    T = q.shape[-2]
    if spec.mode == "blockwise" and T > 2 * spec.block:
        return _windowed(q, k, v, scheme, spec, dropout_p)
    # up to two blocks every query sees every key: blockwise is full attention there
    return _full(q, k, v, scheme, dropout_p, memo)


def bidirectional_attention_packed(qkv: torch.Tensor, scheme: PositionScheme, spec: AttentionSpec,
                                   dropout_p: float = 0.0,
                                   memo: dict | None = None) -> torch.Tensor:
    """:func:`bidirectional_attention` on a packed (B, T, 3, H, D) projection."""
    q, k, v = qkv.permute(2, 0, 3, 1, 4).unbind(0)
    return bidirectional_attention(q, k, v, scheme, spec, dropout_p, memo)


def _full_chunk(scheme: PositionScheme, dtype: torch.dtype, T: int) -> int:
    """Queries per chunk of full attention (T: no chunking)."""
    if _has_symmetric_decay(scheme):
        limit = min(XPOS_CHUNK_THRESHOLD, scheme.max_safe_span(dtype))
        return T if T <= limit else max(1, min(XPOS_CHUNK, limit))
    return T if T <= FULL_CHUNK_THRESHOLD else FULL_CHUNK


def _full_bias(scheme, start: int, stop: int, T: int, memo: dict | None):
    """ALiBi's (H, stop − start, T) bias of queries start..stop−1, built once per pass."""
    if scheme.kind != BIAS:
        return None
    key = ("bidirectional_bias", start, stop, T)
    if memo is not None and key in memo:
        return memo[key]
    bias = scheme(torch.arange(start, stop), torch.arange(T))
    if memo is not None:
        memo[key] = bias
    return bias


def _full(q, k, v, scheme, dropout_p, memo=None):
    """Every query against every key, in chunks of queries where the scheme needs them; each
    chunk's positions are centred on its own queries."""
    T = q.shape[-2]
    if _two_sided_applies(scheme, q, dropout_p):
        return _two_sided(q, k, v, scheme)
    chunk = _full_chunk(scheme, q.dtype, T)
    outs = []
    for start in range(0, T, chunk):
        stop = min(start + chunk, T)
        centre = (start + stop - 1) // 2
        outs.append(_attend(q[..., start:stop, :], k, v, range(start - centre, stop - centre),
                            range(-centre, T - centre), scheme, None,
                            _full_bias(scheme, start, stop, T, memo), dropout_p))
    return outs[0] if len(outs) == 1 else torch.cat(outs, dim=-2)


def _windowed(q, k, v, scheme, spec, dropout_p: float):
    """Blockwise bidirectional attention in O(n·h): query block b against the unfolded window
    of blocks b−1, b, b+1 (:func:`.kernels.windowed`); keys outside 0..T−1 (the padding) are
    masked per window."""
    def attend_window(qb, kw, vw, q_rel, k_rel, visible, bias):
        return _attend(qb, kw, vw, q_rel, k_rel, scheme, visible, bias, dropout_p)

    out = windowed(q, k, v, spec.window_layout(), scheme, attend_window)
    return out[..., :q.shape[-2], :]


# --------------------------------------------------------------------------- general path
def _positioned(q_pos, k_pos, scheme, spec, device):
    q_pos, k_pos, visible, bias = positioned(q_pos, k_pos, scheme, spec, device)
    q_rel, k_rel = centre_on_queries(q_pos, k_pos)
    return q_pos, k_pos, q_rel, k_rel, visible, bias


def attend_bidirectional(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, q_pos: torch.Tensor,
                         k_pos: torch.Tensor, scheme: PositionScheme, spec: AttentionSpec,
                         dropout_p: float = 0.0) -> torch.Tensor:
    """Queries at ``q_pos`` over keys at ``k_pos`` (any positions), visibility from ``spec``
    (non-causal). q: (B, H, Tq, D), k and v: (B, H, Tk, D), unrotated; → (B, H, Tq, D)."""
    _, _, q_rel, k_rel, visible, bias = _positioned(q_pos, k_pos, scheme, spec, q.device)
    return _attend(q, k, v, q_rel, k_rel, scheme, visible, bias, dropout_p)


def attend_bidirectional_eager(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor,
                               q_pos: torch.Tensor, k_pos: torch.Tensor, scheme: PositionScheme,
                               spec: AttentionSpec) -> tuple[torch.Tensor, AttentionIntermediates]:
    """:func:`attend_bidirectional` in float32 with the (B, H, Tq, Tk) scores (−inf where
    hidden) and probabilities materialised: ``(out, AttentionIntermediates)``."""
    q_pos, k_pos, _, _, visible, bias = _positioned(q_pos, k_pos, scheme, spec, q.device)
    with torch.autocast(q.device.type, enabled=False):
        qf, kf = q.float(), k.float()
        if scheme.kind == ROTARY:  # the logits the public API documents
            scores = scheme.scores(qf, kf, q_pos, k_pos, causal=False)
        else:
            scores = (qf @ kf.transpose(-1, -2)) * q.shape[-1] ** -0.5
        return eager_softmax(scores, bias, visible, v)


__all__ = ["FLASH_MIN_LENGTH", "XPOS_CHUNK", "XPOS_CHUNK_THRESHOLD", "TwoSidedAttention",
           "attend_bidirectional",
           "attend_bidirectional_eager", "bidirectional_attention",
           "bidirectional_attention_packed"]
