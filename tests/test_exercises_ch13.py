"""Chapter 13's checkers: the reference passes; each typical mistake gets its own hint."""
import torch
import torch.nn.functional as F

from attnlab.exercises import (check_decoupled_mask_loss, check_mask_gradients,
                               check_masked_bce, check_overlap_bound)
from _feedback import not_done, wrong


def test_overlap_bound():
    for answer in (0.5, 1 / 2, torch.tensor(0.5)):
        feedback = check_overlap_bound(answer)
        assert feedback.ok and feedback.startswith("Correct!") and "0.5" in feedback
    assert wrong(check_overlap_bound(1), "one class per pixel")
    assert wrong(check_overlap_bound(0), "not zero")
    assert wrong(check_overlap_bound(1 / 11), "uniform softmax")
    assert wrong(check_overlap_bound(0.1), "not its probability")
    assert wrong(check_overlap_bound(2), "at most 1")
    assert wrong(check_overlap_bound(0.3), "Count, at one overlap pixel")
    assert wrong(check_overlap_bound("1/2"), "should be a number")
    assert not_done(check_overlap_bound(...))


def gradients(s, c, m, y, *, every_map=False, sign=1.0, subtract=True, softmax_c=False):
    rows = torch.arange(len(s))
    decoupled = torch.zeros_like(s)
    if every_map:
        decoupled = torch.sigmoid(s) - m[:, None]
    elif softmax_c:
        decoupled[rows, c] = torch.softmax(s, -1)[rows, c] - m
    else:
        decoupled[rows, c] = torch.sigmoid(s[rows, c]) - m
    softmax = torch.softmax(s, -1) - (F.one_hot(y, s.shape[1]) if subtract else 0)
    return sign * decoupled, sign * softmax


def test_mask_gradients():
    feedback = check_mask_gradients(gradients)
    assert feedback.ok and feedback.startswith("Correct!") and "5 cases" in feedback
    assert wrong(check_mask_gradients(lambda *a: gradients(*a, every_map=True)),
                 "grad_decoupled", "gradient of 0")
    assert wrong(check_mask_gradients(lambda *a: gradients(*a, sign=-1.0)), "log-likelihood")
    assert wrong(check_mask_gradients(lambda *a: gradients(*a, subtract=False)),
                 "grad_softmax", "subtract 1")
    assert wrong(check_mask_gradients(lambda *a: gradients(*a, softmax_c=True)),
                 "sigmoid(s_c), a function of s_c alone")

    def naive_softmax(s, c, m, y):
        e = s.exp()
        return gradients(s, c, m, y)[0], e / e.sum(-1, keepdim=True) - F.one_hot(y, s.shape[1])
    assert wrong(check_mask_gradients(naive_softmax), "NaN or inf", "hundreds")
    assert wrong(check_mask_gradients(lambda *a: gradients(*a)[0]), "expected 2 result(s)")
    assert wrong(check_mask_gradients(lambda *a: tuple(g.T for g in gradients(*a))),
                 "expected shape (5, 10), got (10, 5)")
    assert wrong(check_mask_gradients(None), "pass your function")

    def stub(s, c, m, y):
        raise NotImplementedError
    assert not_done(check_mask_gradients(stub))


def bce(logits, target):
    return -(target * F.logsigmoid(logits) + (1 - target) * F.logsigmoid(-logits))


def naive_bce(logits, target):
    p = torch.sigmoid(logits)
    return -(target * p.log() + (1 - target) * (1 - p).log())


def masked(logits, target, where, loss=bce):
    return (loss(logits, target) * where).sum() / where.sum().clamp(min=1)


def test_masked_bce():
    feedback = check_masked_bce(masked)
    assert feedback.ok and feedback.startswith("Correct!") and "5 cases" in feedback
    assert wrong(check_masked_bce(lambda s, t, w: (bce(s, t) * w).mean()), "over all pixels")
    assert wrong(check_masked_bce(lambda s, t, w: bce(s, t).mean()), "`where` is ignored")
    assert wrong(check_masked_bce(lambda s, t, w: masked(s, t, ~w)), "inverted")
    assert wrong(check_masked_bce(lambda s, t, w: (bce(s, t) * w).sum()), "the sum over the")
    assert wrong(check_masked_bce(lambda s, t, w: bce(s, t)[w].mean()),
                 "no pixel selected", "clamped to at least 1")
    assert wrong(check_masked_bce(lambda s, t, w: masked(s, t, w, naive_bce)),
                 "+-200", "F.logsigmoid")
    assert wrong(check_masked_bce(lambda s, t, w: masked(
        s, t, w, lambda a, b: F.binary_cross_entropy(torch.sigmoid(a), b, reduction="none"))),
        "clamps log at -100")
    assert wrong(check_masked_bce(lambda s, t, w: bce(s, t) * w), "expected shape ()")
    assert wrong(check_masked_bce("loss"), "pass your function")

    def stub(logits, target, where):
        raise NotImplementedError
    assert not_done(check_masked_bce(stub))


def chosen(logits, classes):
    H, W = logits.shape[-2:]
    return logits.gather(1, classes[:, :, None, None].expand(-1, -1, H, W))


def decoupled(logits, masks, classes):
    return bce(chosen(logits, classes), masks).mean()


def test_decoupled_mask_loss():
    feedback = check_decoupled_mask_loss(decoupled)
    assert feedback.ok and feedback.startswith("Correct!") and "4 cases" in feedback

    def softmax(s, m, c):
        p = torch.softmax(s, 1)
        return F.binary_cross_entropy(chosen(p, c), m)

    def every_map(s, m, c):
        return torch.stack([bce(s, m[:, i:i + 1]).mean() for i in range(m.shape[1])]).mean()

    assert wrong(check_decoupled_mask_loss(softmax), "compete for each pixel")
    assert wrong(check_decoupled_mask_loss(every_map), "true class's map only")
    assert wrong(check_decoupled_mask_loss(lambda s, m, c: bce(s[:, :m.shape[1]], m).mean()),
                 "classes[b, i], not on map i")
    assert wrong(check_decoupled_mask_loss(lambda s, m, c: bce(chosen(s, c), m).sum()),
                 "That is the sum")
    assert wrong(check_decoupled_mask_loss(lambda s, m, c: naive_bce(chosen(s, c), m).mean()),
                 "+-200", "F.logsigmoid")
    assert wrong(check_decoupled_mask_loss(lambda s, m, c: F.binary_cross_entropy(
        torch.sigmoid(chosen(s, c)), m)), "clamps log at -100")
    assert wrong(check_decoupled_mask_loss(lambda s, m, c: bce(chosen(s, c), m).mean((0, 2, 3))),
                 "expected shape (), got (2,)")
    assert wrong(check_decoupled_mask_loss(lambda *a: 1 / 0), "ZeroDivisionError")

    def stub(logits, masks, classes):
        raise NotImplementedError
    assert not_done(check_decoupled_mask_loss(stub))
    assert not_done(check_decoupled_mask_loss(lambda *a: None))
