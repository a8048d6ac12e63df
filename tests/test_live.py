"""attnlab.live: the page's arithmetic equals the library's; the charts and their checks."""
from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from attnlab import functional as AF
from attnlab import live
from attnlab.channel import ChannelGate, EfficientChannelAttention, SqueezeExcite


def test_softmax_weights_equal_the_library_softmax():
    g = torch.Generator().manual_seed(0)
    scores = torch.randn(3, 4, 6, generator=g, dtype=torch.float64)
    mask = torch.rand(4, 6, generator=g) > 0.4
    mask[1] = False  # a fully masked query: zeros in both
    for t in (0.3, 1.0, 2.5):
        ours = live.softmax_weights(scores, t, mask)
        ref = AF.masked_softmax(scores / t, mask).numpy()
        np.testing.assert_allclose(ours, ref, atol=1e-12)


def test_attention_explorer_spec_has_the_controls_and_the_data():
    scores = {"a": torch.randn(2, 3, 4), "b": torch.randn(2, 3, 4)}
    chart = live.attention_explorer(scores, list("wxyz"), queries=list("pqr"),
                                    values=torch.randn(2, 4), mask=torch.ones(3, 4, dtype=torch.bool))
    spec = chart.to_dict()
    bound = {p["name"] for p in spec["params"] if "bind" in p}
    assert bound == {"temperature", "query", "head", "masked", "variant"}
    rows = spec["data"]["values"]  # one data set, shared by both panels
    assert len(rows) == 2 * 2 * 3 and len(rows[0]["score"]) == 4  # one row per (variant, head, query)
    assert {"k", "score", "ok", "value"} <= set(rows[0])
    single = live.attention_explorer(torch.randn(1, 3, 3), list("abc")).to_dict()
    assert {p["name"] for p in single["params"] if "bind" in p} == {"temperature", "query"}


def test_explorers_refuse_mismatched_labels_and_shapes():
    with pytest.raises(ValueError, match="keys must have 4 labels"):
        live.attention_explorer(torch.randn(1, 3, 4), list("abc"))
    with pytest.raises(ValueError, match="scores must have 3 dimensions"):
        live.attention_explorer(torch.randn(3, 4), list("abcd"))
    with pytest.raises(ValueError, match="mask must have shape"):
        live.attention_explorer(torch.randn(1, 3, 3), list("abc"), mask=torch.ones(2, 3))
    with pytest.raises(ValueError, match="affinities must be"):
        live.image_attention_explorer({"f": torch.randn(10, 4)}, torch.rand(3, 3, 3), key_grid=(2, 2))
    with pytest.raises(TypeError, match="must be SE, ECA"):
        live.channel_gate_explorer({"x": torch.nn.Identity()}, torch.rand(1, 4, 3, 3))


def test_channel_gate_explorer_precomputes_what_the_gates_compute():
    torch.manual_seed(0)
    C = 8
    gates = {"SE": SqueezeExcite(C, 4), "ECA": EfficientChannelAttention(C, 3),
             "CBAM": ChannelGate(C, 2)}
    x = torch.rand(1, C, 4, 4)
    rows = live.channel_gate_explorer(gates, x).to_dict()["data"]["values"]
    s = 1.7
    for name, module in gates.items():  # redo the page's arithmetic in NumPy
        mine = [r for r in rows if r["v"] == name]
        pre = np.zeros(C)
        bias = np.zeros(C)
        for r in mine:
            act = (lambda t: max(0.0, t)) if r["relu"] else (lambda t: t)
            t = act(s * r["ua"] + r["b1"]) + (act(s * r["um"] + r["b1"]) if r.get("two") else 0.0)
            pre[r["c"]] += r["w2"] * t
            bias[r["c"]] = r["bias"]
        page = 1 / (1 + np.exp(-(pre + bias)))
        with torch.no_grad():
            ref = module(s * x, return_attention=True)[1].flatten().numpy()
        np.testing.assert_allclose(page, ref, atol=1e-6)
    assert gates["SE"].fc1.weight.dtype == torch.float32  # the caller's modules are untouched


def test_publish_in_the_book_build_embeds_the_spec_and_the_checks(monkeypatch):
    shown = []
    monkeypatch.setattr("IPython.display.display", shown.append)
    chart = live.attention_explorer(torch.randn(1, 2, 2), ["a", "b"])
    monkeypatch.setenv("ATTNLAB_BOOK_BUILD", "1")
    size = live.publish(chart, [{"params": {"query": 1}, "values": [0.5, 0.5]}])
    html = shown[-1].data
    assert 'class="attnlab-live"' in html and "_static/vega/" in html and "cdn" not in html.lower()
    assert size == len(json.dumps(chart.to_dict(), separators=(",", ":")))
    with pytest.raises(ValueError, match="each check needs"):
        live.publish(chart, [{"values": [1]}])
    monkeypatch.delenv("ATTNLAB_BOOK_BUILD")
    live.publish(chart)
    assert shown[-1] is chart  # in Jupyter and Colab: the Altair chart itself
