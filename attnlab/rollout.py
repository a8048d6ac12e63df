r"""Attention rollout, and a tiny vision transformer with a [CLS] token to apply it to.

A layer's weights say where each token read from the layer below, not from the input. Rollout
follows the mixing down: the residual keeps half of every token, so layer l's head-fused weights
become :math:`\hat A_l = \tfrac12 A_l + \tfrac12 I`, and the layers multiply, the top one left:

.. math:: \tilde A = \hat A_L \hat A_{L-1} \cdots \hat A_1, \qquad
    \tilde A_{ij} = \text{share of input token } j \text{ in token } i \text{ at the top.}

Row [CLS] of :math:`\tilde A` over the patches maps where the model looked. It ignores values,
MLPs and norms: it shows how weight is routed, not why the model decided. Letters: B batch,
h heads, N = 1 + P tokens (P patches), D width, C channels.
Taught in: :ref:`chap-where-attention-looks`.
References: Abnar and Zuidema, *Quantifying Attention Flow in Transformers*, 2020,
arXiv:2005.00928; Dosovitskiy et al., *An Image is Worth 16x16 Words*, 2021, arXiv:2010.11929;
Jain and Wallace, *Attention is not Explanation*, 2019, arXiv:1902.10186.
"""
from __future__ import annotations

import torch
from torch import nn

from attnlab import checks
from attnlab.attention import LearnedPositionalEncoding
from attnlab.transformer import EncoderLayer

__all__ = ["attention_rollout", "cls_map", "box_share", "TinyViT"]

def attention_rollout(attentions, *, head_fusion: str = "mean", residual: bool = True):
    r"""Roll attention out through the layers: :math:`\hat A_L \cdots \hat A_1`.

    Args:
        attentions: a list of the layers' weights ``(B, h, N, N)``, bottom layer first (one
            dtype; the number of heads may differ between layers).
        head_fusion: ``"mean"`` (the paper's) or ``"max"`` over the heads.
        residual: add the identity and renormalise the rows (:math:`\tfrac12 A + \tfrac12 I`).
    Shape: -> ``(B, N, N)``; rows of softmax weights stay summing to 1.
    """
    if not isinstance(attentions, (list, tuple)) or not attentions:
        raise TypeError(f"attentions must be a non-empty list of tensors, got {attentions!r:.40}")
    checks.one_of(head_fusion, "head_fusion", ("mean", "max"))
    rolled = None
    for i, a in enumerate(attentions):
        checks.tensor(a, f"attentions[{i}]")
        if a.dim() != 4 or a.shape[2] != a.shape[3] or a.shape[::2] != attentions[0].shape[::2]:
            raise ValueError(f"attentions[{i}] must have shape (B, h, N, N) with the B and N of "
                             f"attentions[0] {tuple(attentions[0].shape)}, got {tuple(a.shape)}")
        if a.dtype != attentions[0].dtype:
            raise TypeError(f"attentions[{i}] must have the dtype of attentions[0] "
                            f"({attentions[0].dtype}), got {a.dtype}")
        if a.shape[1] == 0:
            raise ValueError(f"attentions[{i}] must have at least one head, got {tuple(a.shape)}")
        a = a.mean(1) if head_fusion == "mean" else a.amax(1)  # A_l: (B, N, N), heads fused
        if residual:
            a = a + torch.eye(a.shape[-1], dtype=a.dtype, device=a.device)  # A_l + I
            a = a / a.sum(-1, keepdim=True)  # rows renormalised: 1/2 A_l + 1/2 I
        rolled = a if rolled is None else a @ rolled  # the upper layer acts on the left
    return rolled


def cls_map(matrix: torch.Tensor, grid) -> torch.Tensor:
    r"""Row [CLS] (token 0) over the patch tokens, laid out on the ``(gh, gw)`` patch grid.
    Shape: ``(..., N, N)`` (a rollout, or a layer's ``(B, h, N, N)``), N = 1 + gh gw ->
    ``(..., gh, gw)``. The [CLS] column is dropped, so the map need not sum to 1.
    """
    checks.tensor(matrix, "matrix")
    gh, gw = checks.int_pair(grid, "grid")
    if matrix.dim() < 2 or matrix.shape[-2:] != (1 + gh * gw,) * 2:
        raise ValueError(f"matrix must have shape (..., N, N) with N = 1 + {gh}*{gw}, "
                         f"got {tuple(matrix.shape)}")
    return matrix[..., 0, 1:].reshape(*matrix.shape[:-2], gh, gw)


def box_share(maps: torch.Tensor, box: torch.Tensor, patch: int, size: int = 8) -> torch.Tensor:
    r"""Share of each map's mass in a ``size x size`` box, :math:`\sum_p m_p c_p / \sum_p m_p`, with
    :math:`c_p` the fraction of patch p's pixels in the box (uniform map: ``size**2/canvas**2``).
    Shape: maps ``(B, ..., gh, gw)`` >= 0, box ``(B, 2)`` integer top-left (row, col) ->
    ``(B, ...)``. A map with no mass (all zeros) has a share of 0, not NaN."""
    checks.tensor(maps, "maps"), checks.positive_int(patch, "patch")
    checks.positive_int(size, "size")
    if not isinstance(box, torch.Tensor) or box.is_floating_point() or box.dtype == torch.bool:
        raise TypeError(f"box must be an integer tensor (B, 2) of top-left corners, got "
                        f"{getattr(box, 'dtype', type(box).__name__)}")
    if maps.dim() < 3 or box.shape != (maps.shape[0], 2):
        raise ValueError(f"need maps (B, ..., gh, gw) and box (B, 2) with the same B, got "
                         f"maps {tuple(maps.shape)}, box {tuple(box.shape)}")
    if bool((maps < 0).any()):
        raise ValueError("maps must be >= 0 (weights, a share of mass), got negative values")
    B, grid = maps.shape[0], maps.shape[-2:]
    d = [torch.arange(n * patch, device=maps.device) - box[:, i, None] for i, n in enumerate(grid)]
    r, c = (((x >= 0) & (x < size)).to(maps.dtype).view(B, -1, patch).mean(-1) for x in d)
    cover = (r[:, :, None] * c[:, None, :]).view(B, *[1] * (maps.dim() - 3), *grid)  # c_p = r c
    mass = maps.sum((-2, -1))
    return (maps * cover).sum((-2, -1)) / mass.masked_fill(mass == 0, 1.0)


class TinyViT(nn.Module):
    r"""A vision transformer: linear patch embedding, a learned [CLS] token first, learned
    positions, ``depth`` pre-norm :class:`~attnlab.transformer.EncoderLayer` (MLP width 2D), a
    final norm and a classifier on the [CLS] token. ``patch`` must divide ``canvas``. Shape: x
    ``(B, channels, canvas, canvas)`` -> logits ``(B, num_classes)``; ``return_attention=True``
    also returns a list of ``depth`` weights ``(B, h, N, N)``, N = 1 + P (Dosovitskiy et al.)."""

    def __init__(self, canvas: int = 20, patch: int = 4, embed_dim: int = 32, depth: int = 2,
                 num_heads: int = 2, num_classes: int = 10, channels: int = 1):
        super().__init__()
        checks.positive_int(embed_dim, "embed_dim"), checks.positive_int(num_heads, "num_heads")
        if embed_dim % num_heads:
            raise ValueError(f"embed_dim ({embed_dim}) must be divisible by num_heads "
                             f"({num_heads})")
        if checks.positive_int(canvas, "canvas") % checks.positive_int(patch, "patch"):
            raise ValueError(f"canvas ({canvas}) must be divisible by patch ({patch})")
        self.canvas, self.patch, self.grid = canvas, patch, (canvas // patch,) * 2
        self.channels = checks.positive_int(channels, "channels")
        self.embed = nn.Linear(channels * patch * patch, embed_dim)  # one vector per patch
        self.cls = nn.Parameter(0.02 * torch.randn(1, 1, embed_dim))  # the [CLS] token
        self.pos = LearnedPositionalEncoding(embed_dim, 1 + self.grid[0] * self.grid[1])
        self.layers = nn.ModuleList(EncoderLayer(embed_dim, num_heads, 2 * embed_dim)
                                    for _ in range(checks.positive_int(depth, "depth")))
        self.norm = nn.LayerNorm(embed_dim)
        self.head = nn.Linear(embed_dim, checks.positive_int(num_classes, "num_classes"))

    def forward(self, x: torch.Tensor, *, return_attention: bool = False):
        checks.feature_map(x, "x", self.channels)
        if x.shape[-2:] != (self.canvas, self.canvas):
            raise ValueError(f"x must be {self.canvas}x{self.canvas} images, got {tuple(x.shape)}")
        p, weights = self.patch, []
        t = x.unfold(2, p, p).unfold(3, p, p)  # (B, C, gh, gw, p, p)
        t = self.embed(t.permute(0, 2, 3, 1, 4, 5).flatten(3).flatten(1, 2))  # (B, P, D)
        t = self.pos(torch.cat([self.cls.expand(len(x), -1, -1), t], 1))  # (B, N, D)
        for layer in self.layers:
            t, w = layer(t, return_attention=True) if return_attention else (layer(t), None)
            weights.append(w)  # (B, h, N, N)
        logits = self.head(self.norm(t[:, 0]))  # read the [CLS] token: (B, num_classes)
        return (logits, weights) if return_attention else logits
