"""Checkers for Chapter 13, dense attention."""
from __future__ import annotations

import torch
import torch.nn.functional as F

from ._core import AUTOGRAD, Feedback, check_build, check_number, checker, generator, safe

__all__ = ['check_overlap_bound', 'check_mask_gradients', 'check_masked_bce',
           'check_decoupled_mask_loss']


# --- Derive: the softmax's half ----------------------------------------------------------------

def _softmax_overlap_bound(num_classes: int = 11, a: int = 3, b: int = 7) -> float:
    """The best share of the two masks a softmax head can mark at an overlap pixel of digits of
    classes ``a != b``: try every class as the winner of the pixel (scores one-hot on it)."""
    scores = torch.eye(num_classes)                        # row k: class k wins the pixel
    won = scores.argmax(1)                                 # index 0 is the background
    marked = (won == 1 + a).int() + (won == 1 + b).int()   # masks that get the pixel
    return marked.max().item() / 2


@checker("ex-dense-overlap-bound")
def check_overlap_bound(share) -> Feedback:
    r"""Exercise :ref:`ex-dense-overlap-bound`: the largest share of overlap pixels a softmax
    head can mark for both digits' masks: 1/2, since the argmax gives each pixel to one class
    (computed by letting every one of the 11 classes win a pixel in turn)."""
    return check_number(share, _softmax_overlap_bound(), name="the largest share", rel=1e-3,
                        why="Each overlap pixel is needed by two masks and the argmax gives it "
                            "to one class: one of two, at best.", wrong=[
        (1.0, "a share of 1 needs both digits' classes to win the same pixel; the argmax picks "
              "one class per pixel, and the two digits have different classes."),
        (0.0, "one of the two classes can win the pixel: the bound is not zero."),
        (1 / 11, "1/11 is the probability a uniform softmax gives each class; a mask is where "
                 "its class wins the argmax, and one of the two digits can win every overlap "
                 "pixel."),
        (0.1, "the mask is where a class wins the argmax, not its probability."),
        (2.0, "the share counts marked masks over the masks that need the pixel (two per "
              "overlap pixel): it is at most 1."),
    ], hint="Count, at one overlap pixel, how many of the two digits' masks can get it when "
            "one class wins the argmax; divide by the two masks that need it.")


# --- Derive: the gradients of the two heads ----------------------------------------------------

def _gradient_cases():
    g = generator(0)
    for N, K, scale in ((5, 10, 1.0), (1, 3, 1.0), (7, 11, 5.0), (4, 2, 1.0), (3, 6, 400.0)):
        s = scale * torch.randn(N, K, generator=g, dtype=torch.float64)
        if scale > 100:
            s[:, 0] = 2 * scale                      # whatever the seed: a plain exp overflows
        c, y = torch.randint(K, (N,), generator=g), torch.randint(K, (N,), generator=g)
        m = (torch.rand(N, generator=g) > 0.5).double()
        what = "scores in the hundreds" if scale > 100 else f"scores of std {scale:g}"
        yield f"{N} pixel(s), K = {K}, {what}", (s, c, m, y)


def _mask_gradients(s, c, m, y):
    """Per-pixel gradients of the decoupled loss (attnlab's) and of the softmax cross-entropy."""
    from attnlab.practice import decoupled_mask_loss

    with torch.enable_grad():
        s = s.detach().clone().requires_grad_(True)
        N = len(s)
        decoupled = N * decoupled_mask_loss(s[:, :, None, None], m[:, None, None, None],
                                            c[:, None])         # the mean over N pixels, times N
        softmax = F.cross_entropy(s, y, reduction="sum")
        return (torch.autograd.grad(decoupled, s)[0], torch.autograd.grad(softmax, s)[0])


@checker("ex-dense-gradient", forbid=AUTOGRAD)
def check_mask_gradients(fn) -> Feedback:
    r"""Exercise :ref:`ex-dense-gradient`: the gradient of each head's loss at a pixel.

    ``fn(s, c, m, y)`` gets the scores ``s`` ``(N, K)`` at ``N`` pixels, the class ``c`` ``(N,)``
    of the digit whose mask is scored, its target ``m`` ``(N,)`` (0 or 1) and the softmax
    head's target class ``y`` ``(N,)``, and returns the gradients with respect to ``s``, each
    ``(N, K)``: of :math:`\mathrm{BCE}(\sigma(s_c), m)` and of
    :math:`-\log\operatorname{softmax}(s)_y` at every pixel. They are held against autograd on
    :func:`attnlab.practice.decoupled_mask_loss` and :func:`torch.nn.functional.cross_entropy`.
    """
    def cases():
        for case, args in _gradient_cases():
            yield case, args, _mask_gradients(*args)

    def every_map(s, c, m, y):
        return torch.sigmoid(s) - m[:, None], _mask_gradients(s, c, m, y)[1]

    def flipped(s, c, m, y):
        return tuple(-g for g in _mask_gradients(s, c, m, y))

    def no_target(s, c, m, y):
        return _mask_gradients(s, c, m, y)[0], torch.softmax(s, -1)

    def softmax_decoupled(s, c, m, y):
        p = torch.softmax(s, -1).gather(1, c[:, None])[:, 0]
        return (torch.zeros_like(s).scatter(1, c[:, None], (p - m)[:, None]),
                _mask_gradients(s, c, m, y)[1])

    mistakes = [
        (every_map, "In the decoupled loss only the map of class c appears: the other maps get "
                    "a gradient of 0 (nobody asks them anything)."),
        (flipped, "That is the gradient of the log-likelihood; the loss is its negative: "
                  "sigma(s_c) - m and softmax(s) - onehot(y)."),
        (no_target, "The softmax loss's gradient is softmax(s)_k - [k = y]: subtract 1 at the "
                    "true class."),
        (softmax_decoupled, "The decoupled head's probability is sigmoid(s_c), a function of "
                            "s_c alone, not softmax(s)_c."),
    ]
    return check_build(fn, cases(), what="autograd on both heads' losses", atol=1e-8,
                       mistakes=mistakes, names=("grad_decoupled", "grad_softmax"),
                       done="One map learns in the decoupled loss; every class is pushed in the "
                            "softmax.")


# --- Build: the two losses ---------------------------------------------------------------------

def _nonfinite_hint(feedback: Feedback) -> Feedback:
    """Say why a binary cross-entropy went NaN or inf (the shared message speaks of softmax)."""
    if feedback.ok or "NaN or inf" not in feedback:
        return feedback
    message = str(feedback).removeprefix("Not yet. ").split(" Does an exp overflow?")[0]
    if "no pixel selected" in message:
        return safe(Feedback(False, message + " With no pixel selected the count is 0, and 0/0 "
                             "(or the mean of nothing) is NaN: divide by the count clamped to at "
                             "least 1."))
    return safe(Feedback(False, message + " log(sigmoid(s)) is log(0) = -inf once sigmoid rounds "
                         "to 0 or 1 (|s| above about 37 in float64): use F.logsigmoid, or "
                         "F.binary_cross_entropy_with_logits, which never round."))


def _bce(logits, target):
    return F.binary_cross_entropy_with_logits(logits, target, reduction="none")


def _clamped(logits, target):
    return F.binary_cross_entropy(torch.sigmoid(logits), target, reduction="none")


_CLAMPED = ("F.binary_cross_entropy on probabilities clamps log at -100: from sigmoid(s) it "
            "cannot give the loss of a logit far from its target; work with the logits "
            "(F.binary_cross_entropy_with_logits or F.logsigmoid).")


def _masked_bce_cases():
    g = generator(0)
    for shape, select, scale in (((2, 1, 5, 7), "random", 3.0), ((1, 1, 1, 1), "all", 1.0),
                                 ((3, 1, 8, 8), "none", 1.0), ((1, 1, 4, 6), "all", 2.0),
                                 ((2, 1, 6, 6), "random", 200.0)):
        logits = scale * torch.randn(shape, generator=g, dtype=torch.float64)
        if scale > 100:
            logits = scale * logits.sign()
        target = (torch.rand(shape, generator=g) > 0.5).double()
        where = {"random": torch.rand(shape, generator=g) > 0.5,
                 "all": torch.ones(shape, dtype=torch.bool),
                 "none": torch.zeros(shape, dtype=torch.bool)}[select]
        what = {"random": "some pixels selected", "all": "every pixel selected",
                "none": "no pixel selected (where all False)"}[select]
        yield (f"shape {shape}, {what}" + (", logits of +-200" if scale > 100 else ""),
               (logits, target, where))


@checker("ex-dense-masked-bce-build")
def check_masked_bce(fn) -> Feedback:
    r"""Exercise :ref:`ex-dense-masked-bce-build`: binary cross-entropy averaged over the
    selected pixels only.

    ``fn(logits, target, where)`` gets ``(B, 1, H, W)`` logits, 0/1 targets and a boolean
    ``where``, and returns the scalar loss. It is held against
    :func:`attnlab.practice.masked_bce`: some, all and no pixels selected, and logits of
    :math:`\pm 200`.
    """
    from attnlab.practice import masked_bce

    def cases():
        for case, args in _masked_bce_cases():
            yield case, args, masked_bce(*args)

    mistakes = [
        (lambda s, t, w: (_bce(s, t) * w).mean(), "The mean runs over all pixels: divide the sum "
         "over the selected pixels by their number, where.sum(), not by every pixel's."),
        (lambda s, t, w: _bce(s, t).mean(), "`where` is ignored: the loss counts only where it "
         "is True."),
        (lambda s, t, w: (_bce(s, t) * ~w).sum() / (~w).sum().clamp(min=1), "`where` is "
         "inverted: True marks the pixels the loss is taken on."),
        (lambda s, t, w: (_bce(s, t) * w).sum(), "That is the sum over the selected pixels: "
         "divide it by their number."),
        (lambda s, t, w: (_clamped(s, t) * w).sum() / w.sum().clamp(min=1), _CLAMPED),
    ]
    return _nonfinite_hint(check_build(
        fn, cases(), what="attnlab.practice.masked_bce", atol=1e-8, mistakes=mistakes,
        names=("loss",), done="The loss teaches only where the coarse map says 'object'."))


def _decoupled_cases():
    g = generator(1)
    for B, K, I, H, W, scale in ((2, 10, 2, 6, 6, 1.0), (1, 3, 1, 1, 1, 1.0),
                                 (3, 5, 3, 4, 7, 2.0), (2, 4, 2, 5, 5, 200.0)):
        logits = scale * torch.randn(B, K, H, W, generator=g, dtype=torch.float64)
        if scale > 100:
            logits = scale * logits.sign()
        masks = (torch.rand(B, I, H, W, generator=g) > 0.6).double()
        classes = torch.stack([torch.randperm(K, generator=g)[:I] for _ in range(B)])
        what = "distinct classes"
        if I == 3:                      # two instances of one class, an empty and a full mask
            classes[0, 1] = classes[0, 0]
            masks[0, 0], masks[0, 2] = 0.0, 1.0
            what = "two instances of one class, an empty mask and a full one"
        if scale > 100:
            what += ", logits of +-200"
        yield (f"logits {(B, K, H, W)}, {I} instance(s), {what}", (logits, masks, classes))


def _chosen(logits, classes):
    H, W = logits.shape[-2:]
    return logits.gather(1, classes[:, :, None, None].expand(-1, -1, H, W))


@checker("ex-dense-decoupled-build")
def check_decoupled_mask_loss(fn) -> Feedback:
    r"""Exercise :ref:`ex-dense-decoupled-build`: Mask R-CNN's decoupled mask loss.

    ``fn(logits, masks, classes)`` gets ``(B, K, H, W)`` mask logits (one map per class),
    ``(B, I, H, W)`` 0/1 target masks and the ``(B, I)`` integer classes of the instances, and
    returns the scalar loss. It is held against :func:`attnlab.practice.decoupled_mask_loss`:
    one pixel, two instances of one class, empty and full masks, logits of :math:`\pm 200`.
    """
    from attnlab.practice import decoupled_mask_loss

    def cases():
        for case, args in _decoupled_cases():
            yield case, args, decoupled_mask_loss(*args)

    def softmax(s, m, c):
        p = torch.softmax(s, 1).gather(1, c[:, :, None, None].expand(-1, -1, *s.shape[-2:]))
        return F.binary_cross_entropy(p, m)

    def every_map(s, m, c):
        B, I, K = m.shape[0], m.shape[1], s.shape[1]
        return _bce(s[:, None].expand(B, I, *s.shape[1:]),
                    m[:, :, None].expand(B, I, K, *m.shape[-2:])).mean()

    mistakes = [
        (softmax, "A softmax over the class maps makes the classes compete for each pixel; the "
                  "decoupled loss puts a sigmoid on the true class's map alone."),
        (every_map, "The loss is taken on the true class's map only: the other maps are not "
                    "asked anything."),
        (lambda s, m, c: _bce(s[:, :m.shape[1]], m).mean(), "Instance i is scored on the map "
         "of its class, classes[b, i], not on map i."),
        (lambda s, m, c: _bce(_chosen(s, c), m).sum(), "That is the sum: average over the "
         "instances and pixels."),
        (lambda s, m, c: _clamped(_chosen(s, c), m).mean(), _CLAMPED),
    ]
    return _nonfinite_hint(check_build(
        fn, cases(), what="attnlab.practice.decoupled_mask_loss", atol=1e-8, mistakes=mistakes,
        names=("loss",), done="Each instance is taught on its own class's map, so classes never "
                              "compete for a pixel."))
