"""A bounded KV cache for generating with the window methods.

Every window method except SelfExtend sees, from any later query, only a fixed prefix (its
sink or global tokens) plus keys at or after some position that only moves forward
(:func:`lexformer.hf.plans.first_needed`). :class:`WindowLayer` (a transformers
``DynamicLayer``) therefore keeps the prefix and that tail and drops the rest, so memory
stays O(window) however long generation runs. ``update`` returns the keys the current step
attends to; ``get_seq_length`` counts every token seen, which is how transformers numbers
the next positions. The attention engine learns the layout from the query positions
(:func:`lexformer.hf.windowed.window_attention`).

A decoding step must not copy the whole window (transformers' ``DynamicLayer`` concatenates
the cache to every new token, which at a window of thousands of keys costs more than the
attention itself). The held keys therefore live in a buffer with spare room: a new token is
written after the tail in place, and dropping keys from the front of the tail moves only the
few prefix entries forward, to sit again just before the tail, so that prefix and tail stay
one contiguous view. Keys invisible from the next position on are dropped at the start of
the next step, not at the end of this one: this step's queries still read them through the
view just returned. When the room runs out, or a long prompt arrives, the held keys and the
new ones are copied once into a buffer twice as large as what is kept, so copying costs O(1)
per token on average.
"""

from __future__ import annotations

import torch
from transformers.cache_utils import Cache, DynamicLayer

from .methods import WindowSettings
from .plans import first_needed, prefix_tokens


class WindowLayer(DynamicLayer):
    """One layer's keys and values: the method's prefix plus the tail still visible.

    ``keys`` / ``values`` (B, H, held, D) are views of ``[lo, hi)`` of a larger buffer;
    whoever replaces them (transformers' beam reordering, offloading) makes them the new
    buffer.
    """

    is_croppable = False

    def __init__(self, settings: WindowSettings):
        super().__init__()
        self.settings = settings
        self.cumulative_length = 0
        self._buffers: tuple[torch.Tensor, torch.Tensor] | None = None
        self._published: torch.Tensor | None = None
        self._lo = self._hi = 0

    def update(self, key_states: torch.Tensor, value_states: torch.Tensor, *args, **kwargs):
        if not self.is_initialized:
            self.lazy_initialization(key_states, value_states)
        self._adopt_replaced()
        self._drop_invisible()
        n = key_states.shape[-2]
        buffer_k, buffer_v = self._buffers
        room = buffer_k.shape[-2] if buffer_k.dim() == 4 else 0  # 0: the empty start
        if self._hi + n <= room:  # append in place
            buffer_k[..., self._hi:self._hi + n, :] = key_states
            buffer_v[..., self._hi:self._hi + n, :] = value_states
            self._hi += n
            self.cumulative_length += n
            self._publish()
            return self.keys, self.values
        # a long prompt, or no room left: the step attends to one fresh copy, and what stays
        # visible is re-buffered with room to spare
        keys = torch.cat([self.keys, key_states], dim=-2)
        values = torch.cat([self.values, value_states], dim=-2)
        self.cumulative_length += n
        keys_kept, values_kept = self._retain(keys), self._retain(values)
        kept = keys_kept.shape[-2]
        self._buffers = (_with_room(keys_kept, 2 * kept + 16),
                         _with_room(values_kept, 2 * kept + 16))
        self._lo, self._hi = 0, kept
        self._publish()
        return keys, values

    def _publish(self) -> None:
        buffer_k, buffer_v = self._buffers
        self.keys = buffer_k[..., self._lo:self._hi, :]
        self.values = buffer_v[..., self._lo:self._hi, :]
        self._published = self.keys

    def _adopt_replaced(self) -> None:
        """Keys / values that someone else assigned (or the empty start) become the buffer."""
        if self._buffers is not None and self.keys is self._published:
            return
        self._buffers = (self.keys, self.values)
        self._lo, self._hi = 0, (self.keys.shape[-2] if self.keys.dim() == 4 else 0)

    def _drop_invisible(self) -> None:
        """Forget the tail keys that no query from ``cumulative_length`` on can see."""
        prefix = prefix_tokens(self.settings)
        held = self._hi - self._lo
        evicted = self.cumulative_length - held
        start = first_needed(self.settings, self.cumulative_length)
        if held == 0 or start <= prefix + evicted:  # nothing more to drop
            return
        drop = start - (prefix + evicted)
        buffer_k, buffer_v = self._buffers
        if prefix:  # the prefix moves forward to sit again just before the kept tail
            lo = self._lo
            for buffer in (buffer_k, buffer_v):
                moved = buffer[..., lo:lo + prefix, :].clone()  # the two ranges may overlap
                buffer[..., lo + drop:lo + drop + prefix, :] = moved
        self._lo += drop
        self._publish()

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

    def reset(self) -> None:
        super().reset()
        self._buffers = self._published = None
        self._lo = self._hi = 0


def _with_room(x: torch.Tensor, capacity: int) -> torch.Tensor:
    """``x`` (B, H, n, D) copied to the front of a buffer of ``capacity`` ≥ n positions."""
    buffer = x.new_empty(*x.shape[:-2], capacity, x.shape[-1])
    buffer[..., :x.shape[-2], :] = x
    return buffer


def window_cache(model, settings: WindowSettings) -> Cache | None:
    """A transformers ``Cache`` of :class:`WindowLayer` s for ``model``, or ``None`` where the
    method can need any key (SelfExtend)."""
    if first_needed(settings, 0) is None:
        return None
    n_layers = model.config.get_text_config(decoder=True).num_hidden_layers
    return Cache(layers=[WindowLayer(settings) for _ in range(n_layers)])


__all__ = ["WindowLayer", "window_cache"]
