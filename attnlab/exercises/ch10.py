"""Checkers for Chapter 10, where attention looks."""
from __future__ import annotations

import torch

from ._core import Feedback, as_number, check_build, check_number, checker, generator

__all__ = ['check_rollout', 'check_uniform_rollout']


# --- Build: attention rollout ------------------------------------------------------------------

def _rollout(attentions, head_fusion="mean", residual=True, *, fusion=None, order="left",
             renormalise="rows", keep_residual=None):
    """Rollout, or a typical mistake: a fixed ``fusion``, the product in the wrong ``order``,
    the residual rows divided by 2 or not at all (``renormalise``), the residual always
    added or always left out (``keep_residual``)."""
    fusion = head_fusion if fusion is None else fusion
    residual = residual if keep_residual is None else keep_residual
    rolled = None
    for a in attentions:
        a = a.mean(1) if fusion == "mean" else a.amax(1)  # (B, N, N)
        if residual:
            a = a + torch.eye(a.shape[-1], dtype=a.dtype)
            if renormalise == "rows":
                a = a / a.sum(-1, keepdim=True)
            elif renormalise == "half":
                a = a / 2
        rolled = a if rolled is None else (a @ rolled if order == "left" else rolled @ a)
    return rolled


def _rollout_cases():
    from attnlab.rollout import attention_rollout

    g = generator(0)

    def weights(B, h, N, sharp=1.0, blocked=False):
        s = sharp * torch.randn(B, h, N, N, generator=g, dtype=torch.float64)
        if blocked:  # a causal pattern: token i reads tokens 0..i only
            s = s.masked_fill(torch.ones(N, N, dtype=torch.bool).triu(1), float("-inf"))
        return torch.softmax(s, -1)

    for L, B, h, N, fusion, residual, extra in (
            (2, 2, 2, 5, "mean", True, {}), (1, 1, 1, 4, "mean", True, {}),
            (3, 1, 3, 7, "max", True, {}), (4, 3, 1, 4, "mean", False, {}),
            (2, 2, 2, 6, "max", False, {}), (3, 2, 4, 5, "mean", True, {"blocked": True}),
            (2, 1, 2, 3, "max", True, {"sharp": 20.0}), (2, 1, 2, 1, "mean", True, {})):
        attentions = [weights(B, h, N, **extra) for _ in range(L)]
        case = (f"{L} layer(s) of (B, h, N, N) = {(B, h, N, N)}, head_fusion={fusion!r}, "
                f"residual={residual}" + "".join(f", {k}" for k in extra))
        case = case.replace(", blocked", ", causal weights").replace(", sharp", ", peaked weights")
        yield case, (attentions, fusion, residual), attention_rollout(
            attentions, head_fusion=fusion, residual=residual)


@checker("ex-where-build")
def check_rollout(fn) -> Feedback:
    r"""Exercise :ref:`ex-where-build`: attention rollout from the layers' weights.

    ``fn(attentions, head_fusion, residual)`` gets a list of ``(B, h, N, N)`` weights, bottom
    layer first, ``"mean"`` or ``"max"`` and a flag, and returns :math:`\hat A_L \cdots \hat A_1`
    ``(B, N, N)``, with :math:`\hat A_l` the head-fused weights, plus the identity and with
    rows renormalised when ``residual``. Held against
    :func:`attnlab.rollout.attention_rollout` for 1 to 4 layers, 1 to 4 heads, 1 to 7 tokens,
    both fusions, with and without the residual, causal and peaked weights.
    """
    mistakes = [
        (lambda a, f, r: _rollout(a, f, r, order="right"),
         "The product is in the wrong order: the upper layer acts on the left, "
         "rolled = A_hat_l @ rolled."),
        (lambda a, f, r: _rollout(a, f, r, keep_residual=False),
         "The residual is missing: with residual=True, add the identity to each fused layer "
         "(A + I) and renormalise its rows."),
        (lambda a, f, r: _rollout(a, f, r, renormalise=None),
         "The rows are not renormalised: A + I has rows summing to 2 (or more, with max "
         "fusion); divide each row by its sum."),
        (lambda a, f, r: _rollout(a, f, r, renormalise="half"),
         "(A + I) / 2 is right only when the rows of A sum to 1: after max fusion they do not, "
         "so divide each row of A + I by its own sum."),
        (lambda a, f, r: _rollout(a, f, r, fusion="max"),
         "The heads are fused with the maximum where head_fusion='mean' asks for their mean "
         "(dim 1)."),
        (lambda a, f, r: _rollout(a, f, r, fusion="mean"),
         "head_fusion='max' takes the maximum over the heads (dim 1), not their mean."),
        (lambda a, f, r: _rollout(a, f, r, keep_residual=True),
         "With residual=False the fused layers multiply as they are, with no identity added."),
    ]
    return check_build(fn, _rollout_cases(), what="attnlab.rollout.attention_rollout",
                       atol=1e-9, mistakes=mistakes, names=("rollout (B, N, N)",),
                       done="Heads fused, residual kept, the upper layer on the left.")


# --- Derive: the rollout of uniform layers ----------------------------------------------------

@checker("ex-where-uniform")
def check_uniform_rollout(share, *, layers: int | None = None,
                          tokens: int | None = None) -> Feedback:
    r"""Exercise :ref:`ex-where-uniform`: [CLS]'s share of itself when every layer is uniform.

    With :math:`A_l = \tfrac1N \mathbf 1 \mathbf 1^\top` and :math:`U = \tfrac1N \mathbf 1
    \mathbf 1^\top`, :math:`\hat A = \tfrac12 U + \tfrac12 I` and, as :math:`U^2 = U`,
    :math:`\hat A^L = 2^{-L} I + (1 - 2^{-L}) U`: the diagonal entry is :math:`2^{-L} + (1 -
    2^{-L})/N`, computed with :func:`attnlab.rollout.attention_rollout`. L and N default to
    the chapter's :class:`~attnlab.rollout.TinyViT` (2 layers, 1 + 25 tokens: 0.2788).
    """
    from attnlab.rollout import TinyViT, attention_rollout

    if layers is None or tokens is None:
        vit = TinyViT()
        layers = len(vit.layers) if layers is None else layers
        tokens = 1 + vit.grid[0] * vit.grid[1] if tokens is None else tokens

    got = as_number(share, "share")
    if isinstance(got, Feedback):
        return got
    uniform = torch.full((1, 1, tokens, tokens), 1 / tokens, dtype=torch.float64)
    rolled = attention_rollout([uniform] * layers)[0]  # (N, N)
    want, off = rolled[0, 0].item(), rolled[0, 1].item()
    L, N = layers, tokens
    return check_number(got, want, name="share", wrong=[
        (1 / N, "that is one uniform layer without the residual: the residual keeps half of "
                "each token in every layer, (A + I) / 2."),
        (2.0**-L, "the identity part 2^-L is there, but the uniform part U gives [CLS] a "
                  "share too: add (1 - 2^-L) / N."),
        (0.5 + 0.5 / N, "that is one layer: multiply L of them (U^2 = U makes the power "
                        "easy)."),
        (off, "that is the share of each other token; the question asks for [CLS] itself, "
              "the diagonal entry."),
        (2.0**-L + 1 / N, "expand (U/2 + I/2)^L with U^2 = U: the U part has weight "
                          "1 - 2^-L, not 1.")],
        rel=1e-4,
        why=f"(U/2 + I/2)^{L} = I/{2**L} + {1 - 2.0**-L:g} U: the rest, {off:.4g}, goes to "
            f"each of the other {N - 1} tokens. As L grows the rollout tends to U, uniform.",
        hint="Write A_hat = U/2 + I/2 with U = 11^T / N, use U^2 = U and expand the power.")
