"""Perplexity by length, the paper's protocol.

Keep the documents that hold at least N = max(lengths) tokens, take the same first N tokens
of each, and split them into chunks of every target length, so that every length scores the
same tokens. Each chunk is a standalone sequence; its first token has no context and is not
scored. Perplexity = exp(mean token NLL).

The model is reached only through :class:`lexformer.lm.LanguageModel` (``token_nll``), so a
model trained here and a pretrained one are measured by the same code. A masked-LM encoder is
measured by the same loop (:func:`evaluate_by_length` with the masked targets, scored through
``LanguageModel.score``): masked-token loss and accuracy, :class:`MaskedLengthResult`.
Results are typed (:class:`LengthResult`, :class:`PerplexityResult` and their masked-LM
kinds); their JSON form is produced and read only by their ``to_json`` / ``from_json``.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, ClassVar, NamedTuple

import numpy as np
import torch
from typing_extensions import Self

from .errors import LexformerError
from .lm import BATCH_TOKENS, LanguageModel, LexformerLM, default_lengths, score_sequences
from .model import IGNORE_INDEX, TransformerLM
from .stats import perplexity_interval, resample_indices, resampled_ratio

#: tokens per forward pass (the library-wide batching of lexformer.lm.score_sequences)
EVAL_BATCH_TOKENS = BATCH_TOKENS


class Label(NamedTuple):
    """One evaluated configuration: a position scheme (or model name) and an attention mode."""

    scheme: str
    attention: str

    def __str__(self) -> str:
        return f"{self.scheme} / {self.attention}"


@dataclass
class LengthResult:
    """Perplexity of one model, one attention mode, one length.

    ``doc_nll`` holds each document's summed NLL at this length (for the paired bootstrap);
    every document contributes the same number of scored tokens, ``tokens / documents``.
    Where the resampling unit is a block of a document rather than a document
    (:mod:`lexformer.prefix_eval`), ``doc_nll`` holds the blocks' sums and ``unit_tokens``
    their target counts.
    """

    length: int
    perplexity: float
    nll: float
    tokens: int
    documents: int
    ci95: tuple[float, float] | None = None
    doc_nll: tuple[float, ...] = ()
    unit_tokens: tuple[int, ...] = ()

    @property
    def tokens_per_document(self) -> float:
        return self.tokens / self.documents

    @property
    def unit_token_counts(self) -> tuple[int, ...] | float:
        """Targets in each entry of ``doc_nll`` (a sequence, or one count for all)."""
        return self.unit_tokens or self.tokens_per_document

    def to_json(self) -> dict[str, Any]:
        data = {"perplexity": self.perplexity, "nll": self.nll, "tokens": self.tokens,
                "documents": self.documents,
                "ci95": list(self.ci95) if self.ci95 is not None else None,
                "doc_nll": list(self.doc_nll)}
        if self.unit_tokens:  # absent from results resampled by documents, as before
            data["unit_tokens"] = list(self.unit_tokens)
        return data

    @classmethod
    def from_json(cls, length: int | str, data: Mapping[str, Any]) -> LengthResult:
        ci = data.get("ci95")
        return cls(length=int(length), perplexity=float(data["perplexity"]),
                   nll=float(data["nll"]), tokens=int(data["tokens"]),
                   documents=int(data["documents"]),
                   ci95=(float(ci[0]), float(ci[1])) if ci else None,
                   doc_nll=tuple(float(x) for x in data.get("doc_nll", ())),
                   unit_tokens=tuple(int(x) for x in data.get("unit_tokens", ())))


@dataclass
class MaskedLengthResult(LengthResult):
    """Masked-token loss and accuracy of one encoder, one attention mode, one length.

    ``loss`` is ``nll`` (mean NLL per masked token) and ``masked`` is ``tokens``;
    ``perplexity`` and ``ci95`` are their exponentials. ``doc_nll``, ``doc_correct`` and
    ``doc_masked`` hold each document's summed NLL, correct predictions and masked tokens,
    for the bootstrap over documents; every length scores the same masked tokens of the same
    documents. The JSON form is the masked-LM one (loss, accuracy, masked, loss_ci95...).
    """

    accuracy: float = 0.0
    loss_ci95: tuple[float, float] | None = None
    doc_correct: tuple[int, ...] = ()
    doc_masked: tuple[int, ...] = ()

    @property
    def loss(self) -> float:
        return self.nll

    @property
    def masked(self) -> int:
        return self.tokens

    @classmethod
    def of(cls, length: int, loss: float, accuracy: float, masked: int, documents: int,
           **per_document: Any) -> MaskedLengthResult:
        """From the masked-LM quantities (the exponentials follow)."""
        ci = per_document.get("loss_ci95")
        return cls(length=length, perplexity=math.exp(loss), nll=loss, tokens=masked,
                   documents=documents, accuracy=accuracy,
                   ci95=(math.exp(ci[0]), math.exp(ci[1])) if ci is not None else None,
                   **per_document)

    def to_json(self) -> dict[str, Any]:
        return {"loss": self.loss, "accuracy": self.accuracy, "masked": self.masked,
                "documents": self.documents,
                "loss_ci95": list(self.loss_ci95) if self.loss_ci95 is not None else None,
                "doc_nll": list(self.doc_nll), "doc_correct": list(self.doc_correct),
                "doc_masked": list(self.doc_masked)}

    @classmethod
    def from_json(cls, length: int | str, data: Mapping[str, Any]) -> MaskedLengthResult:
        ci = data.get("loss_ci95")
        return cls.of(int(length), loss=float(data["loss"]), accuracy=float(data["accuracy"]),
                      masked=int(data["masked"]), documents=int(data["documents"]),
                      loss_ci95=(float(ci[0]), float(ci[1])) if ci else None,
                      doc_nll=tuple(float(x) for x in data.get("doc_nll", ())),
                      doc_correct=tuple(int(x) for x in data.get("doc_correct", ())),
                      doc_masked=tuple(int(x) for x in data.get("doc_masked", ())))


@dataclass
class PerplexityResult:
    """Perplexity of one model: ``results[attention][length]``, with where it was measured.

    ``checkpoint`` and ``step`` identify the exact weights and ``corpus_fingerprint`` the
    exact text (:attr:`lexformer.data.Corpus.fingerprint`), so a saved result is reused only
    for the same model on the same documents; None in results saved before it was kept."""

    model: str
    corpus: str
    split: str
    results: dict[str, dict[int, LengthResult]]
    checkpoint: str | None = None
    step: int | None = None
    seconds: float | None = None
    extra: dict[str, Any] = field(default_factory=dict)
    corpus_fingerprint: str | None = None

    @property
    def lengths(self) -> list[int]:
        return sorted({n for per in self.results.values() for n in per})

    @property
    def attentions(self) -> list[str]:
        return list(self.results)

    def perplexity(self, attention: str, length: int) -> float:
        return self.results[attention][length].perplexity

    #: the type of each cell of ``results``
    cell: ClassVar[type[LengthResult]] = LengthResult

    def to_json(self) -> dict[str, Any]:
        return {"model": self.model, "corpus": self.corpus, "split": self.split,
                "checkpoint": self.checkpoint, "step": self.step, "seconds": self.seconds,
                "lengths": self.lengths, **self.extra,
                **({"corpus_fingerprint": self.corpus_fingerprint}
                   if self.corpus_fingerprint is not None else {}),
                "results": {a: {str(n): r.to_json() for n, r in per.items()}
                            for a, per in self.results.items()}}

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Self:
        known = {"model", "corpus", "split", "checkpoint", "step", "seconds", "lengths",
                 "results", "corpus_fingerprint"}
        return cls(model=str(data.get("model", "")), corpus=str(data.get("corpus", "")),
                   split=str(data.get("split", "test")),
                   results={a: {int(n): cls.cell.from_json(n, r) for n, r in per.items()}
                            for a, per in data["results"].items()},
                   checkpoint=data.get("checkpoint"), step=data.get("step"),
                   seconds=data.get("seconds"), corpus_fingerprint=data.get("corpus_fingerprint"),
                   extra={k: v for k, v in data.items() if k not in known})


@dataclass
class MaskedLMResult(PerplexityResult):
    """:class:`PerplexityResult` of an encoder: ``results[attention][length]`` are
    :class:`MaskedLengthResult`; its JSON names no checkpoint unless one is set."""

    cell: ClassVar[type[LengthResult]] = MaskedLengthResult

    def to_json(self) -> dict[str, Any]:
        data = super().to_json()
        if self.checkpoint is None:
            del data["checkpoint"]  # the masked-LM results never held one
        return data


def as_language_model(model: LanguageModel | TransformerLM) -> LanguageModel:
    """A bare :class:`TransformerLM` wrapped as a :class:`LexformerLM`; anything else as is."""
    return LexformerLM(model) if isinstance(model, TransformerLM) else model


def check_lengths(lengths: Sequence[int], model: LanguageModel | TransformerLM | None = None,
                  attentions: Sequence[str] | None = None) -> list[int]:
    """Sorted distinct lengths, each ≥ 2 and dividing the largest, within what the model can
    score under every requested attention method."""
    lengths = sorted({int(x) for x in lengths})
    if not lengths or lengths[0] < 2:
        raise LexformerError("lengths must be integers ≥ 2, e.g. --lengths 64,128,256")
    top = lengths[-1]
    bad = [x for x in lengths if top % x]
    if bad:
        raise LexformerError(
            f"every length must divide the largest ({top}) so all lengths score the same "
            f"tokens; {', '.join(map(str, bad))} do(es) not")
    if model is not None:
        lm = as_language_model(model)
        for attention in attentions or lm.attention_methods[:1]:
            limit = lm.max_length(attention)
            if limit is not None and top > limit:
                raise LexformerError(
                    f"{lm.name} cannot evaluate past length {limit} with {attention} "
                    "attention (learned positions stop at their training length, SelfExtend "
                    f"where its grouped positions reach L, a RoPE target_length there); got {top}")
    return lengths


def _progress_bar(total: int, progress: bool, desc: str = "eval"):
    from .progress import progress_bar

    return progress_bar(total, desc, progress, unit="setting", leave=False)


def document_nll(model: LanguageModel, tokens: torch.Tensor, length: int, attention: str,
                 batch_tokens: int = EVAL_BATCH_TOKENS) -> np.ndarray:
    """Summed NLL of each document (rows of ``tokens``, (n_docs, N)) scored in chunks of
    ``length``; float64, shape (n_docs,)."""
    n_docs, top = tokens.shape
    chunks = tokens.reshape(-1, length)  # document d owns rows d·(N/length) … (d+1)·(N/length)−1
    nll = score_sequences(model, chunks, attention, batch_tokens)  # (chunks, length − 1) fp32
    chunk_nll = nll.double().sum(dim=1).numpy()
    return chunk_nll.reshape(n_docs, top // length).sum(axis=1)


def masked_document_scores(model: LanguageModel, inputs: torch.Tensor, targets: torch.Tensor,
                           length: int, attention: str, batch_tokens: int = EVAL_BATCH_TOKENS
                           ) -> tuple[np.ndarray, np.ndarray]:
    """Summed NLL (float64) and correct predictions of each document's masked tokens, the
    documents ((n_docs, N) inputs and targets) scored in standalone chunks of ``length``
    through ``model.score``; each (n_docs,)."""
    n_docs, top = inputs.shape
    chunks, wanted = inputs.reshape(-1, length), targets.reshape(-1, length)
    per_batch = max(1, batch_tokens // length)
    nll, correct = [], []
    for i in range(0, len(chunks), per_batch):
        scores = model.score(chunks[i: i + per_batch], wanted[i: i + per_batch], attention)
        nll.append(scores.nll.double().sum(dim=1).cpu())
        correct.append(scores.correct.sum(dim=1).cpu())
    per_document = (n_docs, top // length)
    return (torch.cat(nll).reshape(per_document).sum(dim=1).numpy(),
            torch.cat(correct).reshape(per_document).sum(dim=1).numpy())


def length_result(doc_nll: np.ndarray, length: int, top: int, indices) -> LengthResult:
    """The perplexity cell of ``length`` from each document's summed NLL over its N = ``top``
    tokens in chunks of ``length`` (the first token of each unscored); ``indices``: the
    bootstrap resamples (None for one document)."""
    n_docs = len(doc_nll)
    tokens = n_docs * (top // length) * (length - 1)
    mean = float(doc_nll.sum()) / tokens
    return LengthResult(length=length, perplexity=math.exp(mean), nll=mean, tokens=tokens,
                        documents=n_docs,
                        ci95=perplexity_interval(doc_nll, tokens / n_docs, indices),
                        doc_nll=tuple(float(x) for x in doc_nll))


def masked_length_result(doc_nll: np.ndarray, doc_correct: np.ndarray, doc_masked: np.ndarray,
                         length: int, indices) -> MaskedLengthResult:
    """The masked-LM cell of ``length`` from each document's summed NLL, correct predictions
    and masked tokens."""
    total = int(doc_masked.sum())
    return MaskedLengthResult.of(
        length, loss=float(doc_nll.sum()) / total, accuracy=float(doc_correct.sum()) / total,
        masked=total, documents=len(doc_nll),
        loss_ci95=loss_interval(doc_nll, doc_masked, indices),
        doc_nll=tuple(float(x) for x in doc_nll),
        doc_correct=tuple(int(x) for x in doc_correct),
        doc_masked=tuple(int(x) for x in doc_masked))


def loss_interval(doc_nll: Sequence[float], doc_masked: Sequence[int],
                  indices: np.ndarray | None) -> tuple[float, float] | None:
    """Percentile bootstrap 95 % interval of Σ nll / Σ masked over documents (None for one
    document: nothing to resample)."""
    if indices is None or len(doc_nll) < 2:
        return None
    # the literal 2.5 / 97.5 (not stats.ratio_interval's (1 - 0.95) / 2 · 100, which rounds to
    # 2.5000000000000004) keeps the saved intervals bit-identical to earlier runs
    lo, hi = np.percentile(resampled_ratio(doc_nll, doc_masked, indices), [2.5, 97.5])
    return float(lo), float(hi)


def evaluate_by_length(
    model: LanguageModel,
    tokens: torch.Tensor,
    lengths: Sequence[int],
    attentions: Sequence[str],
    targets: torch.Tensor | None = None,
    progress: bool = True,
    batch_tokens: int = EVAL_BATCH_TOKENS,
) -> dict[str, dict[int, LengthResult]]:
    """``{attention: {length: cell}}`` over the documents ``tokens`` (n_docs, N), N =
    max(``lengths``), each cut into standalone chunks of every length (checked lengths).

    Without ``targets``: next-token perplexity (:class:`LengthResult`, ``token_nll``). With
    ``targets`` (n_docs, N; ``IGNORE_INDEX`` where nothing is scored): the loss and accuracy
    of those targets (:class:`MaskedLengthResult`, ``score``): a masked-LM encoder's inputs
    and masked tokens. One set of bootstrap resamples serves every model and mode."""
    n_docs, top = tokens.shape
    indices = resample_indices(n_docs) if n_docs > 1 else None
    doc_masked = None if targets is None else (targets != IGNORE_INDEX).sum(dim=1).numpy()
    results: dict[str, dict[int, LengthResult]] = {}
    bar = _progress_bar(len(attentions) * len(lengths), progress)
    try:
        for attention in attentions:
            for n in lengths:
                if targets is None:
                    cell = length_result(document_nll(model, tokens, n, attention,
                                                      batch_tokens), n, top, indices)
                else:
                    scores = masked_document_scores(model, tokens, targets, n, attention,
                                                    batch_tokens)
                    cell = masked_length_result(*scores, doc_masked, n, indices)
                results.setdefault(attention, {})[n] = cell
                if bar is not None:
                    bar.set_postfix(attention=attention, length=n, ppl=f"{cell.perplexity:.2f}")
                    bar.update(1)
    finally:
        if bar is not None:
            bar.close()
    return results


def evaluate_perplexity(
    model: LanguageModel | TransformerLM,
    documents: Iterable[np.ndarray],
    lengths: Sequence[int],
    attentions: Sequence[str] = ("full", "blockwise"),
    progress: bool = True,
    batch_tokens: int = EVAL_BATCH_TOKENS,
) -> dict[str, dict[int, LengthResult]]:
    """``{attention: {length: LengthResult}}`` with a 95 % bootstrap interval per cell.

    ``documents`` are token arrays of exactly N = max(lengths) tokens (see
    :func:`evaluation_documents`)."""
    lm = as_language_model(model)
    lengths = check_lengths(lengths, lm, attentions)
    docs = [np.asarray(d, dtype=np.int64) for d in documents]
    top = lengths[-1]
    if not docs:
        raise LexformerError("no documents to evaluate")
    if any(len(d) != top for d in docs):
        raise LexformerError(f"every evaluation document must hold exactly {top} tokens")
    tokens = torch.from_numpy(np.stack(docs))  # (n_docs, N)
    return evaluate_by_length(lm, tokens, lengths, attentions, progress=progress,
                              batch_tokens=batch_tokens)


def evaluate_model(model: LanguageModel, corpus: str, split: str, lengths: Sequence[int],
                   attentions: Sequence[str], max_docs: int | None = None,
                   progress: bool = True, checkpoint: str | None = None,
                   step: int | None = None) -> PerplexityResult:
    """Evaluate ``model`` on ``corpus``/``split`` at ``lengths``: the documents and the
    measurement in one call, as a :class:`PerplexityResult`."""
    import time

    lengths = check_lengths(lengths, model, attentions)
    docs = evaluation_documents(corpus, model, split, lengths[-1], max_docs)
    started = time.time()
    results = evaluate_perplexity(model, docs, lengths, attentions, progress=progress)
    return PerplexityResult(model=model.name, corpus=corpus, split=split, results=results,
                            checkpoint=checkpoint, step=step, seconds=time.time() - started,
                            corpus_fingerprint=corpus_fingerprint(corpus))


def corpus_fingerprint(name_or_path: str) -> str:
    """The content fingerprint of a corpus as it is now (a user's folder may have been
    edited since a result was saved): what every reused result is compared on."""
    from .data import load_corpus

    return load_corpus(name_or_path).fingerprint


def format_cell(result: LengthResult) -> str:
    """``81.12 ±0.90``: the perplexity and half the width of its 95 % interval."""
    if result.ci95 is None:
        return f"{result.perplexity:.2f}"
    return f"{result.perplexity:.2f} ±{(result.ci95[1] - result.ci95[0]) / 2:.2f}"


def format_table(results: Mapping[str, Mapping[int, LengthResult]], title: str = "") -> str:
    """Plain-text table: attention modes down, lengths across; ± is half the 95 % interval."""
    lengths = sorted({n for per in results.values() for n in per})
    width = max([16] + [len(format_cell(r)) + 2 for per in results.values()
                        for r in per.values()])
    rows = [f"{title:<12}" + "".join(f"{n:>{width}}" for n in lengths)]
    for attention, per in results.items():
        rows.append(f"{attention:<12}" + "".join(
            f"{format_cell(per[n]):>{width}}" if n in per else f"{'-':>{width}}"
            for n in lengths))
    return "\n".join(rows)


def _corpus_tokenizer(tokenizer_or_model: Any):
    """The tokenizer that tokenizes a corpus for ``tokenizer_or_model``: a model's
    ``corpus_tokenizer`` (pretrained models: their tokenizer in the token cache's shape), else
    its ``tokenizer``, else the object itself."""
    adapted = getattr(tokenizer_or_model, "corpus_tokenizer", None)
    if adapted is not None:
        return adapted
    tokenizer = getattr(tokenizer_or_model, "tokenizer", tokenizer_or_model)
    if tokenizer is None:
        raise LexformerError("this model has no tokenizer: cannot tokenize a corpus for it")
    if not hasattr(tokenizer, "to_json") and hasattr(tokenizer, "backend_tokenizer"):
        from .hf.tokenizer import corpus_tokenizer  # a bare transformers tokenizer

        return corpus_tokenizer(tokenizer)
    return tokenizer


def evaluation_documents(corpus_name: str, tokenizer_or_model: Any, split: str,
                         max_length: int, max_docs: int | None = None,
                         cache_dir: str | None = None) -> list[np.ndarray]:
    """The first ``max_length`` tokens of each document of ``split`` long enough to hold them
    (at most ``max_docs``, ≥ 1, of them). ``split`` ``all``: every document of the user's
    files, whole (see :func:`lexformer.data.load_split_corpus`). Takes a tokenizer (lexformer's
    or a transformers fast tokenizer) or a model that has one; the tokens are cached per
    tokenizer."""
    from .data import check_split, eval_documents, load_split_corpus, tokenize_corpus

    if max_docs is not None and max_docs < 1:
        raise LexformerError(f"max_docs must be at least 1, got {max_docs}")
    check_split(corpus_name, split)
    tokenizer = _corpus_tokenizer(tokenizer_or_model)
    corpus, read = load_split_corpus(corpus_name, split, cache_dir=cache_dir)
    tokens = tokenize_corpus(corpus, tokenizer, cache_dir=cache_dir)
    if read not in tokens.splits or len(tokens.splits[read].tokens) == 0:
        raise LexformerError(f"corpus {corpus_name!r} has no {split!r} text")
    docs = eval_documents(tokens.splits[read], max_length)
    return docs[:max_docs] if max_docs is not None else docs


__all__ = ["EVAL_BATCH_TOKENS", "Label", "LengthResult", "MaskedLMResult", "MaskedLengthResult",
           "PerplexityResult", "as_language_model", "check_lengths", "corpus_fingerprint",
           "default_lengths",
           "document_nll", "evaluate_by_length", "evaluate_model", "evaluate_perplexity",
           "evaluation_documents", "format_cell", "format_table", "length_result",
           "loss_interval", "masked_document_scores", "masked_length_result"]
