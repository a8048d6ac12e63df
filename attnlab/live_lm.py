r"""Figures that compute in the rendered page, for the chapters on attention in language models.

The same machinery as :mod:`attnlab.live` (Vega-Lite charts built with Altair, published with
:func:`attnlab.live.publish`, checked against what Python computes): rotary angles and scores,
linear position biases, the size of a key-value cache, a window with sink tokens, one head's
softmax row over a stored sequence. Each builder checks what it embeds, as in :mod:`attnlab.live`.

Taught in: :ref:`chap-positions` and the chapters after it.
"""
from __future__ import annotations

__all__: list[str] = []
