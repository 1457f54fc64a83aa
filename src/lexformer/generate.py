"""Sampling from a trained model with a KV cache."""

from __future__ import annotations

import torch

from .model import TransformerLM


@torch.no_grad()
def generate(
    model: TransformerLM,
    prompt_ids: torch.Tensor,
    max_new_tokens: int,
    temperature: float = 1.0,
    top_k: int | None = None,
    attention: str = "blockwise",
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """Continue ``prompt_ids`` (B, T) by ``max_new_tokens``; returns (B, T + new).

    ``temperature=0`` is greedy decoding. In ``blockwise``/``sliding`` mode the cache holds at
    most L keys per layer, so per-token cost and memory stay flat for any length.
    """
    if prompt_ids.dim() == 1:
        prompt_ids = prompt_ids[None]
    if prompt_ids.shape[1] == 0:
        raise ValueError("the prompt must hold at least one token")
    model.eval()
    cache = model.new_cache(attention)
    logits = model(prompt_ids, attention=attention, cache=cache)[:, -1]
    out = [prompt_ids]
    for _ in range(max_new_tokens):
        if temperature == 0:
            next_id = logits.argmax(-1, keepdim=True)
        else:
            logits = logits.float() / temperature
            if top_k is not None:
                kth = torch.topk(logits, min(top_k, logits.shape[-1])).values[:, -1:]
                logits = logits.masked_fill(logits < kth, float("-inf"))
            next_id = torch.multinomial(torch.softmax(logits, -1), 1, generator=generator)
        out.append(next_id)
        logits = model(next_id, attention=attention, cache=cache)[:, -1]
    return torch.cat(out, dim=1)
