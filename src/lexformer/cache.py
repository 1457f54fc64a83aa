"""KV cache for incremental decoding (``docs/method.md#the-kv-cache``).

Keys are cached *before* the rotary transform, with their positions. Every decoding step
rotates the cached keys afresh with positions re-centred on the new query: the XPOS factors
stay ≤ 1 however long the sequence grows, and cached decoding equals the full pass (an
XPOS cache of rotated keys with a drifting centre is what makes public implementations
disagree with their own full pass). In ``blockwise`` and ``sliding`` modes the cache is
trimmed after every step to the keys a future query can still see, so it never holds more
than L keys per layer and memory stays constant however long generation runs.
"""

from __future__ import annotations

import torch

from .attention import AttentionSpec


class KVCache:
    def __init__(self, n_layer: int, spec: AttentionSpec) -> None:
        self.spec = spec
        self.next_pos = 0
        self._k: list[torch.Tensor | None] = [None] * n_layer
        self._v: list[torch.Tensor | None] = [None] * n_layer
        self._pos: list[torch.Tensor | None] = [None] * n_layer

    def is_empty(self, layer: int) -> bool:
        return self._k[layer] is None

    def extend(self, layer: int, k: torch.Tensor, v: torch.Tensor, pos: torch.Tensor):
        """Append (B, H, T, D) keys/values at positions ``pos``; return all cached ones."""
        if self._k[layer] is not None:
            k = torch.cat((self._k[layer], k), dim=-2)
            v = torch.cat((self._v[layer], v), dim=-2)
            pos = torch.cat((self._pos[layer], pos))
        self._k[layer], self._v[layer], self._pos[layer] = k, v, pos
        return k, v, pos

    def advance(self, n_tokens: int) -> None:
        """Move past ``n_tokens`` new tokens and drop keys no future query can see."""
        self.next_pos += n_tokens
        first = self.spec.first_visible(self.next_pos)
        for i, pos in enumerate(self._pos):
            if pos is not None and int(pos[0]) < first:
                keep = int((pos < first).sum())
                # clone: a slice would keep the whole old buffer alive
                self._k[i] = self._k[i][..., keep:, :].clone()
                self._v[i] = self._v[i][..., keep:, :].clone()
                self._pos[i] = pos[keep:].clone()

    def nbytes(self) -> int:
        """Bytes held by the cached keys, values and positions, all layers together."""
        return sum(t.numel() * t.element_size()
                   for held in (self._k, self._v, self._pos) for t in held if t is not None)

    def __len__(self) -> int:
        """Number of cached key positions (the same in every layer)."""
        return 0 if self._pos[0] is None else int(self._pos[0].numel())
