"""Checkers for Chapter 2, self-attention."""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from ._core import ATTENTION, MULTI_HEAD, Feedback, as_number, check_build, checker, generator

__all__ = ['check_attention_scale', 'check_sdpa']


@checker("ex-self-attention-scale")
def check_attention_scale(factor, *, d_k: int = 256, std: float = 2.0, rtol: float = 0.05) -> Feedback:
    r"""Exercise :ref:`ex-self-attention-scale`: the factor that brings the score spread back to 1.

    With query and key entries of standard deviation ``std``, each product :math:`q_i k_i` has
    variance :math:`\mathrm{std}^4`, so :math:`q\cdot k` has standard deviation
    :math:`\mathrm{std}^2\sqrt{d_k}`; the factor is :math:`1/(\mathrm{std}^2\sqrt{d_k})`
    (``1/64`` at the defaults). A measured factor within ``rtol`` of it passes.
    """
    f = as_number(factor, "factor")
    if isinstance(f, Feedback):
        return f
    expected = 1 / (std**2 * math.sqrt(d_k))
    if math.isclose(f, expected, rel_tol=rtol):
        return Feedback(True, f"the factor is 1/({std:g}^2 * sqrt({d_k})) = {expected:.6g} "
                              f"(you gave {f:.6g}): scaled scores have standard deviation 1 again.")
    root = math.sqrt(d_k)
    wrong = [(1 / root, f"1/sqrt(d_k) = {1 / root:.6g} is the right factor for entries of std 1, but "
                        f"now each product q_i k_i has variance {std:g}^2 * {std:g}^2 = {std**4:g}: "
                        f"the score's std grows by {std**2:g}, so divide by that too."),
             (1 / (std * root), f"1/({std:g} sqrt(d_k)) corrects for the std of q *or* of k, but both have "
                                f"std {std:g}: the product's std is {std:g} * {std:g} = {std**2:g} times larger."),
             (1 / d_k, "1/d_k over-corrects: the score is a sum of d_k terms, so its std grows like "
                       "sqrt(d_k), not d_k."),
             (1 / (std**2 * d_k), "divide by sqrt(d_k), not d_k: the score's std grows like sqrt(d_k).")]
    for value, hint in wrong:
        if math.isclose(f, value, rel_tol=rtol):
            return Feedback(False, f"expected {expected:.6g}, got {f:.6g}. {hint}")
    if f > 1 and math.isclose(1 / f, expected, rel_tol=rtol):
        return Feedback(False, f"expected {expected:.6g}, got {f:.6g}: that is the divisor. The factor "
                               f"multiplies the scores, so give 1/{f:g}.")
    return Feedback(False, f"expected {expected:.6g}, got {f:.6g}. Measure the std of q.k for random "
                           f"q, k with entries of std {std:g} at d_k = {d_k}: the factor is one over it.")


# --- Build: scaled dot-product attention with masks --------------------------------------------

def _sdpa_cases():
    """Random shapes, T != S, a padding mask, a causal mask, large scores, one key."""
    g = generator(0)

    def rand(*shape, scale=1.0):
        return scale * torch.randn(*shape, generator=g, dtype=torch.float64)

    for batch, T, S, d, dv in (((2,), 3, 5, 4, 6), ((2, 3), 7, 7, 8, 8), ((1,), 1, 4, 2, 3),
                               ((3,), 5, 1, 4, 2)):
        q, k, v = rand(*batch, T, d), rand(*batch, S, d), rand(*batch, S, dv)
        yield f"q {tuple(q.shape)}, k {tuple(k.shape)}, v {tuple(v.shape)}, no mask", \
            (q, k, v, None, False)
        if S > 1:
            mask = torch.rand(*batch, T, S, generator=g) > 0.4
            mask[..., 0] = True                                    # every query sees a key
            yield f"same shapes with a (..., T, S) boolean mask", (q, k, v, mask, False)
        if T == S:
            yield f"q {tuple(q.shape)}, causal", (q, k, v, None, True)
    q, k, v = rand(2, 6, 16, scale=30.0), rand(2, 6, 16, scale=30.0), rand(2, 6, 3)
    yield "scores in the thousands (a plain exp overflows)", (q, k, v, None, True)
    pad = torch.ones(2, 1, 6, dtype=torch.bool)
    pad[1, :, 4:] = False
    yield "a (B, 1, S) padding mask that broadcasts over queries", (q / 30, k / 30, v, pad, False)


def _sdpa_reference(q, k, v, mask, causal, scale=True):
    T, S = q.shape[-2], k.shape[-2]
    s = q @ k.transpose(-2, -1) / (math.sqrt(q.shape[-1]) if scale else 1.0)
    allowed = torch.ones(T, S, dtype=torch.bool)
    if causal:
        allowed = torch.tril(allowed)
    if mask is not None:
        allowed = allowed & mask
    return torch.softmax(s.masked_fill(~allowed, float("-inf")), -1) @ v


@checker("ex-self-attention-build", forbid=ATTENTION + MULTI_HEAD)
def check_sdpa(fn) -> Feedback:
    r"""Exercise :ref:`ex-self-attention-build`: scaled dot-product attention with masks.

    ``fn(q, k, v, mask, is_causal)`` gets ``q (..., T, d)``, ``k (..., S, d)``, ``v (..., S, d_v)``,
    a boolean ``mask`` that broadcasts to ``(..., T, S)`` (True = may attend, or None) and a flag
    for the causal mask, and returns ``(..., T, d_v)``. It is held against
    :func:`torch.nn.functional.scaled_dot_product_attention` on random shapes (several batch
    dimensions, T != S, one key, one query), random and padding masks, the causal mask, and
    scores in the thousands.
    """
    def cases():
        for case, args in _sdpa_cases():
            q, k, v, mask, causal = args
            expected = F.scaled_dot_product_attention(q, k, v, attn_mask=mask, is_causal=causal)
            yield case, args, expected

    mistakes = [
        (lambda q, k, v, m, c: _sdpa_reference(q, k, v, m, c, scale=False),
         "The scores are not scaled: divide q k^T by sqrt(d), d = q.shape[-1]."),
        (lambda q, k, v, m, c: _sdpa_reference(q, k, v, None, c),
         "The mask is ignored: set the scores where mask is False to -inf before the softmax."),
        (lambda q, k, v, m, c: _sdpa_reference(q, k, v, None if m is None else ~m, c),
         "The mask is inverted: True means 'may attend', so block where it is False."),
        (lambda q, k, v, m, c: _sdpa_reference(q, k, v, m, False),
         "The causal mask is missing: query t may see keys 0..t only (torch.tril)."),
        (lambda q, k, v, m, c: torch.softmax(q @ k.transpose(-2, -1) / math.sqrt(q.shape[-1])
                                             + torch.where(_sdpa_allowed(q, k, m, c), 0.0,
                                                           float("-inf")), -2) @ v,
         "The softmax runs over the queries (dim -2); each query's weights over the keys "
         "(dim -1) must sum to 1."),
    ]
    return check_build(fn, cases(), what="F.scaled_dot_product_attention", atol=1e-6,
                       mistakes=mistakes,
                       done="Masks, causality and large scores all behave.")


def _sdpa_allowed(q, k, mask, causal):
    allowed = torch.ones(q.shape[-2], k.shape[-2], dtype=torch.bool)
    if causal:
        allowed = torch.tril(allowed)
    return allowed if mask is None else allowed & mask
