r"""Offline data for every chapter: generated here, or shipped inside a pip package.

Nothing in this module downloads anything, ever. Generators take a ``torch.Generator`` (or a
seed) so that a seed gives the same data on the same machine.

Arguments are checked with :mod:`attnlab.checks` before anything is drawn: a count that is not an
int raises :class:`TypeError`, one out of range :class:`ValueError`; a generator asked for what
it cannot make says so instead of looping.
"""
from __future__ import annotations

import calendar
import math
import numbers
from typing import NamedTuple

import torch
import torch.nn.functional as F

from attnlab import checks

__all__ = ["regression_target", "kernel_regression_data", "reversal_task",
           "two_positions_task", "overlapping_digits", "window_counts_task",
           "load_digit_images", "digit_split", "noisy_channel_digits", "cluttered_digits",
           "big_and_small_digits", "digit_captions", "CAPTION_WORDS", "marked_digits",
           "colour_match", "DATE_VOCAB", "DATE_FORMATS", "DateData", "dates", "date_tokens",
           "date_text", "matching_pairs", "majority_payload", "flash_video"]


def _generator(seed: int | torch.Generator | None) -> torch.Generator:
    """A ``torch.Generator`` from a seed (or pass one through)."""
    if isinstance(seed, torch.Generator):
        return seed
    if seed is None:
        seed = 0
    if not isinstance(seed, numbers.Integral) or isinstance(seed, bool):
        raise TypeError(f"seed must be an int or a torch.Generator, got {type(seed).__name__}")
    return torch.Generator().manual_seed(int(seed))


# === Chapter 1: attention pooling (kernel regression) ======================================

def regression_target(x: torch.Tensor) -> torch.Tensor:
    r"""The smooth function behind :func:`kernel_regression_data`: :math:`f(x) = \sin(2x) + x/2`."""
    checks.tensor(x, "x")
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
    checks.int_at_least(n_train, "n_train", 2), checks.positive_int(n_test, "n_test")
    checks.non_negative(noise, "noise")
    g = _generator(seed)
    x_train = torch.sort(torch.rand(n_train, generator=g) * 5).values
    y_train = regression_target(x_train) + noise * torch.randn(n_train, generator=g)
    x_test = torch.linspace(0, 5, n_test)
    return x_train, y_train, x_test, regression_target(x_test)


# === Chapters 2-3: sequences ================================================================

def _check_sequence_args(n: int, length: int, vocab: int) -> None:
    for name, v, low in (("n", n, 1), ("length", length, 1), ("vocab", vocab, 2)):
        checks.int_at_least(v, name, low)


def reversal_task(n: int, length: int = 10, vocab: int = 10,
                  seed: int | torch.Generator | None = 0):
    r"""Random token sequences and their reversals: :math:`y_t = x_{T-1-t}`.

    Each output position must copy the token at the mirrored input position, so the task is
    impossible without knowing positions; a trained attention layer shows an anti-diagonal.
    Called as ``reversal_task(batch_size, length, vocab, generator)`` it also serves as a
    sampler for :func:`attnlab.train.fit`.

    Returns:
        ``x (n, length)`` and ``y (n, length)``, integer tokens in ``[0, vocab)``.

    Taught in: :ref:`chap-self-attention`.
    """
    _check_sequence_args(n, length, vocab)
    x = torch.randint(vocab, (n, length), generator=_generator(seed))
    return x, x.flip(1)


def _random_bits(n: int, length: int, seed) -> torch.Tensor:
    return torch.randint(2, (n, length), generator=_generator(seed))


def two_positions_task(n: int, length: int = 16, offsets: tuple[int, int] = (-1, 2),
                       seed: int | torch.Generator | None = 0):
    r"""Random bits; at every position, copy the bits at two fixed offsets: :math:`y_t = (x_{t+o_1}, x_{t+o_2})`.

    Positions wrap around (a ring), so every position has both neighbours. One attention head can
    solve it by splitting its weight unevenly between the two positions (the weighted sum of two
    bits with weights 2/3 and 1/3 takes four distinct values).

    Returns:
        ``x (n, length)`` bits and ``y (n, length, 2)`` bits.

    Taught in: :ref:`chap-multi-head-attention`.
    """
    _check_sequence_args(n, length, 2)
    if isinstance(offsets, (str, bytes)) or not hasattr(offsets, "__len__") or len(offsets) != 2:
        raise TypeError(f"offsets must be a pair of ints (o_1, o_2), got {offsets!r:.60}")
    offsets = tuple(checks.int_at_least(o, "offsets", -length) for o in offsets)
    x = _random_bits(n, length, seed)
    y = torch.stack([torch.roll(x, -o, dims=1) for o in offsets], dim=-1)  # y[t] = x[t + o]
    return x, y


def window_counts_task(n: int, length: int = 16, window: int = 3,
                       seed: int | torch.Generator | None = 0):
    r"""Random bits; at every position t, count the ones just before t and just after t.

    .. math:: y_t = \Big(\sum_{j=1}^{w} x_{t-j},\; \sum_{j=1}^{w} x_{t+j}\Big)

    Positions wrap around (a ring). Each count is an average over a window times its size, so one
    softmax head that averages over both windows returns a single blend of the two counts; two
    heads can average the windows separately.

    Returns:
        ``x (n, length)`` bits and ``y (n, length, 2)`` counts in ``[0, window]``.

    Taught in: :ref:`chap-multi-head-attention`.
    """
    _check_sequence_args(n, length, 2)
    if not checks.positive_int(window, "window") < length // 2:
        raise ValueError(f"window must be an int in [1, length // 2), got {window!r}")
    x = _random_bits(n, length, seed)
    before = sum(torch.roll(x, j, dims=1) for j in range(1, window + 1))  # x[t - j]
    after = sum(torch.roll(x, -j, dims=1) for j in range(1, window + 1))  # x[t + j]
    return x, torch.stack([before, after], dim=-1)


# === Chapters 4-5: digits as channels and on canvases =======================================

_DIGITS: tuple[torch.Tensor, torch.Tensor] | None = None


def load_digit_images():
    r"""scikit-learn's 1,797 handwritten digits (8x8, shipped with the package, no download).

    Returns:
        ``images (1797, 8, 8)`` floats in ``[0, 1]`` and ``labels (1797,)`` integers 0-9.
    """
    global _DIGITS
    if _DIGITS is None:
        from sklearn.datasets import load_digits
        d = load_digits()
        _DIGITS = (torch.tensor(d.images, dtype=torch.float32) / 16.0, torch.tensor(d.target))
    return _DIGITS


def digit_split(test_size: int = 500, seed: int = 0):
    r"""A fixed split of the digit *images* into train and test indices (``1797 - test_size``, ``test_size``).

    Training batches of :func:`noisy_channel_digits` and :func:`cluttered_digits` are composed
    from the train images only, test sets from the test images only.
    """
    n = len(load_digit_images()[1])
    if not checks.positive_int(test_size, "test_size") < n:
        raise ValueError(f"test_size must be an int in (0, {n}), got {test_size!r}")
    perm = torch.randperm(n, generator=_generator(seed))
    return perm[test_size:], perm[:test_size]


def _digit_pool(split: str) -> torch.Tensor:
    checks.one_of(split, "split", ("train", "test"))
    train, test = digit_split()
    return train if split == "train" else test


def noisy_channel_digits(n: int, channels: int = 4, sigma_signal: float = 0.1,
                         sigma_noise: float = 0.5, split: str = "train",
                         seed: int | torch.Generator | None = 0):
    r"""Digits given as ``channels`` image channels; the label belongs to the *least noisy* one.

    Every channel holds a different random digit plus Gaussian noise. In one channel, chosen at
    random for each sample, the noise has standard deviation ``sigma_signal``; in the others
    ``sigma_noise``. The label is the class of the digit in that clean channel. So *which*
    channel matters changes from sample to sample, and telling it apart needs a statistic of the
    whole channel (its noise level): within a 3x3 window the two noise levels overlap, over all 64
    pixels they do not. A fixed filter cannot ignore a fixed channel here; a gate computed from
    the input can.

    Chance is 10%; guessing the channel at random and reading it perfectly gives
    :math:`1/K + (1 - 1/K)/10` (32.5% for ``K = 4``).

    Returns:
        ``x (n, channels, 8, 8)``, ``y (n,)`` labels and ``signal (n,)``, the clean channel.

    Taught in: :ref:`chap-channel-attention`.
    """
    checks.int_at_least(n, "n", 1), checks.int_at_least(channels, "channels", 2)
    checks.non_negative(sigma_signal, "sigma_signal"), checks.non_negative(sigma_noise, "sigma_noise")
    images, labels = load_digit_images()
    pool, g = _digit_pool(split), _generator(seed)
    j = pool[torch.randint(len(pool), (n, channels), generator=g)]            # (n, K) digits
    signal = torch.randint(channels, (n,), generator=g)                         # (n,)
    sigma = torch.full((n, channels, 1, 1), float(sigma_noise))
    sigma[torch.arange(n), signal] = float(sigma_signal)
    x = images[j] + sigma * torch.randn(n, channels, 8, 8, generator=g)         # (n, K, 8, 8)
    return x, labels[j[torch.arange(n), signal]], signal


def _paste_max(canvas: torch.Tensor, patch: torch.Tensor, row: torch.Tensor, col: torch.Tensor):
    """canvas[b, r:r+h, c:c+w] = max(canvas, patch[b]) for every b (in place)."""
    n, h, w = patch.shape
    rows = (row[:, None] + torch.arange(h))[:, :, None]                        # (n, h, 1)
    cols = (col[:, None] + torch.arange(w))[:, None, :]                        # (n, 1, w)
    b = torch.arange(n)[:, None, None]
    canvas[b, rows, cols] = torch.maximum(canvas[b, rows, cols], patch)


def cluttered_digits(n: int, canvas: int = 20, clutter: int = 4, fragment: int = 3,
                     split: str = "train", seed: int | torch.Generator | None = 0, *,
                     ink: bool = False):
    r"""One 8x8 digit at a random place on a ``canvas x canvas`` image, among clutter.

    The clutter is ``clutter`` random ``fragment x fragment`` pieces cut from other digits and
    dropped anywhere (as in the spatial transformer paper's cluttered MNIST): locally they look
    like strokes, but none is a whole digit. Pixels combine by maximum.

    Returns:
        ``x (n, 1, canvas, canvas)``, ``y (n,)`` and ``box (n, 2)``: the digit's top-left
        ``(row, col)`` (it covers ``box + [0, 8)`` in each direction). With ``ink=True``, also
        ``(n, 1, canvas, canvas)`` booleans: the digit's own ink (its pixels above 0.3), the
        target of a segmentation in which the fragments are background.

    Taught in: :ref:`chap-spatial-attention`, :ref:`chap-dense-attention`.
    """
    checks.int_at_least(n, "n", 1), checks.int_at_least(canvas, "canvas", 8)
    checks.non_negative_int(clutter, "clutter")
    if not checks.positive_int(fragment, "fragment") <= 8:
        raise ValueError(f"fragment must be an int in [1, 8], got {fragment!r}")
    images, labels = load_digit_images()
    pool, g = _digit_pool(split), _generator(seed)
    x = torch.zeros(n, canvas, canvas)
    for _ in range(clutter):
        j = pool[torch.randint(len(pool), (n,), generator=g)]
        a, b = torch.randint(0, 8 - fragment + 1, (2, n), generator=g)     # where in the digit
        r, c = torch.randint(0, canvas - fragment + 1, (2, n), generator=g)  # where on the canvas
        k = torch.arange(fragment)
        piece = images[j[:, None, None], (a[:, None] + k)[:, :, None], (b[:, None] + k)[:, None, :]]
        _paste_max(x, piece, r, c)
    i = pool[torch.randint(len(pool), (n,), generator=g)]
    box = torch.randint(0, canvas - 8 + 1, (n, 2), generator=g)
    _paste_max(x, images[i], box[:, 0], box[:, 1])
    if not ink:
        return x[:, None], labels[i], box
    mask = torch.zeros(n, canvas, canvas, dtype=torch.bool)
    _paste_max(mask, images[i] > 0.3, box[:, 0], box[:, 1])
    return x[:, None], labels[i], box, mask[:, None]


def overlapping_digits(n: int, canvas: int = 16, split: str = "train",
                       seed: int | torch.Generator | None = 0):
    r"""Two digits of different classes that overlap: an instance segmentation in miniature.

    Digit A's top-left corner is drawn in ``[0, canvas - 12)``; digit B is 3 to 5 pixels away
    from A in each direction (so their boxes overlap), kept on the canvas. Pixels combine by
    maximum.

    Returns:
        ``x (n, 1, canvas, canvas)``; ``classes (n, 2)``, the classes of A and B (they differ);
        ``masks (n, 2, canvas, canvas)``, each digit's own ink (its pixels above 0.3) as 0/1
        floats, overlapping where both have ink; ``labels (n, canvas, canvas)``, one class per
        pixel for a softmax over classes: 0 for background, ``1 + class`` of the brighter digit.

    Taught in: :ref:`chap-dense-attention`.
    """
    checks.int_at_least(n, "n", 1), checks.int_at_least(canvas, "canvas", 13)
    images, labels = load_digit_images()
    pool, g = _digit_pool(split), _generator(seed)
    ia = pool[torch.randint(len(pool), (n,), generator=g)]
    ib = pool[torch.randint(len(pool), (n,), generator=g)]
    while (same := labels[ia] == labels[ib]).any():                    # B's class differs
        ib[same] = pool[torch.randint(len(pool), (int(same.sum()),), generator=g)]
    corner_a = torch.randint(0, canvas - 12, (n, 2), generator=g)
    size = torch.randint(3, 6, (n, 2), generator=g)                    # drawn first
    step = size * (torch.randint(0, 2, (n, 2), generator=g) * 2 - 1)
    corner_b = (corner_a + step).clamp(0, canvas - 8)
    value = torch.zeros(2, n, canvas, canvas)                           # each digit on its own
    for k, (idx, corner) in enumerate(((ia, corner_a), (ib, corner_b))):
        _paste_max(value[k], images[idx], corner[:, 0], corner[:, 1])
    masks = (value > 0.3).float().transpose(0, 1)                       # (n, 2, canvas, canvas)
    pixel = torch.zeros(n, canvas, canvas, dtype=torch.long)
    b_wins = value[1] > value[0]
    pixel[masks[:, 0] > 0] = (1 + labels[ia])[:, None, None].expand_as(pixel)[masks[:, 0] > 0]
    take_b = (masks[:, 1] > 0) & ((masks[:, 0] == 0) | b_wins)
    pixel[take_b] = (1 + labels[ib])[:, None, None].expand_as(pixel)[take_b]
    x = value.amax(0)[:, None]
    return x, torch.stack([labels[ia], labels[ib]], 1), masks, pixel


def big_and_small_digits(n: int, classes=(0, 1, 2, 3), split: str = "train",
                         seed: int | torch.Generator | None = 0):
    r"""A big and a small digit side by side on a 16x24 canvas, labelled at every ink pixel.

    The big digit is an 8x8 digit enlarged twice (bilinear) to 16x16, filling the height, on
    the left or the right (equally often); the small one is an 8x8 digit in the other 8
    columns, at a random row. Only digits of ``classes`` are used; their position in
    ``classes`` is the label.

    Returns:
        ``x (n, 1, 16, 24)``; ``labels (n, 16, 24)``, the class of the digit at every ink pixel
        (above 0.3) and -1 elsewhere (no loss there); ``kind (n, 16, 24)``: 1 on the big digit's
        ink, 2 on the small digit's, 0 elsewhere.

    Taught in: :ref:`chap-scale-attention`.
    """
    checks.int_at_least(n, "n", 1)
    try:
        classes = torch.as_tensor(classes)
    except (TypeError, ValueError, RuntimeError):
        raise TypeError(f"classes must be a sequence of ints, got {classes!r:.60}") from None
    if classes.is_floating_point() or classes.is_complex() or classes.dtype == torch.bool:
        raise TypeError(f"classes must be ints (digits), got dtype {classes.dtype}")
    if classes.dim() != 1 or len(classes) < 2 or not ((0 <= classes) & (classes <= 9)).all() \
            or len(classes.unique()) != len(classes):
        raise ValueError(f"classes must be at least two distinct digits in 0-9, got "
                         f"{classes.tolist()}")
    images, labels = load_digit_images()
    pool, g = _digit_pool(split), _generator(seed)
    pool = pool[torch.isin(labels[pool], classes)]
    index = torch.full((10,), -1, dtype=torch.long)
    index[classes] = torch.arange(len(classes))
    i_big, i_small = (pool[torch.randint(len(pool), (n,), generator=g)] for _ in range(2))
    big_left = torch.rand(n, generator=g) < 0.5
    row_small = torch.randint(0, 9, (n,), generator=g)
    col_big, col_small = torch.where(big_left, 0, 8), torch.where(big_left, 16, 0)
    big = F.interpolate(images[i_big][:, None], scale_factor=2, mode="bilinear")[:, 0]
    small = images[i_small]
    x = torch.zeros(n, 16, 24)
    y, kind = torch.full((n, 16, 24), -1), torch.zeros(n, 16, 24, dtype=torch.long)
    for code, patch, digit, row, col in ((1, big, i_big, torch.zeros_like(col_big), col_big),
                                         (2, small, i_small, row_small, col_small)):
        ink = patch > 0.3
        _paste_max(x, patch, row, col)
        _paste_max(y, torch.where(ink, index[labels[digit]][:, None, None], -1), row, col)
        _paste_max(kind, ink.long() * code, row, col)
    return x[:, None], y, kind


CAPTION_WORDS = [str(d) for d in range(10)] + ["left-of", "above", "<bos>"]


def digit_captions(n: int, split: str = "train", seed: int | torch.Generator | None = 0):
    r"""Two digits on a 24x24 canvas and a three-word caption: ``"3 left-of 7"``, ``"5 above 1"``.

    The digits are side by side or stacked (equally often). Along the caption's axis the first
    digit starts at ``a`` in ``[0, 8]`` and the second at ``b`` in ``[a + 8, 16]``, so they never
    overlap; across it they are offset by at most 4 pixels. The first word is the left (or top)
    digit.

    Returns:
        ``x (n, 1, 24, 24)``; ``captions (n, 3)`` word indices into :data:`CAPTION_WORDS`
        (digits are their own index, then ``left-of`` = 10, ``above`` = 11; ``<bos>`` = 12
        starts decoding); ``boxes (n, 2, 2)`` the top-left ``(row, col)`` of the first and the
        second digit.

    Taught in: :ref:`chap-show-attend-tell`.
    """
    checks.int_at_least(n, "n", 1)
    images, labels = load_digit_images()
    pool, g = _digit_pool(split), _generator(seed)
    ia, ib = pool[torch.randint(len(pool), (2, n), generator=g)]
    side = torch.rand(n, generator=g) < 0.5                             # "left-of", else "above"
    a = torch.randint(9, (n,), generator=g)
    b = a + 8 + (torch.rand(n, generator=g) * (9 - a)).long()
    o1 = torch.randint(17, (n,), generator=g)
    o2 = (o1 + torch.randint(-4, 5, (n,), generator=g)).clamp(0, 16)
    rows = torch.stack([torch.where(side, o1, a), torch.where(side, o2, b)], 1)
    cols = torch.stack([torch.where(side, a, o1), torch.where(side, b, o2)], 1)
    x = torch.zeros(n, 24, 24)
    _paste_max(x, images[ia], rows[:, 0], cols[:, 0])
    _paste_max(x, images[ib], rows[:, 1], cols[:, 1])
    words = torch.stack([labels[ia], torch.where(side, 10, 11), labels[ib]], 1)
    return x[:, None], words, torch.stack([rows, cols], -1)


def marked_digits(n: int, height: int = 32, width: int = 24, mark: int = 2,
                  distance: int | None = None, split: str = "train",
                  seed: int | torch.Generator | None = 0):
    r"""Two whole digits side by side; a bar on the top edge marks the one to read.

    Channel 0 holds two 8x8 digits in non-overlapping column ranges (one in the left part, one
    in the right part of the canvas, each at its own random height). Channel 1 holds a bar
    ``mark`` pixels tall across the top ``mark`` rows, spanning exactly the columns of one of the
    two digits, chosen at random; the label is that digit's class. The gap between the bar and
    the marked digit (``distance`` rows) is random in ``[0, height - mark - 8]`` unless given.
    A network that sees only a neighbourhood of every position cannot connect a far bar with its
    digit and, pooling both digits, must guess between them; anything that looks along a whole
    column can.

    Chance is 10%; reading both digits perfectly but guessing which is marked gives 55%
    (the two classes agree in one case out of ten).

    Returns:
        ``x (n, 2, height, width)``, ``y (n,)``, ``box (n, 2)``: the marked digit's top-left
        ``(row, col)``, and ``other (n, 2)``: the unmarked digit's.

    Taught in: :ref:`chap-spatial-attention`.
    """
    checks.int_at_least(n, "n", 1), checks.int_at_least(mark, "mark", 1)
    checks.int_at_least(height, "height", mark + 8)  # room for the bar and a digit
    checks.int_at_least(width, "width", 16)  # two digits side by side
    far = height - mark - 8                                               # largest gap
    if distance is not None and not checks.non_negative_int(distance, "distance") <= far:
        raise ValueError(f"distance must be None or an int in [0, {far}], got {distance!r}")
    images, labels = load_digit_images()
    pool, g = _digit_pool(split), _generator(seed)
    j = pool[torch.randint(len(pool), (n, 2), generator=g)]                 # (n, 2) digits
    left = torch.randint(0, width - 16 + 1, (n,), generator=g)              # left digit's column
    right = left + 8 + (torch.rand(n, generator=g) * (width - 16 - left + 1)).long()
    cols = torch.stack([left, right], dim=1)                                # (n, 2)
    rows = mark + torch.randint(0, far + 1, (n, 2), generator=g)            # (n, 2)
    marked = torch.randint(0, 2, (n,), generator=g)                         # which digit
    b = torch.arange(n)
    if distance is not None:
        rows[b, marked] = mark + distance
    canvas = torch.zeros(n, height, width)
    for k in range(2):
        _paste_max(canvas, images[j[:, k]], rows[:, k], cols[:, k])
    on = torch.arange(width)[None, :] - cols[b, marked][:, None]            # (n, W)
    bar = ((on >= 0) & (on < 8)).float()[:, None, :].expand(n, mark, width)
    x = torch.stack([canvas, torch.nn.functional.pad(bar, (0, 0, 0, height - mark))], dim=1)  # (n, 2, H, W)
    box = torch.stack([rows[b, marked], cols[b, marked]], dim=1)
    other = torch.stack([rows[b, 1 - marked], cols[b, 1 - marked]], dim=1)
    return x, labels[j[b, marked]], box, other


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

    Taught in: :ref:`chap-non-local`.
    """
    checks.int_at_least(n, "n", 1), checks.positive_int(size, "size")
    checks.positive_int(n_squares, "n_squares"), checks.positive_int(square, "square")
    if not checks.positive_int(n_colours, "n_colours") <= len(PALETTE):
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


# === Chapter 8: dates in words to ISO dates =================================================

PAD, BOS = 0, 1
DATE_VOCAB = ("<pad>", "<s>", *" ,-./0123456789abcdefghijklmnopqrstuvwxyz")
_INDEX = {c: i for i, c in enumerate(DATE_VOCAB)}
_MONTHS = ("january", "february", "march", "april", "may", "june", "july", "august",
           "september", "october", "november", "december")
_UNITS = ("", "first", "second", "third", "fourth", "fifth", "sixth", "seventh", "eighth", "ninth",
          "tenth", "eleventh", "twelfth", "thirteenth", "fourteenth", "fifteenth", "sixteenth",
          "seventeenth", "eighteenth", "nineteenth")
_PREFIXES = ("", "", "on ", "due ", "signed on ")


def _ordinal(day: int) -> str:
    return f"{day}" + ("th" if 10 < day < 14 else {1: "st", 2: "nd", 3: "rd"}.get(day % 10, "th"))


def _day_words(day: int) -> str:
    if day < 20:
        return _UNITS[day]
    tens = {2: "twenty", 3: "thirty"}[day // 10]
    return tens[:-1] + "ieth" if day % 10 == 0 else tens + "-" + _UNITS[day % 10]


# Each format lists its parts: a field ("year", "month", "day") with the text it writes, or a
# literal string.
DATE_FORMATS = {
    "22 nov 2026": lambda y, m, d: [("day", f"{d}"), " ", ("month", _MONTHS[m - 1][:3]), " ",
                                    ("year", f"{y}")],
    "nov 22, 2026": lambda y, m, d: [("month", _MONTHS[m - 1][:3]), " ", ("day", f"{d}"), ", ",
                                     ("year", f"{y}")],
    "november 22, 2026": lambda y, m, d: [("month", _MONTHS[m - 1]), " ", ("day", f"{d}"), ", ",
                                          ("year", f"{y}")],
    "22 november 2026": lambda y, m, d: [("day", f"{d}"), " ", ("month", _MONTHS[m - 1]), " ",
                                         ("year", f"{y}")],
    "the 22nd of november 2026": lambda y, m, d: ["the ", ("day", _ordinal(d)), " of ",
                                                  ("month", _MONTHS[m - 1]), " ", ("year", f"{y}")],
    "twenty-second of november 2026": lambda y, m, d: [("day", _day_words(d)), " of ",
                                                       ("month", _MONTHS[m - 1]), " ",
                                                       ("year", f"{y}")],
    "22.11.2026": lambda y, m, d: [("day", f"{d:02d}"), ".", ("month", f"{m:02d}"), ".",
                                   ("year", f"{y}")],
    "2026/11/22": lambda y, m, d: [("year", f"{y}"), "/", ("month", f"{m:02d}"), "/",
                                   ("day", f"{d:02d}")],
}
# which source field each of the 10 output characters YYYY-MM-DD must read (None: a dash)
_OUTPUT_FIELDS = ("year",) * 4 + (None,) + ("month",) * 2 + (None,) + ("day",) * 2


class DateData(NamedTuple):
    """Source and target tokens of :func:`dates`, with what each output step must read."""
    src: torch.Tensor    # (n, S) source characters, padded with PAD (0)
    tgt: torch.Tensor    # (n, 10) the ISO date YYYY-MM-DD
    spans: torch.Tensor  # (n, 10, S) True on the source field output step t must read
    fmt: torch.Tensor    # (n,) index into DATE_FORMATS
    text: list           # the n source strings


def date_tokens(texts, length: int | None = None) -> torch.Tensor:
    """Strings -> ``(n, length)`` tokens of :data:`DATE_VOCAB`, padded with 0 (``<pad>``).

    ``texts`` is a list of at least one string; ``length`` (default: the longest) an int >= 1.
    """
    if isinstance(texts, (str, bytes)) or not isinstance(texts, (list, tuple)) \
            or not all(isinstance(t, str) for t in texts):
        raise TypeError(f"texts must be a list of strings, got {texts!r:.60}")
    if not texts:
        raise ValueError("texts must hold at least one string")
    if length is not None:
        checks.positive_int(length, "length")
    length = length or max(len(t) for t in texts)
    out = torch.full((len(texts), length), PAD, dtype=torch.long)
    for i, t in enumerate(texts):
        bad = [c for c in t if c not in _INDEX]
        if bad:
            raise ValueError(f"cannot encode {t!r}: characters {bad} are not in DATE_VOCAB")
        if len(t) > length:
            raise ValueError(f"length must be at least {len(t)}, the length of {t!r}, "
                             f"got {length}")
        out[i, :len(t)] = torch.tensor([_INDEX[c] for c in t], dtype=torch.long)
    return out


def date_text(tokens) -> str | list[str]:
    """Tokens -> string (padding and start tokens dropped); a batch gives a list of strings.

    ``tokens``: ``(L,)`` or ``(n, L)`` integer ids of :data:`DATE_VOCAB` (a tensor or a list).
    """
    if not isinstance(tokens, torch.Tensor):
        try:
            tokens = torch.as_tensor(tokens)
        except (TypeError, ValueError, RuntimeError):
            raise TypeError(f"tokens must be a tensor or list of integer ids, got "
                            f"{tokens!r:.60}") from None
    checks.ids(tokens.cpu(), "tokens", len(DATE_VOCAB))
    if tokens.dim() not in (1, 2):
        raise ValueError(f"tokens must have shape (L,) or (n, L), got {tuple(tokens.shape)}")
    if tokens.dim() == 2:
        return [date_text(row) for row in tokens]
    return "".join(DATE_VOCAB[i] for i in tokens.tolist() if i > BOS)


def dates(n: int, seed: int | torch.Generator | None = 0, formats=None, length: int | None = None):
    r"""Dates written in words in several formats, to translate into ISO ``YYYY-MM-DD``.

    Years 1900-2099, every valid day; a format (:data:`DATE_FORMATS`, keyed by an example) and an
    optional lead-in ("on ", "signed on ", ...) are drawn for each date, so the same field sits at
    different places in different sources. Every output character copies or translates one
    source field (the year's digits, the month's name or number, the day's digits, ordinal or
    words): ``spans`` marks that field, the place a correct cross-attention should look.

    Args:
        n: number of dates. ``formats``: the format names to draw from (default all).
        length: S, the padded source length (default: the longest source drawn).

    Returns:
        a :class:`DateData` ``(src, tgt, spans, fmt, text)``.

    Taught in: :ref:`chap-cross-attention`.
    """
    _check_sequence_args(n, 48 if length is None else length, 2)
    names = list(DATE_FORMATS)
    if isinstance(formats, (str, bytes)):
        raise TypeError(f"formats must be a list of format names, got the string {formats!r}: "
                        f"write [{formats!r}]")
    formats = names if formats is None else list(formats)
    unknown = [f for f in formats if f not in DATE_FORMATS]
    if unknown or not formats:
        raise ValueError(f"formats must be names from DATE_FORMATS {names}, got {unknown or formats}")
    g = _generator(seed)
    draws = torch.rand(n, 5, generator=g).tolist()
    texts, isos, where_all, fmts = [], [], [], []
    for ry, rm, rd, rf, rp in draws:
        y, m = 1900 + int(ry * 200), 1 + int(rm * 12)
        d = 1 + int(rd * calendar.monthrange(y, m)[1])
        name = formats[int(rf * len(formats))]
        text, where = _PREFIXES[int(rp * len(_PREFIXES))], {}
        for part in DATE_FORMATS[name](y, m, d):
            if isinstance(part, tuple):
                where[part[0]], part = (len(text), len(text) + len(part[1])), part[1]
            text += part
        texts.append(text), isos.append(f"{y:04d}-{m:02d}-{d:02d}"), fmts.append(names.index(name))
        where_all.append(where)
    src = date_tokens(texts, length)
    spans = torch.zeros(n, 10, src.shape[1], dtype=torch.bool)  # (n, T, S)
    for i, where in enumerate(where_all):
        for t, field in enumerate(_OUTPUT_FIELDS):
            if field is not None:
                spans[i, t, slice(*where[field])] = True
    return DateData(src, date_tokens(isos), spans, torch.tensor(fmts), texts)


# === Chapter 9: a pairwise task and a summary task on a grid of tokens ======================

def _token_grid_args(n, side, keys, payloads):
    for name, v, low in (("n", n, 1), ("side", side, 2), ("keys", keys, 2), ("payloads", payloads, 2)):
        checks.int_at_least(v, name, low)


def matching_pairs(n: int, side: int = 6, keys: int = 64, payloads: int = 10,
                   seed: int | torch.Generator | None = 0):
    r"""Tokens in pairs on a ``side x side`` grid; each token must report its partner's payload.

    Every token has a key (one of ``keys``) and a payload (one of ``payloads``). The
    ``side**2 / 2`` pairs have distinct keys; the two tokens of a pair share theirs and sit at
    random places on the grid. The target of every token is the payload of the *other* token
    with its key: a lookup that needs the exact pairwise match of two keys. Chance is
    ``1 / payloads``. Called as ``matching_pairs(batch_size, ..., seed=generator)`` it samples
    fresh batches.

    Returns:
        ``x (n, side**2, 2)`` (key, payload) per token, row-major on the grid, and
        ``y (n, side**2)`` the partner's payload.

    Taught in: :ref:`chap-efficient-attention`.
    """
    _token_grid_args(n, side, keys, payloads)
    N = side * side
    if N % 2 or keys < N // 2:
        raise ValueError(f"need an even number of tokens and keys >= {N // 2}, got side={side}, "
                         f"keys={keys}")
    g = _generator(seed)
    key = torch.rand(n, keys, generator=g).argsort(1)[:, :N // 2].repeat_interleave(2, 1)
    pay = torch.randint(payloads, (n, N), generator=g)
    y = pay[:, torch.arange(N) ^ 1]  # tokens 2i and 2i+1 are partners
    place = torch.rand(n, N, generator=g).argsort(1)  # scatter the tokens over the grid
    key, pay, y = (t.gather(1, place) for t in (key, pay, y))
    return torch.stack([key, pay], -1), y


def majority_payload(n: int, side: int = 6, keys: int = 64, payloads: int = 10,
                     seed: int | torch.Generator | None = 0):
    r"""Tokens on a grid; every token must report the grid's most common payload.

    Random keys and payloads, with one payload planted on a third of the tokens, so that it is
    the most common one by a clear margin. Any global summary of the payloads (a mean of their
    embeddings is enough) solves it; a token that reads only itself is right a little over a
    third of the time. Same shapes as :func:`matching_pairs`.

    Taught in: :ref:`chap-efficient-attention`.
    """
    _token_grid_args(n, side, keys, payloads)
    N = side * side
    g = _generator(seed)
    key = torch.randint(keys, (n, N), generator=g)
    pay = torch.randint(payloads, (n, N), generator=g)
    common = torch.randint(payloads, (n, 1), generator=g)
    planted = torch.rand(n, N, generator=g).argsort(1)[:, :N // 3]
    pay = pay.scatter(1, planted, common.expand(-1, N // 3))
    counts = torch.nn.functional.one_hot(pay, payloads).sum(1)  # (n, payloads)
    y = counts.argmax(1, keepdim=True).expand(-1, N)
    return torch.stack([key, pay], -1), y


# === Chapter 10: a flash to follow across frames ============================================

def _straight_tracks(m: int, k: int, frames: int, size: int, min_move: int, g: torch.Generator):
    """``(m, k, frames, 2)`` pixel positions of ``k`` dots moving in straight lines at constant
    speed, from a random start to a random end at least ``min_move`` pixels away along one axis."""
    cells = torch.arange(size)
    s, e = torch.meshgrid(cells, cells, indexing="ij")
    moves = torch.stack([s, e], -1)[(e - s).abs() >= min_move]              # (P, 2) 1-D moves
    far = moves[torch.randint(len(moves), (m, k), generator=g)]            # (m, k, 2) start, end
    free = torch.randint(0, size, (m, k, 2), generator=g)                  # the other axis
    rows_far = torch.randint(0, 2, (m, k, 1), generator=g).bool()           # which axis moves far
    start = torch.where(rows_far, torch.stack([far[..., 0], free[..., 0]], -1),
                        torch.stack([free[..., 0], far[..., 0]], -1))       # (m, k, 2) (row, col)
    end = torch.where(rows_far, torch.stack([far[..., 1], free[..., 1]], -1),
                      torch.stack([free[..., 1], far[..., 1]], -1))
    t = torch.linspace(0, 1, frames).view(1, 1, frames, 1)
    return (start[:, :, None] + (end - start)[:, :, None] * t).round().long()  # (m, k, T, 2)


def flash_video(n: int, frames: int = 5, size: int = 8, n_dots: int = 3, flash_frame: int = 0,
                far: int = 3, moving: bool = True, seed: int | torch.Generator | None = 0):
    r"""Coloured dots move; one flashes in an early frame; find that dot in the last frame.

    Each video holds ``n_dots`` one-pixel dots of distinct colours (red, green, blue) on a black
    ``size x size`` canvas, each moving in a straight line at constant speed from frame 0 to the
    last frame; no two dots ever share a pixel. In frame ``flash_frame`` one dot, drawn at
    random, flashes: a fourth channel is 1 on its pixel in that frame and 0 everywhere else. The
    target marks the pixel where the flashed dot is in the *last* frame. Its colour is the link:
    a model must carry "the red one flashed" across ``frames - 1 - flash_frame`` frames and
    several pixels of motion.

    Every dot ends at least ``far`` pixels (max-norm) away from the place of every dot in the
    flash frame. So nothing within ``far - 1`` pixels of any dot's final place ever flashed: a
    model that sees each place's own history (attention over time at a fixed pixel, followed by
    convolutions reaching fewer than ``far`` pixels) learns nothing about the flash, and, since
    the rule treats all dots alike, the trajectories alone do not tell which dot flashed.
    Chance, for a model that finds the dots but not the flashed one, is ``1 / n_dots``.
    ``moving=False`` keeps every dot in place (``far`` is then ignored): the control in which
    each place's history is enough. Called as ``flash_video(batch_size, seed=generator)`` it
    samples fresh batches. Videos are drawn at random until they obey the rules; if 20,000
    draws in a row break them (a canvas too small for ``far`` and ``n_dots``), it gives up with
    a :class:`ValueError` instead of looping for ever.

    Returns:
        ``x`` of shape ``(n, 4, frames, size, size)`` (RGB + flash, values 0/1) and ``y`` of shape
        ``(n, 1, size, size)``: 1 on the flashed dot's pixel in the last frame.

    Taught in: :ref:`chap-where-attention-looks`.
    """
    for name, v, low in (("n", n, 1), ("frames", frames, 2), ("size", size, 2),
                         ("n_dots", n_dots, 1), ("far", far, 0)):
        checks.int_at_least(v, name, low)
    if n_dots > 3:
        raise ValueError(f"n_dots must be <= 3 (one colour each: red, green, blue), got {n_dots}")
    if not checks.non_negative_int(flash_frame, "flash_frame") < frames - 1:
        raise ValueError(f"flash_frame must be an int in [0, {frames - 2}], got {flash_frame!r}")
    if moving and far > size - 1:
        raise ValueError(f"far={far} cannot be met on a {size}x{size} canvas")
    g = _generator(seed)
    T, k = frames, n_dots
    other = ~torch.eye(k, dtype=torch.bool)                                 # (k, k) pairs of dots
    pos = torch.empty(n, k, T, 2, dtype=torch.long)
    todo, fruitless = torch.arange(n), 0  # candidates drawn since one last obeyed the rules
    while len(todo):  # draw many candidates, keep those that obey the rules, redraw the rest
        m = 8 * len(todo)
        p = _straight_tracks(m, k, T, size, far if moving else 0, g)        # (m, k, T, 2)
        if not moving:
            p = p[:, :, :1].expand(m, k, T, 2)
        gap = (p[:, :, None] - p[:, None]).abs().amax(-1)                   # (m, k, k, T)
        ok = ((gap > 0) | ~other[None, :, :, None]).flatten(1).all(1)       # never on one pixel
        if moving:
            flash_to_end = (p[:, None, :, -1] - p[:, :, None, flash_frame]).abs().amax(-1)
            ok &= (flash_to_end >= far).flatten(1).all(1)                   # (m, k, k) all pairs
        keep = ok.nonzero().squeeze(1)[:len(todo)]
        pos[todo[:len(keep)]] = p[keep]
        todo = todo[len(keep):]
        fruitless = 0 if len(keep) else fruitless + m
        if fruitless >= 20_000:
            raise ValueError(f"cannot place {k} dots on a {size}x{size} canvas over {frames} "
                             f"frames with far={far}: {fruitless} random draws in a row broke "
                             "the rules; use a larger size, a smaller far or fewer n_dots")
    colour = torch.rand(n, 3, generator=g).argsort(1)[:, :k]                # (n, k) distinct
    cued = torch.randint(0, k, (n,), generator=g)                           # the dot that flashes
    b = torch.arange(n)
    x = torch.zeros(n, T, size, size, 4)                                    # channels last here
    nb, nt = b.view(n, 1, 1).expand(n, k, T), torch.arange(T).view(1, 1, T).expand(n, k, T)
    x[nb, nt, pos[..., 0], pos[..., 1], :3] = PALETTE[colour].unsqueeze(2).expand(n, k, T, 3)
    x[b, flash_frame, pos[b, cued, flash_frame, 0], pos[b, cued, flash_frame, 1], 3] = 1.0
    y = torch.zeros(n, 1, size, size)
    y[b, 0, pos[b, cued, -1, 0], pos[b, cued, -1, 1]] = 1.0
    return x.permute(0, 4, 1, 2, 3).contiguous(), y                         # (n, 4, T, H, W), (n, 1, H, W)
