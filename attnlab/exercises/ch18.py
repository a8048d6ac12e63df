"""Checkers for Chapter 18, induction heads."""
from __future__ import annotations

import torch

from ._core import Feedback, check_build, checker, generator

__all__ = ["check_prefix_matching"]


# --- Build: the prefix-matching score from an attention tensor ---------------------------------

def _random_attention(B, h, T, g, sharp=1.0):
    """Causal attention weights (B, h, T, T) with rows that sum to 1."""
    scores = sharp * torch.randn(B, h, T, T, generator=g, dtype=torch.float64)
    causal = torch.ones(T, T, dtype=torch.bool).tril()
    return scores.masked_fill(~causal, float("-inf")).softmax(-1)


def _cases():
    """Periodic sequences, random tokens with repeats, a token seen three times, tiny sizes."""
    from attnlab.induction import repeated_segments

    g = generator(18)
    ids, _ = repeated_segments(3, 12, 6, period=(3, 5), generator=g)
    yield "periodic sequences (B, T) = (3, 12), 2 heads", (_random_attention(3, 2, 12, g), ids)
    ids = torch.randint(0, 4, (2, 10), generator=g)        # small vocabulary: many repeats
    yield ("random tokens with several earlier occurrences, 3 heads",
           (_random_attention(2, 3, 10, g, sharp=3.0), ids))
    ids = torch.tensor([[5, 1, 5, 2, 5, 3, 1]])
    yield ("one token seen three times, 1 head: [5, 1, 5, 2, 5, 3, 1]",
           (_random_attention(1, 1, 7, g), ids))
    ids = torch.tensor([[1, 1, 1, 2], [0, 3, 0, 3]])
    yield ("repeated neighbours [1, 1, 1, 2] and [0, 3, 0, 3], 4 heads",
           (_random_attention(2, 4, 4, g), ids))


def _score(attn, ids, *, successor=1, all_queries=False, last_only=False):
    """The score, and the usual mistakes as switches."""
    B, h, T, _ = attn.shape
    same = ids[:, :, None] == ids[:, None, :]
    earlier = same & torch.ones(T, T, dtype=torch.bool).tril(-1)
    if last_only:                                          # only the most recent occurrence
        idx = torch.arange(T).expand(B, T, T)
        last = torch.where(earlier, idx, -1).max(-1).values
        earlier = (idx == last[..., None]) & earlier
    target = torch.zeros_like(earlier)
    if successor:
        target[:, :, successor:] = earlier[:, :, :-successor]
    else:
        target = earlier
    has = earlier.any(-1)
    per_query = (attn * target[:, None].to(attn.dtype)).sum(-1)
    if all_queries:
        return per_query.mean((0, 2))
    return (per_query * has[:, None]).sum((0, 2)) / has.sum()


@checker("ex-induction-build")
def check_prefix_matching(fn) -> Feedback:
    r"""Exercise :ref:`ex-induction-build`: the prefix-matching score of every head.

    ``fn(attn, ids)`` gets causal attention weights ``(B, h, T, T)`` and the tokens ``(B, T)``
    they were computed on and returns ``(h,)``: at each query whose token occurred before, the
    weight on the positions that followed its earlier occurrences, averaged over those queries.
    Held against :func:`attnlab.induction.prefix_matching_score`.
    """
    from attnlab.induction import prefix_matching_score

    def cases():
        for case, args in _cases():
            yield case, args, prefix_matching_score(*args)

    mistakes = [
        (lambda a, i: _score(a, i, successor=0),
         "You measure the weight on the earlier occurrence itself: an induction head attends to "
         "the token *after* it (position s + 1)."),
        (lambda a, i: _score(a, i, all_queries=True),
         "You average over every query; average only over the queries whose token occurred "
         "before (the others cannot match anything)."),
        (lambda a, i: _score(a, i, last_only=True),
         "You use only the most recent earlier occurrence; add the weight on the successors of "
         "all earlier occurrences."),
        (lambda a, i: _score(a, i, successor=2),
         "You look two positions after the earlier occurrence: its successor is s + 1."),
    ]
    return check_build(fn, cases(), what="attnlab.induction.prefix_matching_score", atol=1e-6,
                       mistakes=mistakes, names=("score",),
                       done="Successors, earlier occurrences only, and the right average.")
