"""attnlab.measure: the memory counters count what they say."""
import pytest
import torch

from attnlab.measure import peak_bytes, saved_bytes, seconds


def test_peak_bytes_counts_live_temporaries_and_frees():
    x = torch.randn(1000)
    assert peak_bytes(lambda: x * 2) == 4000  # the result only; the input is not counted
    assert peak_bytes(lambda: (x * 2) * 3) == 8000  # a temporary and the result at once

    def sequential():
        for _ in range(5):
            y = x * 2  # each temporary is freed before the next one is made
            del y
        return x + 1
    assert peak_bytes(sequential) == 4000  # never more than one alive at once

    def growing():
        keep = [x * 2 for _ in range(5)]
        return torch.stack(keep)
    assert peak_bytes(growing) == 5 * 4000 + 5 * 4000  # five kept, then their stack
    assert peak_bytes(lambda: x.view(10, 100).t()) == 0  # views make no new storage


def test_peak_bytes_sees_the_score_matrix_of_attention():
    from attnlab.functional import scaled_dot_product_attention as sdpa
    q = k = v = torch.randn(1, 1, 256, 8)
    explicit = peak_bytes(lambda: sdpa(q, k, v, return_attention=True))
    assert explicit >= 2 * 256 * 256 * 4  # scores and weights
    assert peak_bytes(lambda: sdpa(q, k, v)) < 256 * 256 * 4  # the fused kernel never holds it


def test_saved_bytes_and_seconds():
    x = torch.randn(16, 16, requires_grad=True)
    assert saved_bytes(lambda: x.exp(), exclude=(x,)) == 16 * 16 * 4
    assert saved_bytes(lambda: x.sin()) == 16 * 16 * 4
    assert saved_bytes(lambda: x.sin(), exclude=(x,)) == 0
    calls = []
    assert seconds(lambda: calls.append(1), repeats=2) >= 0 and len(calls) == 3


# --- bad input (issue #28): a measurement of nothing is refused, not inf -------------------


@pytest.mark.parametrize("call, error, words", [
    (lambda: seconds(lambda: None, repeats=0), ValueError, "repeats must be >= 1"),
    (lambda: seconds(lambda: None, repeats=1.5), TypeError, "repeats must be an int"),
    (lambda: seconds(3), TypeError, "fn must be a function"),
    (lambda: saved_bytes(None), TypeError, "forward must be a function"),
    (lambda: saved_bytes(lambda: torch.ones(1), exclude=torch.ones(1)), TypeError,
     "exclude must be a tuple of tensors"),
    (lambda: saved_bytes(lambda: torch.ones(1), exclude=(1,)), TypeError, "exclude must be a tuple"),
    (lambda: peak_bytes("x * 2"), TypeError, "fn must be a function"),
])
def test_bad_input_gets_a_clear_error(call, error, words):
    with pytest.raises(error, match=words):
        call()
