r"""Offline data for every chapter: generated here, or shipped inside a pip package.

Nothing in this module downloads anything, ever. Generators take a ``torch.Generator`` (or a
seed) so that a seed gives the same data on the same machine.
"""
from __future__ import annotations

import math

import torch



def _generator(seed: int | torch.Generator | None) -> torch.Generator:
    """A ``torch.Generator`` from a seed (or pass one through)."""
    if isinstance(seed, torch.Generator):
        return seed
    if seed is None:
        seed = 0
    if not isinstance(seed, int) or isinstance(seed, bool):
        raise TypeError(f"seed must be an int or a torch.Generator, got {type(seed).__name__}")
    return torch.Generator().manual_seed(seed)


# === Chapter 1: attention pooling (kernel regression) ======================================

def regression_target(x: torch.Tensor) -> torch.Tensor:
    r"""The smooth function behind :func:`kernel_regression_data`: :math:`f(x) = \sin(2x) + x/2`."""
    return torch.sin(2 * x) + 0.5 * x


def kernel_regression_data(n_train: int = 60, n_test: int = 100, noise: float = 0.3,
                           seed: int | torch.Generator | None = 0):
    r"""A 1-D regression toy for attention pooling (Nadaraya-Watson kernel regression).

    Training inputs are sorted uniform draws on :math:`[0, 5]`; targets are
    :func:`regression_target` plus Gaussian noise of standard deviation ``noise``. Test inputs are
    an even grid on :math:`[0, 5]` with noiseless targets, so a fit's error is measured against
    the truth.

    Returns:
        ``x_train (n_train,)``, ``y_train (n_train,)``, ``x_test (n_test,)``, ``y_test (n_test,)``.

    Taught in: :ref:`chap-soft-lookup`.
    """
    if n_train < 2 or n_test < 1:
        raise ValueError(f"need n_train >= 2 and n_test >= 1, got {n_train} and {n_test}")
    if noise < 0:
        raise ValueError(f"noise must be >= 0, got {noise}")
    g = _generator(seed)
    x_train = torch.sort(torch.rand(n_train, generator=g) * 5).values
    y_train = regression_target(x_train) + noise * torch.randn(n_train, generator=g)
    x_test = torch.linspace(0, 5, n_test)
    return x_train, y_train, x_test, regression_target(x_test)


# === Chapters 2-3: sequences ================================================================

# === Chapters 4-5: digits as channels and on canvases =======================================

# === Chapter 6: non-local (long-range) tasks ================================================

#: RGB colours of :func:`colour_match`: red, green, blue, yellow, magenta, cyan.
PALETTE = torch.tensor([[1.0, 0.0, 0.0], [0.0, 1.0, 0.0], [0.0, 0.0, 1.0],
                        [1.0, 1.0, 0.0], [1.0, 0.0, 1.0], [0.0, 1.0, 1.0]])


def colour_match(n: int, size: int = 16, n_squares: int = 4, n_colours: int = 4, square: int = 3,
                 seed: int | torch.Generator | None = 0):
    r"""A dense task that needs far-away context: mark every square of the marked square's colour.

    Each image holds ``n_squares`` non-overlapping ``square x square`` squares, each of one of
    ``n_colours`` colours (i.i.d.), on a black ``size x size`` canvas; one pixel of one square is
    marked in a fourth channel. The target marks every pixel of every square whose colour equals
    the marked square's colour (the marked square included). Squares sit in a grid of cells of
    ``square + 1`` pixels at a random offset, so they may lie far apart: a network whose receptive
    field is smaller than the distance cannot tell whether a far square is a match.

    Returns:
        ``X`` of shape ``(n, 4, size, size)`` (RGB + mark) and ``Y`` of shape ``(n, 1, size, size)``
        (floats 0/1).

    Taught in chapter 6 (:ref:`chap-non-local`).
    """
    if not isinstance(n, int) or n < 1:
        raise ValueError(f"n must be a positive int, got {n!r}")
    if not 1 <= n_colours <= len(PALETTE):
        raise ValueError(f"n_colours must be in 1..{len(PALETTE)}, got {n_colours}")
    cell = square + 1
    grid = size // cell
    if grid * grid < n_squares:
        raise ValueError(f"size={size} fits only {grid * grid} squares of side {square}, "
                         f"n_squares={n_squares} asked")
    g = _generator(seed)
    cells = torch.rand(n, grid * grid, generator=g).argsort(dim=1)[:, :n_squares]   # distinct cells
    off = torch.randint(0, cell - square + 1, (n, n_squares, 2), generator=g)
    top = (cells // grid) * cell + off[..., 0]                                      # (n, k)
    left = (cells % grid) * cell + off[..., 1]                                      # (n, k)
    colour = torch.randint(0, n_colours, (n, n_squares), generator=g)               # (n, k)
    ys = torch.arange(size).view(1, 1, size, 1)
    xs = torch.arange(size).view(1, 1, 1, size)
    inside = ((ys >= top[..., None, None]) & (ys < top[..., None, None] + square)
              & (xs >= left[..., None, None]) & (xs < left[..., None, None] + square))  # (n, k, H, W)
    rgb = torch.einsum("nkhw,nkc->nchw", inside.float(), PALETTE[colour])            # (n, 3, H, W)
    marked = torch.randint(0, n_squares, (n,), generator=g)                         # which square
    rows = torch.arange(n)
    my = top[rows, marked] + torch.randint(0, square, (n,), generator=g)
    mx = left[rows, marked] + torch.randint(0, square, (n,), generator=g)
    mark = torch.zeros(n, 1, size, size)
    mark[rows, 0, my, mx] = 1.0
    same = colour == colour[rows, marked].unsqueeze(1)                              # (n, k)
    Y = (inside & same[..., None, None]).any(dim=1, keepdim=True).float()           # (n, 1, H, W)
    return torch.cat([rgb, mark], dim=1), Y


# === Chapter 7: cost and inductive bias =====================================================
