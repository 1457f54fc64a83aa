"""Causal self-attention in three modes, with position schemes applied inside.

Modes (``docs/method.md#blockwise-causal-attention`` and ``#sliding-attention``):

* ``full``       every query sees every earlier key (ordinary causal attention);
* ``blockwise``  the paper's blockwise causal attention: blocks of ``h`` tokens (L/2); a query
  in block b sees the keys of blocks b−1 and b, causally, so it never looks L or more back;
* ``sliding``    a query sees the last ``window`` keys (itself included).

Two implementations of every mode:

* a fast path for a whole sequence (training, evaluation, cache prefill) built on
  ``scaled_dot_product_attention``; the windowed modes never materialise an n×n matrix:
  queries are cut into blocks of c and each block attends, through one batched SDPA call with
  one shared (c, w) mask, to an unfolded window of w keys, which is O(n·L);
* a general path over explicit query/key positions (KV-cache decoding): :func:`attend`, and
  :func:`attend_eager`, which also returns the pre-softmax scores and probabilities that the
  analysis needs (:class:`AttentionIntermediates`).

Rotary schemes (XPOS, RoPE) are applied here, with positions re-centred for every window or
chunk of queries: only n − m matters, and re-centring keeps the XPOS factors ζ^(±n/B) bounded
at any length (a naive centred table overflows fp32 near 72k tokens; ``docs/method.md#xpos``).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from ..positions import BIAS, ROTARY, PositionScheme
from .kernels import AttentionIntermediates, eager_softmax, positioned, sdpa_masked, windowed
from .masks import causal
from .spec import AttentionSpec

#: full attention over more tokens than this runs in query chunks of FULL_CHUNK, for
#: O(chunk·n) mask memory instead of O(n²). XPOS switches earlier where its factors demand it
#: (``RotaryEmbedding.max_safe_span``: ~8k tokens in fp32/bf16 at B = 512, less in fp16 or for
#: a smaller scale base).
FULL_CHUNK_THRESHOLD = 8192
FULL_CHUNK = 1024


def _span(start: int, stop: int, centre: int) -> range:
    """Positions start..stop−1 re-centred on ``centre``, as a range: rotary tables are then
    sliced with Python integers (no tensor inspection, nothing for torch.compile to break on)."""
    return range(start - centre, stop - centre)


def _sdpa(q, k, v, attn_mask=None, is_causal=False, dropout_p=0.0, scale=None):
    return F.scaled_dot_product_attention(
        q, k, v, attn_mask=attn_mask, is_causal=is_causal, dropout_p=dropout_p, scale=scale
    )


#: per-forward-pass store of ALiBi biases, keyed by (T, dtype, device): every layer of one
#: pass needs the same (1, H, T, T) bias, so it is built once (``PassContext.memo``)
BiasMemo = dict


def _causal_bias(scheme, T: int, dtype: torch.dtype, device, memo: BiasMemo | None):
    """ALiBi's (1, H, T, T) bias at positions 0..T−1 in ``dtype``, built once per pass."""
    key = ("causal_bias", T, dtype, device)
    if memo is not None and key in memo:
        return memo[key]
    pos = torch.arange(T)
    bias = scheme(pos, pos).to(device, dtype)[None]
    if memo is not None:
        memo[key] = bias
    return bias


def _full_with_bias(q, k, v, scheme, dropout_p, memo):
    """Full causal attention plus ALiBi's bias.

    On the CPU, SDPA's fused kernel applies ``is_causal`` together with a float mask and skips
    the blocks above the diagonal: 1.09x causal attention against 1.43x for the −inf-filled
    mask (fwd+bwd, T = 1024, measured in docs/benchmarks.md). Elsewhere the documented form:
    the bias with −inf where hidden.
    """
    T = q.shape[-2]
    bias = _causal_bias(scheme, T, q.dtype, q.device, memo)
    if q.device.type == "cpu":
        return _sdpa(q, k, v, attn_mask=bias, is_causal=True, dropout_p=dropout_p)
    key = ("causal_mask", T, q.dtype, q.device)
    mask = None if memo is None else memo.get(key)
    if mask is None:
        visible = torch.ones(T, T, dtype=torch.bool, device=q.device).tril()
        mask = bias.masked_fill(~visible, float("-inf"))
        if memo is not None:
            memo[key] = mask
    return _sdpa(q, k, v, attn_mask=mask, dropout_p=dropout_p)


# --------------------------------------------------------------------------- fast paths
def causal_attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, scheme: PositionScheme,
                     spec: AttentionSpec, dropout_p: float = 0.0,
                     memo: BiasMemo | None = None) -> torch.Tensor:
    """Self-attention over a whole sequence at positions 0..T−1.

    q, k, v: (B, H, T, D) before any rotary transform. Returns (B, H, T, D). ``memo``: a
    dict shared by the layers of one forward pass, so that ALiBi's bias is built once.
    """
    T = q.shape[-2]
    if spec.mode == "full":
        span = scheme.max_safe_span(q.dtype) if scheme.kind == ROTARY else FULL_CHUNK_THRESHOLD
        if T > min(span, FULL_CHUNK_THRESHOLD):
            return _full_chunked(q, k, v, scheme, dropout_p, max(1, min(FULL_CHUNK, span // 2)))
        return _full(q, k, v, scheme, dropout_p, memo)
    if T <= spec.window_layout().w:
        # Short input: windows cover it; one dense pass with the exact mask is cheapest.
        pos = torch.arange(T)
        return attend(q, k, v, pos, pos, scheme, spec, dropout_p=dropout_p)
    return _windowed(q, k, v, scheme, spec, dropout_p)


def causal_attention_packed(qkv: torch.Tensor, scheme: PositionScheme, spec: AttentionSpec,
                            dropout_p: float = 0.0, memo: BiasMemo | None = None) -> torch.Tensor:
    """:func:`causal_attention` on a packed (B, T, 3, H, D) projection.

    Same result; in full mode with a rotary scheme it rotates q and k in one pass over the
    packed tensor (:meth:`RotaryEmbedding.rotate_packed_qk`) instead of one per tensor.
    """
    T = qkv.shape[1]
    if (spec.mode == "full" and scheme.kind == ROTARY
            and T <= min(scheme.max_safe_span(qkv.dtype), FULL_CHUNK_THRESHOLD)):
        q, k = scheme.rotate_packed_qk(qkv, _span(0, T, T // 2))
        v = qkv[:, :, 2].transpose(1, 2)
        return _sdpa(q, k, v, is_causal=True, dropout_p=dropout_p)
    q, k, v = qkv.permute(2, 0, 3, 1, 4).unbind(0)
    return causal_attention(q, k, v, scheme, spec, dropout_p, memo)


def _full(q, k, v, scheme, dropout_p, memo=None):
    T = q.shape[-2]
    if scheme.kind == ROTARY:
        rel = _span(0, T, T // 2)
        q, k = scheme.rotate_queries(q, rel), scheme.rotate_keys(k, rel)
    if scheme.kind == BIAS:
        return _full_with_bias(q, k, v, scheme, dropout_p, memo)
    return _sdpa(q, k, v, is_causal=True, dropout_p=dropout_p)


def _full_chunked(q, k, v, scheme, dropout_p, chunk=FULL_CHUNK):
    """Full causal attention in chunks of queries, each against all keys up to its end.

    Positions are centred on each chunk's last query: query factors ζ^((n−c)/B) are at most
    ζ_0^(−chunk/B) and key factors ζ^((c−m)/B) ≤ 1, decaying (harmlessly) to 0 far back.
    """
    T = q.shape[-2]
    outs = []
    for start in range(0, T, chunk):
        end = min(start + chunk, T)
        qc, kc, vc = q[..., start:end, :], k[..., :end, :], v[..., :end, :]
        q_pos, k_pos = torch.arange(start, end), torch.arange(end)
        if scheme.kind == ROTARY:
            qc = scheme.rotate_queries(qc, _span(start, end, end - 1))
            kc = scheme.rotate_keys(kc, _span(0, end, end - 1))
        visible = causal()(torch.arange(start, end, device=q.device)[:, None],
                           torch.arange(end, device=q.device)[None, :])
        bias = scheme(q_pos, k_pos) if scheme.kind == BIAS else None
        outs.append(sdpa_masked(qc, kc, vc, visible, bias, dropout_p))
    return torch.cat(outs, dim=-2)


def _windowed(q, k, v, scheme, spec, dropout_p):
    """Blockwise or sliding attention in O(n·w): query blocks against unfolded key windows
    (:func:`.kernels.windowed`).

    The first nprev blocks see only keys from position 0 up to themselves, which is plain
    causal attention; every later block b sees the window of blocks b−nprev..b under one
    shared (c, w) mask, so a single SDPA call covers them all.
    """
    T = q.shape[-2]
    layout = spec.window_layout()
    head_len = layout.before * layout.c
    pad = (-T) % layout.c
    if pad:  # before the head is cut: the head then runs on the same (contiguous) tensors
        q, k, v = (F.pad(x, (0, 0, 0, pad)) for x in (q, k, v))
    head = _full(q[..., :head_len, :], k[..., :head_len, :], v[..., :head_len, :],
                 scheme, dropout_p)

    def attend_window(qb, kw, vw, q_rel, k_rel, visible, bias):
        if scheme.kind == ROTARY:
            qb, kw = scheme.rotate_queries(qb, q_rel), scheme.rotate_keys(kw, k_rel)
        return sdpa_masked(qb, kw, vw, visible, bias, dropout_p)

    out = windowed(q, k, v, layout, scheme, attend_window, mask=spec.mask())
    return torch.cat((head, out), dim=-2)[..., :T, :]


# --------------------------------------------------------------------------- general path
def _positioned(q, k, q_pos, k_pos, scheme, spec):
    """Rotary transform with positions re-centred on the queries, the visibility mask and
    the bias: what both general paths need before the attention product."""
    q_pos, k_pos, visible, bias = positioned(q_pos, k_pos, scheme, spec, q.device)
    if scheme.kind == ROTARY:
        centre = (int(q_pos.min()) + int(q_pos.max())) // 2
        q = scheme.rotate_queries(q, q_pos - centre)
        k = scheme.rotate_keys(k, k_pos - centre)
    return q, k, visible, bias


def attend(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, q_pos: torch.Tensor,
           k_pos: torch.Tensor, scheme: PositionScheme, spec: AttentionSpec,
           dropout_p: float = 0.0) -> torch.Tensor:
    """Attention of queries at ``q_pos`` over keys at ``k_pos`` (any positions, e.g. a cache).

    q: (B, H, Tq, D), k and v: (B, H, Tk, D), all before the rotary transform. Visibility
    follows ``spec`` from the positions alone. Positions are re-centred on the queries, so
    past keys get XPOS factors ≤ 1 however long the cache is. Returns (B, H, Tq, D).
    """
    q, k, visible, bias = _positioned(q, k, q_pos, k_pos, scheme, spec)
    return sdpa_masked(q, k, v, visible, bias, dropout_p)


def attend_eager(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, q_pos: torch.Tensor,
                 k_pos: torch.Tensor, scheme: PositionScheme,
                 spec: AttentionSpec) -> tuple[torch.Tensor, AttentionIntermediates]:
    """:func:`attend` computed eagerly in float32: ``(out, AttentionIntermediates)``.

    The same maths as the SDPA paths, with the (B, H, Tq, Tk) scores and probabilities
    materialised for analysis (attention resolution needs the pre-softmax scores). Scores
    stay float32 under autocast; ``out`` takes v's dtype.
    """
    q, k, visible, bias = _positioned(q, k, q_pos, k_pos, scheme, spec)
    scale = q.shape[-1] ** -0.5
    with torch.autocast(q.device.type, enabled=False):
        scores = (q.float() @ k.float().transpose(-1, -2)) * scale
        return eager_softmax(scores, bias, visible, v)
