"""Checkers for Chapter 12, residual attention and C2f."""
from __future__ import annotations

import torch
import torch.nn.functional as F

from ._core import (Feedback, as_number, check_build, checker, diagnose, fmt,
                    formula_or_counts, formula_values, fresh_points, generator)

__all__ = ['check_resatt_gradient', 'check_c2f_params', 'check_c2f']


# --- Derive: the gradient through a stack of constant gates ------------------------------------

def _stack_gradient(gate: float, k: int) -> float:
    """d h_k / d h_0 through k modules h_j = gate * T_j(h_{j-1}) with identity trunks."""
    h0 = torch.ones((), dtype=torch.float64, requires_grad=True)
    h = h0
    for _ in range(k):
        h = gate * h
    return torch.autograd.grad(h, h0)[0].item()


@checker("ex-resatt-gradient")
def check_resatt_gradient(answer) -> Feedback:
    r"""Exercise :ref:`ex-resatt-gradient`: how many times larger the gradient of a stack of
    :math:`(1 + m)` gates is than that of a stack of :math:`m` gates.

    ``answer`` is a number (the factor at :math:`m = 0.5`, :math:`k = 4`) or a formula
    ``f(m, k)``, checked at several :math:`m` and :math:`k`. The gradients are taken by autograd
    through a stack of constant gates with identity trunks: :math:`((1 + m)/m)^k`.
    """
    points = [(0.5, 4)] if not callable(answer) else fresh_points(
        [(m, k) for m in (0.5, 0.25, 0.9) for k in (1, 2, 4, 6)],
        lambda r: (round(r.uniform(0.05, 0.95), 3), r.randint(1, 8)))
    if callable(answer):
        got = formula_values(answer, points, ("m", "k"))
        if isinstance(got, Feedback):
            return got
    else:
        got = as_number(answer, "the factor")
        if isinstance(got, Feedback):
            return got
        got = {points[0]: got}
    for (m, k), value in got.items():
        expected = _stack_gradient(1 + m, k) / _stack_gradient(m, k)
        hint = diagnose(value, expected, [
            (1 / expected, "that is the M stack's gradient over the (1 + M) stack's: the one "
                           "with the 1 is the larger."),
            (_stack_gradient(1 + m, k), "that is the (1 + M) stack's gradient alone, "
                                        "(1 + m)^k; divide it by the M stack's, m^k."),
            (_stack_gradient(m, k), "that is the M stack's gradient alone, m^k."),
            (1 / _stack_gradient(m, k), "1/m^k compares the M stack with no gate at all; the "
                                        "other stack multiplies by 1 + m at every module."),
            ((1 + m) / m, "that is the factor of one module; the chain rule multiplies the k "
                          "modules' factors."),
            (k * (1 + m) / m, "the modules' factors multiply, they do not add: ((1 + m)/m)^k."),
        ], rel=1e-3)
        if hint is not None:
            return Feedback(False, f"for m = {m:g}, k = {k}: expected a factor of "
                                   f"{fmt(expected)}, got {fmt(value)}. "
                            + (hint or "Each module multiplies the gradient by its gate; "
                                       "compare (1 + m)^k with m^k."))
    return Feedback(True, "the factor is ((1 + m)/m)^k, 81 at m = 0.5, k = 4: a gate that has "
                          "learned nothing halves the gradient without the 1 and multiplies it "
                          "by 1.5 with it.")


# --- Derive: the parameters of C2f -------------------------------------------------------------

def _c2f_params(c: int, n: int) -> int:
    from attnlab.practice import C2f
    from attnlab.utils import count_parameters
    return count_parameters(C2f(c, c, n))


@checker("ex-c2f-params")
def check_c2f_params(answer, channels: int = 16) -> Feedback:
    r"""Exercise :ref:`ex-c2f-params`: the parameter count of ``C2f(c, c, n)``.

    ``answer`` is a formula ``f(c, n)`` (checked for even c in 8, 16, 32, 64 and n in 1, 2, 3)
    or a dict ``{n: count}`` for ``c = channels`` (16) and n in 1, 2, 3. Expected values come
    from :func:`attnlab.utils.count_parameters` on :class:`attnlab.practice.C2f`.
    """
    ns = (1, 2, 3)
    got = formula_or_counts(answer, fresh_points([(c, n) for c in (8, 16, 32, 64) for n in ns],
                                                 lambda r: (2 * r.randint(2, 48), r.randint(1, 4))),
                            ("c", "n"),
                            ns, channels)
    if isinstance(got, Feedback):
        return got
    for (c, n), value in got.items():
        expected = _c2f_params(c, n)
        h, conv = c // 2, c * c + (2 + n) * (c // 2) * c        # the two 1x1 convolutions
        bn = 2 * c + n * 2 * 2 * h + 2 * c
        hint = diagnose(value, expected, [
            (conv + n * 2 * 9 * h * h, "the batch norms are missing: two parameters (a scale "
                                       "and a shift) per channel after every convolution."),
            (conv + n * 2 * 9 * h * h + 2 * bn, "a batch norm has two *parameters* per channel; "
                                                "its running mean and variance are buffers."),
            (c * c + (1 + n) * h * c + n * 18 * h * h + bn,
             "the second 1x1 convolution, cv2, sees all (2 + n) pieces of c/2 channels: both "
             "halves of cv1 and every bottleneck's output."),
            (conv + n * 2 * h * h + bn, "the bottleneck's convolutions are 3x3: 9 (c/2)^2 weights "
                                        "each."),
            (conv + n * 9 * h * h + 2 * c + n * 2 * h + 2 * c,
             "a bottleneck has two 3x3 convolutions (each with its batch norm)."),
            (c * c + (2 + n) * h * c + n * 18 * c * c + 4 * c + n * 4 * c,
             "the bottlenecks work on one half, c/2 channels, not on c."),
        ])
        if hint is not None:
            return Feedback(False, f"for c = {c}, n = {n}: expected {expected:,} parameters, "
                                   f"got {fmt(value)}. " + (hint or "Count cv1 (c -> c, 1x1), "
                                   "n bottlenecks (two 3x3 convolutions c/2 -> c/2), cv2 "
                                   "((2 + n) c/2 -> c, 1x1), and 2 per channel for each batch "
                                   "norm."))
    return Feedback(True, "c^2 (1 + 4.5 n + (2 + n)/2) + 2c (2 + n) matches C2f: "
                          + ", ".join(f"{_c2f_params(16, n):,}" for n in ns)
                          + " parameters at c = 16, n = 1, 2, 3.")


# --- Build: C2f's forward from its weights -----------------------------------------------------

def _fold(layer) -> tuple[torch.Tensor, torch.Tensor]:
    """A ConvBNAct in eval mode as one convolution: (weight, bias) with the batch norm folded in."""
    conv, bn = layer[0], layer[1]
    scale = bn.weight / torch.sqrt(bn.running_var + bn.eps)
    return ((conv.weight * scale[:, None, None, None]).detach(),
            (bn.bias - bn.running_mean * scale).detach())


def _c2f_cases():
    """Odd sizes, c_in != c_out, one pixel, n = 1, 2, 3, batch norms with random statistics."""
    from attnlab.practice import C2f

    g = generator(0)
    for B, c_in, c_out, n, H, W in ((1, 3, 4, 1, 5, 7), (2, 8, 8, 2, 6, 6), (3, 5, 6, 3, 4, 9),
                                    (1, 4, 2, 1, 1, 1), (2, 6, 10, 2, 3, 3)):
        block = C2f(c_in, c_out, n).double().eval()
        with torch.no_grad():
            for p in block.parameters():
                p.copy_(0.5 * torch.randn(p.shape, generator=g, dtype=torch.float64))
            for bn in (m for m in block.modules() if isinstance(m, torch.nn.BatchNorm2d)):
                bn.weight.add_(1.0)
                bn.running_mean.copy_(0.2 * torch.randn(bn.num_features, generator=g))
                bn.running_var.copy_(0.5 + torch.rand(bn.num_features, generator=g))
        x = torch.randn(B, c_in, H, W, generator=g, dtype=torch.float64)
        args = (x, _fold(block.cv1), [(_fold(b.cv1), _fold(b.cv2)) for b in block.m],
                _fold(block.cv2))
        with torch.no_grad():
            expected = block(x)
        yield f"x {tuple(x.shape)}, C2f({c_in}, {c_out}, n={n})", args, expected


def _c2f(x, cv1, bottlenecks, cv2, *, half=1, chain=True, shortcut=True, act=F.silu,
         swap=False):
    """C2f from folded weights; the keywords switch on one typical mistake each."""
    def conv(z, wb):
        return act(F.conv2d(z, wb[0], wb[1], padding=wb[0].shape[-1] // 2))
    y = list(conv(x, cv1).chunk(2, 1))
    z = y[half]
    for a, b in bottlenecks:
        out = (z if shortcut else 0) + conv(conv(z, a), b)
        y.append(out)
        z = out if chain else z
    if swap:
        y[0], y[1] = y[1], y[0]
    return conv(torch.cat(y, 1), cv2)


@checker("ex-c2f-build")
def check_c2f(fn) -> Feedback:
    r"""Exercise :ref:`ex-c2f-build`: C2f's forward pass from its weights.

    ``fn(x, cv1, bottlenecks, cv2)`` gets ``x`` ``(B, c_in, H, W)``, ``cv1`` and ``cv2`` as
    ``(weight, bias)`` pairs (each convolution with its batch norm folded in; a SiLU follows
    each) and ``bottlenecks`` as a list of ``n`` pairs ``((w, b), (w, b))`` of 3x3
    convolutions, and returns ``(B, c_out, H, W)``. It is held against
    :class:`attnlab.practice.C2f` in eval mode with the same weights, for n = 1, 2, 3, odd sizes,
    ``c_in != c_out`` and a single pixel.
    """
    def cases():
        yield from _c2f_cases()

    mistakes = [
        (lambda *a: _c2f(*a, half=0), "The chain of bottlenecks runs on the *second* half y_1 of "
         "cv1's output, not on the first."),
        (lambda *a: _c2f(*a, chain=False), "The bottlenecks form a chain: each takes the previous "
         "one's output, y_{k+1} = B_k(y_k), not y_1 every time."),
        (lambda *a: _c2f(*a, shortcut=False), "A bottleneck adds its input back: "
         "y_{k+1} = y_k + cv_b(cv_a(y_k))."),
        (lambda *a: _c2f(*a, act=F.relu), "Every convolution is followed by a SiLU, "
         "z * sigmoid(z), not a ReLU."),
        (lambda *a: _c2f(*a, swap=True), "The concatenation keeps the order of the pieces: "
         "[y_0; y_1; y_2; ...], with y_0 the first half of cv1's output."),
    ]
    return check_build(fn, cases(), what="attnlab.practice.C2f with the same weights", atol=1e-8,
                       mistakes=mistakes, names=("output",),
                       done="Split, a chain on one half, everything concatenated, mixed: no "
                            "weight is computed from the input, so there is no attention in it.")
