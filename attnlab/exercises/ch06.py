"""Checkers for Chapter 6, non-local networks."""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from ._core import Feedback, as_number, check_build, checker, diagnose, fmt, generator

__all__ = ['check_non_local_cost', 'check_non_local_block']


def _non_local_entries(frames: int, height: int, width: int,
                       sub_sample: bool) -> tuple[int, int]:
    """``(N, M)`` of ``NonLocalBlock(dimension=3)``: M counted by running the block's pooling."""
    from attnlab.non_local import NonLocalBlock
    block = NonLocalBlock(4, dimension=3, sub_sample=sub_sample)
    n = frames * height * width
    with torch.no_grad():
        m = block.pool(torch.zeros(1, 1, frames, height, width)).numel()
        # a tiny forward confirms that the affinity really is (B, N, M) with this pooling
        small = (2, 6, 6)
        _, a = block(torch.zeros(1, 4, *small), return_attention=True)
        m_small = block.pool(torch.zeros(1, 1, *small)).numel()
    if tuple(a.shape) != (1, math.prod(small), m_small):  # pragma: no cover - guards the derivation
        raise RuntimeError(f"NonLocalBlock's affinity has shape {tuple(a.shape)}, not (1, N, M)")
    return n, m


@checker("ex-non-local-cost")
def check_non_local_cost(full, subsampled, *, frames: int = 8, height: int = 28,
                         width: int = 28) -> Feedback:
    r"""Exercise :ref:`ex-non-local-cost`: entries of a video non-local block's affinity.

    ``full`` is the number of entries of the ``N x M`` affinity without subsampling and
    ``subsampled`` with the block's 1x2x2 max-pooling of keys and values, for a
    ``frames x height x width`` feature map (default 8 x 28 x 28). The expected counts are N*M with
    N the number of positions and M the number of keys that ``NonLocalBlock(dimension=3)``'s own
    pooling leaves (a tiny forward with ``return_attention=True`` confirms the (B, N, M) shape).
    """
    got_full = as_number(full, "full")
    if isinstance(got_full, Feedback):
        return got_full
    got_sub = as_number(subsampled, "subsampled")
    if isinstance(got_sub, Feedback):
        return got_sub
    n, m_full = _non_local_entries(frames, height, width, sub_sample=False)
    _, m_sub = _non_local_entries(frames, height, width, sub_sample=True)
    exp_full, exp_sub = n * m_full, n * m_sub
    hint = diagnose(got_full, exp_full, [
        (n, f"{n:,} is the number of positions N = {frames}*{height}*{width}; the affinity "
            "has one entry per (query, key) pair: N * N."),
        (4 * exp_full, "that is bytes in float32; count entries."),
        (height * width * height * width, "a video block attends across frames too: N counts all "
                                          f"{frames} frames."),
    ])
    if hint is not None:
        return Feedback(False, f"without subsampling: expected {exp_full:,}, got "
                               f"{fmt(got_full)}. "
                               + (hint or f"N = {n:,} positions, each against all N keys."))
    hint = diagnose(got_sub, exp_sub, [
        (n * n // 8, "the pooling is 1x2x2: it keeps all frames and halves only height and "
                     "width, so M = N/4, not N/8."),
        (n * n // 2, "the pooling halves both height and width: M = N/4, not N/2."),
        (m_sub * m_sub, "only keys and values are pooled; every one of the N positions is still a "
                        "query, so the affinity is N x M, not M x M."),
        (4 * exp_sub, "that is bytes in float32; count entries."),
        (exp_full, "that is the count without subsampling; pooling keys 1x2x2 leaves M = N/4 "
                   "of them."),
    ])
    if hint is not None:
        return Feedback(False, f"with 1x2x2 subsampling: expected {exp_sub:,}, got "
                               f"{fmt(got_sub)}. "
                               + (hint or f"N = {n:,} queries, M = {m_sub:,} pooled keys: N * M."))
    return Feedback(True, f"N = {n:,} positions; without subsampling N*N = {exp_full:,} entries "
                          f"({4 * exp_full / 1e6:.0f} MB in float32) per example and block; the "
                          f"1x2x2 pooling leaves M = {m_sub:,} keys, so N*M = {exp_sub:,}, four "
                          "times fewer.")


# --- Build: the embedded-Gaussian non-local block ----------------------------------------------

def _block(x, w_theta, b_theta, w_phi, b_phi, w_g, b_g, w_z, b_z, sub_sample, *, axis=-1,
           residual=True, transposed=False, scale=False, flat=False, pool=True, ceil=True):
    """The block from tensors, and the variants of the usual mistakes."""
    B, C, H, W = x.shape
    d = w_theta.shape[0]

    def conv(w, b):                                                    # a 1x1 convolution
        return torch.einsum("dc,bchw->bdhw", w, x) + b[:, None, None]

    def down(t):
        return F.max_pool2d(t, 2, ceil_mode=ceil) if sub_sample and pool else t

    theta = conv(w_theta, b_theta).flatten(2).transpose(1, 2)          # (B, N, d)
    phi = down(conv(w_phi, b_phi)).flatten(2).transpose(1, 2)          # (B, M, d)
    g = down(conv(w_g, b_g)).flatten(2).transpose(1, 2)                # (B, M, d)
    s = theta @ phi.transpose(1, 2) / (d ** 0.5 if scale else 1.0)     # (B, N, M)
    a = torch.softmax(s, dim=axis)
    y = (a.transpose(1, 2) if transposed else a) @ g                   # (B, N, d)
    y = y.reshape(B, d, H, W) if flat else y.transpose(1, 2).reshape(B, d, H, W)
    z = torch.einsum("cd,bdhw->bchw", w_z, y) + b_z[:, None, None]
    return z + x if residual else z


def _block_cases():
    """Several sizes (odd, non-square, one position), batch 1, subsampling, eval-mode BN."""
    from attnlab.non_local import NonLocalBlock

    g = generator(0)
    for B, C, d, H, W, sub, bn, scale in ((2, 8, 4, 5, 6, False, True, 1.0),
                                          (1, 6, 3, 7, 3, False, False, 1.0),
                                          (2, 4, 2, 9, 9, True, True, 1.0),
                                          (1, 10, 5, 4, 11, True, False, 1.0),
                                          (1, 3, 1, 1, 1, False, True, 1.0),
                                          (2, 8, 4, 6, 5, False, False, 12.0)):
        block = NonLocalBlock(C, d, sub_sample=sub, bn_layer=bn).double()
        with torch.no_grad():                      # non-zero W_z, and a BN with real statistics
            for p in block.parameters():
                p.copy_(torch.randn(p.shape, generator=g) / p[0].numel() ** 0.5)
            if bn:
                norm = block.w_z[1]
                norm.running_mean.copy_(torch.randn(C, generator=g))
                norm.running_var.copy_(torch.rand(C, generator=g) + 0.5)
        block.eval()
        x = scale * torch.randn(B, C, H, W, generator=g, dtype=torch.float64)
        with torch.no_grad():
            expected = block(x)
        conv_z = block.w_z[0] if bn else block.w_z
        w_z, b_z = conv_z.weight[:, :, 0, 0], conv_z.bias
        if bn:      # an eval-mode batch norm is a per-channel affine map: fold it into W_z
            gain = norm.weight / (norm.running_var + norm.eps).sqrt()
            w_z, b_z = gain[:, None] * w_z, gain * (b_z - norm.running_mean) + norm.bias
        weights = [t.detach().clone() for t in (
            block.theta.weight[:, :, 0, 0], block.theta.bias, block.phi.weight[:, :, 0, 0],
            block.phi.bias, block.g.weight[:, :, 0, 0], block.g.bias, w_z, b_z)]
        case = (f"x {tuple(x.shape)}, d = {d}, sub_sample={sub}"
                + (", W_z with a folded batch norm" if bn else "")
                + (f", entries of std {scale:g}" if scale != 1 else ""))
        yield case, (x, *weights, sub), expected


@checker("ex-non-local-build")
def check_non_local_block(fn) -> Feedback:
    r"""Exercise :ref:`ex-non-local-build`: the embedded-Gaussian non-local block from tensors.

    ``fn(x, w_theta, b_theta, w_phi, b_phi, w_g, b_g, w_z, b_z, sub_sample)`` gets
    ``x (B, C, H, W)``, the 1x1 convolutions as matrices (``w_theta, w_phi, w_g`` of shape
    ``(d, C)`` with biases ``(d,)``; ``w_z`` ``(C, d)`` with bias ``(C,)``, an eval-mode batch
    norm already folded in) and a flag for the 2x2 max-pooling of keys and values, and returns
    ``z (B, C, H, W)``. It is held against :class:`attnlab.non_local.NonLocalBlock` (embedded
    Gaussian, in eval mode, with random non-zero ``W_z``) on several sizes, with and without
    subsampling and batch norm, on one position and on large scores.
    """
    mistakes = [
        (lambda *a: _block(*a, axis=1),
         "The softmax runs over the queries (dim 1); each position's weights over the keys "
         "(dim -1) must sum to 1."),
        (lambda *a: _block(*a, residual=False),
         "The residual is missing: the block returns z = W_z y + x."),
        (lambda *a: _block(*a, transposed=True),
         "The affinity is transposed: row i of softmax(theta phi^T) holds query i's weights, so "
         "y = A g, not A^T g."),
        (lambda *a: _block(*a, scale=True),
         "The scores are divided by sqrt(d): the embedded Gaussian is exp(theta_i . phi_j), with "
         "no scale."),
        (lambda *a: _block(*a, flat=True),
         "y (B, N, d) was reshaped to (B, d, H, W) without transposing: transpose it to "
         "(B, d, N) first, so that each channel gets its own map."),
        (lambda *a: _block(*a, pool=False),
         "With sub_sample=True, phi and g are max-pooled 2x2 (keys and values only; theta keeps "
         "all N queries)."),
        (lambda *a: _block(*a, ceil=False),
         "For odd sizes the pooling keeps the last row and column: F.max_pool2d(t, 2, "
         "ceil_mode=True)."),
    ]
    return check_build(fn, _block_cases(), what="attnlab.non_local.NonLocalBlock", atol=1e-6,
                       mistakes=mistakes,
                       done="softmax(theta phi^T) g is single-head attention without a scale; "
                            "W_z and the residual make it a block.")
