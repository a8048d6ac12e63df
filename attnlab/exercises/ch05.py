"""Checkers for Chapter 5, spatial attention."""
from __future__ import annotations

import torch
import torch.nn.functional as F

from ._core import (Feedback, as_counts, as_tensor, check_build, checker, diagnose, fmt,
                    generator, safe)

__all__ = ['check_spatial_cost', 'check_rotation_theta', 'check_spatial_gate']


@checker("ex-spatial-cost")
def check_spatial_cost(spatial_gate=None, coordinate=None, se=None) -> Feedback:
    r"""Exercise :ref:`ex-spatial-cost`: the parameters of three gates (spatial, coordinate, SE).

    Args:
        spatial_gate: dict ``{k: count}`` for ``SpatialGate(k)``, k in 3, 5, 7.
        coordinate: dict ``{C: count}`` for ``CoordinateAttention(C)`` (defaults), C in 64, 512.
        se: dict ``{C: count}`` for ``SqueezeExcite(C)`` (r = 16), C in 64, 512.

    Each part is checked against :func:`attnlab.utils.count_parameters` on the real module; the
    answer passes when all three parts are given and right.
    """
    from attnlab.channel import SqueezeExcite
    from attnlab.spatial import CoordinateAttention, SpatialGate
    from attnlab.utils import count_parameters

    if spatial_gate is None and coordinate is None and se is None:
        return Feedback(False, "give at least one of spatial_gate={k: count}, "
                               "coordinate={C: count}, se={C: count}.")
    lines, ok = [], True

    def part(answer, name, keys, key_name, make, wrongs):
        nonlocal ok
        if answer is None:
            ok = False
            lines.append(f"{name}: not given.")
            return
        counts = as_counts(answer, name, keys, key_name)
        if isinstance(counts, Feedback):
            ok = False
            lines.append(str(counts).removeprefix("Not yet. "))
            return
        for key in keys:
            expected = count_parameters(make(key))
            hint = diagnose(counts[key], expected, wrongs(key))
            if hint is not None:
                ok = False
                lines.append(f"{name}, {key_name} = {key}: expected {expected:,}, got "
                             f"{fmt(counts[key])}. "
                             + (hint or "Count every weight and bias with count_parameters."))
                return
        right = ", ".join(f"{key_name}={k}: {count_parameters(make(k)):,}" for k in keys)
        lines.append(f"{name}: right ({right}).")

    part(spatial_gate, "spatial_gate", (3, 5, 7), "k", SpatialGate, lambda k: [
        (2 * k * k, "the convolution has one bias too: 2k^2 + 1."),
        (k * k + 1, "the convolution reads two maps (channel average and channel maximum): "
                    "2 k^2 weights."),
        (k * k, "the convolution reads two maps (average and maximum) and has a bias: 2 k^2 + 1."),
    ])

    def ca_wrongs(c):
        h = max(8, c // 32)
        return [(c * h + h + 2 * (h * c + c), "coordinate attention's default has a batch norm "
                 "after the shared convolution: 2 more parameters per hidden channel."),
                (c * (c // 32) + 3 * (c // 32) + 2 * (c * (c // 32) + c),
                 "the hidden width is max(8, C // 32), never below 8."),
                (c * h + 3 * h + h * c + c, "there are two output convolutions, F_h and F_w, "
                                            "not one."),
                (3 * c * h, "you counted the weights only: each 1x1 convolution has a bias, and "
                            "the batch norm has 2 per hidden channel.")]
    part(coordinate, "coordinate", (64, 512), "C", CoordinateAttention, ca_wrongs)

    def se_wrongs(c):
        h = c // 16
        return [(2 * c * h, "you counted the weights only: add the biases C/16 and C."),
                (2 * c * (c // 32) + c // 32 + c, "SqueezeExcite's default is r = 16 (32 is "
                                                  "coordinate attention's reduction).")]
    part(se, "se", (64, 512), "C", SqueezeExcite, se_wrongs)
    if ok:
        lines.append("The spatial gate's 2k^2 + 1 does not depend on C; SE grows like 2C^2/16 "
                     "and coordinate attention like 3C * max(8, C/32).")
    return Feedback(ok, " ".join(lines))


# --- Understand: a quarter turn with affine_warp -----------------------------------------------

@checker("ex-spatial-rotate")
def check_rotation_theta(theta) -> Feedback:
    r"""Exercise :ref:`ex-spatial-rotate`: the affine ``theta`` that turns an image like ``rot90``.

    ``theta`` is a ``(2, 3)`` (or ``(1, 2, 3)``) matrix; :func:`attnlab.spatial.affine_warp` with
    it must give ``torch.rot90(x, 1, dims=(2, 3))`` on random square images (sizes 6 and 5).
    """
    from attnlab.spatial import affine_warp

    t = as_tensor(theta, "theta")
    if isinstance(t, Feedback):
        return t
    if t.numel() != 6:
        return Feedback(False, f"theta should be a 2 x 3 matrix, got shape {tuple(t.shape)}.")
    t = t.reshape(1, 2, 3)
    g = generator(0)

    def turns(th, k):
        for size in (6, 5):
            x = torch.randn(1, 1, size, size, generator=g, dtype=torch.float64)
            if not torch.allclose(affine_warp(x, th), torch.rot90(x, k, dims=(2, 3)), atol=1e-6):
                return False
        return True

    if turns(t, 1):
        return Feedback(True, "affine_warp with your theta equals torch.rot90(x, 1): the grid "
                              "reads the input where the turned picture comes from.")
    if turns(t, -1):
        return Feedback(False, "your theta turns the picture the other way (torch.rot90 with "
                               "k=-1). theta maps output coordinates to input coordinates, so it "
                               "is the inverse of the motion you want: transpose its 2 x 2 part.")
    if turns(t, 2):
        return Feedback(False, "your theta turns the picture half a turn (180 degrees): a quarter "
                               "turn swaps x and y, with one sign flipped.")
    if turns(t, 0):
        return Feedback(False, "that is the identity: nothing moves.")
    return Feedback(False, "affine_warp with your theta does not give torch.rot90(x, 1). A "
                           "quarter turn swaps the roles of x and y and flips one sign, with no "
                           "shift (the last column is 0).")


# --- Build: CBAM's spatial gate ------------------------------------------------------------------

def _gate(x, weight, bias, *, swap=False, gate="sigmoid", pool="mean", use_bias=True):
    """CBAM's spatial gate from tensors, and the variants of the usual mistakes."""
    avg = x.mean(1, keepdim=True) if pool == "mean" else x.sum(1, keepdim=True)
    s = torch.cat([x.amax(1, keepdim=True), avg] if swap else [avg, x.amax(1, keepdim=True)], 1)
    a = F.conv2d(s, weight, bias if use_bias else None, padding=weight.shape[-1] // 2)
    if gate == "sigmoid":
        a = torch.sigmoid(a)
    elif gate == "softmax":
        a = torch.softmax(a.flatten(2), -1).view_as(a)
    return x * a


def _gate_cases():
    """k = 3, 5, 7; batch 1; non-square and odd maps; a map smaller than the kernel; large x."""
    from attnlab.spatial import SpatialGate

    g = generator(0)
    for B, C, H, W, k, scale in ((2, 8, 9, 11, 7, 1.0), (1, 5, 6, 13, 3, 1.0),
                                 (3, 16, 10, 7, 5, 1.0), (1, 4, 3, 2, 7, 1.0),
                                 (2, 6, 12, 12, 7, 20.0), (1, 1, 5, 4, 3, 1.0)):
        x = scale * torch.randn(B, C, H, W, generator=g, dtype=torch.float64)
        module = SpatialGate(k).double()
        with torch.no_grad():
            module.conv.weight.copy_(0.3 * torch.randn(1, 2, k, k, generator=g))
            module.conv.bias.copy_(torch.randn(1, generator=g))
            expected = module(x)
        weight, bias = module.conv.weight.detach().clone(), module.conv.bias.detach().clone()
        yield f"x {tuple(x.shape)}, k = {k}" + (f", entries of std {scale:g}" if scale != 1 else
                                                 ""), (x, weight, bias), expected


@checker("ex-spatial-build")
def check_spatial_gate(fn) -> Feedback:
    r"""Exercise :ref:`ex-spatial-build`: CBAM's spatial gate from tensors.

    ``fn(x, weight, bias)`` gets ``x (B, C, H, W)``, the convolution's ``weight (1, 2, k, k)``
    (input channel 0 reads the channel average, 1 the channel maximum) and ``bias (1,)``, and
    returns the gated map ``(B, C, H, W)``. It is held against
    :class:`attnlab.spatial.SpatialGate` with the same weights, for k = 3, 5, 7 on non-square
    maps, batch 1, a map smaller than the kernel, large inputs and one channel.
    """
    if not callable(fn):
        return Feedback(False, f"pass your function itself, got {type(fn).__name__}.")
    seen = []

    def watched(x, weight, bias):
        out = fn(x, weight, bias)
        seen.append((tuple(x.shape), weight.shape[-1], getattr(out, "shape", None)))
        return out

    mistakes = [
        (lambda x, w, b: _gate(x, w, b, swap=True),
         "The two maps are in the wrong order: the convolution's input channel 0 is the channel "
         "average, channel 1 the channel maximum."),
        (lambda x, w, b: _gate(x, w, b, gate="softmax"),
         "That is a softmax over the positions: CBAM's gate is a sigmoid, one independent weight "
         "in (0, 1) per position (they need not sum to 1)."),
        (lambda x, w, b: _gate(x, w, b, gate=None),
         "The sigmoid is missing: the gate is sigmoid(conv(...)), a weight in (0, 1)."),
        (lambda x, w, b: _gate(x, w, b, use_bias=False),
         "The convolution's bias is missing: pass it to F.conv2d."),
        (lambda x, w, b: _gate(x, w, b, pool="sum"),
         "The first map is the channel sum: CBAM uses the channel average (x.mean(dim=1))."),
    ]
    feedback = check_build(watched, _gate_cases(), what="attnlab.spatial.SpatialGate",
                           atol=1e-6, mistakes=mistakes,
                           done="Average and maximum, k x k convolution, sigmoid, multiply.")
    if feedback.ok or not feedback.done:
        return feedback
    if "size of tensor" in feedback and "raised" in feedback:
        hint = ("The gate's map must have the input's H x W to multiply x: pad the convolution "
                "by k // 2 (padding=k // 2).")
    elif "expected shape" in feedback and seen:
        (B, C, H, W), k, out = seen[-1]
        if out is not None and tuple(out) == (B, 1, H, W):
            hint = ("That is the shape of the gate M_s(x): return the gated map x * M_s(x), "
                    "which keeps all C channels.")
        elif out is not None and tuple(out) == (B, C, H - k + 1, W - k + 1):
            hint = "The convolution has no padding: pad by k // 2 so the map keeps its size."
        else:
            hint = ("The output keeps the input's shape: pad the convolution by k // 2 "
                    "(padding=k // 2) and multiply the (B, 1, H, W) gate into x.")
    else:
        return feedback
    return safe(Feedback(False, str(feedback).removeprefix("Not yet. ") + " " + hint))
