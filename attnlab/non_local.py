r"""Non-local operations: every position looks at every other position.

The generic non-local operation of Wang et al. (2018) computes, for every position :math:`i`,

.. math::

    y_i = \frac{1}{\mathcal{C}(x)} \sum_{\forall j} f(x_i, x_j)\, g(x_j),

a weighted average of a value :math:`g(x_j)` over *all* positions :math:`j`, with weights given by a
pairwise function :math:`f` and a normaliser :math:`\mathcal{C}(x)`. The paper's four choices of
:math:`f` (with :math:`\theta(x_i) = W_\theta x_i`, :math:`\phi(x_j) = W_\phi x_j`):

==================  ========================================================  =====================
``mode``            :math:`f(x_i, x_j)`                                       :math:`\mathcal{C}(x)`
==================  ========================================================  =====================
gaussian            :math:`e^{x_i^\top x_j}`                                  :math:`\sum_j f`
embedded_gaussian   :math:`e^{\theta(x_i)^\top \phi(x_j)}`                    :math:`\sum_j f`
dot_product         :math:`\theta(x_i)^\top \phi(x_j)`                        :math:`M`
concatenation       :math:`\mathrm{ReLU}(w_f^\top [\theta(x_i), \phi(x_j)])`  :math:`M`
==================  ========================================================  =====================

:math:`M` is the number of key positions (after subsampling, if any). Dividing by
:math:`\sum_j f` is a softmax over :math:`j`, so the embedded Gaussian is exactly single-head
softmax self-attention with queries :math:`\theta`, keys :math:`\phi` and values :math:`g` (with no
:math:`1/\sqrt{d}` scale, as in the paper).

The non-local *block* wraps the operation in a residual unit, :math:`z_i = W_z y_i + x_i`, where
:math:`W_z` is a 1x1 convolution followed by batch norm whose scale and shift start at zero, so a
freshly inserted block is the identity and can be dropped into a pretrained network.

Reference: X. Wang, R. Girshick, A. Gupta, K. He, "Non-local Neural Networks", CVPR 2018,
arXiv:1711.07971. Taught in :ref:`chap-non-local`.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from attnlab import checks
from attnlab.functional import masked_softmax, scaled_dot_product_attention

__all__ = ["MODES", "pairwise_affinity", "NonLocalBlock"]

MODES = ("gaussian", "embedded_gaussian", "dot_product", "concatenation")

_CONV = {1: nn.Conv1d, 2: nn.Conv2d, 3: nn.Conv3d}
_POOL = {1: nn.MaxPool1d, 2: nn.MaxPool2d, 3: nn.MaxPool3d}
_BN = {1: nn.BatchNorm1d, 2: nn.BatchNorm2d, 3: nn.BatchNorm3d}


def pairwise_affinity(theta: torch.Tensor, phi: torch.Tensor, mode: str = "embedded_gaussian",
                      w_theta: torch.Tensor | None = None,
                      w_phi: torch.Tensor | None = None) -> torch.Tensor:
    r"""Normalised pairwise weights :math:`f(x_i, x_j) / \mathcal{C}(x)` of a non-local operation.

    Args:
        theta: query features :math:`\theta(x_i)` (for ``"gaussian"``: :math:`x_i` itself).
        phi: key features :math:`\phi(x_j)` (for ``"gaussian"``: :math:`x_j` itself).
        mode: one of :data:`MODES`.
        w_theta, w_phi: the two halves of :math:`w_f` (``"concatenation"`` only), so that
            :math:`w_f^\top[\theta_i, \phi_j] = w_\theta^\top \theta_i + w_\phi^\top \phi_j`.

    Shape:
        theta ``(B, N, d)``, phi ``(B, M, d)``, w_theta and w_phi ``(d,)``; returns ``(B, N, M)``.
        Rows sum to 1 for the two Gaussian modes; for the other two they are divided by ``M``.

    Reference: Wang et al., "Non-local Neural Networks", 2018, arXiv:1711.07971, eqs. (2)-(7).
    Taught in :ref:`chap-non-local`.
    """
    checks.one_of(mode, "mode", MODES)
    checks.tensor(theta, "theta"), checks.tensor(phi, "phi")
    if theta.dim() != 3 or phi.dim() != 3 or theta.shape[-1] != phi.shape[-1]:
        raise ValueError(f"theta (B, N, d) and phi (B, M, d) must share d, got "
                         f"{tuple(theta.shape)} and {tuple(phi.shape)}")
    m = phi.shape[1]
    if mode in ("gaussian", "embedded_gaussian"):
        return masked_softmax(theta @ phi.transpose(1, 2))               # (B, N, M)
    if mode == "dot_product":
        return theta @ phi.transpose(1, 2) / m                           # (B, N, M)
    if w_theta is None or w_phi is None:
        raise ValueError("mode='concatenation' needs w_theta and w_phi")
    # ReLU(w_theta . theta_i + w_phi . phi_j): the concatenation never has to be built.
    scores = (theta @ w_theta).unsqueeze(2) + (phi @ w_phi).unsqueeze(1)  # (B, N, M)
    return F.relu(scores) / m


class NonLocalBlock(nn.Module):
    r"""The non-local block: :math:`z = W_z\, y + x` with :math:`y` the non-local operation.

    .. math::

        y_i = \frac{1}{\mathcal{C}(x)} \sum_j f(x_i, x_j)\, g(x_j), \qquad z_i = W_z y_i + x_i

    :math:`\theta, \phi, g` are 1x1 convolutions from ``channels`` to ``rd_channels``
    (the ``"gaussian"`` mode uses :math:`x` itself in place of :math:`\theta, \phi`). With
    ``sub_sample`` the keys :math:`\phi` and values :math:`g` are max-pooled (2 in 1-D, 2x2 in
    2-D, 1x2x2 in 3-D, time kept, as in the paper's video models), so there are fewer key
    positions :math:`M` than queries :math:`N`; odd sizes round up (``ceil_mode``), no position is
    dropped. :math:`W_z` is a 1x1 convolution back to ``channels`` followed by batch norm with
    scale and shift initialised to 0 (``bn_layer=True``), or the convolution itself initialised to 0
    (``bn_layer=False``): either way the block starts as the identity.

    Args:
        channels: channels ``C`` of the input.
        rd_channels: width ``d`` of :math:`\theta, \phi, g` (default ``C // 2``, at least 1).
        mode: the pairwise function, one of :data:`MODES`.
        dimension: 1 for sequences ``(B, C, T)``, 2 for images ``(B, C, H, W)``, 3 for video
            ``(B, C, T, H, W)``.
        sub_sample: max-pool :math:`\phi` and :math:`g` (fewer keys, cheaper).
        bn_layer: batch norm after :math:`W_z` (zero-initialised scale and shift).

    Shape:
        x ``(B, C, *spatial)``; returns ``z`` of the same shape, and with ``return_attention=True``
        also the affinity ``(B, N, M)``, N = positions of x, M = key positions.

    The two Gaussian forms are softmax attention and run on
    :func:`attnlab.functional.scaled_dot_product_attention` (scale 1); the other two are not
    normalised by a softmax and use :func:`pairwise_affinity`.

    Reference: X. Wang, R. Girshick, A. Gupta, K. He, "Non-local Neural Networks", CVPR 2018,
    arXiv:1711.07971. Taught in :ref:`chap-non-local`.
    """

    def __init__(self, channels: int, rd_channels: int | None = None,
                 mode: str = "embedded_gaussian", dimension: int = 2, sub_sample: bool = False,
                 bn_layer: bool = True):
        super().__init__()
        checks.positive_int(channels, "channels")
        rd_channels = max(1, channels // 2) if rd_channels is None else rd_channels
        checks.positive_int(rd_channels, "rd_channels")
        checks.one_of(mode, "mode", MODES), checks.one_of(dimension, "dimension", (1, 2, 3))
        self.channels, self.rd_channels = channels, rd_channels
        self.mode, self.dimension, self.sub_sample = mode, dimension, sub_sample
        conv = _CONV[dimension]

        self.g = conv(channels, rd_channels, kernel_size=1)
        if mode != "gaussian":      # the Gaussian compares x_i and x_j themselves
            self.theta = conv(channels, rd_channels, kernel_size=1)
            self.phi = conv(channels, rd_channels, kernel_size=1)
        if mode == "concatenation":  # w_f = [w_theta, w_phi], a 1x1 projection of [theta_i, phi_j]
            self.w_f = nn.Parameter(torch.randn(2 * rd_channels) / (2 * rd_channels) ** 0.5)
        if sub_sample:
            kernel = (1, 2, 2) if dimension == 3 else 2
            self.pool = _POOL[dimension](kernel_size=kernel, ceil_mode=True)
        else:
            self.pool = nn.Identity()

        if bn_layer:
            self.w_z = nn.Sequential(conv(rd_channels, channels, kernel_size=1),
                                     _BN[dimension](channels))
            nn.init.zeros_(self.w_z[1].weight)  # gamma = 0 ...
            nn.init.zeros_(self.w_z[1].bias)    # ... and beta = 0: the block starts as identity
        else:
            self.w_z = conv(rd_channels, channels, kernel_size=1)
            nn.init.zeros_(self.w_z.weight)
            nn.init.zeros_(self.w_z.bias)

    def forward(self, x: torch.Tensor, *, return_attention: bool = False):
        checks.feature_map(x, "x", self.channels, spatial=self.dimension)
        B, C, *spatial = x.shape
        d = self.rd_channels

        g = self.pool(self.g(x)).flatten(2).transpose(1, 2)                  # (B, M, d)
        if self.mode == "gaussian":
            theta = x.flatten(2).transpose(1, 2)                             # (B, N, C)
            phi = self.pool(x).flatten(2).transpose(1, 2)                    # (B, M, C)
        else:
            theta = self.theta(x).flatten(2).transpose(1, 2)                 # (B, N, d)
            phi = self.pool(self.phi(x)).flatten(2).transpose(1, 2)          # (B, M, d)
        if self.mode in ("gaussian", "embedded_gaussian"):
            # softmax(theta phi^T) g is softmax attention with scale 1: the book's one kernel
            y = scaled_dot_product_attention(theta, phi, g, scale=1.0,
                                             return_attention=return_attention)
            y, attn = y if return_attention else (y, None)                   # (B, N, d), (B, N, M)
        else:  # not a softmax: the (B, N, M) affinity, then its weighted sum of g
            w_theta = w_phi = None
            if self.mode == "concatenation":
                w_theta, w_phi = self.w_f[:d], self.w_f[d:]
            attn = pairwise_affinity(theta, phi, self.mode, w_theta, w_phi)  # (B, N, M)
            y = attn @ g                                                     # (B, N, d)
        y = y.transpose(1, 2).reshape(B, d, *spatial)                        # (B, d, *spatial)
        z = self.w_z(y) + x                                                  # (B, C, *spatial)
        return (z, attn) if return_attention else z

    def extra_repr(self) -> str:
        return (f"channels={self.channels}, rd_channels={self.rd_channels}, "
                f"mode={self.mode!r}, dimension={self.dimension}, sub_sample={self.sub_sample}")
