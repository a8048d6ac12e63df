"""The in-page figures of the positions chapter compute what the library computes."""
import json

import numpy as np
import pytest
import torch

from attnlab import live_lm
from attnlab.functional import causal_mask
from attnlab.positions import ALiBiAttention, alibi_slopes, apply_rope


def test_rope_scores_are_the_rotated_dot_product():
    g = torch.Generator().manual_seed(0)
    q, k = torch.randn(2, 8, generator=g, dtype=torch.float64)
    L = 40
    Q = apply_rope(q.expand(L, 8), torch.arange(L))
    K = apply_rope(k.expand(L, 8), torch.arange(L))
    full = (Q @ K.T / np.sqrt(8)).numpy()                     # (m, n)
    for m, n in ((0, 0), (3, 17), (30, 2), (39, 39)):
        assert np.isclose(live_lm.rope_scores(q, k, [n - m])[0], full[m, n], atol=1e-12)
    # a band of pairs: the same as zeroing the other pairs of q
    q_band = q.clone()
    q_band[:2] = 0
    q_band[6:] = 0                                            # keeps pairs 1 and 2
    Qb = apply_rope(q_band.expand(L, 8), torch.arange(L))
    assert np.isclose(live_lm.rope_scores(q, k, [5], pairs=(1, 2))[0],
                      float(Qb[10] @ K[15]) / np.sqrt(8), atol=1e-12)


def test_alibi_weights_are_alibi_attention():
    T, h = 7, 4
    g = torch.Generator().manual_seed(1)
    q = torch.randn(1, h, T, 8, generator=g, dtype=torch.float64)
    k = torch.randn(1, h, T, 8, generator=g, dtype=torch.float64)
    v = torch.eye(T, dtype=torch.float64).expand(1, h, T, T)
    weights = ALiBiAttention(h)(q, k, v, causal_mask(T))[0]   # (h, T, T)
    content = (q @ k.transpose(-1, -2))[0] / np.sqrt(8)
    for head in range(h):
        for t in (0, 3, T - 1):
            got = live_lm.alibi_weights(content[head], float(alibi_slopes(h)[head]), t)
            assert np.allclose(got, weights[head, t, :t + 1].numpy(), atol=1e-12)


def test_explorers_build_and_refuse_bad_input():
    q, k = np.ones(8), np.arange(8.0)
    chart = live_lm.rope_explorer(q, k, max_distance=10, m=3, n=4).to_dict()
    assert "np." not in json.dumps(chart)       # a NumPy repr in an expression breaks the page
    names = {p["name"] for p in chart["params"]}
    assert names == {"m", "n", "lo", "hi"}
    with pytest.raises(ValueError, match="even length"):
        live_lm.rope_explorer(np.ones(7), np.ones(7))
    with pytest.raises(ValueError, match="same even length"):
        live_lm.rope_explorer(np.ones(8), np.ones(6))
    with pytest.raises(ValueError, match="m must lie"):
        live_lm.rope_explorer(q, k, max_distance=10, m=11)
    with pytest.raises(ValueError, match="base"):
        live_lm.rope_explorer(q, k, base=1.0)
    s = np.zeros((5, 5))
    chart = live_lm.alibi_explorer(s, list("abcde"), log2_slopes=[-2, -1, 0]).to_dict()
    assert {p["name"] for p in chart["params"]} == {"t", "log2m"}
    with pytest.raises(ValueError, match="square"):
        live_lm.alibi_explorer(np.zeros((4, 5)), list("abcd"), log2_slopes=[-1, 0])
    with pytest.raises(ValueError, match="labels"):
        live_lm.alibi_explorer(s, list("abc"), log2_slopes=[-1, 0])
    with pytest.raises(ValueError, match="two distinct"):
        live_lm.alibi_explorer(s, list("abcde"), log2_slopes=[-1])
    with pytest.raises(ValueError, match="t must lie"):
        live_lm.alibi_explorer(s, list("abcde"), log2_slopes=[-1, 0], t=5)
    with pytest.raises(ValueError):
        live_lm.alibi_explorer(np.full((5, 5), np.nan), list("abcde"), log2_slopes=[-1, 0])
