r"""Spatial attention: CBAM's spatial gate and CBAM, the spatial transformer, coordinate attention.

Where a channel gate (:ref:`chap-channel-attention`) answers *which* features matter, these modules answer *where*:

* :class:`SpatialGate` multiplies every position by a weight in (0, 1) computed from the
  channel-wise average and maximum (CBAM's spatial attention);
* :class:`CBAM` is CBAM's channel gate followed by its spatial gate;
* :class:`SpatialTransformer` does not weight positions, it *moves* them: it predicts an affine
  transform and resamples the input (a differentiable crop, zoom or rotation);
* :class:`CoordinateAttention` factorises a position weight into a height profile and a width
  profile per channel.

Every module follows ``forward(x, return_attention=False)``; the attention returned is the map
the chapter plots (see each class).

Taught in: :ref:`chap-spatial-attention`.
"""
from __future__ import annotations

from typing import Callable

import torch
import torch.nn.functional as F
from torch import nn

from attnlab import checks
from attnlab.channel import ChannelGate

__all__ = ["SpatialGate", "CBAM", "affine_warp", "SoftArgmax2d", "SpatialTransformer",
           "CoordinateAttention"]


# --- CBAM --------------------------------------------------------------------------------------

class SpatialGate(nn.Module):
    r"""CBAM's spatial attention: one weight per position from pooled channel statistics.

    .. math::

        M_s(x) = \sigma\big(f^{k\times k}([\mathrm{AvgPool}_c(x);\ \mathrm{MaxPool}_c(x)])\big)
        \in (0, 1)^{1 \times H \times W}, \qquad y = M_s(x) \odot x,

    where the pools run over the channel axis (two ``(H, W)`` maps) and :math:`f^{k\times k}` is a
    convolution from 2 channels to 1 with zero padding (paper: ``k = 7``). The paper's equation
    has a plain convolution (the default here); the authors' code adds a batch norm, which
    ``norm_layer=nn.BatchNorm2d`` reproduces (the convolution then has no bias).

    Args:
        kernel_size: odd size ``k`` of the convolution (paper: 7).
        norm_layer: optional normalisation class applied after the convolution.
        gate_layer: the gate class :math:`\sigma` (default ``nn.Sigmoid``).

    Shape:
        x: ``(B, C, H, W)`` -> y: ``(B, C, H, W)``, attention: ``(B, 1, H, W)`` in (0, 1).

    Reference:
        S. Woo, J. Park, J.-Y. Lee, I. S. Kweon. *CBAM: Convolutional Block Attention Module*.
        ECCV 2018, arXiv:1807.06521. Taught in :ref:`chap-spatial-attention`.
    """

    def __init__(self, kernel_size: int = 7, *, norm_layer: Callable[[int], nn.Module] | None = None,
                 gate_layer: Callable[[], nn.Module] = nn.Sigmoid):
        super().__init__()
        self.kernel_size = checks.odd(kernel_size, "kernel_size")
        self.conv = nn.Conv2d(2, 1, kernel_size, padding=kernel_size // 2,
                              bias=norm_layer is None)              # f^{k x k}
        self.norm = norm_layer(1) if norm_layer is not None else nn.Identity()
        self.gate = gate_layer()

    def forward(self, x: torch.Tensor, *, return_attention: bool = False):
        checks.feature_map(x)
        s = torch.cat([x.mean(dim=1, keepdim=True),                 # (B, 1, H, W)
                       x.amax(dim=1, keepdim=True)], dim=1)         # (B, 2, H, W)
        a = self.gate(self.norm(self.conv(s)))                      # (B, 1, H, W)
        y = x * a
        return (y, a) if return_attention else y


class CBAM(nn.Module):
    r"""Convolutional Block Attention Module: channel gate, then spatial gate.

    .. math::  x' = M_c(x) \odot x, \qquad y = M_s(x') \odot x' .

    Args:
        channels: number of channels ``C``.
        reduction: reduction ratio of the channel gate's MLP (paper: 16).
        kernel_size: odd kernel size of the spatial gate (paper: 7).
        rd_channels, rd_divisor, act_layer, gate_layer, bias: passed to
            :class:`attnlab.channel.ChannelGate` (``gate_layer`` also to :class:`SpatialGate`).
        norm_layer: passed to :class:`SpatialGate`.

    Shape:
        x: ``(B, C, H, W)`` -> y: ``(B, C, H, W)``; attention: a dict with ``"channel"``
        ``(B, C, 1, 1)`` and ``"spatial"`` ``(B, 1, H, W)``.

    Reference:
        S. Woo, J. Park, J.-Y. Lee, I. S. Kweon. *CBAM: Convolutional Block Attention Module*.
        ECCV 2018, arXiv:1807.06521. Taught in :ref:`chap-channel-attention`
        and :ref:`chap-spatial-attention`.
    """

    def __init__(self, channels: int, reduction: float = 16, kernel_size: int = 7, *,
                 rd_channels: int | None = None, rd_divisor: int = 1,
                 act_layer: Callable[[], nn.Module] = nn.ReLU,
                 gate_layer: Callable[[], nn.Module] = nn.Sigmoid, bias: bool = True,
                 norm_layer: Callable[[int], nn.Module] | None = None):
        super().__init__()
        self.channel = ChannelGate(channels, reduction, rd_channels=rd_channels,
                                   rd_divisor=rd_divisor, act_layer=act_layer,
                                   gate_layer=gate_layer, bias=bias)
        self.spatial = SpatialGate(kernel_size, norm_layer=norm_layer, gate_layer=gate_layer)

    def forward(self, x: torch.Tensor, *, return_attention: bool = False):
        x, a_c = self.channel(x, return_attention=True)            # what: (B, C, 1, 1)
        y, a_s = self.spatial(x, return_attention=True)            # where: (B, 1, H, W)
        return (y, {"channel": a_c, "spatial": a_s}) if return_attention else y


# --- spatial transformer -----------------------------------------------------------------------

def _size(out_size) -> tuple[int, int]:
    """An output size (h, w) of two positive ints."""
    if not isinstance(out_size, (tuple, list)) or len(out_size) != 2:
        raise ValueError(f"out_size must be a pair (h, w) of positive ints, got {out_size!r}")
    return checks.positive_int(out_size[0], "out_size[0]"), checks.positive_int(out_size[1], "out_size[1]")


def affine_warp(x: torch.Tensor, theta: torch.Tensor, out_size: tuple[int, int] | None = None,
                padding_mode: str = "zeros") -> torch.Tensor:
    r"""Resample ``x`` on an affine grid: the grid generator and sampler of a spatial transformer.

    Output pixel :math:`(x^t, y^t)` (normalised coordinates in [-1, 1]) reads the input at
    :math:`(x^s, y^s)^\top = \theta\,(x^t, y^t, 1)^\top` with bilinear interpolation, so
    ``theta = [[1, 0, 2p/W], [0, 1, 0]]`` moves the content ``p`` pixels to the left.
    Pixel centres are used (``align_corners=False``).

    Shape:
        x: ``(B, C, H, W)``, theta: ``(B, 2, 3)`` (cast to x's dtype) -> ``(B, C, h, w)`` with
        ``(h, w) = out_size`` (default ``(H, W)``).
    """
    checks.feature_map(x)
    checks.tensor(theta, "theta")
    if tuple(theta.shape) != (x.shape[0], 2, 3):
        raise ValueError(f"theta must have shape (B, 2, 3) = {(x.shape[0], 2, 3)}, "
                         f"got {tuple(theta.shape)}")
    h, w = _size(out_size) if out_size is not None else x.shape[-2:]
    if x.shape[0] == 0:
        return x.new_zeros(0, x.shape[1], h, w)
    grid = F.affine_grid(theta.to(x.dtype), [x.shape[0], x.shape[1], h, w],
                         align_corners=False)  # (B, h, w, 2)
    return F.grid_sample(x, grid, mode="bilinear", padding_mode=padding_mode, align_corners=False)


class SoftArgmax2d(nn.Module):
    r"""Where a score map points: the mean and spread of a softmax over positions.

    .. math::

        p_{ij} = \frac{e^{s_{ij}}}{\sum_{kl} e^{s_{kl}}}, \qquad
        \mu_x = \sum_{ij} p_{ij}\, u_j, \quad \mu_y = \sum_{ij} p_{ij}\, v_i, \qquad
        \sigma_x^2 = \sum_{ij} p_{ij} (u_j - \mu_x)^2, \ \sigma_y^2 = \dots

    with :math:`u_j, v_i \in (-1, 1)` the normalised pixel centres used by :func:`affine_warp`.
    It is attention over positions whose *output is a position*: a localisation head for a
    :class:`SpatialTransformer` that learns much faster than regressing coordinates from
    flattened features, because every position's score gets a gradient from the start.

    Shape:
        s: ``(B, 1, H, W)`` scores -> ``(B, 4)``: ``(mu_x, mu_y, sigma_x, sigma_y)``.
    """

    def forward(self, s: torch.Tensor) -> torch.Tensor:
        checks.feature_map(s, "s", 1)
        B, _, H, W = s.shape
        p = s.flatten(1).softmax(dim=-1).view(B, H, W)              # (B, H, W), sums to 1
        v = (2 * torch.arange(H, dtype=s.dtype, device=s.device) + 1) / H - 1   # (H,) row centres
        u = (2 * torch.arange(W, dtype=s.dtype, device=s.device) + 1) / W - 1   # (W,) column centres
        p_y, p_x = p.sum(dim=2), p.sum(dim=1)                       # marginals (B, H), (B, W)
        mu_x, mu_y = p_x @ u, p_y @ v                               # (B,)
        var_x = (p_x * (u - mu_x[:, None]) ** 2).sum(dim=1)
        var_y = (p_y * (v - mu_y[:, None]) ** 2).sum(dim=1)
        return torch.stack([mu_x, mu_y, (var_x + 1e-6).sqrt(), (var_y + 1e-6).sqrt()], dim=1)


class SpatialTransformer(nn.Module):
    r"""Spatial transformer: a localisation net predicts :math:`\theta`, then the input is resampled.

    .. math::

        \theta = f_{loc}(x), \qquad
        \begin{pmatrix} x^s \\ y^s \end{pmatrix} = \theta \begin{pmatrix} x^t \\ y^t \\ 1 \end{pmatrix},
        \qquad y = \mathrm{sample}(x;\ x^s, y^s) .

    ``transform="affine"`` regresses all six entries of :math:`\theta`; ``"attention"`` regresses
    a scale and a shift, :math:`\theta = \begin{pmatrix} s & 0 & t_x \\ 0 & s & t_y\end{pmatrix}`,
    the paper's "attention" transform (a square crop that may zoom). The last layer starts at zero
    weights with the identity as its bias, so at initialisation the module returns its input
    (up to the resampling to ``out_size``).

    Args:
        channels: channels ``C`` of the input.
        out_size: ``(h, w)`` of the output (default: the input's size).
        transform: ``"affine"`` (6 parameters) or ``"attention"`` (scale and shift, 3).
        localization: a module mapping ``(B, C, H, W)`` to ``(B, F)``; default a small CNN
            (two 5x5 convolutions and 2x2 max pools that round up, so any input size works).
        loc_features: ``F``, the width of ``localization``'s output (needed with a custom one).

    Shape:
        x: ``(B, C, H, W)`` -> y: ``(B, C, h, w)``, attention: ``theta`` ``(B, 2, 3)``.

    Reference:
        M. Jaderberg, K. Simonyan, A. Zisserman, K. Kavukcuoglu. *Spatial Transformer Networks*.
        NeurIPS 2015, arXiv:1506.02025. Taught in :ref:`chap-spatial-attention`.
    """

    transforms = {"affine": 6, "attention": 3}

    def __init__(self, channels: int, out_size: tuple[int, int] | None = None, *,
                 transform: str = "affine", localization: nn.Module | None = None,
                 loc_features: int | None = None):
        super().__init__()
        self.channels = checks.positive_int(channels, "channels")
        self.transform = checks.one_of(transform, "transform", self.transforms)
        self.out_size = _size(out_size) if out_size is not None else None
        if localization is None:
            localization = nn.Sequential(
                nn.Conv2d(channels, 8, 5, padding=2), nn.MaxPool2d(2, ceil_mode=True), nn.ReLU(),
                nn.Conv2d(8, 16, 5, padding=2), nn.MaxPool2d(2, ceil_mode=True), nn.ReLU(),
                nn.AdaptiveAvgPool2d(4), nn.Flatten(),
                nn.Linear(16 * 4 * 4, 32), nn.ReLU())
            loc_features = 32
        elif loc_features is None:
            raise ValueError("loc_features (the width of localization's output) is required "
                             "with a custom localization")
        else:
            checks.positive_int(loc_features, "loc_features")
        self.localization = localization
        self.fc_theta = nn.Linear(loc_features, self.transforms[transform])
        nn.init.zeros_(self.fc_theta.weight)                    # start at the identity
        with torch.no_grad():
            identity = [1.0, 0.0, 0.0, 0.0, 1.0, 0.0] if transform == "affine" else [1.0, 0.0, 0.0]
            self.fc_theta.bias.copy_(torch.tensor(identity))

    def theta(self, x: torch.Tensor) -> torch.Tensor:
        """The transform predicted for ``x``: ``(B, 2, 3)``."""
        p = self.fc_theta(self.localization(x))                 # (B, 6) or (B, 3)
        if self.transform == "affine":
            return p.view(-1, 2, 3)
        s, tx, ty = p.unbind(dim=1)                             # (B,) each
        zero = torch.zeros_like(s)
        return torch.stack([torch.stack([s, zero, tx], dim=1),
                            torch.stack([zero, s, ty], dim=1)], dim=1)   # (B, 2, 3)

    def forward(self, x: torch.Tensor, *, return_attention: bool = False):
        checks.feature_map(x, "x", self.channels)
        if x.shape[0] == 0:                                     # an empty batch stays empty
            theta = x.new_zeros(0, 2, 3)
        else:
            theta = self.theta(x)                               # (B, 2, 3)
        y = affine_warp(x, theta, self.out_size)                # (B, C, h, w)
        return (y, theta) if return_attention else y


# --- coordinate attention ----------------------------------------------------------------------

class CoordinateAttention(nn.Module):
    r"""Coordinate attention: a height profile and a width profile per channel.

    .. math::

        z^h_c(i) = \frac{1}{W}\sum_{j} x_c(i, j), \qquad z^w_c(j) = \frac{1}{H}\sum_{i} x_c(i, j),

        f = \delta\big(\mathrm{BN}(F_1([z^h; z^w]))\big), \qquad
        g^h = \sigma(F_h(f^h)), \quad g^w = \sigma(F_w(f^w)),

        y_c(i, j) = x_c(i, j)\, g^h_c(i)\, g^w_c(j),

    where :math:`F_1` is a shared 1x1 convolution from ``C`` to ``max(min_channels, C // r)``
    channels applied to the concatenated strips, :math:`\delta` = h-swish, and :math:`F_h, F_w`
    are 1x1 convolutions back to ``C`` channels. Unlike SE, the pooled strips keep *where* along
    each axis a channel responds.

    Args:
        channels: number of channels ``C``.
        reduction: reduction ratio ``r`` (paper: 32).
        min_channels: smallest hidden width (paper: 8).
        rd_channels: hidden width given directly (overrides the rule).
        act_layer: activation class :math:`\delta` (default ``nn.Hardswish``).
        gate_layer: gate class :math:`\sigma` (default ``nn.Sigmoid``).
        norm_layer: normalisation class after :math:`F_1` (default ``nn.BatchNorm2d``; ``None``
            for none).

    Shape:
        x: ``(B, C, H, W)`` -> y: ``(B, C, H, W)``; attention: a dict with ``"h"`` ``(B, C, H, 1)``
        and ``"w"`` ``(B, C, 1, W)`` (their product is the full per-channel map).

    Reference:
        Q. Hou, D. Zhou, J. Feng. *Coordinate Attention for Efficient Mobile Network Design*.
        CVPR 2021, arXiv:2103.02907. Taught in :ref:`chap-spatial-attention`.
    """

    def __init__(self, channels: int, reduction: int = 32, *, min_channels: int = 8,
                 rd_channels: int | None = None,
                 act_layer: Callable[[], nn.Module] = nn.Hardswish,
                 gate_layer: Callable[[], nn.Module] = nn.Sigmoid,
                 norm_layer: Callable[[int], nn.Module] | None = nn.BatchNorm2d):
        super().__init__()
        self.channels = checks.positive_int(channels, "channels")
        checks.positive_int(reduction, "reduction"), checks.positive_int(min_channels, "min_channels")
        hidden = (checks.positive_int(rd_channels, "rd_channels") if rd_channels is not None
                  else max(min_channels, channels // reduction))
        self.conv1 = nn.Conv2d(channels, hidden, 1)             # F_1 (shared)
        self.norm = norm_layer(hidden) if norm_layer is not None else nn.Identity()
        self.act = act_layer()                                  # delta
        self.conv_h = nn.Conv2d(hidden, channels, 1)            # F_h
        self.conv_w = nn.Conv2d(hidden, channels, 1)            # F_w
        self.gate = gate_layer()

    def forward(self, x: torch.Tensor, *, return_attention: bool = False):
        checks.feature_map(x, "x", self.channels)
        H, W = x.shape[-2:]
        z_h = x.mean(dim=3, keepdim=True)                       # (B, C, H, 1)
        z_w = x.mean(dim=2, keepdim=True).transpose(2, 3)       # (B, C, W, 1)
        f = self.act(self.norm(self.conv1(torch.cat([z_h, z_w], dim=2))))   # (B, hidden, H+W, 1)
        f_h, f_w = torch.split(f, [H, W], dim=2)
        g_h = self.gate(self.conv_h(f_h))                       # (B, C, H, 1)
        g_w = self.gate(self.conv_w(f_w.transpose(2, 3)))       # (B, C, 1, W)
        y = x * g_h * g_w
        return (y, {"h": g_h, "w": g_w}) if return_attention else y
