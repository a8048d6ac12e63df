r"""Axial (separable) self-attention over images: attend along rows, then along columns.

Full self-attention over an ``H x W`` image compares every position with every other one:
:math:`N^2 = (HW)^2` scores. Axial attention factorises the comparison: a **row** step lets each
pixel attend to the :math:`W` pixels of its own row, a **column** step to the :math:`H` pixels of
its own column,

.. math::

    y_{ij} = \sum_{j'} \operatorname{softmax}_{j'}\!\left(\frac{q_{ij}^\top k_{ij'}}{\sqrt d}\right)
        v_{ij'} \quad\text{(row)}, \qquad
    z_{ij} = \sum_{i'} \operatorname{softmax}_{i'}\!\left(\frac{q'_{ij}{}^\top k'_{i'j}}{\sqrt d}\right)
        v'_{i'j} \quad\text{(column)},

so the cost falls from :math:`O(N^2)` to :math:`O(N(H + W))`, i.e. :math:`O(N^{1.5})` for a square
image. A row step is exactly full attention with a "same row" mask (the test suite checks
this); stacking a row and a column step lets information reach any pixel in two hops.

Shapes: ``x`` is ``(B, C, H, W)``; ``h`` heads of width ``d = C / h``. The row attention weights
are ``(B, h, H, W, W)`` (for each row, a ``W x W`` map), the column weights ``(B, h, W, H, H)``.

Reference: J. Ho, N. Kalchbrenner, D. Weissenborn, T. Salimans, *Axial Attention in
Multidimensional Transformers*, 2019, arXiv:1912.12180; H. Wang, Y. Zhu, B. Green, H. Adam,
A. Yuille, L.-C. Chen, *Axial-DeepLab: Stand-Alone Axial-Attention for Panoptic Segmentation*,
2020, arXiv:2003.07853; Z. Huang et al., *CCNet: Criss-Cross Attention for Semantic
Segmentation*, 2018, arXiv:1811.11721.

Taught in: :ref:`chap-cost-and-inductive-bias`.
"""
from __future__ import annotations

import torch
from torch import nn

from attnlab import checks
from attnlab.functional import scaled_dot_product_attention

__all__ = ["AxisAttention", "RowAttention", "ColumnAttention", "AxialAttention2d", "axis_mask",
           "attention_cost"]

_AXES = ("row", "column")


def axis_mask(H: int, W: int, axis: str = "row", device=None) -> torch.Tensor:
    r"""Boolean ``(N, N)`` mask over the ``N = H*W`` positions (row-major), True where two
    positions share a row (``axis="row"``) or a column (``axis="column"``).

    Full attention with this mask is row (or column) attention: each query sees only its own row
    (column). Positions are numbered ``n = i * W + j`` as in ``x.flatten(2)``.
    """
    checks.one_of(axis, "axis", _AXES)
    checks.positive_int(H, "H"), checks.positive_int(W, "W")
    i = torch.arange(H, device=device).repeat_interleave(W)  # (N,) row of each position
    j = torch.arange(W, device=device).repeat(H)  # (N,) column of each position
    key = i if axis == "row" else j
    return key[:, None] == key[None, :]  # (N, N)


class AxisAttention(nn.Module):
    r"""Multi-head self-attention along one axis of an image (rows or columns).

    .. math::

        \mathrm{head}_m = \operatorname{softmax}\!\left(\frac{(XW_m^Q)(XW_m^K)^\top}{\sqrt d}\right)
            XW_m^V, \qquad \operatorname{out} = [\mathrm{head}_1; \dots; \mathrm{head}_h]\,W^O,

    applied to every row (``axis="row"``: sequences of length ``W``) or every column
    (``axis="column"``: sequences of length ``H``) independently, with the same weights. The
    projections act on the channel dimension (1x1 convolutions, stored as ``nn.Linear`` like
    :class:`torch.nn.MultiheadAttention`'s so their weights can be copied across).

    Args:
        channels: number of channels ``C`` of the input and output.
        num_heads: number of heads ``h``; must divide ``channels``.
        axis: ``"row"`` or ``"column"``.
        bias: add biases to the four projections.

    Shape:
        x ``(B, C, H, W)`` -> ``(B, C, H, W)``; with ``return_attention=True`` also the weights,
        ``(B, h, H, W, W)`` for rows (query column, key column within each row) or
        ``(B, h, W, H, H)`` for columns (query row, key row within each column).

    Without weights requested the fused kernel runs (via
    :func:`attnlab.functional.scaled_dot_product_attention`).

    Reference: Ho et al., *Axial Attention in Multidimensional Transformers*, 2019,
    arXiv:1912.12180. Taught in: :ref:`chap-cost-and-inductive-bias`.
    """

    def __init__(self, channels: int, num_heads: int = 1, axis: str = "row", bias: bool = True):
        super().__init__()
        checks.positive_int(channels, "channels"), checks.positive_int(num_heads, "num_heads")
        if channels % num_heads:
            raise ValueError(f"channels ({channels}) must be divisible by num_heads ({num_heads})")
        checks.one_of(axis, "axis", _AXES)
        self.channels, self.num_heads, self.axis = channels, num_heads, axis
        self.head_dim = channels // num_heads
        self.q_proj = nn.Linear(channels, channels, bias=bias)  # [W_1^Q ... W_h^Q]
        self.k_proj = nn.Linear(channels, channels, bias=bias)  # [W_1^K ... W_h^K]
        self.v_proj = nn.Linear(channels, channels, bias=bias)  # [W_1^V ... W_h^V]
        self.out_proj = nn.Linear(channels, channels, bias=bias)  # W^O

    def _split(self, t: torch.Tensor) -> torch.Tensor:
        B, P, L, _ = t.shape  # P parallel lines (rows or columns), each of length L
        return t.view(B, P, L, self.num_heads, self.head_dim).permute(0, 3, 1, 2, 4)  # (B, h, P, L, d)

    def forward(self, x: torch.Tensor, *, return_attention: bool = False):
        checks.feature_map(x, "x", self.channels)
        B, C, H, W = x.shape
        # lines along the attended axis: rows -> (B, H, W, C), columns -> (B, W, H, C)
        lines = x.permute(0, 2, 3, 1) if self.axis == "row" else x.permute(0, 3, 2, 1)
        q = self._split(self.q_proj(lines))  # (B, h, P, L, d)
        k = self._split(self.k_proj(lines))  # (B, h, P, L, d)
        v = self._split(self.v_proj(lines))  # (B, h, P, L, d)
        out = scaled_dot_product_attention(q, k, v, return_attention=return_attention)
        out, weights = out if return_attention else (out, None)  # (B, h, P, L, d), (B, h, P, L, L)
        P, L = out.shape[2], out.shape[3]
        out = out.permute(0, 2, 3, 1, 4).reshape(B, P, L, C)  # concatenate heads: (B, P, L, C)
        out = self.out_proj(out)  # W^O
        out = out.permute(0, 3, 1, 2) if self.axis == "row" else out.permute(0, 3, 2, 1)  # (B, C, H, W)
        return (out, weights) if return_attention else out

    def extra_repr(self) -> str:
        return f"channels={self.channels}, num_heads={self.num_heads}, axis={self.axis!r}"


class RowAttention(AxisAttention):
    r"""Multi-head self-attention within each row: :class:`AxisAttention` with ``axis="row"``.

    Weights ``(B, h, H, W, W)``. Reference: Ho et al., 2019, arXiv:1912.12180.
    """

    def __init__(self, channels: int, num_heads: int = 1, bias: bool = True):
        super().__init__(channels, num_heads, axis="row", bias=bias)


class ColumnAttention(AxisAttention):
    r"""Multi-head self-attention within each column: :class:`AxisAttention` with ``axis="column"``.

    Weights ``(B, h, W, H, H)``. Reference: Ho et al., 2019, arXiv:1912.12180.
    """

    def __init__(self, channels: int, num_heads: int = 1, bias: bool = True):
        super().__init__(channels, num_heads, axis="column", bias=bias)


class AxialAttention2d(nn.Module):
    r"""Separable self-attention over an image: a row step, then a column step.

    .. math:: z = \operatorname{ColAttn}(\operatorname{RowAttn}(x))

    (with ``residual=True``: :math:`y = x + \operatorname{RowAttn}(x)`,
    :math:`z = y + \operatorname{ColAttn}(y)`).

    After the two steps the output at pixel ``(i, j)`` depends on every pixel ``(i', j')``: the
    column step collects, from every row ``i'``, what the row step already gathered at
    ``(i', j)``. The cost is :math:`O(HW(H + W))` scores instead of :math:`O((HW)^2)`.

    Args:
        channels: number of channels ``C``.
        num_heads: heads ``h`` of each step; must divide ``channels``.
        bias: add biases to the projections.
        residual: add each step's input to its output (as in an axial transformer block).

    Shape:
        x ``(B, C, H, W)`` -> ``(B, C, H, W)``; with ``return_attention=True`` also a dict
        ``{"row": (B, h, H, W, W), "column": (B, h, W, H, H)}``.

    Reference: Ho et al., *Axial Attention in Multidimensional Transformers*, 2019,
    arXiv:1912.12180; Wang et al., *Axial-DeepLab*, 2020, arXiv:2003.07853.
    Taught in: :ref:`chap-cost-and-inductive-bias`.
    """

    def __init__(self, channels: int, num_heads: int = 1, bias: bool = True, residual: bool = False):
        super().__init__()
        self.row = RowAttention(channels, num_heads, bias=bias)
        self.column = ColumnAttention(channels, num_heads, bias=bias)
        self.residual = residual

    def forward(self, x: torch.Tensor, *, return_attention: bool = False):
        checks.feature_map(x, "x", self.row.channels)
        if return_attention:
            y, a_row = self.row(x, return_attention=True)  # (B, C, H, W), (B, h, H, W, W)
            y = x + y if self.residual else y
            z, a_col = self.column(y, return_attention=True)  # (B, C, H, W), (B, h, W, H, H)
            z = y + z if self.residual else z
            return z, {"row": a_row, "column": a_col}
        y = self.row(x)
        y = x + y if self.residual else y
        z = self.column(y)
        return y + z if self.residual else z

    def extra_repr(self) -> str:
        return f"residual={self.residual}"


def attention_cost(H: int, W: int, kind: str = "full") -> int:
    r"""Number of query-key scores one head computes on an ``H x W`` image.

    ``"full"``: :math:`(HW)^2`; ``"axial"``: :math:`HW(H + W)` (a row step and a column step);
    ``"row"``: :math:`HW \cdot W`; ``"column"``: :math:`HW \cdot H`.
    """
    checks.positive_int(H, "H"), checks.positive_int(W, "W")
    N = H * W
    costs = {"full": N * N, "axial": N * (H + W), "row": N * W, "column": N * H}
    return costs[checks.one_of(kind, "kind", costs)]

