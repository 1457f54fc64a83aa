"""Attention resolution (docs/method.md, "Attention resolution"): the analytic expectation
curve and the measured one.

* :func:`expectation_curve` — paper Eq. 8: the expected score at distance n for all-ones q
  and k, ``g[n] = Σ_j cos(nθ_j) ζ_j^(n/B)`` (ζ = 1 is RoPE). Figure 1 of the paper.
* :func:`resolution` — ``R(s)``, how sharply a score curve separates near from far.
* :func:`empirical_expected_scores` — paper Eq. 11: ŝ[n], the mean pre-softmax score of a
  query on the key n positions back, from a model's recorded attention scores.
* :func:`model_resolution` — ŝ and R(ŝ) of a model on real text, full or blockwise.
* :func:`analyze_model` — :func:`model_resolution` at several lengths and modes, as a typed
  :class:`ModelAnalysis` (what ``lexformer analyze`` and the reproduction both run).

R as defined here is at most 1; the paper's Table 3 reports 1.08 for LeX, so the paper
normalised in a way it does not state. Compare orderings with the paper, not magnitudes.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from .errors import LexformerError
from .positions.rotary import RotaryEmbedding

#: recorded scores + probs of one batch are kept under this many bytes when batch_size is auto
_RECORD_BUDGET_BYTES = 1 << 30


# --------------------------------------------------------------------------- analytic
def expectation_curve(
    head_dim: int = 64,
    max_distance: int = 4096,
    gamma: float | None = 0.4,
    scale_base: float = 512.0,
    base: float = 10000.0,
) -> np.ndarray:
    """Expected score g[n] for n = 0..max_distance with all-ones q and k (paper Eq. 8).

    ``g[n] = Σ_j cos(n θ_j) ζ_j^(n/B)`` over the ``head_dim/2`` pairs, with θ and ζ taken from
    :class:`~lexformer.positions.rotary.RotaryEmbedding` (the model's own tables); ``gamma``
    None gives ζ = 1, i.e. RoPE. ``g[0] = head_dim/2``. Returns float64, length
    ``max_distance + 1``.
    """
    if max_distance < 0:
        raise LexformerError(f"max_distance must be >= 0, got {max_distance}")
    rotary = RotaryEmbedding(head_dim, base=base, gamma=gamma, scale_base=scale_base)
    theta = rotary.theta().numpy()  # (d/2,)
    log_zeta = np.log(rotary.zeta().numpy())  # (d/2,), 0 for RoPE
    out = np.empty(max_distance + 1, dtype=np.float64)
    step = 1 << 16  # rows per block: bounded memory for very long curves
    for start in range(0, max_distance + 1, step):
        n = np.arange(start, min(start + step, max_distance + 1), dtype=np.float64)[:, None]
        out[start:start + n.shape[0]] = (
            np.cos(n * theta) * np.exp(n / rotary.scale_base * log_zeta)).sum(axis=1)
    return out


def resolution(s: Sequence[float] | np.ndarray | torch.Tensor) -> float:
    """Attention resolution ``R(s)`` of a score curve s[0..N] (paper Eq. 9).

    ``R(s) = Σ_{i=0}^{N-1} e^{s[i]} (e^{s[i]} − e^{s[i+1]}) / (Σ_{i=0}^{N} e^{s[i]})²``

    Boundary convention: the numerator runs over the N consecutive pairs (s[i], s[i+1]),
    i = 0..N−1 (there is no s[N+1]); the denominator over all N+1 entries. A single entry
    gives 0. R is invariant to adding a constant to every s[i] (numerator and denominator both
    scale by e^{2c}), so it is computed with ``max(s)`` subtracted: no overflow for any scores.
    A constant curve gives exactly 0; a decreasing one a positive R; an increasing one a
    negative R. As defined R ≤ 1 (the numerator is at most Σ e^{2s[i]} ≤ (Σ e^{s[i]})²); the
    paper's Table 3 reports 1.08, so the paper normalised differently, in a way it does not
    state.

    Entries of −inf (weight e^{−inf} = 0) are allowed; NaN or +inf are refused: pass only the
    distances a query can see (see :func:`visible_prefix`).
    """
    s = np.asarray(s.detach().cpu() if isinstance(s, torch.Tensor) else s, dtype=np.float64)
    if s.ndim != 1 or s.size == 0:
        raise LexformerError(f"resolution needs a non-empty 1-D curve, got shape {s.shape}")
    if np.isnan(s).any() or np.isposinf(s).any():
        raise LexformerError("resolution: the curve holds NaN or +inf entries")
    top = s.max()
    if not np.isfinite(top):
        raise LexformerError("resolution: every entry of the curve is -inf")
    e = np.exp(s - top)  # in (0, 1], the largest exactly 1
    numerator = float(np.sum(e[:-1] * (e[:-1] - e[1:])))
    return numerator / float(np.sum(e)) ** 2


def analytic_resolution(
    head_dim: int = 64,
    max_distance: int = 4096,
    gamma: float | None = 0.4,
    scale_base: float = 512.0,
    base: float = 10000.0,
) -> float:
    """R of the analytic curve :func:`expectation_curve` over distances 0..max_distance."""
    return resolution(expectation_curve(head_dim, max_distance, gamma, scale_base, base))


# --------------------------------------------------------------------------- empirical
def visible_prefix(s_hat: np.ndarray) -> np.ndarray:
    """The leading run of finite entries of ŝ: the distances some query can see.

    Under blockwise attention the visible distances are always 0..m for some m (if a query
    sees n back, it sees every nearer key too), so ŝ is finite up to m and NaN after.
    """
    s_hat = np.asarray(s_hat, dtype=np.float64)
    bad = np.flatnonzero(~np.isfinite(s_hat))
    return s_hat if bad.size == 0 else s_hat[: bad[0]]


def _layer_scores(entry: Any) -> torch.Tensor:
    scores = entry[0] if isinstance(entry, (tuple, list)) else entry
    return torch.as_tensor(scores)


def empirical_expected_scores(
    scores_per_layer: Sequence[Any],
    n_tokens: int | None = None,
) -> np.ndarray:
    """ŝ[n], the mean pre-softmax score of a query on the key n positions back (paper Eq. 11).

    ``ŝ[n] = 1/(N−n) Σ_{i=n}^{N−1} e_{i,i−n}`` per layer, averaged over batch and heads, then
    averaged over layers. Entries of −inf are pairs hidden by the attention mask (e.g.
    blockwise attention) and are left out of the mean, so ŝ[n] is the mean over the visible
    pairs at distance n, and NaN where no pair at that distance is visible.

    ``scores_per_layer``: one entry per layer, each a (..., T, T) score tensor — e.g.
    (B, H, T, T) — or a ``(scores, probs)`` tuple as returned by
    :meth:`lexformer.TransformerLM.attention_scores`; key j must be position j. ``n_tokens``
    (N, default T) restricts to the first N queries and keys. Returns float64 of length N.
    """
    if len(scores_per_layer) == 0:
        raise LexformerError("empirical_expected_scores needs at least one layer of scores")
    per_layer = []
    for entry in scores_per_layer:
        scores = _layer_scores(entry)
        if scores.ndim < 2 or scores.shape[-1] != scores.shape[-2]:
            raise LexformerError(
                f"expected (..., T, T) scores with key j at position j, got {tuple(scores.shape)}")
        T = scores.shape[-1]
        N = T if n_tokens is None else int(n_tokens)
        if not 1 <= N <= T:
            raise LexformerError(f"n_tokens must be in 1..{T}, got {n_tokens}")
        e = scores[..., :N, :N].reshape(-1, N, N)  # (batch·heads, N, N)
        # Skew: lagged[:, i, n] = e[:, i, i − n]; defined for n ≤ i (else index clamped, masked).
        i = torch.arange(N, device=e.device)[:, None]
        n = torch.arange(N, device=e.device)[None, :]
        index = (i - n).clamp_min(0)  # (N, N)
        lagged = torch.gather(e, 2, index.expand(e.shape[0], N, N))  # (batch·heads, N, N)
        keep = torch.isfinite(lagged) & (n <= i)  # hidden pairs are −inf; n > i does not exist
        total = torch.where(keep, lagged.double(), 0.0).sum(dim=(0, 1))  # (N,)
        count = keep.sum(dim=(0, 1))  # (N,)
        mean = total / count  # NaN (0/0) where nothing is visible
        per_layer.append(mean.cpu().numpy())
    lengths = {len(m) for m in per_layer}
    if len(lengths) != 1:
        raise LexformerError(f"layers disagree on the sequence length: {sorted(lengths)}")
    return np.mean(np.stack(per_layer), axis=0)


def _chunks(documents: Sequence[Any], length: int, max_docs: int | None,
            chunks_per_doc: int | None) -> torch.Tensor:
    rows = []
    for doc in documents[:max_docs] if max_docs is not None else documents:
        ids = torch.as_tensor(np.asarray(doc), dtype=torch.int64).reshape(-1)
        n = ids.numel() // length
        if chunks_per_doc is not None:
            n = min(n, chunks_per_doc)
        if n:
            rows.append(ids[: n * length].view(n, length))
    if not rows:
        raise LexformerError(f"no document holds {length} tokens: nothing to analyse")
    return torch.cat(rows)


def model_resolution(
    model: torch.nn.Module,
    documents: Sequence[np.ndarray | torch.Tensor],
    length: int,
    attention: str = "full",
    max_docs: int | None = None,
    batch_size: int | None = None,
    chunks_per_doc: int | None = None,
) -> dict[str, Any]:
    """ŝ and R(ŝ) of ``model`` on text chunks of ``length`` tokens, in one attention mode.

    Each document (1-D token ids) is cut into non-overlapping chunks of ``length`` tokens from
    its start (at most ``chunks_per_doc`` of them; a shorter tail is dropped); each chunk is
    a separate sequence at positions 0..length−1. ŝ is :func:`empirical_expected_scores` of
    every chunk, averaged over chunks; R is :func:`resolution` over the visible distances
    (all of 0..length−1 for full attention, 0..L−1 under blockwise attention at length ≥ L).

    ``batch_size`` None picks one that keeps the recorded scores and probabilities of all
    layers under ~1 GiB. Returns ``{"s_hat", "resolution", "length", "attention", "n_texts",
    "visible_distances"}``.
    """
    length = int(length)
    if length < 2:
        raise LexformerError(f"length must be at least 2, got {length}")
    chunks = _chunks(documents, length, max_docs, chunks_per_doc)  # (n_texts, length)
    if batch_size is None:
        cfg = getattr(model, "config", None)
        per_text = 2 * 4 * length * length * (cfg.n_head * cfg.n_layer if cfg else 64)
        batch_size = max(1, _RECORD_BUDGET_BYTES // per_text)
    device = next(model.parameters()).device
    was_training = model.training
    model.eval()
    total = np.zeros(length, dtype=np.float64)
    try:
        with torch.no_grad():
            for start in range(0, chunks.shape[0], batch_size):
                batch = chunks[start:start + batch_size].to(device)
                record = model.attention_scores(batch, attention=attention)
                total += empirical_expected_scores(record, length) * batch.shape[0]
                del record
    finally:
        model.train(was_training)
    s_hat = total / chunks.shape[0]  # NaN stays NaN: every text hides the same pairs
    visible = visible_prefix(s_hat)
    return {
        "s_hat": s_hat,
        "resolution": resolution(visible),
        "length": length,
        "attention": attention,
        "n_texts": int(chunks.shape[0]),
        "visible_distances": int(visible.size),
    }


# --------------------------------------------------------------------------- typed results
def _curve_to_json(s_hat: np.ndarray) -> list[float | None]:
    """NaN (a distance no query sees) becomes null: JSON has no NaN."""
    return [float(x) if np.isfinite(x) else None for x in np.asarray(s_hat, dtype=np.float64)]


def _curve_from_json(values: Sequence[float | None]) -> np.ndarray:
    return np.array([np.nan if x is None else float(x) for x in values], dtype=np.float64)


@dataclass
class ResolutionResult:
    """ŝ[n] and R(ŝ) of one model at one length in one attention mode."""

    attention: str
    length: int
    resolution: float
    s_hat: np.ndarray
    n_texts: int | None = None

    @property
    def key(self) -> str:
        return f"{self.attention}@{self.length}"

    def to_json(self) -> dict[str, Any]:
        return {"attention": self.attention, "length": self.length,
                "resolution": float(self.resolution), "s_hat": _curve_to_json(self.s_hat),
                "n_texts": self.n_texts}

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> ResolutionResult:
        return cls(attention=str(data["attention"]), length=int(data["length"]),
                   resolution=float(data["resolution"]), s_hat=_curve_from_json(data["s_hat"]),
                   n_texts=data.get("n_texts"))


@dataclass
class ModelAnalysis:
    """Attention resolution of one model: one :class:`ResolutionResult` per (mode, length).

    ``step`` identifies the checkpoint, so a saved analysis is reused only for the same one."""

    model: str
    head_dim: int
    results: list[ResolutionResult] = field(default_factory=list)
    step: int | None = None

    def get(self, attention: str, length: int) -> ResolutionResult:
        for r in self.results:
            if (r.attention, r.length) == (attention, length):
                return r
        raise KeyError(f"{self.model}: no resolution for {attention} at {length}")

    def to_json(self) -> dict[str, Any]:
        return {"model": self.model, "head_dim": self.head_dim, "step": self.step,
                "results": [r.to_json() for r in self.results]}

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> ModelAnalysis:
        return cls(model=str(data["model"]), head_dim=int(data["head_dim"]),
                   results=[ResolutionResult.from_json(r) for r in data["results"]],
                   step=data.get("step"))


@dataclass
class AnalysisResult:
    """Analytic resolutions (``analytic[curve][distance]``, curve "rope" or "xpos") and the
    measured ones of every model (``models[name]``)."""

    head_dim: int
    analytic: dict[str, dict[int, float]]
    models: dict[str, ModelAnalysis] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        return {"head_dim": self.head_dim,
                "analytic": {k: {str(n): v for n, v in per.items()}
                             for k, per in self.analytic.items()},
                "models": {k: m.to_json() for k, m in self.models.items()}}

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> AnalysisResult:
        return cls(head_dim=int(data["head_dim"]),
                   analytic={k: {int(n): float(v) for n, v in per.items()}
                             for k, per in data["analytic"].items()},
                   models={k: ModelAnalysis.from_json(m) for k, m in data["models"].items()})


#: the analytic curves compared: RoPE (no decay) and XPOS with the paper's γ
ANALYTIC_CURVES: dict[str, float | None] = {"rope": None, "xpos": 0.4}


@dataclass(frozen=True)
class ExpectationCurves:
    """Paper Figure 1's curves, computed: ``curves[name]`` is g[0..max_distance] and
    ``resolutions[name]`` its R, for all-ones q and k at ``head_dim``."""

    head_dim: int
    curves: dict[str, np.ndarray]
    resolutions: dict[str, float]

    @property
    def max_distance(self) -> int:
        return max((len(g) for g in self.curves.values()), default=1) - 1


def expectation_curves(head_dim: int = 64, max_distance: int = 4096,
                       gammas: Mapping[str, float | None] | None = None,
                       scale_base: float = 512.0) -> ExpectationCurves:
    """The expectation curve and its resolution for every ``name → γ`` of ``gammas`` (None:
    RoPE); default ``{"RoPE": None, "XPOS": 0.4}``, the figure's legend names."""
    gammas = {"RoPE": None, "XPOS": 0.4} if gammas is None else gammas
    curves = {name: expectation_curve(head_dim, max_distance, gamma, scale_base)
              for name, gamma in gammas.items()}
    return ExpectationCurves(head_dim, curves, {name: resolution(g)
                                                for name, g in curves.items()})


def analytic_resolutions(head_dim: int, distances: Sequence[int]) -> dict[str, dict[int, float]]:
    """R of the RoPE and XPOS expectation curves over 0..n for every n in ``distances``."""
    return {name: {int(n): analytic_resolution(head_dim, int(n), gamma) for n in distances}
            for name, gamma in ANALYTIC_CURVES.items()}


def analyze_model(model: torch.nn.Module, documents: Sequence[np.ndarray], lengths: Sequence[int],
                  attentions: Sequence[str], name: str | None = None,
                  step: int | None = None) -> ModelAnalysis:
    """:func:`model_resolution` of a lexformer model at every (attention, length)."""
    results = []
    for attention in attentions:
        for n in lengths:
            r = model_resolution(model, documents, n, attention)
            results.append(ResolutionResult(attention, int(n), float(r["resolution"]),
                                            np.asarray(r["s_hat"]), r["n_texts"]))
    return ModelAnalysis(model=name or model.config.position, head_dim=model.config.head_dim,
                         results=results, step=step)


def analyze_checkpoint(checkpoint, corpus: str, split: str, lengths: Sequence[int],
                       attentions: Sequence[str], max_docs: int | None = None) -> ModelAnalysis:
    """The measured resolution of a loaded checkpoint on ``corpus``/``split``: what
    ``lexformer analyze`` and the reproduction's analysis stage both run."""
    from .evaluate import evaluation_documents

    if not checkpoint.config.causal:  # resolution is defined over the keys behind a query
        raise LexformerError("attention resolution is defined for causal models; this "
                             "checkpoint is a bidirectional masked-LM encoder")
    docs = evaluation_documents(corpus, checkpoint.tokenizer, split, max(lengths), max_docs)
    return analyze_model(checkpoint.model, docs, lengths, attentions,
                         name=checkpoint.config.position, step=checkpoint.step)


__all__ = [
    "ANALYTIC_CURVES",
    "AnalysisResult",
    "ModelAnalysis",
    "ResolutionResult",
    "analytic_resolution",
    "analytic_resolutions",
    "analyze_checkpoint",
    "analyze_model",
    "empirical_expected_scores",
    "ExpectationCurves",
    "expectation_curve",
    "expectation_curves",
    "model_resolution",
    "resolution",
    "visible_prefix",
]
