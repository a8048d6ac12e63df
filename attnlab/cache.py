r"""The key/value cache: what a layer keeps of the tokens it has seen, to decode step by step.

A causal model that writes one token at a time recomputes nothing for the tokens before: their
keys and values are kept, and each new query attends to them.
:meth:`attnlab.attention.MultiHeadAttention.forward` takes a :class:`KVCache` and appends the
new tokens' keys and values; the cache returns the mask of the new queries over all it holds.
Its size is

.. math::

    2 \times L \times h_{kv} \times d \times S \times \text{bytes per number}

for L layers: grouped-query heads (fewer key/value heads :math:`h_{kv}`) and a sliding window
(a bounded S) are the two ways to shrink it.

Shapes: keys and values ``(B, h_kv, S, d)``.
"""
from __future__ import annotations

import torch

from attnlab import checks
from attnlab.functional import causal_mask, sliding_window_mask

__all__ = ["KVCache"]


class KVCache:
    r"""The keys and values of the tokens a layer has seen, for decoding one step at a time.

    Each call of ``MultiHeadAttention.forward(x_new, cache=cache)`` appends the new tokens' keys
    and values, ``(B, h_kv, T, d)``, and returns the causal mask of the new queries over all that
    is held. With ``window`` W the cache is a rolling buffer: after each step it keeps the last W
    tokens (plus the first ``sinks`` tokens, kept for good), and each query sees itself and the
    W - 1 tokens before it (and the sinks): sliding-window attention, at a memory that no longer
    grows with the length.

    Args:
        window: W, or None to keep everything.
        sinks: number of first tokens kept for good beside the window (needs a window).

    Attributes: ``keys`` and ``values`` ``(B, h_kv, S, d)`` (None before the first step),
    ``seen`` (tokens appended so far), :attr:`nbytes`.

    Reference: Xiao et al., *Efficient Streaming Language Models with Attention Sinks*, 2023,
    arXiv:2309.17453.
    """

    def __init__(self, window: int | None = None, sinks: int = 0):
        self.window = None if window is None else checks.positive_int(window, "window")
        if isinstance(sinks, bool) or not isinstance(sinks, int) or sinks < 0:
            raise ValueError(f"sinks must be an int >= 0, got {sinks!r}")
        if sinks and window is None:
            raise ValueError("sinks need a window: without one every token is kept anyway")
        self.sinks = sinks
        self.keys = self.values = None
        self.seen = 0

    def extend(self, k: torch.Tensor, v: torch.Tensor):
        """Append (B, h_kv, T, d) keys and values; return all held keys, values and the new
        queries' mask (T, S), then drop what the window no longer needs."""
        if self.keys is not None and (k.shape[:2] != self.keys.shape[:2]
                                      or k.shape[-1] != self.keys.shape[-1]
                                      or v.shape[-1] != self.values.shape[-1]
                                      or k.dtype != self.keys.dtype):
            raise ValueError(f"cache holds keys of shape (B, h_kv, S, d) = "
                             f"{tuple(self.keys.shape)} ({self.keys.dtype}); new keys "
                             f"{tuple(k.shape)} ({k.dtype}) do not match: one cache per layer "
                             "and per batch")
        keys = k if self.keys is None else torch.cat((self.keys, k), dim=2)  # (B, h_kv, S, d)
        values = v if self.values is None else torch.cat((self.values, v), dim=2)
        T, S = k.shape[2], keys.shape[2]
        if self.window is None:
            mask = causal_mask(T, S, device=k.device)
        else:  # the sinks are the first entries of the buffer, the rest is contiguous
            mask = sliding_window_mask(T, S, self.window, self.sinks, device=k.device)
        self.seen += T
        self.keys, self.values = keys, values
        if self.window is not None:
            self._trim()
        return keys, values, mask

    def _trim(self) -> None:
        S, keep = self.keys.shape[2], self.sinks + self.window
        if S > keep:
            index = torch.cat((torch.arange(self.sinks), torch.arange(S - self.window, S)))
            index = index.to(self.keys.device)
            self.keys, self.values = self.keys[:, :, index], self.values[:, :, index]

    def __len__(self) -> int:
        return 0 if self.keys is None else self.keys.shape[2]

    @property
    def nbytes(self) -> int:
        """Bytes held: 2 x B x h_kv x S x d x bytes per number."""
        if self.keys is None:
            return 0
        return self.keys.numel() * self.keys.element_size() * 2

    def __repr__(self) -> str:
        return f"KVCache(window={self.window}, sinks={self.sinks}, held={len(self)}, seen={self.seen})"
