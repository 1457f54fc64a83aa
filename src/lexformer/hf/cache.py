"""A bounded KV cache for generating with the window methods.

Every window method except SelfExtend sees, from any later query, only a fixed prefix (its
sink or global tokens) plus keys at or after some position that only moves forward
(:func:`lexformer.hf.plans.first_needed`). :class:`WindowLayer` (a transformers
``DynamicLayer``) therefore keeps the prefix and that tail and drops the rest after each
step, so memory stays O(window) however long generation runs. ``update`` still returns the
full keys of the current step; ``get_seq_length`` counts every token seen, which is how
transformers numbers the next positions. The attention engine learns the layout from the
query positions (:func:`lexformer.hf.windowed.window_attention`).
"""

from __future__ import annotations

import torch
from transformers.cache_utils import Cache, DynamicLayer

from .methods import WindowSettings
from .plans import first_needed, prefix_tokens


class WindowLayer(DynamicLayer):
    """One layer's keys and values: the method's prefix plus the tail still visible."""

    is_croppable = False

    def __init__(self, settings: WindowSettings):
        super().__init__()
        self.settings = settings
        self.cumulative_length = 0

    def update(self, key_states: torch.Tensor, value_states: torch.Tensor, *args, **kwargs):
        if not self.is_initialized:
            self.lazy_initialization(key_states, value_states)
        keys = torch.cat([self.keys, key_states], dim=-2)
        values = torch.cat([self.values, value_states], dim=-2)
        self.cumulative_length += key_states.shape[-2]
        self.keys, self.values = self._retain(keys), self._retain(values)
        return keys, values

    def _retain(self, x: torch.Tensor) -> torch.Tensor:
        """The prefix and the keys from ``first_needed(next position)`` on."""
        end = self.cumulative_length
        evicted = end - x.shape[-2]
        prefix = prefix_tokens(self.settings)
        start = first_needed(self.settings, end)
        if start <= prefix + evicted:  # nothing more to drop
            return x
        return torch.cat((x[..., :prefix, :], x[..., start - evicted:, :]), dim=-2)

    def get_seq_length(self) -> int:
        return self.cumulative_length

    def get_mask_sizes(self, query_length: int) -> tuple[int, int]:
        # No mask is built for lexformer's attention; these are the sizes the layer holds.
        held = self.keys.shape[-2] if self.is_initialized else 0
        return held + query_length, 0


def window_cache(model, settings: WindowSettings) -> Cache | None:
    """A transformers ``Cache`` of :class:`WindowLayer` s for ``model``, or ``None`` where the
    method can need any key (SelfExtend)."""
    if first_needed(settings, 0) is None:
        return None
    n_layers = model.config.get_text_config(decoder=True).num_hidden_layers
    return Cache(layers=[WindowLayer(settings) for _ in range(n_layers)])


__all__ = ["WindowLayer", "window_cache"]
