"""Checkers for Chapter 3, multi-head attention."""
from __future__ import annotations

import math

import torch
from torch import nn

from ._core import (MULTI_HEAD, Feedback, check_build, checker, diagnose, fmt, formula_or_counts,
                    fresh_points, generator)

__all__ = ['check_mha_params', 'check_mha']


# --- Derive: the parameter count does not depend on h ------------------------------------------

_HEADS = (1, 2, 4, 8)


def _mha_params(embed_dim: int, num_heads: int) -> int:
    from attnlab.attention import MultiHeadAttention
    from attnlab.utils import count_parameters
    return count_parameters(MultiHeadAttention(embed_dim, num_heads))


@checker("ex-mha-params")
def check_mha_params(answer, embed_dim: int = 512) -> Feedback:
    r"""Exercise :ref:`ex-mha-params`: the parameter count of multi-head attention, biases included.

    ``answer`` is a formula ``f(D, h)`` (checked for D in 16, 64, 512 and h in 1, 2, 4, 8) or a
    dict ``{h: count}`` for ``D = embed_dim`` (default 512). Expected values come from
    :func:`attnlab.utils.count_parameters` on :class:`attnlab.attention.MultiHeadAttention`.
    """
    def draw(rng):
        h = rng.choice(_HEADS)
        return h * rng.randint(1, 64), h

    got = formula_or_counts(answer, fresh_points([(D, h) for D in (16, 64, 512) for h in _HEADS],
                                                 draw),
                            ("D", "h"), _HEADS, embed_dim)
    if isinstance(got, Feedback):
        return got
    for D, h in got:
        expected, d = _mha_params(D, h), D // h
        hint = diagnose(got[(D, h)], expected, [
            (4 * D * D, "you counted the weights only: each of the four projections also has a "
                        "bias of D numbers."),
            (4 * D * D + 3 * D, "the bias of the output projection W^O is missing."),
            (3 * D * D + 3 * D, "W^O is missing: the concatenated heads are mixed by one more "
                                "D x D matrix (with its bias)."),
            (3 * h * D * D + 3 * h * D + h * D * D + D,
             "you gave every head its own D x D projections; a head projects to d = D/h, so "
             "W_i^Q is D x D/h."),
            (3 * h * D * D + 3 * h * D + D * D + D,
             "you gave every head its own D x D projections; a head projects to d = D/h, so "
             "W_i^Q is D x D/h."),
            (4 * D * d + 4 * d, "that is one head's share; the h heads side by side make D x D."),
            (3 * D * d + 3 * d + d * D + D,
             "W^Q, W^K and W^V of one head only; the h heads side by side make D x D."),
        ])
        if hint is not None:
            return Feedback(False, f"for D = {D}, h = {h}: expected {expected:,} parameters, got "
                                   f"{fmt(got[(D, h)])}. " + (hint or "Count W^Q, W^K, W^V "
                                                             "and W^O (D x D each) and their "
                                                             "biases (D each)."))
    return Feedback(True, f"4D^2 + 4D matches MultiHeadAttention for all {len(got)} cases "
                          f"(D = 512: {_mha_params(512, 1):,} for every h). The number of heads "
                          "changes how the D x D matrices are cut, not their size.")


# --- Build: multi-head self-attention against nn.MultiheadAttention ----------------------------

def _mha_cases():
    """Several head counts, odd sizes, one token, one-wide heads, padding, large inputs."""
    g = generator(0)

    def randn(*shape, scale=1.0):
        return scale * torch.randn(*shape, generator=g, dtype=torch.float64)

    def padding(B, T):
        keep = torch.rand(B, T, generator=g) > 0.4
        keep[:, 0], keep[:, -1] = True, False        # every row: a real key and a padded one
        return keep

    for B, T, D, h, masked, scale in ((2, 5, 8, 2, False, 1.0), (1, 7, 12, 3, False, 1.0),
                                      (3, 6, 16, 4, True, 1.0), (2, 4, 6, 1, False, 1.0),
                                      (1, 1, 10, 5, False, 1.0), (2, 9, 8, 8, True, 1.0),
                                      (2, 6, 16, 4, False, 30.0)):
        x = randn(B, T, D, scale=scale)
        weights = (randn(3 * D, D) / math.sqrt(D), randn(3 * D) / 4,
                   randn(D, D) / math.sqrt(D), randn(D) / 4)
        mask = padding(B, T) if masked else None
        what = (f"x {tuple(x.shape)}, {h} head(s)" + (", with a key_mask" if masked else "")
                + (f", entries of std {scale:g}" if scale != 1 else ""))
        yield what, (x, *weights, h, mask)


def _torch_mha(x, w_in, b_in, w_out, b_out, h, key_mask):
    D = x.shape[-1]
    mha = nn.MultiheadAttention(D, h, batch_first=True, dtype=torch.float64).eval()
    with torch.no_grad():
        for p, v in ((mha.in_proj_weight, w_in), (mha.in_proj_bias, b_in),
                     (mha.out_proj.weight, w_out), (mha.out_proj.bias, b_out)):
            p.copy_(v)
        return mha(x, x, x, key_padding_mask=None if key_mask is None else ~key_mask,
                   need_weights=True, average_attn_weights=False)


def _mha(x, w_in, b_in, w_out, b_out, h, key_mask, *, split="bthd", scale=None, mask=True,
         project=True, bias=True):
    """Multi-head self-attention from tensors, and the typical mistakes as switches."""
    from attnlab.functional import masked_softmax
    B, T, D = x.shape
    d = D // h
    q, k, v = (x @ w_in.T + (b_in if bias else 0)).split(D, -1)
    if split == "bthd":
        heads, merge = (lambda t: t.view(B, T, h, d).transpose(1, 2),
                        lambda t: t.transpose(1, 2).reshape(B, T, D))
    elif split == "btdh":
        heads, merge = (lambda t: t.view(B, T, d, h).permute(0, 3, 1, 2),
                        lambda t: t.permute(0, 2, 3, 1).reshape(B, T, D))
    else:                                                    # "bhtd": a view with no transpose
        heads, merge = lambda t: t.reshape(B, h, T, d), lambda t: t.reshape(B, T, D)
    q, k, v = heads(q), heads(k), heads(v)                   # (B, h, T, d)
    s = q @ k.transpose(-2, -1) / math.sqrt(d if scale is None else scale)
    m = None if key_mask is None or not mask else (key_mask if mask is True else ~key_mask)
    w = masked_softmax(s, None if m is None else m[:, None, None, :])
    out = merge(w @ v)
    return (out @ w_out.T + b_out if project else out), w


@checker("ex-mha-build", forbid=MULTI_HEAD)
def check_mha(fn) -> Feedback:
    r"""Exercise :ref:`ex-mha-build`: multi-head self-attention from tensors.

    ``fn(x, in_proj_weight, in_proj_bias, out_proj_weight, out_proj_bias, num_heads, key_mask)``
    gets ``x (B, T, D)``, the weights in the layout of :class:`torch.nn.MultiheadAttention`
    (``(3D, D)``, ``(3D,)``, ``(D, D)``, ``(D,)``), the number of heads and a ``key_mask (B, T)``
    in the book's convention (True = a real token; or None), and returns ``(out, weights)``,
    ``(B, T, D)`` and the per-head weights ``(B, h, T, T)``. It is held against
    ``nn.MultiheadAttention(batch_first=True)`` with the same weights (``key_padding_mask =
    ~key_mask``, ``average_attn_weights=False``) for 1 to 8 heads, odd widths, one token,
    padding, and entries large enough to overflow a plain exp.
    """
    def cases():
        for case, args in _mha_cases():
            yield case, args, _torch_mha(*args)

    def wrong(**kw):
        return lambda *args: _mha(*args, **kw)

    mistakes = [
        (wrong(split="btdh"), "The heads are split in the wrong order: reshape to (B, T, h, d), "
                              "so that head i owns columns i*d to (i+1)*d, then transpose to "
                              "(B, h, T, d); (B, T, d, h) interleaves the heads."),
        (wrong(split="bhtd"), "Reshaping (B, T, D) straight to (B, h, T, d) mixes tokens into "
                              "heads: reshape to (B, T, h, d), then transpose(1, 2)."),
        (lambda x, *a: _mha(x, *a, scale=x.shape[-1]),
         "The scores are divided by sqrt(D); each head compares vectors of width d = D/h, so "
         "divide by sqrt(D/h)."),
        (wrong(mask=False), "The key_mask is ignored: set the scores of padded keys (key_mask "
                            "False) to -inf before the softmax."),
        (wrong(mask="inverted"), "The mask is inverted: in this book True marks a real token "
                                 "(torch's key_padding_mask is the opposite)."),
        (wrong(project=False), "The output projection is missing: multiply the concatenated "
                               "heads by out_proj_weight^T and add out_proj_bias."),
        (wrong(bias=False), "in_proj_bias is missing: q, k, v = x W^T + b."),
    ]
    return check_build(fn, cases(), what="torch.nn.MultiheadAttention", atol=1e-7,
                       mistakes=mistakes, names=("output", "weights"),
                       done="Heads, scale, padding and the output projection all agree.")
