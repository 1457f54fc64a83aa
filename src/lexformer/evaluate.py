"""Perplexity by length, the paper's protocol (SPEC §4).

Keep the documents that hold at least N = max(lengths) tokens, take the same first N tokens
of each, and split them into chunks of every target length, so that every length scores the
same tokens. Each chunk is a standalone sequence; its first token has no context and is not
scored. Perplexity = exp(mean token NLL).
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from .errors import LexformerError
from .model import TransformerLM

#: chunks per forward pass are grouped so that one batch holds about this many tokens
EVAL_BATCH_TOKENS = 16384


@torch.no_grad()
def chunk_nll(
    model: TransformerLM,
    chunks: torch.Tensor,
    attention: str,
    batch_tokens: int = EVAL_BATCH_TOKENS,
    autocast_dtype: torch.dtype | None = None,
) -> tuple[float, int]:
    """Summed NLL and number of scored tokens over chunks (n, length)."""
    model.eval()
    device = next(model.parameters()).device
    length = chunks.shape[1]
    per_batch = max(1, batch_tokens // length)
    total, count = 0.0, 0
    for i in range(0, len(chunks), per_batch):
        batch = chunks[i: i + per_batch].to(device)
        if autocast_dtype is not None:
            with torch.autocast(device.type, dtype=autocast_dtype):
                logits = model(batch, attention=attention)
        else:
            logits = model(batch, attention=attention)
        nll = F.cross_entropy(logits[:, :-1].float().flatten(0, 1), batch[:, 1:].flatten(),
                              reduction="sum")
        total += nll.item()
        count += batch[:, 1:].numel()
    return total, count


def check_lengths(lengths: Sequence[int], model: TransformerLM | None = None) -> list[int]:
    lengths = sorted({int(x) for x in lengths})
    if not lengths or lengths[0] < 2:
        raise LexformerError("lengths must be integers ≥ 2, e.g. --lengths 64,128,256")
    top = lengths[-1]
    bad = [x for x in lengths if top % x]
    if bad:
        raise LexformerError(
            f"every length must divide the largest ({top}) so all lengths score the same "
            f"tokens; {', '.join(map(str, bad))} do(es) not")
    if model is not None and model.config.position == "learned" and top > model.config.train_length:
        raise LexformerError(
            f"the 'learned' scheme cannot evaluate past its training length "
            f"{model.config.train_length}; got {top}")
    return lengths


def evaluate_perplexity(
    model: TransformerLM,
    documents: Iterable[np.ndarray],
    lengths: Sequence[int],
    attentions: Sequence[str] = ("full", "blockwise"),
    progress: bool = True,
    autocast_dtype: torch.dtype | None = None,
) -> dict[str, dict[int, dict[str, Any]]]:
    """``{attention: {length: {"perplexity", "nll", "tokens", "documents"}}}``.

    ``documents`` are token arrays of exactly N = max(lengths) tokens (see
    :func:`lexformer.data.eval_documents`).
    """
    lengths = check_lengths(lengths, model)
    docs = [np.asarray(d, dtype=np.int64) for d in documents]
    top = lengths[-1]
    if not docs:
        raise LexformerError("no documents to evaluate")
    if any(len(d) != top for d in docs):
        raise LexformerError(f"every evaluation document must hold exactly {top} tokens")
    tokens = torch.from_numpy(np.stack(docs))  # (n_docs, N)
    results: dict[str, dict[int, dict[str, Any]]] = {}
    jobs = [(a, n) for a in attentions for n in lengths]
    bar = None
    if progress:
        from tqdm.auto import tqdm

        bar = tqdm(total=len(jobs), desc="eval", unit="setting", dynamic_ncols=True,
                   leave=False)
    for attention, n in jobs:
        chunks = tokens.reshape(-1, n)  # every document's first N tokens, in chunks of n
        nll, count = chunk_nll(model, chunks, attention, autocast_dtype=autocast_dtype)
        results.setdefault(attention, {})[n] = {
            "perplexity": math.exp(nll / count),
            "nll": nll / count,
            "tokens": count,
            "documents": len(docs),
        }
        if bar is not None:
            bar.set_postfix(attention=attention, length=n,
                            ppl=f"{results[attention][n]['perplexity']:.2f}")
            bar.update(1)
    if bar is not None:
        bar.close()
    return results


def format_table(results: dict[str, dict[int, dict[str, Any]]], title: str = "") -> str:
    """Plain-text table: attention modes down, lengths across."""
    lengths = sorted({n for per in results.values() for n in per})
    head = f"{title:<12}" + "".join(f"{n:>10}" for n in lengths)
    rows = [head]
    for attention, per in results.items():
        rows.append(f"{attention:<12}" + "".join(
            f"{per[n]['perplexity']:>10.2f}" if n in per else f"{'-':>10}" for n in lengths))
    return "\n".join(rows)


def default_lengths(train_length: int) -> list[int]:
    """L/4, L/2, L, 2L, 4L, 8L, 16L."""
    return [train_length * 2 ** k // 4 for k in range(7) if train_length * 2 ** k // 4 >= 2]


def evaluation_documents(corpus_name: str, tokenizer, split: str, max_length: int,
                         max_docs: int | None = None, cache_dir: str | None = None):
    """The first ``max_length`` tokens of each document of ``split`` long enough to hold them."""
    from .data import eval_documents, load_corpus, tokenize_corpus

    corpus = load_corpus(corpus_name, cache_dir=cache_dir)
    tokens = tokenize_corpus(corpus, tokenizer, cache_dir=cache_dir)
    docs = eval_documents(tokens.splits[split], max_length)
    return docs[:max_docs] if max_docs else docs
