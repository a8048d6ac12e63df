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


def test_attention_explorer_without_a_temperature_slider():
    spec = live.attention_explorer(torch.randn(1, 3, 3), list("abc"), temperature=None).to_dict()
    assert {p["name"] for p in spec["params"] if "bind" in p} == {"query"}
    assert {p["name"]: p["value"] for p in spec["params"]}["temperature"] == 1.0


def test_attention_explorer_opens_in_the_state_asked_for():
    mask = torch.ones(3, 3, dtype=torch.bool).tril()

    def opens(**kw):
        spec = live.attention_explorer(torch.randn(1, 3, 3), list("abc"), **kw).to_dict()
        return next(p["value"] for p in spec["params"] if p["name"] == "masked")

    assert opens(mask=mask) is True and opens(mask=mask, masked=False) is False
    assert opens() is False
    with pytest.raises(ValueError, match="needs a mask"):
        opens(masked=True)
    with pytest.raises(TypeError, match="masked must be"):
        opens(mask=mask, masked="yes")


def test_explorers_refuse_mismatched_labels_and_shapes():
    with pytest.raises(ValueError, match="keys must have 4 labels"):
        live.attention_explorer(torch.randn(1, 3, 4), list("abc"))
    with pytest.raises(ValueError, match="scores must have 3 dimensions"):
        live.attention_explorer(torch.randn(3, 4), list("abcd"))
    with pytest.raises(ValueError, match="mask must have shape"):
        live.attention_explorer(torch.randn(1, 3, 3), list("abc"), mask=torch.ones(2, 3).bool())
    with pytest.raises(ValueError, match="affinities must be"):
        live.image_attention_explorer({"f": torch.randn(10, 4)}, torch.rand(3, 3, 3), key_grid=(2, 2))
    with pytest.raises(TypeError, match="must be SE, ECA"):
        live.channel_gate_explorer({"x": torch.nn.Identity()}, torch.rand(1, 4, 3, 3))


def test_channel_gate_explorer_precomputes_what_the_gates_compute():
    torch.manual_seed(0)
    C = 8
    gates = {"SE": SqueezeExcite(C, 4), "ECA": EfficientChannelAttention(C, 3),
             "CBAM": ChannelGate(C, 2)}
    x = torch.rand(3, C, 4, 4)                          # three images: a slider picks one
    spec = live.channel_gate_explorer(gates, x).to_dict()
    rows, image = spec["data"]["values"], 2
    assert {p["name"] for p in spec["params"] if "bind" in p} == {"scale", "variant", "image"}
    s = 1.7
    for name, module in gates.items():  # redo the page's arithmetic in NumPy
        mine = [r for r in rows if r["v"] == name and r["i"] == image]
        pre = np.zeros(C)
        bias = np.zeros(C)
        for r in mine:
            act = (lambda t: max(0.0, t)) if r["relu"] else (lambda t: t)
            t = act(s * r["ua"] + r["b1"]) + (act(s * r["um"] + r["b1"]) if r.get("two") else 0.0)
            pre[r["c"]] += r["w2"] * t
            bias[r["c"]] = r["bias"]
        page = 1 / (1 + np.exp(-(pre + bias)))
        with torch.no_grad():
            ref = module(s * x[image:image + 1], return_attention=True)[1].flatten().numpy()
        np.testing.assert_allclose(page, ref, atol=1e-6)
    assert gates["SE"].fc1.weight.dtype == torch.float32  # the caller's modules are untouched
    # at s = 0 the gates read nothing: the image slider is greyed out there, and says why
    off = spec["usermeta"]["attnlab_inactive"]["image"]
    assert off["when"] == "scale == 0" and "no input" in off["why"]
    one = live.channel_gate_explorer(gates, x[:1]).to_dict()
    assert "attnlab_inactive" not in one.get("usermeta", {})  # one image: no slider at all


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


# --- what the figures embed is checked (issue #28): a wrong spec fails in Python, not in the page

_S = torch.randn(2, 3, 4)  # (h, T, S)
_KEYS, _QUERIES = list("wxyz"), list("pqr")


def _explore(**kwargs):
    return live.attention_explorer(kwargs.pop("scores", _S), kwargs.pop("keys", _KEYS),
                                   queries=kwargs.pop("queries", _QUERIES), **kwargs)


@pytest.mark.parametrize("call, error, words", [
    # softmax_weights: temperature, a boolean mask that fits, scores without NaN or +inf
    (lambda: live.softmax_weights(_S, 0), ValueError, "temperature must be a positive number"),
    (lambda: live.softmax_weights(_S, -1.0), ValueError, "temperature must be a positive number"),
    (lambda: live.softmax_weights(_S, float("nan")), ValueError, "temperature must be a finite"),
    (lambda: live.softmax_weights(_S, "1"), TypeError, "temperature must be a number"),
    (lambda: live.softmax_weights(_S, 1.0, torch.zeros(3, 4)), TypeError, "allowed must be boolean"),
    (lambda: live.softmax_weights(_S, 1.0, torch.ones(5, 2, 3, 4, dtype=torch.bool)), ValueError,
     "allowed must have shape"),
    (lambda: live.softmax_weights(np.array([np.nan, 1.0]), 1.0), ValueError, "without NaN"),
    (lambda: live.softmax_weights(np.array([np.inf, 1.0]), 1.0), ValueError, "without NaN or \\+inf"),
    (lambda: live.softmax_weights(1.0), ValueError, "scores must be"),
    (lambda: live.softmax_weights(["a", "b"]), TypeError, "scores must hold numbers"),
    (lambda: live.softmax_weights(torch.ones(3, dtype=torch.bool)), TypeError, "must hold numbers"),
    # attention_explorer: shapes agree, masks are boolean, temperatures > 0, labels are lists
    (lambda: _explore(values=torch.zeros(2, 5)), ValueError, r"values must have shape \(h, S\)"),
    (lambda: _explore(values=torch.zeros(1, 4)), ValueError, r"values must have shape \(h, S\)"),
    (lambda: _explore(scores={"a": _S, "b": _S}, values={"a": torch.zeros(2, 4)}), ValueError,
     "values must have an entry for each variant"),
    (lambda: _explore(mask=torch.zeros(3, 4)), TypeError, "mask must be boolean"),
    (lambda: _explore(mask=torch.zeros(3, 4).masked_fill(torch.eye(3, 4) > 0, float("-inf"))),
     TypeError, "mask must be boolean"),
    (lambda: _explore(mask=torch.ones(4, 4, dtype=torch.bool)), ValueError, "mask must have shape"),
    (lambda: _explore(temperature=(0.0, 2.0, 1.0)), ValueError, "temperature must be"),
    (lambda: _explore(temperature=(0.1, 2.0, 3.0)), ValueError, "low <= start <= high"),
    (lambda: _explore(temperature=1.0), TypeError, "temperature must be a tuple"),
    (lambda: _explore(scores=np.full((2, 3, 4), np.nan)), ValueError, "scores must be finite"),
    (lambda: _explore(scores=np.full((2, 3, 4), -np.inf)), ValueError, "live.BLOCKED"),
    (lambda: _explore(scores={}), ValueError, "at least one variant"),
    (lambda: _explore(scores={1: _S}), TypeError, "named by strings"),
    (lambda: _explore(scores=np.zeros((2, 0, 4)), queries=[]), ValueError, "at least one entry"),
    (lambda: _explore(keys="wxyz"), TypeError, "keys must be a list of labels"),
    (lambda: _explore(cell=10), TypeError, "cell must be a pair of ints"),
    (lambda: _explore(variant_name=3), TypeError, "variant_name must be a string"),
    # image_attention_explorer: the softmax variants exist, the image is finite and RGB
    (lambda: live.image_attention_explorer({"a": np.zeros((9, 4))}, np.zeros((3, 3, 3)),
                                           key_grid=(2, 2), softmax=("b",)), ValueError,
     r"softmax names variants \['b'\]"),
    (lambda: live.image_attention_explorer({"a": np.zeros((9, 4))}, np.zeros((3, 3, 3)),
                                           key_grid=(2, 2), softmax="a"), TypeError,
     "softmax must be a list"),
    (lambda: live.image_attention_explorer({"a": np.zeros((9, 4))}, np.full((3, 3, 3), np.nan),
                                           key_grid=(2, 2)), ValueError, "image must be finite"),
    (lambda: live.image_attention_explorer({"a": np.zeros((9, 4))}, np.zeros((3, 3, 4)),
                                           key_grid=(2, 2)), ValueError, r"image must have shape"),
    (lambda: live.image_attention_explorer({"a": np.zeros((9, 4))}, np.zeros((3, 3, 3)),
                                           key_grid=4), TypeError, "key_grid must be a pair"),
    # channel_gate_explorer: maps (1, C, H, W) of the gates' width
    (lambda: live.channel_gate_explorer({"se": SqueezeExcite(4)}, torch.rand(1, 5, 3, 3)),
     ValueError, "built for 4 channels"),
    (lambda: live.channel_gate_explorer({"a": SqueezeExcite(4), "b": SqueezeExcite(4)},
                                        {"a": torch.rand(2, 4, 3, 3), "b": torch.rand(3, 4, 3, 3)}),
     ValueError, r"feature_map must have shape \(n, C, H, W\), the same n"),
    (lambda: live.channel_gate_explorer({"se": SqueezeExcite(4)}, [[1.0]]), TypeError,
     "feature_map must be a torch.Tensor"),
    (lambda: live.channel_gate_explorer({"se": SqueezeExcite(4)}, {"eca": torch.rand(1, 4, 3, 3)}),
     ValueError, "a map for each gate"),
    (lambda: live.channel_gate_explorer({}, torch.rand(1, 4, 3, 3)), TypeError, "gates must be"),
    (lambda: live.channel_gate_explorer({"se": SqueezeExcite(4)}, torch.rand(1, 4, 3, 3), groups=0),
     ValueError, "groups must be >= 1"),
    (lambda: live.channel_gate_explorer({"se": SqueezeExcite(4)}, torch.rand(1, 4, 3, 3),
                                        scale=(1.0, 0.0, 0.5)), ValueError, "scale must be"),
    # cost_explorer: one measurement per size, for a counted method; sizes ints >= 1
    (lambda: live.cost_explorer([1, 2, 3], {"a": "n"}, measured={"a": [1.0, 2.0]}), ValueError,
     r"one value > 0 per size \(3\)"),
    (lambda: live.cost_explorer([1, 2], {"a": "n"}, measured={"b": [1.0, 2.0]}), ValueError,
     "measured names a method 'b'"),
    (lambda: live.cost_explorer([1, 2], {"a": "n"}, measured={"a": [1.0, float("nan")]}),
     ValueError, "must be finite"),
    (lambda: live.cost_explorer([1, 2], {"a": "n"}, measured={"a": [1.0, 0.0]}), ValueError,
     "value > 0"),
    (lambda: live.cost_explorer([0, 2], {"a": "n"}), ValueError, "sizes must be >= 1"),
    (lambda: live.cost_explorer([1.5, 2], {"a": "n"}), TypeError, "sizes must be an int"),
    (lambda: live.cost_explorer([2, 2], {"a": "n"}), ValueError, "sizes must be distinct"),
    (lambda: live.cost_explorer([], {"a": "n"}), TypeError, "sizes must be a non-empty list"),
    (lambda: live.cost_explorer([1, 2], {}), TypeError, "counted must be a non-empty dict"),
    (lambda: live.cost_explorer([1, 2], {"a": 2}), TypeError, "counted must be"),
    # publish: a chart, and checks as a list of dicts with finite values
    (lambda: live.publish(3), TypeError, "chart must be an altair chart"),
    (lambda: live.publish(_explore(), {"params": {}, "values": [1.0]}), TypeError,
     "checks must be a list of dicts"),
    (lambda: live.publish(_explore(), [{"params": {}, "values": [float("nan")]}]), ValueError,
     "must be finite"),
    (lambda: live.publish(_explore(), [{"params": 1, "values": [1.0]}]), TypeError,
     "'params' must be a dict"),
])
def test_bad_input_gets_a_clear_error(call, error, words):
    with pytest.raises(error, match=words):
        call()


def test_a_float_mask_is_refused_not_inverted():
    """Issue #28: a 0 / -inf mask was read as boolean (0 -> False, -inf -> True): inverted."""
    scores = torch.randn(3, 4, dtype=torch.float64)
    allowed = torch.rand(3, 4) > 0.5
    additive = torch.zeros(3, 4).masked_fill(~allowed, float("-inf"))
    with pytest.raises(TypeError, match="mask == 0"):
        live.softmax_weights(scores, 1.0, additive)
    np.testing.assert_allclose(live.softmax_weights(scores, 1.0, (additive == 0).numpy()),
                               AF.masked_softmax(scores, allowed).numpy(), atol=1e-12)
    # a row mask broadcasts over the queries, never beyond the scores
    assert live.softmax_weights(scores, 0.5, allowed[0]).shape == (3, 4)


def test_image_explorer_says_where_the_temperature_does_not_apply():
    chart = live.image_attention_explorer({"gaussian": torch.randn(16, 4), "dot": torch.rand(16, 4)},
                                          torch.rand(4, 4, 3), key_grid=(2, 2), softmax=["gaussian"])
    spec = chart.to_dict()
    title = spec["hconcat"][1]["title"]["text"]["expr"]
    assert 'indexof(["gaussian"], variant) < 0' in title and "no temperature" in title
    # the page greys the slider out for those forms and says why (the loader reads usermeta)
    off = spec["usermeta"]["attnlab_inactive"]["temperature"]
    assert off["when"] == 'indexof(["gaussian"], variant) < 0' and "not a softmax" in off["why"]
    only_softmax = live.image_attention_explorer({"gaussian": torch.randn(16, 4)},
                                                 torch.rand(4, 4, 3), key_grid=(2, 2),
                                                 softmax=["gaussian"]).to_dict()
    assert "attnlab_inactive" not in only_softmax["usermeta"]


_COUNTED = {"full": "pow(n * n, 2)", "axial": "n * n * (2 * n)",
            "subsampled": "n * n * ceil(n / 2) * ceil(n / 2)"}


def test_cost_explorer_computes_the_chosen_method_against_the_first():
    """The method menu changes what the page computes: the chosen method's count relative to
    the first method's at every size, and the factor by which doubling the size multiplies it."""
    spec = live.cost_explorer([8, 16, 32], _COUNTED, method="axial").to_dict()
    params = {p["name"]: p for p in spec["params"]}
    assert params["method"]["value"] == "axial" and params["method"]["bind"]["options"] == list(_COUNTED)
    text = json.dumps(spec)
    for field in ('"rel"', '"readout"', '"cost"'):
        assert field in text
    # the page's expressions are the author's, with n replaced; Python reads them the same way
    assert "(2 * size) * (2 * size) * (2 * (2 * size))" in text
    f = {m: live.counted_cost(e) for m, e in _COUNTED.items()}
    assert f["axial"](20) == 20 * 20 * 40 and f["subsampled"](21) == 21 * 21 * 11 * 11
    assert f["axial"](40) / f["axial"](20) == 8.0 and f["full"](40) / f["full"](20) == 16.0
    assert {f["subsampled"](n) / f["full"](n) for n in (8, 16, 32)} == {0.25}
    one = live.cost_explorer([1, 2], {"a": "n"}).to_dict()
    assert "bind" not in {p["name"]: p for p in one["params"]}["method"]  # nothing to choose


@pytest.mark.parametrize("expr, words", [
    ("n ** 2", "may use numbers, n"), ("__import__('os')", "may use numbers, n"),
    ("n > 2 ? n : 1", "must be an expression in n"), ("m * m", "may use numbers, n"),
])
def test_counted_cost_reads_only_what_the_page_reads(expr, words):
    with pytest.raises(ValueError, match=words):
        live.counted_cost(expr)


def test_cost_explorer_refuses_a_cost_the_page_cannot_draw():
    with pytest.raises(ValueError, match=r"counted\['a'\] must be > 0 at every size"):
        live.cost_explorer([1, 4], {"a": "n - 3"})
    with pytest.raises(ValueError, match="method must be one of"):
        live.cost_explorer([1, 4], {"a": "n"}, method="b")


def test_window_explorer_has_the_window_controls_and_checks_its_input():
    chart = live.window_explorer(torch.rand(12, 12), 5, scale=(0.2, 1.0, 0.5), shift=(0.1, -0.2))
    spec = chart.to_dict()
    bound = {p["name"]: p["value"] for p in spec["params"] if "bind" in p}
    assert bound == {"s": 0.5, "tx": 0.1, "ty": -0.2}
    assert "seen" in json.dumps(spec) and "lookup" in json.dumps(spec)
    with pytest.raises(ValueError, match="shift must lie in"):
        live.window_explorer(torch.rand(4, 4), 2, shift=(1.5, 0.0))
    with pytest.raises(TypeError, match="shift must be a pair"):
        live.window_explorer(torch.rand(4, 4), 2, shift=0.5)
    with pytest.raises(ValueError, match="scale must be"):
        live.window_explorer(torch.rand(4, 4), 2, scale=(0.0, 1.0, 0.5))
    with pytest.raises(ValueError, match="image"):
        live.window_explorer(torch.rand(2, 4, 4), 2)
    with pytest.raises(ValueError, match="out_size must be >= 1"):
        live.window_explorer(torch.rand(4, 4), 0)
