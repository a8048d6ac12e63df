"""Checkers for Chapter 14, attention to scale and RA-CNN."""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from ._core import Feedback, as_number, check_build, checker, diagnose, fmt, generator

__all__ = ["check_scale_receptive", "check_crop_and_zoom", "check_nested_square"]


# --- Derive: the receptive field of the chapter's FCN ------------------------------------------

def _receptive_field(scale: int) -> int:
    """Measured: how many input pixels (along one axis) reach one output of the chapter's FCN.

    The FCN's layers (3x3, 3x3 stride 2, 3x3, 1x1 classifier) get all-one weights, so every path
    counts; the gradient of one central output, through the bilinear shrink at ``1 / scale``,
    is non-zero exactly on the pixels it sees.
    """
    body = nn.Sequential(nn.Conv2d(1, 2, 3, padding=1), nn.ReLU(),
                         nn.Conv2d(2, 2, 3, stride=2, padding=1), nn.ReLU(),
                         nn.Conv2d(2, 2, 3, padding=1), nn.ReLU(), nn.Conv2d(2, 1, 1)).double()
    for layer in body:
        if isinstance(layer, nn.Conv2d):
            nn.init.ones_(layer.weight), nn.init.zeros_(layer.bias)
    x = torch.ones(1, 1, 64, 64, dtype=torch.float64, requires_grad=True)
    seen = x if scale == 1 else F.interpolate(x, size=(64 // scale,) * 2, mode="bilinear")
    out = body(seen)
    out[0, 0, out.shape[-2] // 2, out.shape[-1] // 2].backward()
    return int((x.grad[0, 0].abs().sum(0) > 0).sum())


@checker("ex-scale-receptive")
def check_scale_receptive(fine, coarse=None) -> Feedback:
    r"""Exercise :ref:`ex-scale-receptive`: the FCN's receptive field at scales 1 and 0.5.

    ``fine`` is the receptive field in pixels of the image it is given (9: each 3x3 convolution
    adds 2 times the product of the strides before it), ``coarse`` the same field in pixels of
    the *original* image when the FCN reads the image shrunk to half (18). Both are measured
    here, by back-propagating one output of the chapter's layers to the input.
    """
    got = as_number(fine, "fine")
    if isinstance(got, Feedback):
        return got
    rf = _receptive_field(1)
    hint = diagnose(got, rf, [
        (rf - 2, "the stride 2 of the second convolution makes every later step twice as "
                 "wide: the third convolution adds 2 x 2 = 4 pixels, not 2."),
        (rf + 2, "a layer's stride widens the layers *after* it, not itself: the stride-2 "
                 "convolution adds (3 - 1) x 1 = 2 pixels, the one after it (3 - 1) x 2 = 4."),
        (rf + 1, "adding the kernel sizes (3 + 3 + 3 + 1) is not the rule: each k x k layer "
                 "adds k - 1 times the product of the strides before it, starting from 1."),
    ])
    if hint is not None:
        return Feedback(False, f"fine: expected a different value than {fmt(got)}. "
                        + (hint or "Start from 1 pixel and add (k - 1) x (product of the "
                                   "earlier strides) for every layer."))
    if coarse is None:
        return Feedback(False, f"fine = {rf} is right. Now give coarse too: how many pixels of "
                               "the original image does it cover at scale 0.5?")
    got = as_number(coarse, "coarse")
    if isinstance(got, Feedback):
        return got
    rf2 = _receptive_field(2)
    hint = diagnose(got, rf2, [
        (rf, "that is the field in pixels of the shrunk image; each of them spans 2 original "
             "pixels along each axis."),
        (rf / 2, "the shrunk image has half as many pixels, so each one covers *more* of the "
                 "original: multiply by 2, do not divide."),
        (2 * rf - 1, "halving with bilinear interpolation averages disjoint pairs of pixels, "
                     "so 9 shrunk pixels are exactly 2 x 9 original ones, none shared."),
    ])
    if hint is not None:
        return Feedback(False, f"coarse: expected a different value than {fmt(got)}. "
                        + (hint or "One pixel of the half-size image is two original pixels "
                                   "along each axis."))
    return Feedback(True, f"fine = {rf} pixels, coarse = {rf2} original pixels: at scale 0.5 the "
                          "same weights see more than the big digit's 16, at scale 1 only a "
                          "corner of it.")


# --- Build: RA-CNN's crop and zoom --------------------------------------------------------------

def _crop_cases():
    """The chapter's shapes, odd and non-square images, the identity, a square half outside."""
    g = generator(0)

    def rand(*shape):
        return torch.rand(*shape, generator=g, dtype=torch.float64)

    for B, C, H, W, size in ((2, 1, 24, 24, 12), (1, 3, 9, 9, 5), (3, 2, 10, 14, 7),
                             (2, 1, 6, 6, 1)):
        x = rand(B, C, H, W)
        centre, side = rand(B, 2) - 0.5, 0.3 + 0.7 * rand(B)
        yield f"x {(B, C, H, W)}, size {size}", (x, centre, side, size)
    x = rand(2, 1, 8, 8)
    yield "centre 0 and side 1 at the image's own size (gives the image back)", \
        (x, torch.zeros(2, 2, dtype=torch.float64), torch.ones(2, dtype=torch.float64), 8)
    corner = torch.tensor([[0.9, -0.8], [-0.7, 0.6]], dtype=torch.float64)
    yield "a square reaching past the border (zeros outside)", \
        (rand(2, 1, 12, 12), corner, torch.tensor([0.5, 0.4], dtype=torch.float64), 6)


def _crop_with(x, centre, side, size, *, scale=1.0, align_corners=False, mode="bilinear",
               padding_mode="zeros"):
    theta = torch.zeros(len(x), 2, 3, dtype=x.dtype)
    theta[:, 0, 0] = theta[:, 1, 1] = scale * side
    theta[:, :, 2] = centre
    grid = F.affine_grid(theta, [len(x), x.shape[1], size, size], align_corners=align_corners)
    return F.grid_sample(x, grid, mode=mode, padding_mode=padding_mode,
                         align_corners=align_corners)


@checker("ex-racnn-crop")
def check_crop_and_zoom(fn) -> Feedback:
    r"""Exercise :ref:`ex-racnn-crop`: RA-CNN's differentiable crop and zoom.

    ``fn(x, centre, side, size)`` gets ``x (B, C, H, W)``, ``centre (B, 2)`` as (x, y) in the
    normalised coordinates ``[-1, 1]`` of ``F.grid_sample`` (pixel centres,
    ``align_corners=False``), ``side (B,)`` as a fraction of the image and an int ``size``, and
    returns the square resampled bilinearly to ``(B, C, size, size)``. It is held against
    :func:`attnlab.practice.crop_and_zoom` on odd and non-square images, ``size`` 1, the
    identity (centre 0, side 1) and a square that reaches past the border.
    """
    from attnlab.practice import crop_and_zoom

    def cases():
        for case, args in _crop_cases():
            yield case, args, crop_and_zoom(*args)

    mistakes = [
        (lambda x, c, s, n: _crop_with(x, c.flip(-1), s, n),
         "The centre's coordinates are swapped: centre is (x, y), the column's coordinate "
         "first, as in the grid of F.grid_sample."),
        (lambda x, c, s, n: _crop_with(x, c, s, n, align_corners=True),
         "align_corners=True puts -1 and 1 on the outer pixels' centres; the library (and "
         "the spatial transformer) uses align_corners=False: -1 and 1 are the image's edges."),
        (lambda x, c, s, n: _crop_with(x, c, s, n, scale=0.5),
         "The square is half as wide as it should be: the image is 2 wide in normalised "
         "coordinates, so a square of side s (a fraction of it) runs from t - s to t + s."),
        (lambda x, c, s, n: _crop_with(x, c, s, n, scale=2.0),
         "The square is twice as wide as it should be: the output's [-1, 1] must map onto "
         "[t - s, t + s], a scale of s."),
        (lambda x, c, s, n: _crop_with(x, c, s, n, mode="nearest"),
         "The samples are the nearest pixels; sample bilinearly, so that the crop is "
         "differentiable in the centre and the side."),
        (lambda x, c, s, n: _crop_with(x, c, s, n, padding_mode="border"),
         "Outside the image the sampler should read zeros (padding_mode='zeros'), not repeat "
         "the border."),
    ]
    return check_build(fn, cases(), what="attnlab.practice.crop_and_zoom", atol=1e-6,
                       mistakes=mistakes,
                       done="Your crop reads the same square, at the same sub-pixel places.")


# --- Derive: RA-CNN's third scale, a square inside a square -------------------------------------

def _read_square(t1, l1, t2, l2):
    """Where crop_and_zoom's second crop lands on the canvas, read off a coordinate ramp.

    Bilinear sampling reproduces a linear image exactly (inside the pixel centres), so cropping
    an image whose pixels hold their own normalised (x, y) twice gives, at every output pixel,
    the canvas coordinate it came from: its mean is the centre, its slope the side.
    """
    from attnlab.practice import crop_and_zoom

    B, W, n = len(t1), 64, 8
    u = (torch.arange(W, dtype=torch.float64) * 2 + 1) / W - 1          # pixel centres
    ramp = torch.stack([u.expand(W, W), u[:, None].expand(W, W)])[None].expand(B, 2, W, W)
    zoom = crop_and_zoom(crop_and_zoom(ramp.contiguous(), t1, l1, W), t2, l2, n)
    v = (torch.arange(n, dtype=torch.float64) * 2 + 1) / n - 1
    centre = zoom.mean((2, 3))                                           # (B, 2)
    side = (zoom[:, 0, 0, -1] - zoom[:, 0, 0, 0]) / (v[-1] - v[0])     # (B,)
    return centre, side


@checker("ex-racnn-third")
def check_nested_square(fn) -> Feedback:
    r"""Exercise :ref:`ex-racnn-third`: the second square in the canvas's frame.

    ``fn(t1, l1, t2, l2)`` gets the first square's centre ``t1 (B, 2)`` and side ``l1 (B,)`` on
    the canvas and the second's ``t2, l2`` in the frame of the zoomed view, and returns the
    second square's centre ``(B, 2)`` and side ``(B,)`` on the canvas:
    :math:`t^{(1)} + \ell^{(1)} t^{(2)}` and :math:`\ell^{(1)}\ell^{(2)}`. The expected values are
    read off :func:`attnlab.practice.crop_and_zoom` itself, applied twice to a coordinate ramp.
    """
    def cases():
        g = generator(1)
        for B in (3, 1, 5):
            t1, t2 = (0.6 * torch.rand(B, 2, generator=g, dtype=torch.float64) - 0.3
                      for _ in range(2))
            l1, l2 = (0.33 + 0.27 * torch.rand(B, generator=g, dtype=torch.float64)
                      for _ in range(2))
            yield f"{B} square(s)", (t1, l1, t2, l2), _read_square(t1, l1, t2, l2)

    mistakes = [
        (lambda t1, l1, t2, l2: (t1 + t2, l1 * l2),
         "The centre adds t2 unscaled: t2 is measured in the zoomed view, where 1 is half the "
         "first square's side, so it moves l1 * t2 on the canvas."),
        (lambda t1, l1, t2, l2: (l1[:, None] * t2, l1 * l2),
         "The centre forgets the first square's own place: add t1."),
        (lambda t1, l1, t2, l2: (t1 + l1[:, None] * t2, l2),
         "The side l2 is a fraction of the first square, not of the canvas: multiply by l1."),
        (lambda t1, l1, t2, l2: (t1 + l1[:, None] * t2 / 2, l1 * l2),
         "The centre moves by l1 * t2, not half of it: the zoomed view's [-1, 1] spans "
         "[t1 - l1, t1 + l1] on the canvas."),
    ]
    return check_build(fn, cases(), what="two crop_and_zoom calls", atol=1e-6,
                       mistakes=mistakes, names=("centre", "side"),
                       done="A point u of the zoomed view is t1 + l1 u on the canvas.")
