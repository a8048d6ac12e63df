"""Checkers for Chapter 9, efficient attention."""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from ._core import (Feedback, as_number, check_build, check_number, checker, fmt, generator,
                    not_done, safe)

__all__ = ['check_online_softmax_merge', 'check_linear_attention', 'check_path_length',
           'check_linear_crossover']


# --- Build: merge two halves of an online softmax ---------------------------------------------

def _merge_reference(m1, l1, a1, m2, l2, a2):
    m = torch.maximum(m1, m2)
    shift = torch.where(torch.isinf(m), torch.zeros_like(m), m)
    f1, f2 = torch.exp(m1 - shift), torch.exp(m2 - shift)
    return m, l1 * f1 + l2 * f2, a1 * f1 + a2 * f2


def _half(scores, values):
    """(m, l, a) of one half of the keys: max score, sum of e^(s - m), weighted sum of values."""
    m = scores.amax(-1, keepdim=True)
    shift = torch.where(torch.isinf(m), torch.zeros_like(m), m)
    p = torch.exp(scores - shift)
    return m, p.sum(-1, keepdim=True), p @ values


def _merge_cases():
    g = generator(0)
    T, S, dv = 4, 10, 3
    cases = {"random scores": torch.randn(T, S, generator=g, dtype=torch.float64),
             "scores near 1000": 1000 + torch.randn(T, S, generator=g, dtype=torch.float64)}
    empty_half = torch.randn(T, S, generator=g, dtype=torch.float64)
    empty_half[:, S // 2:] = -math.inf  # the second half of the keys is blocked
    cases["a half with no visible key"] = empty_half
    nothing = torch.randn(T, S, generator=g, dtype=torch.float64)
    nothing[0] = -math.inf  # query 0 sees no key at all
    cases["a query with no visible key"] = nothing
    values = torch.randn(S, dv, generator=g, dtype=torch.float64)
    for case, scores in cases.items():
        yield case, (*_half(scores[:, :S // 2], values[:S // 2]),
                     *_half(scores[:, S // 2:], values[S // 2:]))


@checker("ex-eff-merge")
def check_online_softmax_merge(fn) -> Feedback:
    r"""Exercise :ref:`ex-eff-merge`: merge the running (m, l, a) of two halves of the keys.

    ``fn(m1, l1, a1, m2, l2, a2)`` returns ``(m, l, a)``: :math:`m = \max(m_1, m_2)`,
    :math:`\ell = \ell_1 e^{m_1 - m} + \ell_2 e^{m_2 - m}`, :math:`a = a_1 e^{m_1 - m} + a_2
    e^{m_2 - m}`. Checked on random halves (scores up to 1e3, where a plain exponential
    overflows), on a half with no visible key, and on a query with no visible key at all; then
    ``a / l`` is softmax attention over all the keys.
    """
    return safe(_check_merge(fn))


def _check_merge(fn) -> Feedback:
    if not callable(fn):
        return Feedback(False, f"pass your function itself, got {type(fn).__name__}.")
    for case, halves in _merge_cases():
        T, dv = halves[2].shape
        try:
            got = fn(*halves)
        except NotImplementedError:
            return not_done("Your function still raises NotImplementedError: fill in the stub.")
        except Exception as e:  # noqa: BLE001 - the learner's code; report, do not crash
            return Feedback(False, f"your function raised {type(e).__name__}: {e} ({case}).")
        if got is None:
            return not_done("Your function returned None: return (m, l, a).")
        if not (isinstance(got, (tuple, list)) and len(got) == 3):
            return Feedback(False, "return the three merged quantities (m, l, a) as a tuple.")
        try:
            m, ell, a = (torch.as_tensor(t, dtype=torch.float64) for t in got)
        except (TypeError, ValueError, RuntimeError):
            return Feedback(False, "m, l and a should be tensors.")
        want = _merge_reference(*halves)
        for name, have, shape in (("m", m, (T, 1)), ("l", ell, (T, 1)), ("a", a, (T, dv))):
            if tuple(have.shape) != shape:
                return Feedback(False, f"{name}: expected shape {shape}, got "
                                       f"{tuple(have.shape)} ({case}).")
        if torch.isnan(a).any() or torch.isnan(ell).any():
            return Feedback(False, f"NaN in your result ({case}). When a maximum is -inf, "
                                   "exp(m_i - m) is exp(-inf + inf): shift by 0 instead.")
        if not torch.equal(m, want[0]):
            return Feedback(False, f"m should be the larger of m1 and m2 ({case}).")
        if not (torch.allclose(ell, want[1], rtol=1e-9) and torch.allclose(a, want[2], rtol=1e-9)):
            plain = (halves[1] + halves[4], halves[2] + halves[5])
            if torch.allclose(ell, plain[0]) and torch.allclose(a, plain[1]):
                return Feedback(False, f"you added the halves without rescaling ({case}): each "
                                       "half was summed under its own maximum m_i; multiply by "
                                       "exp(m_i - m) first.")
            return Feedback(False, f"l or a differ from the merge of all the keys ({case}). "
                                   "Rescale each half by exp(m_i - m), m = max(m1, m2).")
    return Feedback(True, "m = max(m1, m2), l and a rescaled by exp(m_i - m): a / l is softmax "
                          "attention over all the keys, with no overflow and no NaN.")


# --- Build: linear attention, and its recurrence ---------------------------------------------

def _phi(t):
    return F.elu(t) + 1


def _linear(q, k, v, is_causal=False, *, phi=_phi, normalise=True, causal=None, shift=0):
    """Linear attention, or a typical mistake: another feature map, no normaliser, causality
    ignored (``causal=False``), or a state that lags ``shift`` steps behind the query."""
    causal = is_causal if causal is None else causal
    pq, pk = phi(q), phi(k)
    a = pq @ pk.transpose(-2, -1)  # (..., T, S)
    if causal:
        a = a * torch.ones(a.shape[-2:], dtype=torch.bool).tril(-shift)
    return (a @ v) / (a.sum(-1, keepdim=True) + 1e-6) if normalise else a @ v


def _linear_cases():
    from attnlab.efficient import linear_attention

    g = generator(0)
    rand = lambda *shape, size=1.0: size * torch.randn(*shape, generator=g, dtype=torch.float64)
    for batch, T, S, d, dv, causal, size in (((2,), 5, 5, 4, 3, False, 1.0),
                                             ((2,), 6, 6, 4, 3, True, 1.0),
                                             ((2,), 5, 7, 4, 3, False, 1.0),
                                             ((2, 3), 8, 8, 8, 5, True, 1.0),
                                             ((1,), 1, 1, 2, 2, True, 1.0),
                                             ((1,), 1, 4, 3, 2, False, 1.0),
                                             ((1,), 9, 9, 3, 4, True, 5.0)):
        q, k, v = rand(*batch, T, d, size=size), rand(*batch, S, d, size=size), rand(*batch, S, dv)
        case = (f"q {tuple(q.shape)}, k {tuple(k.shape)}, v {tuple(v.shape)}, "
                f"is_causal={causal}" + (", entries of size 5" if size > 1 else ""))
        yield case, (q, k, v, causal), linear_attention(q, k, v, is_causal=causal)


@checker("ex-eff-rnn")
def check_linear_attention(fn) -> Feedback:
    r"""Exercise :ref:`ex-eff-rnn`: linear attention, non-causal and causal (a recurrence).

    ``fn(q, k, v, is_causal)`` gets ``q (..., T, d)``, ``k (..., S, d)``, ``v (..., S, d_v)``
    and returns ``(..., T, d_v)``: :math:`\phi(q_t)^\top \sum_s \phi(k_s) v_s^\top /
    (\phi(q_t)^\top \sum_s \phi(k_s) + 10^{-6})` with :math:`\phi = \operatorname{elu} + 1`, the
    sums over :math:`s \le t` when causal. Held against
    :func:`attnlab.efficient.linear_attention` on several shapes, one position and large entries.
    """
    mistakes = [
        (lambda q, k, v, c: _linear(q, k, v, c, phi=lambda t: t),
         "The feature map is missing: apply phi(x) = elu(x) + 1 to q and k, which keeps every "
         "weight positive."),
        (lambda q, k, v, c: _linear(q, k, v, c, phi=F.relu),
         "phi is relu here: the chapter's feature map is elu(x) + 1."),
        (lambda q, k, v, c: _linear(q, k, v, c, normalise=False),
         "The normaliser is missing: divide by phi(q_t)^T z_t + 1e-6, z_t the sum of the "
         "phi(k_s), so that the weights sum to one."),
        (lambda q, k, v, c: _linear(q, k, v, c, causal=False),
         "The causal case sums over every key: with is_causal=True, query t reads keys "
         "s <= t only (the state S_t as it is after step t)."),
        (lambda q, k, v, c: _linear(q, k, v, c, shift=1),
         "The state lags one step: add phi(k_t) v_t^T and phi(k_t) to the state before "
         "reading it with phi(q_t) (query t sees key t)."),
        (lambda q, k, v, c: F.scaled_dot_product_attention(q, k, v, is_causal=c),
         "This is softmax attention: linear attention replaces exp(q.k / sqrt(d)) by "
         "phi(q).phi(k)."),
    ]
    return check_build(fn, _linear_cases(), what="attnlab.efficient.linear_attention",
                       atol=1e-5, mistakes=mistakes, names=("output",),
                       done="The causal case is the recurrence: a d x d_v state and a d-vector "
                            "per step, whatever the length.")


# --- Derive: maximum path length of convolutions ---------------------------------------------

def _layers_to_connect(kernel: int, dilations, n: int) -> int:
    """Stacked causal convolutions (all-ones weights) until output n-1 depends on input 0."""
    x = torch.zeros(1, 1, n, dtype=torch.float64)
    x[..., 0] = 1.0  # a signal at position 0
    for layers, dilation in enumerate(dilations, 1):
        x = F.conv1d(F.pad(x, ((kernel - 1) * dilation, 0)),
                     torch.ones(1, 1, kernel, dtype=torch.float64), dilation=dilation)
        if x[..., -1] > 0:
            return layers
    raise ValueError("not connected")  # pragma: no cover


@checker("ex-eff-path")
def check_path_length(dilated, plain, *, n: int = 64, kernel: int = 3) -> Feedback:
    r"""Exercise :ref:`ex-eff-path`: layers until position n - 1 sees position 0.

    ``dilated``: kernel 2 with dilations 1, 2, 4, ..., :math:`\lceil\log_2 n\rceil` layers (6 at
    n = 64); ``plain``: kernel ``kernel`` without dilation, :math:`\lceil (n-1)/(k-1)\rceil`
    layers (32 at n = 64, k = 3). Both counted by stacking the convolutions.
    """
    want_dilated = _layers_to_connect(2, [2**i for i in range(n.bit_length() + 1)], n)
    want_plain = _layers_to_connect(kernel, [1] * n, n)
    log = math.log2(n)
    verdicts = [
        check_number(dilated, want_dilated, name="dilated", wrong=[
            (log + 1, "after layer i (dilation 2^(i-1)) the field spans 2^i positions, and "
                      "position n - 1 needs n of them, itself included."),
            (log - 1, "after layer i the field spans 2^i positions, position n - 1 "
                      "included: 2^i >= n."),
            (n - 1, "that is a kernel of 2 without dilation: dilation doubles the reach of "
                    "each layer.")],
            hint="After layer i (dilation 2^(i-1)) the receptive field spans 2^i positions."),
        check_number(plain, want_plain, name=f"kernel {kernel}", wrong=[
            (n - 1, f"each layer of kernel {kernel} widens the field by {kernel - 1} "
                    "positions, not by 1."),
            ((n - 1) // (kernel - 1), "round up: one more layer covers the last position."),
            (math.ceil(n / kernel), f"each layer widens the field by k - 1 = {kernel - 1}, "
                                    f"not k = {kernel}: the output position is already in it."),
            (want_dilated, "that is the dilated stack; without dilation the reach grows "
                           "linearly.")],
            hint=f"Each layer widens the field by k - 1 = {kernel - 1} positions."),
    ]
    if all(v.ok for v in verdicts):
        return Feedback(True, f"{want_dilated} dilated layers (log2 {n}) and {want_plain} "
                              f"layers of kernel {kernel} (ceil((n-1)/(k-1))); self-attention "
                              "needs one.")
    return Feedback(False, " ".join(
        f"{name} = {fmt(value)} is right." if v.ok else str(v).removeprefix("Not yet. ")
        for name, value, v in zip(("dilated", f"kernel {kernel}"), (want_dilated, want_plain),
                                  verdicts)))


# --- Derive: where linear attention pays off -------------------------------------------------

@checker("ex-eff-crossover")
def check_linear_crossover(n, *, d: int = 64) -> Feedback:
    r"""Exercise :ref:`ex-eff-crossover`: the shortest length at which linear attention is cheaper.

    With :func:`attnlab.efficient.attention_flops`, full attention costs :math:`2n^2d` and linear
    attention :math:`2nd^2 + nd` multiply-adds per head: linear is cheaper when :math:`n > d +
    1/2`, from :math:`n = d + 1` on (65 for d = 64).
    """
    from attnlab.efficient import attention_flops

    got = as_number(n, "n")
    if isinstance(got, Feedback):
        return got
    want = next(m for m in range(1, 10 * d + 2)
                if attention_flops(m, d, "linear") < attention_flops(m, d, "full"))
    return check_number(got, want, name="n", wrong=[
        (d, f"at n = d both products cost 2d^3, but linear attention also pays nd for its "
            f"normaliser: at n = {d} it is still dearer."),
        (d * d, "compare 2n^2 d with 2n d^2 + n d: divide both by n d, and n is compared with "
                "d, not d^2."),
        (d / 2, "full attention's 2n^2 d counts Q K^T and the weighted sum of V: both "
                "grow like n^2 d."),
        (2 * d, "linear attention's 2n d^2 also counts two products: phi(K)^T V and phi(Q) "
                "times it."),
        (math.sqrt(d), "compare 2n^2 d with 2n d^2 + n d: the crossover is linear in d.")],
        why=f"Full attention 2n^2 d = {attention_flops(want, d, 'full'):,} against linear "
            f"attention 2n d^2 + n d = {attention_flops(want, d, 'linear'):,} at n = {want}, "
            f"d = {d}: below n = d + 1 the quadratic form does less arithmetic.",
        hint="Solve 2n^2 d > 2n d^2 + n d for n.")
