"""Chapter 18's checker: the reference passes; each typical mistake gets its own hint."""
import torch

from attnlab.exercises import check_prefix_matching
from _feedback import not_done, wrong


def prefix_matching(attn, ids, *, successor=1, all_queries=False, last_only=False):
    T = ids.shape[1]
    same = ids[:, :, None] == ids[:, None, :]
    earlier = same & torch.ones(T, T, dtype=torch.bool).tril(-1)
    if last_only:
        idx = torch.arange(T).expand_as(earlier)
        latest = torch.where(earlier, idx, -1).max(-1).values
        earlier = earlier & (idx == latest[..., None])
    after = torch.zeros_like(earlier)
    after[:, :, successor:] = earlier[:, :, :T - successor] if successor else earlier
    if not successor:
        after = earlier
    has = earlier.any(-1)
    per_query = (attn * after[:, None]).sum(-1)
    if all_queries:
        return per_query.mean((0, 2))
    return (per_query * has[:, None]).sum((0, 2)) / has.sum()


def test_reference_passes():
    feedback = check_prefix_matching(prefix_matching)
    assert feedback.ok and feedback.startswith("Correct!") and "4 cases" in feedback


def test_mistakes_are_named():
    assert wrong(check_prefix_matching(lambda a, i: prefix_matching(a, i, successor=0)),
                 "earlier occurrence itself", "s + 1")
    assert wrong(check_prefix_matching(lambda a, i: prefix_matching(a, i, all_queries=True)),
                 "average only over the queries")
    assert wrong(check_prefix_matching(lambda a, i: prefix_matching(a, i, last_only=True)),
                 "most recent")
    assert wrong(check_prefix_matching(lambda a, i: prefix_matching(a, i, successor=2)),
                 "two positions after")
    assert wrong(check_prefix_matching(lambda a, i: prefix_matching(a, i)[None]),
                 "expected shape (2,), got (1, 2)")
    assert wrong(check_prefix_matching(lambda a, i: torch.zeros(a.shape[1])), "off by")


def test_bad_answers_and_stubs():
    assert wrong(check_prefix_matching("score"), "pass your function")
    assert wrong(check_prefix_matching(lambda a, i: 1 / 0), "ZeroDivisionError")

    def stub(attn, ids):
        raise NotImplementedError
    assert not_done(check_prefix_matching(stub))
    assert not_done(check_prefix_matching(...))
