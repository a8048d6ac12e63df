r"""Hard attention: a glimpse sensor and the recurrent attention model, trained by sampling.

Soft attention looks everywhere and weights what it sees; hard attention looks at *one* place,
chosen by sampling, and sees nothing else. The choice of place is not differentiable, so the
policy that chooses it is trained with REINFORCE (Williams, 1992): make the places that led to a
correct answer more likely.

* :func:`glimpse` cuts a retina of ``scales`` patches around a location: the first ``size x
  size`` pixels at full resolution, each next one twice as wide and averaged down to the same
  size.
* :class:`RecurrentAttention` is the recurrent attention model (RAM) of Mnih et al. (2014): a
  glimpse network, a recurrent core, a Gaussian location policy, a learned baseline and a
  classifier.
* :func:`reinforce_loss` is the hybrid loss: cross-entropy for the classifier (back-propagated),
  REINFORCE for the policy, squared error for the baseline.

Locations are ``(x, y)`` in ``[-1, 1]``, ``(-1, -1)`` the top-left corner of the image, as in
``torch.nn.functional.grid_sample``.

Taught in: :ref:`chap-hard-attention`.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from attnlab import checks
from attnlab.spatial import SoftArgmax2d

__all__ = ["glimpse", "RecurrentAttention", "reinforce_loss"]


def glimpse(x: torch.Tensor, loc: torch.Tensor, size: int = 8, scales: int = 3) -> torch.Tensor:
    r"""The retina: ``scales`` square patches centred on ``loc``, each twice as wide as the last.

    Patch :math:`s` covers :math:`\text{size}\cdot 2^s` pixels on a side, averaged in blocks of
    :math:`2^s \times 2^s` down to ``size x size``: sharp in the centre, coarse around it. The
    window is cut at whole pixels (of its own resolution), so nothing about the location is
    differentiable: this is what makes the attention *hard*. Outside the image it sees zeros;
    a location outside [-1, 1] is moved to the nearest edge first.

    Shape:
        x: ``(B, C, H, W)``, loc: ``(B, 2)`` as ``(x, y)`` in [-1, 1] (finite) ->
        ``(B, scales, C, size, size)``.
    """
    checks.feature_map(x)
    checks.tensor(loc, "loc")
    if tuple(loc.shape) != (x.shape[0], 2):
        raise ValueError(f"loc must have shape (B, 2) = {(x.shape[0], 2)}, got {tuple(loc.shape)}")
    if not bool(torch.isfinite(loc).all()):
        raise ValueError("loc must be finite (x, y) locations in [-1, 1], got NaN or inf")
    size, scales = checks.positive_int(size, "size"), checks.positive_int(scales, "scales")
    return _cut(_pyramid(x, size, scales), loc, size, x.shape[-2:])


def _pyramid(x: torch.Tensor, size: int, scales: int) -> list[torch.Tensor]:
    """The image at 1, 1/2, 1/4, ... resolution, each padded with ``size`` zeros all round."""
    return [F.pad(F.avg_pool2d(x, 2**s, ceil_mode=True) if s else x, (size,) * 4)
            for s in range(scales)]


def _cut(levels: list[torch.Tensor], loc: torch.Tensor, size: int, hw) -> torch.Tensor:
    """A ``size x size`` window of every level around ``loc``, at whole pixels of that level."""
    (H, W), B = hw, loc.shape[0]
    centre = (loc.detach().clamp(-1, 1) + 1) / 2 * loc.new_tensor([W, H])  # pixels, (x, y)
    b = torch.arange(B, device=loc.device)[:, None, None]
    k = torch.arange(size, device=loc.device)
    patches = []
    for s, level in enumerate(levels):
        corner = torch.round(centre / 2**s - size / 2).long() + size       # (B, 2) top-left
        rows = (corner[:, 1:] + k)[:, :, None]                             # (B, size, 1)
        cols = (corner[:, :1] + k)[:, None, :]                             # (B, 1, size)
        patches.append(level[b, :, rows, cols].permute(0, 3, 1, 2))        # (B, C, size, size)
    return torch.stack(patches, 1)                              # (B, scales, C, size, size)


class RecurrentAttention(nn.Module):
    r"""The recurrent attention model: look, remember, choose where to look next, answer.

    .. math::

        g_t = \mathrm{ReLU}\big(W_\rho\,\rho(x, l_t) + W_l\, l_t\big), \qquad
        h_t = \mathrm{ReLU}(W_h h_{t-1} + W_g g_t), \qquad
        l_{t+1} \sim \mathcal N\big(\mu_t,\ \sigma^2 I\big), \qquad
        \mu_t = l_t + \text{where}(\rho_{\text{coarse}}, h_t)

    The first glimpse is taken at the centre, :math:`l_1 = (0, 0)`. The location network
    *where* looks at the coarsest patch of the retina (the periphery) through a 3x3
    convolution whose features are shifted by the core state :math:`h_t`, scores every place
    with a 1x1 convolution and returns the soft-argmax of the scores
    (:class:`~attnlab.spatial.SoftArgmax2d`) as the step from :math:`l_t`. (Mnih et al.'s
    location network is linear in :math:`h_t`; a convolution that scores every place of the
    periphery learns the same job from far fewer samples, because one filter serves every
    position.) The classifier reads :math:`h_t` after every glimpse; the baseline
    :math:`b_t = w_b^\top h_t` (on a detached :math:`h_t`) predicts the reward and only serves
    to reduce the variance of the policy gradient.

    Args:
        glimpses: how many glimpses to take (the first at the centre).
        size, scales: the retina (see :func:`glimpse`).
        hidden: width of the glimpse features and of the recurrent state.
        std: the policy's standard deviation :math:`\sigma` (fixed, in units of half the image).

    Shape:
        x: ``(B, C, H, W)`` -> logits ``(B, num_classes)`` after the last glimpse. With
        ``return_attention=True`` also a dict: ``"locations"`` ``(B, glimpses, 2)``,
        ``"logits"`` ``(B, glimpses, num_classes)`` (the answer after each glimpse),
        ``"log_prob"`` and ``"baseline"`` ``(B, glimpses - 1)`` (one per sampled location).

    In training mode the locations are sampled; in eval mode the policy's mean is used
    (``sample=`` overrides either).

    Reference: V. Mnih, N. Heess, A. Graves, K. Kavukcuoglu. *Recurrent Models of Visual
    Attention*. NeurIPS 2014, arXiv:1406.6247.
    """

    def __init__(self, num_classes: int = 10, in_channels: int = 1, glimpses: int = 3,
                 size: int = 8, scales: int = 3, hidden: int = 128, std: float = 0.15):
        super().__init__()
        self.glimpses = checks.positive_int(glimpses, "glimpses")
        self.size = checks.positive_int(size, "size")
        self.scales = checks.positive_int(scales, "scales")
        self.in_channels = checks.positive_int(in_channels, "in_channels")
        checks.positive_int(num_classes, "num_classes"), checks.positive_int(hidden, "hidden")
        self.std = checks.positive(std, "std")
        self.what = nn.Linear(scales * in_channels * size * size, hidden)   # W_rho
        self.where_xy = nn.Linear(2, hidden)                                # W_l
        self.core = nn.RNNCell(hidden, hidden, nonlinearity="relu")          # W_g, W_h
        self.look = nn.Conv2d(in_channels, 8, 3, padding=1)                 # location network
        self.steer = nn.Linear(hidden, 8)                                   # h_t shifts them
        self.score = nn.Linear(8, 1)                                        # a 1x1 convolution
        self.argmax = SoftArgmax2d()
        self.baseline = nn.Linear(hidden, 1)
        self.classifier = nn.Linear(hidden, num_classes)

    def where(self, coarse: torch.Tensor, h: torch.Tensor) -> torch.Tensor:
        """The policy's mean step: ``(B, C, size, size), (B, hidden) -> (B, 2)`` (patch units)."""
        B, C, S, _ = coarse.shape
        pad = F.pad(coarse, (1, 1, 1, 1))
        cols = torch.stack([pad[:, :, i:i + S, j:j + S] for i in range(3) for j in range(3)], 2)
        # self.look(coarse) written as one matrix product (faster for maps this small)
        f = self.look.weight.flatten(1) @ cols.reshape(B, C * 9, S * S)     # (B, 8, S*S)
        f = F.relu(f + self.look.bias[:, None] + self.steer(h)[:, :, None])
        score = self.score(f.transpose(1, 2))                               # (B, S*S, 1)
        return self.argmax(score.view(B, 1, S, S))[:, :2]                   # (B, 2)

    def forward(self, x: torch.Tensor, *, return_attention: bool = False,
                sample: bool | None = None):
        checks.feature_map(x, "x", self.in_channels)
        sample = self.training if sample is None else sample
        B, _, H, W = x.shape
        reach = x.new_tensor([W, H]).reciprocal() * self.size * 2 ** (self.scales - 1)
        loc = x.new_zeros(B, 2)                                             # l_1: the centre
        h = x.new_zeros(B, self.core.hidden_size)
        levels = _pyramid(x, self.size, self.scales)                        # computed once
        locs, logits, log_probs, baselines = [loc], [], [], []
        for t in range(self.glimpses):
            rho = _cut(levels, loc, self.size, (H, W))          # (B, scales, C, size, size)
            g = F.relu(self.what(rho.flatten(1)) + self.where_xy(loc))      # (B, hidden)
            h = self.core(g, h)                                             # (B, hidden)
            logits.append(self.classifier(h))
            if t == self.glimpses - 1:
                break
            mean = loc + reach * self.where(rho[:, -1], h)                  # (B, 2)
            nxt = (mean + self.std * torch.randn_like(mean)) if sample else mean
            nxt = nxt.detach()                             # a sample: no gradient flows through it
            # log N(l; mean, std^2 I), up to a constant: the policy learns only through this
            log_probs.append(-((nxt - mean) ** 2).sum(-1) / (2 * self.std ** 2))
            baselines.append(self.baseline(h.detach()).squeeze(-1))
            loc = nxt.clamp(-1, 1)
            locs.append(loc)
        if not return_attention:
            return logits[-1]
        none = x.new_zeros(B, 0)
        return logits[-1], {"locations": torch.stack(locs, 1), "logits": torch.stack(logits, 1),
                            "log_prob": torch.stack(log_probs, 1) if log_probs else none,
                            "baseline": torch.stack(baselines, 1) if baselines else none}


def reinforce_loss(logits: torch.Tensor, y: torch.Tensor, info: dict, *, use_baseline: bool = True,
                   train_policy: bool = True) -> tuple[torch.Tensor, dict]:
    r"""The hybrid loss of the recurrent attention model (Mnih et al., 2014).

    .. math::

        \mathcal L = \frac1T\sum_t \mathrm{CE}(\hat y_t, y)
        \;-\; \frac1B\sum_{b,t} \log\pi(l^b_t)\,\big(R^b - b^b_t\big)
        \;+\; \frac1{B T'}\sum_{b,t} \big(R^b - b^b_t\big)^2,
        \qquad R^b = [\arg\max \hat y^b_T = y^b]

    The classifier learns by back-propagation from its answer after every glimpse; the policy
    by REINFORCE (Williams, 1992), from the reward :math:`R` of the final answer. The advantage
    :math:`R - b` is a constant in the policy term: no gradient flows into the reward or, from
    there, into the baseline. With ``use_baseline=False`` the advantage is :math:`R` itself;
    with ``train_policy=False`` the policy term is left out of the loss (a control: the
    location network then never learns).

    Args:
        logits, info: what ``RecurrentAttention(..., return_attention=True)`` returned:
            ``(B, K)`` logits and a dict with ``"logits"`` ``(B, G, K)``, ``"log_prob"`` and
            ``"baseline"`` ``(B, G - 1)``.
        y: the true classes ``(B,)``, integers in ``[0, K)``; ``B >= 1``.

    Returns:
        the loss and a dict of its parts (detached): ``"classify"``, ``"policy"``,
        ``"baseline"`` and ``"reward"`` (the batch's accuracy).
    """
    checks.tensor(logits, "logits")
    if logits.dim() != 2:
        raise ValueError(f"logits must have shape (B, num_classes), got {tuple(logits.shape)}")
    checks.not_empty(logits, "logits")
    B, K = logits.shape
    checks.ids(y, "y", K, (B,), "(B,)")
    if not isinstance(info, dict):
        raise TypeError(f"info must be the dict RecurrentAttention returned, got "
                        f"{type(info).__name__}")
    for key in ("logits", "log_prob", "baseline"):
        checks.tensor(info.get(key), f'info["{key}"]')
    every = info["logits"]                                                 # (B, G, K)
    if every.dim() != 3 or every.shape[1] < 1 or (every.shape[0], every.shape[2]) != (B, K):
        raise ValueError(f'info["logits"] must have shape (B, G, K) with B = {B}, K = {K} and '
                         f"G >= 1 glimpses, got {tuple(every.shape)}")
    for key in ("log_prob", "baseline"):
        if tuple(info[key].shape) != (B, every.shape[1] - 1):
            raise ValueError(f'info["{key}"] must have shape (B, G - 1) = '
                             f"{(B, every.shape[1] - 1)}, got {tuple(info[key].shape)}")
    reward = (logits.argmax(-1) == y).to(logits.dtype)                     # R, (B,)
    ce = F.cross_entropy(every.flatten(0, 1), y.repeat_interleave(every.shape[1]))
    advantage = reward[:, None] - (info["baseline"].detach() if use_baseline else 0.0)
    policy = -(info["log_prob"] * advantage).sum(1).mean()
    base = ((reward[:, None] - info["baseline"]) ** 2).mean() if info["baseline"].numel() else 0.0
    parts = {"classify": ce.detach(), "policy": policy.detach(),
             "baseline": torch.as_tensor(base).detach(), "reward": reward.mean()}
    return ce + (policy if train_policy else 0.0) + base, parts
