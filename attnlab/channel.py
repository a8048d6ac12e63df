r"""Channel attention: squeeze-and-excitation, efficient channel attention, CBAM's channel gate.

A channel gate looks at a whole feature map ``x`` of shape ``(B, C, H, W)``, summarises each
channel by one number (the *squeeze*), turns the ``C`` summaries into ``C`` weights in
:math:`(0, 1)` (the *excitation*) and rescales each channel by its weight:

.. math::  y_{c} = a_c \, x_{c}, \qquad a = \sigma\big(g(\mathrm{pool}(x))\big) \in (0, 1)^C .

The three modules differ only in ``pool`` and ``g``. They share one constructor shape, that of
timm's family (``channels, reduction, act_layer, gate_layer``), without its production plumbing,
and one forward contract: ``forward(x, return_attention=False)`` returns ``y`` or ``(y, a)``
with ``a`` of shape ``(B, C, 1, 1)``.

Taught in: :ref:`chap-channel-attention`.
"""
from __future__ import annotations

import math
from typing import Callable

import torch
from torch import nn

from attnlab import checks

__all__ = [
    "reduced_channels",
    "eca_kernel_size",
    "SqueezeExcite",
    "EfficientChannelAttention",
    "ChannelGate",
    "GlobalContext",
    "attach_to_bottlenecks",
]


# --- small helpers -----------------------------------------------------------------------------

def reduced_channels(channels: int, reduction: float, divisor: int = 1,
                     rd_channels: int | None = None) -> int:
    r"""Width of a bottleneck MLP: ``channels / reduction`` rounded to a multiple of ``divisor``.

    With ``divisor=1`` (the papers' choice) this is ``round(C / r)``, at least 1; timm rounds to
    multiples of 8 by default (``divisor=8``). ``rd_channels`` overrides the rule.
    """
    checks.positive_int(channels, "channels")
    if rd_channels is not None:
        return checks.positive_int(rd_channels, "rd_channels")
    if not isinstance(reduction, (int, float)) or isinstance(reduction, bool) or reduction <= 0:
        raise ValueError(f"reduction must be a positive number, got {reduction!r}")
    checks.positive_int(divisor, "divisor")
    value = channels / reduction
    # make_divisible with round_limit=0 (timm's rule for attention widths)
    return max(divisor, int(value + divisor / 2) // divisor * divisor)


def eca_kernel_size(channels: int, gamma: float = 2, b: float = 1) -> int:
    r"""ECA's adaptive kernel size :math:`k = \psi(C) = \left|\frac{\log_2 C}{\gamma} + \frac{b}{\gamma}\right|_{odd}`.

    :math:`|t|_{odd}` is the odd number nearest to ``t`` as the authors' code computes it:
    ``t = int(|(log2 C + b) / gamma|)``, then ``t`` if odd else ``t + 1``. With ``gamma=2, b=1``:
    C=64 gives 3, C=256 gives 5, C=2048 gives 7; fewer than 8 channels give 1.
    (timm never goes below 3.)
    """
    checks.positive_int(channels, "channels")
    if not isinstance(gamma, (int, float)) or gamma <= 0:
        raise ValueError(f"gamma must be a number > 0, got {gamma!r}")
    t = int(abs((math.log2(channels) + b) / gamma))
    return t if t % 2 else t + 1


# --- squeeze-and-excitation ------------------------------------------------------------------

class SqueezeExcite(nn.Module):
    r"""Squeeze-and-excitation block: a per-channel gate computed from global average pooling.

    .. math::

        z = \frac{1}{HW}\sum_{i,j} x_{:, i, j} \in \mathbb{R}^C, \qquad
        a = \sigma\big(W_2\, \delta(W_1 z + b_1) + b_2\big), \qquad y_c = a_c\, x_c,

    with :math:`W_1 \in \mathbb{R}^{C/r \times C}`, :math:`W_2 \in \mathbb{R}^{C \times C/r}`,
    :math:`\delta` = ReLU and :math:`\sigma` = sigmoid. The two fully connected layers are written
    as 1x1 convolutions (as in timm), so the gate keeps its ``(B, C, 1, 1)`` shape.

    Args:
        channels: number of channels ``C`` of the input.
        reduction: the reduction ratio ``r`` of the bottleneck (paper: 16).
        rd_channels: bottleneck width given directly (overrides ``reduction``).
        rd_divisor: round the bottleneck width to a multiple of this (paper: 1, timm: 8).
        act_layer: the activation class :math:`\delta` (default ``nn.ReLU``).
        gate_layer: the gate class :math:`\sigma` (default ``nn.Sigmoid``).

    Shape:
        x: ``(B, C, H, W)`` -> y: ``(B, C, H, W)``, attention: ``(B, C, 1, 1)`` in (0, 1).

    Reference:
        J. Hu, L. Shen, S. Albanie, G. Sun, E. Wu. *Squeeze-and-Excitation Networks*. CVPR 2018,
        arXiv:1709.01507. Taught in :ref:`chap-channel-attention`.
    """

    def __init__(self, channels: int, reduction: float = 16, *, rd_channels: int | None = None,
                 rd_divisor: int = 1, act_layer: Callable[[], nn.Module] = nn.ReLU,
                 gate_layer: Callable[[], nn.Module] = nn.Sigmoid):
        super().__init__()
        self.channels = checks.positive_int(channels, "channels")
        hidden = reduced_channels(channels, reduction, rd_divisor, rd_channels)
        self.fc1 = nn.Conv2d(channels, hidden, kernel_size=1)  # W1, b1
        self.act = act_layer()                                 # delta
        self.fc2 = nn.Conv2d(hidden, channels, kernel_size=1)  # W2, b2
        self.gate = gate_layer()                               # sigma

    def forward(self, x: torch.Tensor, *, return_attention: bool = False):
        checks.feature_map(x, "x", self.channels)
        z = x.mean(dim=(2, 3), keepdim=True)                   # squeeze      (B, C, 1, 1)
        a = self.gate(self.fc2(self.act(self.fc1(z))))         # excitation   (B, C, 1, 1)
        y = x * a                                              # rescale      (B, C, H, W)
        return (y, a) if return_attention else y


# --- efficient channel attention -------------------------------------------------------------

class EfficientChannelAttention(nn.Module):
    r"""ECA: a channel gate from a 1-D convolution across neighbouring channels, no reduction.

    .. math::

        z = \mathrm{GAP}(x) \in \mathbb{R}^C, \qquad
        a_c = \sigma\Big(\sum_{j=-(k-1)/2}^{(k-1)/2} w_j\, z_{c+j}\Big), \qquad y_c = a_c\, x_c,

    with zero padding at the ends and one shared kernel :math:`w \in \mathbb{R}^k` (no bias):
    ``k`` parameters in all, whatever ``C`` is. ``k`` follows the paper's rule
    :func:`eca_kernel_size` when it is not given.

    Args:
        channels: number of channels ``C`` (used for the adaptive kernel size and input checks;
            may be ``None`` when ``kernel_size`` is given).
        kernel_size: odd size ``k`` of the 1-D convolution; ``None`` uses :math:`\psi(C)`.
        gamma, b: constants of the adaptive rule (paper: 2 and 1).
        gate_layer: the gate class :math:`\sigma` (default ``nn.Sigmoid``).

    Shape:
        x: ``(B, C, H, W)`` -> y: ``(B, C, H, W)``, attention: ``(B, C, 1, 1)`` in (0, 1).

    Reference:
        Q. Wang, B. Wu, P. Zhu, P. Li, W. Zuo, Q. Hu. *ECA-Net: Efficient Channel Attention for
        Deep Convolutional Neural Networks*. CVPR 2020, arXiv:1910.03151. Taught in :ref:`chap-channel-attention`.
    """

    def __init__(self, channels: int | None = None, kernel_size: int | None = None, *,
                 gamma: float = 2, b: float = 1,
                 gate_layer: Callable[[], nn.Module] = nn.Sigmoid):
        super().__init__()
        if channels is None and kernel_size is None:
            raise ValueError("give channels (for the adaptive kernel size) or kernel_size")
        self.channels = None if channels is None else checks.positive_int(channels, "channels")
        if kernel_size is None:
            kernel_size = eca_kernel_size(channels, gamma, b)
        checks.odd(kernel_size, "kernel_size")
        self.kernel_size = kernel_size
        self.conv = nn.Conv1d(1, 1, kernel_size, padding=(kernel_size - 1) // 2, bias=False)  # w
        self.gate = gate_layer()

    def forward(self, x: torch.Tensor, *, return_attention: bool = False):
        checks.feature_map(x, "x", self.channels)
        B, C = x.shape[:2]
        z = x.mean(dim=(2, 3)).view(B, 1, C)                   # squeeze, channels as a sequence
        a = self.gate(self.conv(z)).view(B, C, 1, 1)           # local cross-channel interaction
        y = x * a
        return (y, a) if return_attention else y


# --- CBAM's channel gate ---------------------------------------------------------------------

class ChannelGate(nn.Module):
    r"""CBAM's channel attention: average- *and* max-pooled descriptors through one shared MLP.

    .. math::

        M_c(x) = \sigma\big(\mathrm{MLP}(\mathrm{AvgPool}(x)) + \mathrm{MLP}(\mathrm{MaxPool}(x))\big),
        \qquad \mathrm{MLP}(z) = W_1\,\delta(W_0 z), \qquad y = M_c(x) \odot x .

    The max-pooled descriptor keeps the strongest response of each channel, which the average
    blurs away. Biases follow the authors' code (``bias=True``); the paper's equation omits them.

    Args:
        channels: number of channels ``C``.
        reduction: reduction ratio ``r`` of the shared MLP (paper: 16).
        rd_channels: hidden width given directly (overrides ``reduction``).
        rd_divisor: round the hidden width to a multiple of this (paper: 1).
        act_layer: activation class :math:`\delta` (default ``nn.ReLU``).
        gate_layer: gate class :math:`\sigma` (default ``nn.Sigmoid``).
        bias: biases in the MLP (default ``True``).

    Shape:
        x: ``(B, C, H, W)`` -> y: ``(B, C, H, W)``, attention: ``(B, C, 1, 1)`` in (0, 1).

    Reference:
        S. Woo, J. Park, J.-Y. Lee, I. S. Kweon. *CBAM: Convolutional Block Attention Module*.
        ECCV 2018, arXiv:1807.06521. Taught in :ref:`chap-channel-attention`
        and :ref:`chap-spatial-attention`.
    """

    def __init__(self, channels: int, reduction: float = 16, *, rd_channels: int | None = None,
                 rd_divisor: int = 1, act_layer: Callable[[], nn.Module] = nn.ReLU,
                 gate_layer: Callable[[], nn.Module] = nn.Sigmoid, bias: bool = True):
        super().__init__()
        self.channels = checks.positive_int(channels, "channels")
        hidden = reduced_channels(channels, reduction, rd_divisor, rd_channels)
        self.fc1 = nn.Conv2d(channels, hidden, kernel_size=1, bias=bias)  # W0
        self.act = act_layer()
        self.fc2 = nn.Conv2d(hidden, channels, kernel_size=1, bias=bias)  # W1
        self.gate = gate_layer()

    def mlp(self, z: torch.Tensor) -> torch.Tensor:
        return self.fc2(self.act(self.fc1(z)))

    def forward(self, x: torch.Tensor, *, return_attention: bool = False):
        checks.feature_map(x, "x", self.channels)
        z_avg = x.mean(dim=(2, 3), keepdim=True)               # (B, C, 1, 1)
        z_max = x.amax(dim=(2, 3), keepdim=True)               # (B, C, 1, 1)
        a = self.gate(self.mlp(z_avg) + self.mlp(z_max))       # (B, C, 1, 1)
        y = x * a
        return (y, a) if return_attention else y

# --- global context (GCNet): one pooled vector added everywhere -------------------------------

class GlobalContext(nn.Module):
    r"""Global-context block: one attention-pooled vector, transformed, added to every position.

    .. math::

        c = \sum_j \frac{e^{w_k^\top x_j}}{\sum_m e^{w_k^\top x_m}}\, x_j \in \mathbb{R}^C,
        \qquad y_i = x_i + W_2\, \mathrm{ReLU}\big(\mathrm{LN}(W_1 c + b_1)\big) + b_2 ,

    over all positions :math:`i, j` of the map (any number of spatial dimensions: frames too).
    Unlike a non-local block, every position receives the *same* vector: one query-independent
    summary of the whole input, the control for any claim that pairwise relations are needed.
    With ``attention_pool=False`` the pool is the plain mean (SE's squeeze).

    Args:
        channels: ``C``. ``reduction``: the bottleneck ``C/r`` of the transform (paper: 16;
            at least one unit). ``attention_pool``: softmax-weighted pool (GCNet) or the mean.

    Shape:
        x: ``(B, C, *spatial)`` with one to three spatial dimensions -> y: the same shape;
        attention: ``(B, 1, *spatial)``, the pooling weights (they sum to one over positions).

    Reference:
        Y. Cao, J. Xu, S. Lin, F. Wei, H. Hu. *GCNet: Non-local Networks Meet
        Squeeze-Excitation Networks and Beyond*. ICCV Workshops 2019, arXiv:1904.11492.
        Taught in :ref:`chap-where-attention-looks`.
    """

    def __init__(self, channels: int, reduction: float = 16, *, attention_pool: bool = True):
        super().__init__()
        self.channels = checks.positive_int(channels, "channels")
        hidden = max(1, reduced_channels(channels, reduction))
        self.attention_pool = bool(attention_pool)
        self.score = nn.Conv1d(channels, 1, kernel_size=1) if attention_pool else None  # w_k
        self.fc1 = nn.Linear(channels, hidden)
        self.norm = nn.LayerNorm(hidden)
        self.fc2 = nn.Linear(hidden, channels)

    def forward(self, x: torch.Tensor, *, return_attention: bool = False):
        checks.tensor(x, "x")
        if not 3 <= x.dim() <= 5:
            raise ValueError(f"x must have shape (B, C, *spatial) with 1 to 3 spatial "
                             f"dimensions, got {tuple(x.shape)}")
        checks.feature_map(x, "x", self.channels, spatial=x.dim() - 2)
        flat = x.flatten(2)                                            # (B, C, N)
        if self.score is None:
            w = torch.full_like(flat[:, :1], 1.0 / flat.shape[-1])     # (B, 1, N) the mean
        else:
            w = torch.softmax(self.score(flat), dim=-1)                # (B, 1, N)
        c = (flat * w).sum(-1)                                         # (B, C) context
        add = self.fc2(torch.relu(self.norm(self.fc1(c))))             # (B, C) transform
        y = x + add.view(*add.shape, *([1] * (x.dim() - 2)))           # fuse: add everywhere
        return (y, w.view(x.shape[0], 1, *x.shape[2:])) if return_attention else y


# --- putting a gate into a ResNet ------------------------------------------------------------

def attach_to_bottlenecks(model: nn.Module, make_gate: Callable[[int], nn.Module]) -> int:
    r"""Insert ``make_gate(C)`` after the last batch norm of every bottleneck, in place.

    This is where SENet puts the block: on the residual branch, after its last convolution and
    before the addition of the shortcut. Any module with a ``bn3`` attribute that is a
    ``nn.BatchNorm2d`` (torchvision's ``Bottleneck``) gets ``bn3 = Sequential(bn3, gate)``.
    Works on torchvision's ``resnet50(weights=None)`` without importing torchvision here.

    Returns:
        the number of blocks changed.
    """
    if not callable(make_gate):
        raise TypeError("make_gate must be a callable channels -> nn.Module")
    count = 0
    for module in list(model.modules()):
        bn3 = getattr(module, "bn3", None)
        if isinstance(bn3, nn.BatchNorm2d):
            module.bn3 = nn.Sequential(bn3, make_gate(bn3.num_features))
            count += 1
    return count
