"""Chapter 9's checkers: the reference passes; each typical mistake gets its own hint."""
import torch
import torch.nn.functional as F

from attnlab.exercises import (check_linear_attention, check_linear_crossover,
                               check_online_softmax_merge, check_path_length)
from _feedback import not_done, wrong


# --- the merge of two halves -------------------------------------------------------------------

def merge(m1, l1, a1, m2, l2, a2):
    m = torch.maximum(m1, m2)
    shift = torch.where(torch.isinf(m), torch.zeros_like(m), m)
    f1, f2 = torch.exp(m1 - shift), torch.exp(m2 - shift)
    return m, l1 * f1 + l2 * f2, a1 * f1 + a2 * f2


def test_merge_reference_passes():
    feedback = check_online_softmax_merge(merge)
    assert feedback.ok and feedback.startswith("Correct!") and "no NaN" in feedback


def test_merge_mistakes_are_named():
    def no_rescale(m1, l1, a1, m2, l2, a2):
        return torch.maximum(m1, m2), l1 + l2, a1 + a2

    def nan_on_empty(m1, l1, a1, m2, l2, a2):
        m = torch.maximum(m1, m2)
        f1, f2 = torch.exp(m1 - m), torch.exp(m2 - m)
        return m, l1 * f1 + l2 * f2, a1 * f1 + a2 * f2

    def min_instead(*halves):
        return torch.minimum(halves[0], halves[3]), *merge(*halves)[1:]

    def wrong_sign(m1, l1, a1, m2, l2, a2):
        m = torch.maximum(m1, m2)
        f1, f2 = torch.exp(m - m1).nan_to_num(0.0), torch.exp(m - m2).nan_to_num(0.0)
        return m, l1 * f1 + l2 * f2, a1 * f1 + a2 * f2

    assert wrong(check_online_softmax_merge(no_rescale), "without rescaling")
    assert wrong(check_online_softmax_merge(nan_on_empty), "NaN", "shift by 0")
    assert wrong(check_online_softmax_merge(min_instead), "larger of m1 and m2")
    assert wrong(check_online_softmax_merge(wrong_sign), "exp(m_i - m)")


def test_merge_shapes_and_stubs():
    assert wrong(check_online_softmax_merge(lambda *h: (h[0], h[1].flatten(), h[2])),
                 "l: expected shape (4, 1), got (4,)")
    assert wrong(check_online_softmax_merge(lambda *h: (h[0], h[1], h[2].T)),
                 "a: expected shape (4, 3), got (3, 4)")
    assert wrong(check_online_softmax_merge(lambda *a: (1, 2)), "three merged")
    assert wrong(check_online_softmax_merge(lambda *a: ("m", "l", "a")), "should be tensors")
    assert wrong(check_online_softmax_merge(lambda *a: [][0]), "IndexError")
    assert wrong(check_online_softmax_merge(3), "pass your function")

    def stub(m1, l1, a1, m2, l2, a2):
        raise NotImplementedError
    assert not_done(check_online_softmax_merge(stub))
    assert not_done(check_online_softmax_merge(lambda *a: None))


# --- linear attention ------------------------------------------------------------------------

def phi(t):
    return F.elu(t) + 1


def linear(q, k, v, is_causal=False, *, feature=phi, normalise=True, causal=None):
    """The recurrence for the causal case, the right order otherwise."""
    causal = is_causal if causal is None else causal
    pq, pk = feature(q), feature(k)
    if not causal:
        num, den = pq @ (pk.transpose(-2, -1) @ v), pq @ pk.sum(-2).unsqueeze(-1)
    else:
        state = torch.zeros(*q.shape[:-2], q.shape[-1], v.shape[-1], dtype=q.dtype)
        z = torch.zeros(*q.shape[:-2], q.shape[-1], dtype=q.dtype)
        nums, dens = [], []
        for t in range(q.shape[-2]):
            state = state + pk[..., t, :, None] * v[..., t, None, :]
            z = z + pk[..., t, :]
            nums.append((pq[..., t, :, None] * state).sum(-2))
            dens.append((pq[..., t, :] * z).sum(-1, keepdim=True))
        num, den = torch.stack(nums, -2), torch.stack(dens, -2)
    return num / (den + 1e-6) if normalise else num


def test_linear_attention_reference_passes():
    feedback = check_linear_attention(linear)
    assert feedback.ok and feedback.startswith("Correct!") and "7 cases" in feedback
    no_eps = lambda q, k, v, c: linear(q, k, v, c, normalise=False) / (
        linear(q, k, v, c, normalise=False) / linear(q, k, v, c)).nan_to_num(1.0)
    assert check_linear_attention(no_eps).ok


def test_linear_attention_mistakes_are_named():
    assert wrong(check_linear_attention(lambda q, k, v, c: linear(q, k, v, c,
                                                                  feature=lambda t: t)),
                 "feature map is missing", "elu(x) + 1")
    assert wrong(check_linear_attention(lambda q, k, v, c: linear(q, k, v, c, feature=F.relu)),
                 "relu")
    assert wrong(check_linear_attention(lambda q, k, v, c: linear(q, k, v, c, normalise=False)),
                 "normaliser is missing")
    assert wrong(check_linear_attention(lambda q, k, v, c: linear(q, k, v, c, causal=False)),
                 "sums over every key", "is_causal=True")
    lag = lambda q, k, v, c: (torch.cat([torch.zeros_like(v[..., :1, :]),
                                         linear(q[..., 1:, :], k[..., :-1, :], v[..., :-1, :],
                                                c)], -2) if c else linear(q, k, v, c))
    assert wrong(check_linear_attention(lag), "lags one step")
    assert wrong(check_linear_attention(lambda q, k, v, c: F.scaled_dot_product_attention(
        q, k, v, is_causal=c)), "softmax attention")


def test_linear_attention_shapes_and_stubs():
    assert wrong(check_linear_attention(lambda q, k, v, c: linear(q, k, v, c).mT),
                 "expected shape (2, 5, 3), got (2, 3, 5)")
    assert wrong(check_linear_attention(lambda q, k, v, c: linear(q, k, v, c).numpy()),
                 "should be a tensor")
    assert wrong(check_linear_attention(None), "pass your function")

    def stub(q, k, v, is_causal=False):
        raise NotImplementedError
    assert not_done(check_linear_attention(stub))


# --- numbers ----------------------------------------------------------------------------------

def test_path_length():
    feedback = check_path_length(6, 32)
    assert feedback.ok and feedback.startswith("Correct!")
    assert check_path_length(5, 31, n=32, kernel=2).ok
    assert wrong(check_path_length(7, 32), "2^i positions")
    assert wrong(check_path_length(5, 32), "2^i >= n")
    assert wrong(check_path_length(63, 32), "without dilation")
    assert wrong(check_path_length(6, 63), "dilated = 6 is right", "widens the field by 2")
    assert wrong(check_path_length(6, 31), "Round up")
    assert wrong(check_path_length(6, 22), "not k = 3")
    assert wrong(check_path_length(6, 6), "dilated stack")
    assert wrong(check_path_length(6, "32"), "should be a number")
    assert not_done(check_path_length(..., 32))


def test_linear_crossover():
    feedback = check_linear_crossover(65)
    assert feedback.ok and feedback.startswith("Correct!") and "n = 65" in feedback
    assert check_linear_crossover(17, d=16).ok
    assert wrong(check_linear_crossover(64), "normaliser")
    assert wrong(check_linear_crossover(4096), "not d^2")
    assert wrong(check_linear_crossover(32), "Q K^T")
    assert wrong(check_linear_crossover(128), "phi(K)^T V")
    assert wrong(check_linear_crossover(8), "linear in d")
    assert wrong(check_linear_crossover(100), "Solve")
    assert wrong(check_linear_crossover([65, 66]), "should be a number")
    assert not_done(check_linear_crossover(...))
