"""Checkers for Chapter 15, show, attend and tell."""
from __future__ import annotations

import torch

from ._core import Feedback, as_number, check_build, checker, diagnose, fmt, generator

__all__ = ["check_sat_chance", "check_attend_step"]


# --- Derive: chance levels of the captions ------------------------------------------------------

def _caption_counts() -> tuple[int, int, int]:
    """(digit words, relation words, all words) of :data:`attnlab.data.CAPTION_WORDS`."""
    from attnlab.data import CAPTION_WORDS

    digits = [w for w in CAPTION_WORDS if w.isdigit()]
    relations = [w for w in CAPTION_WORDS if not w.isdigit() and not w.startswith("<")]
    return len(digits), len(relations), len(CAPTION_WORDS)


@checker("ex-sat-chance")
def check_sat_chance(caption, order_blind=None) -> Feedback:
    r"""Exercise :ref:`ex-sat-chance`: the chance of a whole caption, and of an order-blind guess.

    ``caption`` is the probability of writing the whole caption right by guessing each word
    uniformly among the words that can stand there (a digit, a relation, a digit:
    :math:`1/(10 \cdot 2 \cdot 10)`); ``order_blind`` the first word's accuracy for a decoder
    that knows both digits but not their order and names one of them at random
    (:math:`1/10 + 9/10 \cdot 1/2`, the digits of :func:`attnlab.data.digit_captions` being
    drawn independently and uniformly). Both are derived from
    :data:`attnlab.data.CAPTION_WORDS`.
    """
    n_digit, n_rel, n_all = _caption_counts()
    got = as_number(caption, "caption")
    if isinstance(got, Feedback):
        return got
    expected = 1 / (n_digit * n_rel * n_digit)
    hint = diagnose(got, expected, [
        (1 / n_all**3, f"that guesses among all {n_all} words at every place; only a digit "
                       f"can stand first and third, only a relation second."),
        (1 / (n_all - 1) ** 3, f"that guesses among the {n_all - 1} words other than <bos>; "
                               f"only a digit can stand first and third, only a relation "
                               f"second."),
        (1 / n_digit**2, f"the relation must be guessed too: one of {n_rel}."),
        (1 / (n_digit * n_rel), "there are two digit words, each guessed among "
                                f"{n_digit}: the second digit is a guess too."),
        (1 / (2 * n_digit + n_rel), "the three guesses are independent: multiply their "
                                    "chances, do not add the numbers of words."),
    ])
    if hint is not None:
        return Feedback(False, f"caption: expected a different value than {got:.4g}. "
                        + (hint or "Multiply the chance of each of the three words."))
    if order_blind is None:
        return Feedback(False, f"caption = 1/{round(1 / expected)} is right. Now give "
                               "order_blind: the first word's accuracy when both digits are "
                               "known but not their order.")
    got = as_number(order_blind, "order_blind")
    if isinstance(got, Feedback):
        return got
    same = 1 / n_digit
    blind = same + (1 - same) / 2
    hint = diagnose(got, blind, [
        (0.5, f"when the two digits are equal ({fmt(same * 100)}% of canvases) either choice "
              "is right: the accuracy is a little above one half."),
        ((1 - same) / 2, "when the two digits are equal the guess is always right: add those "
                         "canvases, do not drop them."),
        (0.5 + same, "the equal pairs are counted twice: they are right always, the "
                     f"different pairs ({fmt((1 - same) * 100)}%) half the time."),
        (same, "that is the chance of a blind guess; this decoder knows which two digits "
               "are present."),
    ])
    if hint is not None:
        return Feedback(False, f"order_blind: expected a different value than {got:.4g}. "
                        + (hint or "Split the canvases into equal and different digit pairs."))
    return Feedback(True, f"caption = 1/{round(1 / expected)} = {expected:.3g}; order-blind "
                          f"first word = {blind:.3g}: compare it with the first word of the "
                          "uniform-weights control, which sees only the grid's average.")


# --- Build: one step of soft attention over the annotations --------------------------------------

def _attend_reference(h, a, w_h, w_a, w, mask=None, *, tanh=True, dim=-1):
    pre = (h @ w_h.T)[:, None] + a @ w_a.T                               # (B, L, d_att)
    e = (torch.tanh(pre) if tanh else pre) @ w                           # (B, L)
    if mask is not None:
        e = e.masked_fill(~mask, float("-inf"))
    alpha = torch.softmax(e, dim)
    return alpha, (alpha[:, :, None] * a).sum(1)


def _attend_cases():
    """Random sizes (the chapter's among them), masks, one annotation, large scores, a blocked
    row."""
    g = generator(0)

    def rand(*shape, scale=1.0):
        return scale * torch.randn(*shape, generator=g, dtype=torch.float64)

    for B, H, L, D, A in ((2, 5, 7, 3, 4), (1, 64, 36, 34, 32), (3, 6, 1, 5, 2),
                          (4, 3, 9, 6, 5)):
        args = (rand(B, H), rand(B, L, D), rand(A, H), rand(A, D), rand(A))
        yield f"h {(B, H)}, a {(B, L, D)}, no mask", (*args, None)
        if L > 1:
            mask = torch.rand(B, L, generator=g) > 0.4
            mask[:, 0] = True                                  # every row sees an annotation
            yield f"h {(B, H)}, a {(B, L, D)}, a (B, L) mask", (*args, mask)
    h, a, w_h, w_a, w = rand(3, 8), rand(3, 10, 4), rand(6, 8), rand(6, 4), rand(6, scale=500.0)
    mask = torch.ones(3, 10, dtype=torch.bool)
    mask[2, 5:] = False
    yield "scores in the thousands (w scaled by 500; a plain exp overflows)", \
        (h, a, w_h, w_a, w, mask)
    mask = mask.clone()
    mask[1] = False
    yield ("row 1 fully masked: the reference gives it zero weights and a zero context, "
           "not NaN"), (h, a, w_h, w_a, w / 500, mask)


@checker("ex-sat-attend")
def check_attend_step(fn) -> Feedback:
    r"""Exercise :ref:`ex-sat-attend`: one step of the decoder's soft attention.

    ``fn(h, a, w_h, w_a, w, mask)`` gets the decoder state ``h (B, H)``, the annotations
    ``a (B, L, D)``, ``w_h (d, H)``, ``w_a (d, D)``, ``w (d,)`` and a boolean ``mask (B, L)``
    (True = may attend, or None), and returns the weights ``alpha (B, L)`` and the context
    ``z (B, D)``: :math:`e_i = w^\top\tanh(W_h h + W_a a_i)`, :math:`\alpha` their masked softmax
    over the annotations, :math:`z = \sum_i \alpha_i a_i`. It is held against
    :func:`attnlab.functional.additive_score` and :func:`attnlab.functional.masked_softmax` on
    random sizes (the chapter's 36 annotations among them), masks, one annotation, scores in
    the thousands and a row with every annotation masked.
    """
    from attnlab.functional import additive_score, masked_softmax

    def cases():
        for case, args in _attend_cases():
            h, a, w_h, w_a, w, mask = args
            e = additive_score(h[:, None], a, w_h, w_a, w)[:, 0]               # (B, L)
            alpha = masked_softmax(e, mask)
            yield case, args, (alpha, torch.einsum("bl,bld->bd", alpha, a))

    mistakes = [
        (lambda *args: _attend_reference(*args, dim=0),
         "The softmax runs over the batch (dim 0); each state's weights over its L "
         "annotations (dim -1) must sum to 1."),
        (lambda *args: _attend_reference(*args, tanh=False),
         "The tanh is missing: the score is w^T tanh(W_h h + W_a a_i); without it the score is "
         "linear and the attention cannot single out a place."),
        (lambda h, a, w_h, w_a, w, m: _attend_reference(h, a, w_h, w_a, w, None),
         "The mask is ignored: set the scores of masked annotations to -inf before the "
         "softmax."),
        (lambda h, a, w_h, w_a, w, m: _attend_reference(h, a, w_h, w_a, w,
                                                        None if m is None else ~m),
         "The mask is inverted: True means 'may attend', so block where it is False."),
    ]
    return check_build(fn, cases(), what="additive_score + masked_softmax", atol=1e-6,
                       mistakes=mistakes, names=("alpha", "context"),
                       done="Each word's weights over the grid, and what it reads there.")
