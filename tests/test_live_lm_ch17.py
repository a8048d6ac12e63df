"""The in-page figures of chapter 17 compute what the library computes, and refuse bad input."""
import json

import numpy as np
import pytest
import torch

from attnlab import live_lm
from attnlab.attention import KVCache, MultiHeadAttention
from attnlab.lm import TinyLM


@pytest.mark.parametrize("window,sinks", [(3, 0), (3, 1), (2, 2), (9, 0)])
def test_window_sink_weights_are_what_a_rolling_cache_attends_to(window, sinks):
    torch.manual_seed(0)
    mha = MultiHeadAttention(8, 1).double().eval()
    x = torch.randn(1, 9, 8, dtype=torch.float64)
    scores = mha.scores(x)[0, 0, -1]                          # the last query over all 9 keys
    cache = KVCache(window=window, sinks=sinks)
    with torch.no_grad():
        mha(x[:, :8], cache=cache)
        _, w = mha(x[:, 8:], cache=cache, return_attention=True)
    page = live_lm.window_sink_weights(scores, 8, window, sinks)
    held = [k for k in range(9) if k < sinks or 8 - k < window]
    buffer = sorted(set(range(min(sinks, 8))) | set(range(max(0, 8 - window), 9)))  # + 1 to drop
    assert np.allclose(page[buffer], w[0, 0, 0].numpy(), atol=1e-12)
    assert np.allclose(np.delete(page, held), 0) and np.isclose(page.sum(), 1)


def test_kv_cache_bytes_is_what_the_caches_hold():
    torch.manual_seed(0)
    model = TinyLM(11, 16, 4, 3, num_kv_heads=2).eval()
    caches = model.new_caches()
    with torch.no_grad():
        model(torch.zeros(2, 7, dtype=torch.long), caches=caches)
    assert sum(c.nbytes for c in caches) == live_lm.kv_cache_bytes(3, 2, 4, 7, 4, batch=2)
    with pytest.raises(ValueError, match="tokens"):
        live_lm.kv_cache_bytes(3, 2, 4, 0)


def test_builders_build_and_refuse_bad_input():
    chart = live_lm.kv_cache_calculator({"A": (2, 4, 2, 8)}).to_dict()
    assert {p["name"] for p in chart["params"]} == {"preset", "L", "h", "hkv", "d", "nbytes",
                                                    "log2T"}
    assert "np." not in json.dumps(chart)
    with pytest.raises(ValueError, match="divisible"):
        live_lm.kv_cache_calculator({"A": (2, 4, 3, 8)})
    with pytest.raises(ValueError, match="custom"):
        live_lm.kv_cache_calculator({"custom": (2, 4, 2, 8)})
    with pytest.raises(TypeError, match="presets"):
        live_lm.kv_cache_calculator({})
    with pytest.raises(ValueError, match="log2_tokens"):
        live_lm.kv_cache_calculator({"A": (2, 4, 2, 8)}, log2_tokens=(10, 8, 9))
    s = np.zeros((2, 6))
    chart = live_lm.window_sink_explorer(s, list("abcdef"), head_names=["x", "y"]).to_dict()
    assert {p["name"] for p in chart["params"]} == {"head", "W", "sinks"}
    with pytest.raises(ValueError, match="tokens must be a list of S = 6"):
        live_lm.window_sink_explorer(s, list("abc"), head_names=["x", "y"])
    with pytest.raises(ValueError, match="head_names must be a list of h = 2"):
        live_lm.window_sink_explorer(s, list("abcdef"), head_names=["x"])
    with pytest.raises(ValueError, match="window must be <= S"):
        live_lm.window_sink_explorer(s, list("abcdef"), head_names=["x", "y"], window=7)
    with pytest.raises(ValueError, match="t must lie"):
        live_lm.window_sink_weights(np.zeros(4), 4, 2)
