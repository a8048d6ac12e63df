r"""Attention in vision practice: the blocks and losses of the systems the field is built on.

* :class:`ResidualAttention` is one module of the Residual Attention Network: a trunk ``T`` and
  a bottom-up top-down mask ``M``, combined as ``(1 + M) * T`` (or ``M * T`` to see why not);
* :class:`C2f` is YOLOv8's block (two 1x1 convolutions around a chain of bottlenecks whose
  outputs are all concatenated), with an optional attention module after it;
* :class:`AttentionProposal`, :func:`crop_and_zoom` and :func:`rank_loss` are RA-CNN's
  attention proposal network, its differentiable crop and its pairwise ranking loss;
* :func:`decoupled_mask_loss` is Mask R-CNN's mask loss: one sigmoid mask per class, the loss
  taken only on the true class's mask; :func:`masked_bce` takes a loss only where a coarse map
  says "object" (loss masking).

The ``return_attention`` contract (``forward(x, return_attention=False)`` returns ``y`` or
``(y, attn)``) is kept by the one module here whose output *is* attention applied to features:
:class:`ResidualAttention` (``attn``: the soft mask ``(B, C, H, W)``). The others do not keep it:
:class:`ConvBNAct` and :class:`Bottleneck` contain no attention; :class:`C2f` contains none
either (the optional ``attention`` module after it keeps its own contract: call it on the
block's output to see its weights); :class:`AttentionProposal` *returns* its attention, the
square ``(centre, side)``, as its output. The losses take tensors and return a scalar.

Taught in: :ref:`chap-residual-attention`, :ref:`chap-scale-attention`,
:ref:`chap-dense-attention`.
"""
from __future__ import annotations

from typing import Callable

import torch
import torch.nn.functional as F
from torch import nn

from attnlab import checks
from attnlab.spatial import SoftArgmax2d, affine_warp

__all__ = ["ConvBNAct", "ResidualAttention", "Bottleneck", "C2f", "AttentionProposal",
           "crop_and_zoom", "rank_loss", "decoupled_mask_loss", "masked_bce"]


class ConvBNAct(nn.Sequential):
    """A convolution without bias, batch norm and an activation (YOLOv8's ``Conv``).

    Shape: ``(B, c_in, H, W)`` -> ``(B, c_out, H / stride, W / stride)``.
    """

    def __init__(self, c_in: int, c_out: int, kernel_size: int = 1, stride: int = 1, *,
                 act_layer: Callable[[], nn.Module] = nn.SiLU):
        checks.odd(kernel_size, "kernel_size"), checks.function(act_layer, "act_layer")
        super().__init__(nn.Conv2d(checks.positive_int(c_in, "c_in"),
                                   checks.positive_int(c_out, "c_out"), kernel_size,
                                   checks.positive_int(stride, "stride"), kernel_size // 2,
                                   bias=False),
                         nn.BatchNorm2d(c_out), act_layer())


class ResidualAttention(nn.Module):
    r"""One attention module of the Residual Attention Network.

    .. math::

        H(x) = \big(1 + M(x)\big) \odot T(x), \qquad M(x) \in (0, 1)^{C \times H \times W},

    where the trunk :math:`T` is two 3x3 conv-BN-ReLU layers and the soft mask :math:`M` goes
    bottom-up (pool by 2, conv-BN-ReLU) and top-down (upsample back, 1x1 convolution,
    sigmoid), so each weight sees twice the context of a trunk feature. With the
    ``1 +`` the mask can only *amplify* the trunk's features (attention residual learning); with
    ``residual=False`` the module computes :math:`M \odot T`, which can only shrink them.

    Args:
        channels: number of channels ``C`` (the module keeps it).
        residual: ``True`` for :math:`(1 + M) \odot T`, ``False`` for :math:`M \odot T`.

    Shape:
        x: ``(B, C, H, W)`` with even ``H`` and ``W`` -> y: ``(B, C, H, W)``;
        attention: the mask ``(B, C, H, W)`` in (0, 1).

    Reference:
        F. Wang, M. Jiang, C. Qian, S. Yang, C. Li, H. Zhang, X. Wang, X. Tang. *Residual
        Attention Network for Image Classification*. CVPR 2017, arXiv:1704.06904.
        Taught in :ref:`chap-residual-attention`.
    """

    def __init__(self, channels: int, *, residual: bool = True):
        super().__init__()
        c = self.channels = checks.positive_int(channels, "channels")
        self.residual = bool(residual)
        block = lambda: [nn.Conv2d(c, c, 3, padding=1), nn.BatchNorm2d(c), nn.ReLU()]  # noqa: E731
        self.trunk = nn.Sequential(*block(), *block())                 # T
        self.down = nn.Sequential(nn.AvgPool2d(2), *block())           # bottom-up
        self.up = nn.Sequential(nn.Upsample(scale_factor=2), nn.Conv2d(c, c, 1))  # top-down

    def forward(self, x: torch.Tensor, *, return_attention: bool = False):
        checks.feature_map(x, "x", self.channels)
        if x.shape[-2] % 2 or x.shape[-1] % 2:
            raise ValueError(f"x must have an even height and width (the mask pools by 2), "
                             f"got {tuple(x.shape[-2:])}")
        t = self.trunk(x)                                              # (B, C, H, W)
        m = torch.sigmoid(self.up(self.down(x)))                       # (B, C, H, W)
        y = (1 + m) * t if self.residual else m * t
        return (y, m) if return_attention else y


class Bottleneck(nn.Module):
    """Two 3x3 :class:`ConvBNAct` and a shortcut: ``x + cv2(cv1(x))`` (YOLOv8's bottleneck);
    ``shortcut=False`` leaves the shortcut out: ``cv2(cv1(x))``.

    Shape: ``(B, channels, H, W)`` -> ``(B, channels, H, W)``.
    """

    def __init__(self, channels: int, *, shortcut: bool = True):
        super().__init__()
        self.channels, self.shortcut = checks.positive_int(channels, "channels"), bool(shortcut)
        self.cv1 = ConvBNAct(channels, channels, 3)
        self.cv2 = ConvBNAct(channels, channels, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        checks.feature_map(x, "x", self.channels)
        y = self.cv2(self.cv1(x))
        return x + y if self.shortcut else y


class C2f(nn.Module):
    r"""YOLOv8's C2f block: a CSP-style split, a chain of bottlenecks, every output concatenated.

    .. math::

        [y_0; y_1] = \mathrm{cv_1}(x), \qquad y_{k+1} = \mathrm{Bottleneck}_k(y_k)\ (k=1..n),
        \qquad \mathrm{out} = A\big(\mathrm{cv_2}([y_0; y_1; \dots; y_{n+1}])\big),

    with :math:`\mathrm{cv_1}` a 1x1 :class:`ConvBNAct` to ``2c`` channels (``c = c_out // 2``),
    split into two halves, and :math:`\mathrm{cv_2}` a 1x1 :class:`ConvBNAct` from
    ``(2 + n) c`` channels to ``c_out``. The block itself contains **no attention**; ``attention``
    (default none) is a module applied to its output, e.g. coordinate attention, as in the
    "C2f + CA" variants of YOLOv8.

    Args:
        c_in, c_out: input and output channels (``c_out`` even).
        n: number of bottlenecks.
        shortcut: each bottleneck adds its input to its output (default True). This is
            ultralytics' ``C2f(..., shortcut=True)``, the setting of YOLOv8's *backbone*; its
            neck (the head's C2f blocks) uses ``shortcut=False`` (ultralytics' own default).
        attention: an optional module ``(B, c_out, H, W) -> (B, c_out, H, W)`` after ``cv2``.

    Shape:
        x: ``(B, c_in, H, W)`` -> ``(B, c_out, H, W)``.

    Reference:
        G. Jocher, A. Chaurasia, J. Qiu. *Ultralytics YOLOv8* (2023), the ``C2f`` module of
        ``ultralytics.nn.modules.block``. Taught in :ref:`chap-residual-attention`.
    """

    def __init__(self, c_in: int, c_out: int, n: int = 1, *, shortcut: bool = True,
                 attention: nn.Module | None = None):
        super().__init__()
        if checks.positive_int(c_out, "c_out") % 2:
            raise ValueError(f"c_out must be even (it is split in two halves), got {c_out}")
        self.c_in, self.c = checks.positive_int(c_in, "c_in"), c_out // 2
        checks.positive_int(n, "n")
        if attention is not None and not isinstance(attention, nn.Module):
            raise TypeError(f"attention must be an nn.Module (or None), got "
                            f"{type(attention).__name__}")
        self.cv1 = ConvBNAct(c_in, 2 * self.c)
        self.m = nn.ModuleList(Bottleneck(self.c, shortcut=shortcut) for _ in range(n))
        self.cv2 = ConvBNAct((2 + n) * self.c, c_out)
        self.attention = attention if attention is not None else nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        checks.feature_map(x, "x", self.c_in)
        y = list(self.cv1(x).chunk(2, dim=1))                          # 2 x (B, c, H, W)
        y.extend(m(y[-1]) for m in self.m)                             # the chain, on the 2nd half
        return self.attention(self.cv2(torch.cat(y, dim=1)))           # (B, (2+n)c) -> (B, c_out)


class AttentionProposal(nn.Module):
    r"""RA-CNN's attention proposal network: a square (centre, side) from a feature map.

    .. math::

        (t_x, t_y) = \operatorname{soft\text{-}argmax}\big(w_c^\top a(p)\big), \qquad
        t_\ell = \tfrac13 + \tfrac23\, \sigma\big(w_s^\top \bar a + b_s\big),

    the centre a soft-argmax (:class:`attnlab.spatial.SoftArgmax2d`) of a 1x1 score map over
    the positions of ``a``, the side (a fraction of the image) from the mean feature
    :math:`\bar a`, kept at least a third of the image as RA-CNN keeps each scale's square.
    Both start at zero: the first square is centred with side 2/3.

    Shape:
        a: ``(B, C, H, W)`` -> centre ``(B, 2)`` as (x, y) in [-1, 1], side ``(B,)`` in
        (1/3, 1).

    Reference:
        J. Fu, H. Zheng, T. Mei. *Look Closer to See Better: Recurrent Attention Convolutional
        Neural Network for Fine-grained Image Recognition*. CVPR 2017.
        Taught in :ref:`chap-scale-attention`.
    """

    def __init__(self, channels: int):
        super().__init__()
        self.channels = checks.positive_int(channels, "channels")
        self.score = nn.Conv2d(channels, 1, 1)                 # where: a score per position
        self.side = nn.Linear(channels, 1)                     # how large
        for layer in (self.score, self.side):
            nn.init.zeros_(layer.weight), nn.init.zeros_(layer.bias)
        self.soft_argmax = SoftArgmax2d()

    def forward(self, a: torch.Tensor):
        checks.feature_map(a, "a", self.channels)
        centre = self.soft_argmax(self.score(a))[:, :2]        # (B, 2)
        side = 1 / 3 + 2 / 3 * torch.sigmoid(self.side(a.mean((2, 3)))[:, 0])   # (B,)
        return centre, side


def crop_and_zoom(x: torch.Tensor, centre: torch.Tensor, side: torch.Tensor,
                  size: int) -> torch.Tensor:
    r"""The square of ``x`` at ``centre`` with side ``side`` (fractions of the image),
    resampled bilinearly to ``size x size``: differentiable in the centre and the side.

    Shape: x ``(B, C, H, W)``, centre ``(B, 2)`` (x, y) in [-1, 1], side ``(B,)`` in (0, 1]
    -> ``(B, C, size, size)``. The values are not checked (that would stop every training
    step to look at them): a square reaching past the border reads zeros there, a side above 1
    zooms out, a side of 0 repeats the centre's value.
    """
    checks.feature_map(x, "x"), checks.tensor(centre, "centre"), checks.tensor(side, "side")
    B = x.shape[0]
    if centre.shape != (B, 2) or side.shape != (B,):
        raise ValueError(f"centre must be (B, 2) = {(B, 2)} and side (B,) = {(B,)}, got "
                         f"{tuple(centre.shape)} and {tuple(side.shape)}")
    theta = torch.zeros(B, 2, 3, dtype=x.dtype, device=x.device)
    theta[:, 0, 0] = theta[:, 1, 1] = side                     # scale
    theta[:, :, 2] = centre                                    # shift
    return affine_warp(x, theta, (checks.positive_int(size, "size"),) * 2)


def rank_loss(logits_coarse: torch.Tensor, logits_fine: torch.Tensor, y: torch.Tensor,
              margin: float = 0.05) -> torch.Tensor:
    r"""RA-CNN's pairwise ranking loss: the finer scale should be surer of the true class.

    .. math:: L = \max\big(0,\ p^{(1)}_y - p^{(2)}_y + \text{margin}\big),

    averaged over the batch, with :math:`p^{(s)} = \operatorname{softmax}` of scale ``s``'s
    logits. The coarse scale's probability is detached: the loss asks the fine scale (and the
    proposal that feeds it) to do better, never the coarse scale to do worse.

    Shape: logits ``(B, K)`` each (``B >= 1``), y ``(B,)`` integer classes in ``[0, K)``,
    ``margin`` a finite number -> a scalar.
    """
    checks.tensor(logits_coarse, "logits_coarse"), checks.tensor(logits_fine, "logits_fine")
    if logits_coarse.shape != logits_fine.shape or logits_coarse.dim() != 2:
        raise ValueError(f"logits_coarse and logits_fine must both be (B, K), got "
                         f"{tuple(logits_coarse.shape)} and {tuple(logits_fine.shape)}")
    checks.not_empty(logits_coarse, "logits_coarse")
    checks.ids(y, "y", logits_coarse.shape[1], logits_coarse.shape[:1], "(B,)")
    checks.number(margin, "margin")
    p1 = logits_coarse.detach().softmax(-1).gather(1, y[:, None])[:, 0]
    p2 = logits_fine.softmax(-1).gather(1, y[:, None])[:, 0]
    return (p1 - p2 + margin).clamp(min=0).mean()


def decoupled_mask_loss(logits: torch.Tensor, masks: torch.Tensor,
                        classes: torch.Tensor) -> torch.Tensor:
    r"""Mask R-CNN's mask loss: binary cross-entropy on the true class's mask only.

    .. math::

        L = \frac{1}{|I|\,HW} \sum_{i \in I} \sum_{p} \mathrm{BCE}\big(\sigma(s_{c_i}(p)),
        m_i(p)\big),

    where :math:`s_k` is the mask logit of class :math:`k`: each instance :math:`i` of class
    :math:`c_i` is scored on its own class's mask, so classes do not compete for a pixel (a
    softmax over classes would make them).

    Args:
        logits: ``(B, K, H, W)`` one mask logit per class (``K >= 1``).
        masks: ``(B, I, H, W)`` the target mask (0 or 1) of each of ``I`` instances per image.
        classes: ``(B, I)`` integer class of each instance, in ``[0, K)``.

    Returns:
        the mean loss, a scalar; 0 (with a zero gradient) when there is no instance to score
        (``B * I = 0``), as in detectron2's mask loss.

    Reference:
        K. He, G. Gkioxari, P. Dollar, R. Girshick. *Mask R-CNN*. ICCV 2017, arXiv:1703.06870.
    """
    checks.tensor(logits, "logits"), checks.tensor(masks, "masks")
    if logits.dim() != 4 or masks.dim() != 4 or masks.shape[0] != logits.shape[0] \
            or masks.shape[-2:] != logits.shape[-2:]:
        raise ValueError(f"logits must be (B, K, H, W) and masks (B, I, H, W) with the same B, H, "
                         f"W, got {tuple(logits.shape)} and {tuple(masks.shape)}")
    checks.ids(classes, "classes", logits.shape[1], masks.shape[:2], "(B, I)")
    if classes.numel() == 0:  # nothing to score: no loss, and no NaN from a mean over nothing
        return logits.sum() * 0.0
    H, W = masks.shape[-2:]
    idx = classes[:, :, None, None].expand(-1, -1, H, W)              # (B, I, H, W)
    chosen = logits.gather(1, idx)                                     # the true class's mask
    return F.binary_cross_entropy_with_logits(chosen, masks)


def masked_bce(logits: torch.Tensor, target: torch.Tensor, where: torch.Tensor) -> torch.Tensor:
    r"""Binary cross-entropy averaged only over the positions where ``where`` is True.

    Loss masking: a coarse map (e.g. a deeper branch's "there is an object here") decides where
    a finer branch is taught; elsewhere it gets no gradient. With no position selected the loss
    is 0 (not NaN).

    Shape: ``logits``, ``target``, ``where`` (boolean) all of one shape, e.g. ``(B, 1, H, W)``.

    Reference:
        H. Lin, Z. Shi, Z. Zou. *Fully Convolutional Network With Task Partitioning for Inshore
        Ship Detection in Optical Remote Sensing Images*. IEEE GRSL 14(10), 2017.
    """
    checks.tensor(logits, "logits"), checks.tensor(target, "target")
    if target.shape != logits.shape:
        raise ValueError(f"target must have the shape of logits {tuple(logits.shape)}, "
                         f"got {tuple(target.shape)}")
    checks.bool_mask(where, "where", logits.shape)
    loss = F.binary_cross_entropy_with_logits(logits, target, reduction="none")
    return (loss * where).sum() / where.sum().clamp(min=1)
