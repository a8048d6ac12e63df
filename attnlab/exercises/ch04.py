"""Checkers for Chapter 4, channel attention."""
from __future__ import annotations

import math
from collections.abc import Mapping

import torch

from ._core import (Feedback, as_counts, check_build, checker, diagnose, fmt,
                    formula_or_counts, formula_values, fresh_points, generator)

__all__ = ['check_se_count', 'check_eca_kernel', 'check_se_block']


_SE_REDUCTIONS = (4, 8, 16, 32)


def _se_params(channels: int, reduction: int) -> int:
    from attnlab.channel import SqueezeExcite
    from attnlab.utils import count_parameters
    return count_parameters(SqueezeExcite(channels, reduction))


@checker("ex-channel-se-count")
def check_se_count(answer, channels: int = 256) -> Feedback:
    r"""Exercise :ref:`ex-channel-se-count`: the parameter count of an SE block.

    ``answer`` is either your formula as a callable ``f(C, r)`` (checked for C in 64, 256, 512 and
    r in 4, 8, 16, 32) or a dict ``{r: count}`` for ``C = channels`` (default 256) and r in 4, 8,
    16, 32. Expected values come from :func:`attnlab.utils.count_parameters` on
    :class:`attnlab.channel.SqueezeExcite`, never from a typed-in table.
    """
    def draw(rng):
        r = rng.choice(_SE_REDUCTIONS)
        return r * rng.randint(1, 64), r

    got = formula_or_counts(answer, fresh_points([(c, r) for c in (64, 256, 512)
                                                  for r in _SE_REDUCTIONS], draw),
                            ("C", "r"), _SE_REDUCTIONS, channels)
    if isinstance(got, Feedback):
        return got
    for c, r in got:
        expected = _se_params(c, r)
        h = c // r
        hint = diagnose(got[(c, r)], expected, [
            (2 * c * h, "you counted the weights only: each of the two 1x1 convolutions also has "
                        "a bias (C/r for the first, C for the second)."),
            (2 * c * h + c, "the first layer's C/r biases are missing."),
            (2 * c * h + h, "the second layer's C biases are missing."),
            (c * h + h, "that is only the squeeze layer W1, b1; the excitation layer W2, b2 maps "
                        "C/r back to C."),
            (c * c + c, "there is a bottleneck: the hidden width is C/r, not C."),
            (2 * c * c // r**2 + c // r + c,
             "the weight matrices are C x C/r: C*C/r each, not (C/r)^2 * C."),
        ])
        if hint is not None:
            return Feedback(False, f"for C = {c}, r = {r}: expected {expected:,} parameters, "
                                   f"got {fmt(got[(c, r)])}. "
                                   + (hint or "Count W1 (C/r x C), b1 (C/r), W2 (C x C/r) and "
                                              "b2 (C)."))
    total = sum(n * _se_params(c, 16) for c, n in [(256, 3), (512, 4), (1024, 6), (2048, 3)])
    return Feedback(True, f"2C^2/r + C/r + C matches SqueezeExcite for all {len(got)} cases "
                          f"(C = 256, r = 16: {_se_params(256, 16):,}). Over ResNet-50's 16 "
                          f"bottleneck blocks at r = 16 that is {total:,} extra parameters.")


# --- Derive: ECA's adaptive kernel size --------------------------------------------------------

_ECA_FORMULA_C = (4, 8, 16, 32, 64, 100, 128, 256, 512, 1000, 1024, 2048, 4096)
_ECA_DICT_C = (64, 128, 256, 512, 1024, 2048)


def _odd_up(t: float) -> int:
    t = int(abs(t))
    return t if t % 2 else t + 1


def _eca_mistakes():
    """(formula, hint) for the usual slips in psi(C) = |(log2 C + b) / gamma|_odd."""
    log2 = math.log2
    return [
        (lambda c: int((log2(c) + 1) / 2), "The kernel size must be odd (a channel in the middle "
                                           "of its neighbours): after truncating t, add 1 when "
                                           "it is even."),
        (lambda c: (lambda t: t if t % 2 else t - 1)(int((log2(c) + 1) / 2)),
         "At an even t (C = 8, 128, 2048, ...) the authors' code goes up to the next odd number, "
         "not down."),
        (lambda c: _odd_up(round((log2(c) + 1) / 2)),
         "Truncate t = (log2 C + b) / gamma to an integer (int) before making it odd; rounding "
         "it to the nearest integer, or up, gives too large a kernel."),
        (lambda c: _odd_up((math.log(c) + 1) / 2), "The logarithm is log2 (C = 2^(gamma k - b)), "
                                                   "not the natural log."),
        (lambda c: _odd_up(log2(c) / 2), "The offset is missing: t = (log2 C + b) / gamma, "
                                         "with b = 1."),
        (lambda c: max(3, _odd_up((log2(c) + 1) / 2)), "That is timm's version, which never goes "
                                                       "below 3; the paper's rule gives k = 1 for "
                                                       "fewer than 8 channels."),
    ]


@checker("ex-channel-eca-kernel")
def check_eca_kernel(answer) -> Feedback:
    r"""Exercise :ref:`ex-channel-eca-kernel`: ECA's adaptive kernel size :math:`k = \psi(C)`.

    ``answer`` is a formula ``f(C)`` (checked for C from 4 to 4096) or a dict ``{C: k}`` for the
    widths 64, 128, 256, 512, 1024 and 2048. Expected values come from
    :func:`attnlab.channel.eca_kernel_size` (gamma = 2, b = 1, the authors' rounding).
    """
    from attnlab.channel import eca_kernel_size
    if callable(answer):
        widths = tuple(dict.fromkeys(fresh_points(_ECA_FORMULA_C, lambda r: r.randint(2, 8192))))
        got = formula_values(answer, [(c,) for c in widths], ("C",))
        if isinstance(got, Feedback):
            return got
        got = {c: got[(c,)] for c in widths}
    elif isinstance(answer, Mapping):
        widths = _ECA_DICT_C
        got = as_counts(answer, "answer", widths, "C")
        if isinstance(got, Feedback):
            return got
    else:
        return Feedback(False, "answer should be a formula f(C) (a function) or a dict {C: k} "
                               f"for C in {', '.join(map(str, _ECA_DICT_C))}, got "
                               f"{type(answer).__name__}.")
    expected = {c: eca_kernel_size(c) for c in widths}
    wrong = [c for c in widths if got[c] != expected[c]]
    if not wrong:
        return Feedback(True, f"k = {', '.join(f'{expected[c]}' for c in _ECA_DICT_C)} for C = "
                              f"{', '.join(map(str, _ECA_DICT_C))}: the kernel grows by 2 when "
                              "the width grows about 16-fold, so ECA stays a handful of weights.")
    c = wrong[0]
    for formula, hint in _eca_mistakes():
        if all(got[w] == formula(w) for w in widths):
            break
    else:
        hint = "Compute t = (log2 C + 1) / 2, truncate it to an integer, add 1 if it is even."
    return Feedback(False, f"for C = {c}: expected k = {expected[c]}, got {fmt(got[c])}. " + hint)


# --- Build: an SE block from tensors -----------------------------------------------------------

def _se_cases():
    """Non-square maps, batch 1, a bottleneck of 1, 1 x W maps, large inputs."""
    g = generator(0)
    for B, C, H, W, r, scale in ((2, 8, 5, 8, 2, 1.0), (1, 16, 4, 4, 4, 1.0),
                                 (3, 12, 1, 9, 3, 1.0), (1, 6, 3, 2, 6, 1.0),
                                 (4, 32, 7, 7, 16, 1.0), (2, 16, 6, 3, 4, 10.0)):
        hidden = C // r
        x = 0.5 + scale * torch.randn(B, C, H, W, generator=g, dtype=torch.float64)
        w1 = torch.randn(hidden, C, generator=g, dtype=torch.float64) / math.sqrt(C)
        w2 = torch.randn(C, hidden, generator=g, dtype=torch.float64) / math.sqrt(hidden)
        b1 = 0.3 * torch.randn(hidden, generator=g, dtype=torch.float64)
        b2 = 0.3 * torch.randn(C, generator=g, dtype=torch.float64)
        yield (f"x {tuple(x.shape)}, r = {r}" + (f", entries of std {scale:g}" if scale != 1
                                                  else "")), (x, w1, b1, w2, b2)


def _se_reference(x, w1, b1, w2, b2):
    """attnlab's SqueezeExcite with the given weights copied into its 1x1 convolutions."""
    from attnlab.channel import SqueezeExcite
    se = SqueezeExcite(x.shape[1], rd_channels=w1.shape[0]).to(torch.float64)
    with torch.no_grad():
        se.fc1.weight.copy_(w1[:, :, None, None]), se.fc1.bias.copy_(b1)
        se.fc2.weight.copy_(w2[:, :, None, None]), se.fc2.bias.copy_(b2)
        return se(x)


def _se(x, w1, b1, w2, b2, pool="mean", act=torch.relu, gate=torch.sigmoid, where="channel"):
    """An SE block from tensors, and the typical mistakes as switches."""
    dims = (0, 2, 3) if pool == "batch" else (2, 3)
    z = x.amax(dim=(2, 3)) if pool == "max" else x.mean(dim=dims).expand(x.shape[0], -1)
    a = gate(act(z @ w1.T + b1) @ w2.T + b2)                                    # (B, C)
    return x * (a[:, :, None, None] if where == "channel" else a[:, None, None, :])


@checker("ex-channel-se-build")
def check_se_block(fn) -> Feedback:
    r"""Exercise :ref:`ex-channel-se-build`: a squeeze-and-excitation block from tensors.

    ``fn(x, w1, b1, w2, b2)`` gets a feature map ``x (B, C, H, W)``, the squeeze layer ``w1
    (C/r, C)``, ``b1 (C/r,)`` and the excitation layer ``w2 (C, C/r)``, ``b2 (C,)``, and returns
    the rescaled map ``(B, C, H, W)``. It is held against :class:`attnlab.channel.SqueezeExcite`
    with the same weights on non-square maps, batch 1, a bottleneck of one unit and large inputs.
    """
    def cases():
        for case, args in _se_cases():
            yield case, args, _se_reference(*args)

    mistakes = [
        (lambda *a: _se(*a, pool="max"), "The squeeze is global *average* pooling: "
                                         "x.mean(dim=(2, 3)), not the maximum."),
        (lambda *a: _se(*a, gate=lambda t: torch.softmax(t, -1)),
         "The gate is a sigmoid per channel, not a softmax over channels: the channels do not "
         "compete, each gets its own weight in (0, 1)."),
        (lambda *a: _se(*a, act=lambda t: t), "The ReLU between the two layers is missing."),
        (lambda *a: _se(*a, pool="batch"), "The squeeze also averages over the batch: every "
                                           "image needs its own gate, so pool over H and W only "
                                           "(dims 2 and 3)."),
        (lambda *a: _se(*a, where="width"), "The gate scales the wrong axis (the width W): "
                                            "reshape it to (B, C, 1, 1) before multiplying."),
    ]
    return check_build(fn, cases(), what="attnlab.channel.SqueezeExcite", atol=1e-8,
                       mistakes=mistakes, names=("y",),
                       done="Squeeze, excitation and rescaling all agree.")
