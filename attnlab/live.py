r"""Figures that compute in the rendered page: move a control, the page recomputes the softmax.

Attention weights are cheap arithmetic once the scores are known: a scale or temperature, a
mask, a softmax, a weighted sum. The figures here carry the scores (computed by a trained
model in Python) and let the *page* redo that arithmetic whenever the reader moves a control,
with no kernel and no network. They are Vega-Lite charts built with Altair: the controls are
Vega-Lite parameters bound to sliders, check boxes and menus, and the softmax is a chain of
Vega-Lite transforms (a maximum per query, ``exp``, a sum per query, a division).

:func:`publish` shows a chart: in the book build (``ATTNLAB_BOOK_BUILD=1``) as HTML that loads
Vega from the book's own static folder (vendored once, never fetched from a CDN); in Jupyter,
JupyterLab and Colab as the Altair chart itself, which they render natively. Each published
figure can carry *checks*: settings of its controls with the weights Python computes for them,
so a browser test can hold the page's arithmetic to the library's.

A wrong spec fails silently in the reader's browser, far from its cause, so the builders check
what they embed: scores, values and images are finite numbers (a blocked key's score is
:data:`BLOCKED`, not ``-inf``, which JSON cannot carry); shapes agree across scores, values,
labels and masks; masks are boolean (True = may attend); named variants exist; temperatures are
> 0. Array arguments may be tensors, NumPy arrays or nested lists.

Taught in: every chapter with an "explore" section, first :ref:`chap-soft-lookup`.
"""
from __future__ import annotations

import copy
import html
import json
import os
import re
import uuid
from typing import Mapping, Sequence

import numpy as np

from attnlab import checks

__all__ = ["softmax_weights", "attention_explorer", "image_attention_explorer",
           "channel_gate_explorer", "window_explorer", "cost_explorer", "counted_cost",
           "publish"]

BLOCKED = _BLOCKED = -1e30  # a score the page's softmax treats as -inf (weight exactly 0)


def softmax_weights(scores, temperature: float = 1.0, allowed=None) -> np.ndarray:
    """What the page computes: ``softmax(scores / temperature)`` over the last axis, in float64.

    Args:
        scores: ``(..., S)`` numbers; ``-inf`` (or :data:`BLOCKED`) blocks a key, NaN and
            ``+inf`` are refused.
        temperature: a finite number > 0.
        allowed: optional boolean mask (True = may attend) that broadcasts to ``scores``'
            shape, never beyond it. A float mask of 0 / -inf is refused, not guessed at: pass
            ``mask == 0``.

    Blocked keys get weight 0; a row with no allowed key gets zeros.
    """
    s = _as_array(scores, "scores", finite=False)
    if s.ndim < 1 or np.isnan(s).any() or np.isposinf(s).any():
        raise ValueError(f"scores must be (..., S) numbers without NaN or +inf, got shape "
                         f"{s.shape}" + (" with NaN or +inf" if s.ndim else ""))
    s = s / checks.positive(temperature, "temperature")
    if allowed is not None:
        s = np.where(_bool_array(allowed, "allowed", s.shape, broadcast=True), s, -np.inf)
    m = np.max(s, axis=-1, keepdims=True)
    e = np.where(np.isfinite(s), np.exp(s - np.where(np.isfinite(m), m, 0.0)), 0.0)
    z = e.sum(axis=-1, keepdims=True)
    return np.divide(e, z, out=np.zeros_like(e), where=z > 0)


def _plain(x, name: str) -> np.ndarray:
    """A tensor, an array or nested lists as a NumPy array (no dtype imposed yet)."""
    if hasattr(x, "detach"):  # a torch tensor, on any device
        x = x.detach().cpu()
        x = x.double().numpy() if x.is_floating_point() else x.numpy()
    try:
        return np.asarray(x)
    except (TypeError, ValueError) as e:
        raise ValueError(f"{name} must be an array of one shape, got {type(x).__name__}: "
                         f"{e}") from None


def _as_array(x, name: str, ndim: int | None = None, *, finite: bool = True,
              hint: str = "") -> np.ndarray:
    """``x`` as float64 numbers (not booleans, strings or None), of ``ndim`` dimensions."""
    a = _plain(x, name)
    if a.dtype.kind not in "iuf":
        raise TypeError(f"{name} must hold numbers, got dtype {a.dtype}")
    a = a.astype(np.float64)
    if ndim is not None and a.ndim != ndim:
        raise ValueError(f"{name} must have {ndim} dimensions, got shape {a.shape}")
    if finite and not np.isfinite(a).all():
        raise ValueError(f"{name} must be finite numbers, got NaN or inf{hint}")
    return a


def _bool_array(x, name: str, shape, broadcast: bool = False) -> np.ndarray:
    """``x`` as a boolean array of ``shape`` (or one that broadcasts to it, never beyond)."""
    a = _plain(x, name)
    if a.dtype.kind != "b":
        raise TypeError(f"{name} must be boolean (True = may attend), got dtype {a.dtype}; "
                        f"for a float mask of 0 / -inf pass mask == 0")
    try:
        ok = np.broadcast_shapes(a.shape, tuple(shape)) == tuple(shape) if broadcast \
            else a.shape == tuple(shape)
    except ValueError:
        ok = False
    if not ok:
        raise ValueError(f"{name} must have shape {tuple(shape)}"
                         + (" (or broadcast to it)" if broadcast else "") + f", got {a.shape}")
    return a


def _slider(value, name: str, positive: bool) -> tuple[float, float, float]:
    """``(low, high, start)`` of a slider: finite, ``low < high``, ``start`` between them."""
    if isinstance(value, (str, bytes)) or not hasattr(value, "__len__") or len(value) != 3:
        raise TypeError(f"{name} must be a tuple (low, high, start), got {value!r:.60}")
    low, high, start = (checks.number(v, name) for v in value)
    if (positive and low <= 0) or not low < high or not low <= start <= high:
        raise ValueError(f"{name} must be (low, high, start) with {'0 < ' if positive else ''}"
                         f"low < high and low <= start <= high, got {tuple(value)}")
    return low, high, start


def _text(value, name: str, optional: bool = False):
    if not (isinstance(value, str) or (optional and value is None)):
        raise TypeError(f"{name} must be a string{' or None' if optional else ''}, got "
                        f"{type(value).__name__}")
    return value


def _rounded(a) -> list[float]:
    """Numbers for the page: 8 decimals (a weight computed from them is off by < 1e-7)."""
    return [round(float(v), 8) for v in np.asarray(a).ravel()]


def _labels(labels, n: int, name: str, variants: Mapping) -> str:
    """A Vega expression for the list of ``n`` labels (one list per variant when a dict)."""
    if not isinstance(labels, Mapping):
        labels = {v: labels for v in variants}
    if set(labels) != set(variants):
        raise ValueError(f"{name} must have labels for the variants {list(variants)}, "
                         f"got {list(labels)}")
    for v, lab in labels.items():
        if isinstance(lab, (str, bytes)) or not hasattr(lab, "__len__"):
            raise TypeError(f"{name} must be a list of labels (or a dict of lists), got "
                            f"{type(lab).__name__} {lab!r:.40}")
        if len(lab) != n:
            raise ValueError(f"{name} must have {n} labels" + (f" for {v!r}" if v else "")
                             + f", got {len(lab)}")
    table = {v: [str(t) for t in lab] for v, lab in labels.items()}
    if len(table) == 1:
        return json.dumps(next(iter(table.values())))
    return json.dumps(table) + "[variant]"


def _control(name: str, value, binding=None):
    """A Vega-Lite parameter, bound to a control when there is a choice to make."""
    import altair as alt

    return alt.param(name=name, value=value, bind=binding) if binding else alt.param(name=name, value=value)


def _softmax(chart, group: str = "q"):
    """Append the page's softmax: weight = softmax(score / temperature) over allowed keys.

    Rows with ``norm == 'mean'`` are not a softmax (the dot-product and concatenation forms of
    a non-local block): their weight is the precomputed score divided by the number of keys.
    """
    return (chart
            .transform_calculate(s=f"masked && !datum.ok ? {_BLOCKED} : datum.score / temperature")
            .transform_joinaggregate(m="max(s)", n="count()", groupby=[group])
            .transform_calculate(e=f"datum.s <= {_BLOCKED / 10} ? 0 : exp(datum.s - datum.m)")
            .transform_joinaggregate(z="sum(e)", groupby=[group])
            .transform_calculate(weight="datum.norm == 'mean' ? datum.score / datum.n : "
                                        "datum.z > 0 ? datum.e / datum.z : 0"))


def _variants(scores, ndim: int, name: str = "scores") -> dict[str, np.ndarray]:
    variants = dict(scores) if isinstance(scores, Mapping) else {"": scores}
    if not variants:
        raise ValueError(f"{name} must hold at least one variant, got an empty dict")
    if not all(isinstance(v, str) for v in variants):
        raise TypeError(f"{name}'s variants must be named by strings, got {list(variants)!r:.60}")
    hint = " (a blocked key's score is live.BLOCKED, not -inf)"
    arrays = {v: _as_array(s, f"{name}[{v!r}]" if v else name, ndim, hint=hint)
              for v, s in variants.items()}
    shape = next(iter(arrays.values())).shape
    if any(a.shape != shape for a in arrays.values()):
        raise ValueError(f"every variant's {name} must have the same shape, got "
                         f"{[a.shape for a in arrays.values()]}")
    if 0 in shape:
        raise ValueError(f"{name} must have at least one entry along every dimension, "
                         f"got shape {shape}")
    return arrays


def attention_explorer(scores: Mapping[str, object] | object, keys: Sequence[str], *,
                       queries: Sequence[str] | None = None, values=None, mask=None,
                       masked: bool | None = None,
                       temperature: tuple[float, float, float] | None = (0.1, 4.0, 1.0),
                       variant_name: str = "variant", title: str | None = None,
                       cell: tuple[int, int] = (22, 22)):
    r"""An Altair chart: per-head scores in, controls for temperature, head, query, mask, variant.

    Args:
        scores: ``(h, T, S)`` scores (before the softmax and before any temperature), or a dict
            ``{variant: (h, T, S)}`` of precomputed alternatives (e.g. models trained with and
            without positional encodings), switched by a menu.
        keys: ``S`` labels of the keys; ``queries``: ``T`` labels (default: ``keys``). Either may
            be a dict ``{variant: labels}`` when the variants are different sequences (e.g. one
            per example; pad shorter ones with ``""`` labels and :data:`BLOCKED` scores).
        values: optional ``(h, S)`` (or a dict of them, one per variant) scalar values per key;
            the page shows the weighted sum :math:`\sum_s \alpha_{ts} v_s` for the chosen query.
        mask: optional ``(T, S)`` boolean, True = may attend; a check box switches it on and off.
        masked: whether the figure opens with the mask on (default: when a mask is given). Open
            it in the state the text describes: a model trained without the mask is seen
            without it first.
        temperature: ``(low, high, start)`` of the temperature slider, ``0 < low < high``; the
            page uses ``softmax(score / temperature)``. None for no slider, where some rows are
            not a softmax of scores (e.g. attention rollout): the page then shows
            ``softmax(score)``, which gives back maps stored as their logarithms.
        cell: width and height in pixels of one key and one query in the heat map.

    Returns:
        an ``altair`` chart; show it with :func:`publish`. Its controls are the parameters
        ``temperature``, ``query``, ``head``, ``masked`` and ``variant``.
    """
    import altair as alt

    arrays = _variants(scores, 3)
    h, T, S = next(iter(arrays.values())).shape
    queries = keys if queries is None else queries
    key_expr, query_list = _labels(keys, S, "keys", arrays), _labels(queries, T, "queries", arrays)
    allowed = np.ones((T, S), bool) if mask is None else _bool_array(mask, "mask", (T, S))
    opens_masked = mask is not None if masked is None else masked
    if not isinstance(opens_masked, bool):
        raise TypeError(f"masked must be True, False or None, got {masked!r}")
    if opens_masked and mask is None:
        raise ValueError("masked=True needs a mask to switch on")
    if temperature is not None:  # None: no slider (the maps are shown as they are)
        low, high, start = _slider(temperature, "temperature", positive=True)
    _text(variant_name, "variant_name"), _text(title, "title", optional=True)
    cell = checks.int_pair(cell, "cell")
    vals = None
    if values is not None:
        vals = dict(values) if isinstance(values, Mapping) else {v: values for v in arrays}
        if set(vals) != set(arrays):
            raise ValueError(f"values must have an entry for each variant {list(arrays)}, "
                             f"got {list(vals)}")
        vals = {v: _as_array(a, "values", 2) for v, a in vals.items()}
        for v, a in vals.items():
            if a.shape != (h, S):
                raise ValueError(f"values must have shape (h, S) = {(h, S)} (one value per key "
                                 f"and head)" + (f" for {v!r}" if v else "") + f", got {a.shape}")

    # one row per (variant, head, query) with its S scores as arrays; the page flattens them
    rows = [{"v": v, "h": i, "q": t, "k": list(range(S)), "score": _rounded(a[i, t]),
             "ok": [int(o) for o in allowed[t]],
             **({"value": _rounded(vals[v][i])} if vals is not None else {})}
            for v, a in arrays.items() for i in range(h) for t in range(T)]
    flat = ["k", "score", "ok"] + (["value"] if vals is not None else [])

    names = list(arrays)
    params = [
        _control("temperature", 1.0) if temperature is None else _control(
            "temperature", start, alt.binding_range(min=low, max=high, step=0.01,
                                                    name="temperature ")),
        _control("query", 0, alt.binding_range(min=0, max=T - 1, step=1, name="query position ")),
        _control("head", 0, h > 1 and alt.binding_range(min=0, max=h - 1, step=1, name="head ")),
        _control("masked", opens_masked, mask is not None and alt.binding_checkbox(name="mask ")),
        _control("variant", names[0], len(names) > 1 and alt.binding_select(
            options=names, name=f"{variant_name} ")),
    ]
    base = _softmax(alt.Chart(alt.Data(values=rows))
                    .transform_filter("datum.v == variant && datum.h == head")
                    .transform_flatten(flat))
    x_keys = alt.X("k:O", title="keys", axis=alt.Axis(labelExpr=key_expr + "[datum.value]",
                                                       labelAngle=0, labelOverlap=True))
    heat = base.mark_rect().encode(
        x=x_keys,
        y=alt.Y("q:O", title="queries", axis=alt.Axis(labelExpr=query_list + "[datum.value]",
                                                      labelOverlap=True)),
        color=alt.Color("weight:Q", scale=alt.Scale(domain=[0, 1], scheme="viridis"),
                        title="weight"),
        opacity=alt.condition("datum.q == query", alt.value(1.0), alt.value(0.55)),
        tooltip=[alt.Tooltip("weight:Q", format=".3f")],
    ).properties(width=cell[0] * S, height=cell[1] * T, title="all queries")
    one = base.transform_filter("datum.q == query")
    bars = one.mark_bar(color="#4c78a8").encode(
        x=x_keys, y=alt.Y("weight:Q", scale=alt.Scale(domain=[0, 1]), title="weight"))
    layers = [bars]
    if S <= 24:
        layers.append(one.mark_text(dy=-6, fontSize=9).encode(
            x=x_keys, y="weight:Q", text=alt.Text("weight:Q", format=".2f")))
    if vals is not None:
        layers.append(one.transform_calculate(wv="datum.weight * datum.value")
                      .transform_aggregate(out="sum(wv)")
                      .transform_calculate(label="'weighted sum of the values: ' + "
                                                 "format(datum.out, '.3f')")
                      .mark_text(align="left", x=0, y=-12, fontSize=11).encode(text="label:N"))
    chosen = alt.layer(*layers).properties(
        width=cell[0] * S, height=140,
        title=alt.Title(alt.expr(f"'weights of query ' + {query_list}[query]")))
    chart = alt.hconcat(heat, chosen).add_params(*params)
    return chart.properties(title=title) if title else chart


def image_attention_explorer(affinities: Mapping[str, object], image, *, key_grid: tuple[int, int],
                             softmax: Sequence[str] = (), title: str | None = None,
                             cell: int = 16):
    r"""An Altair chart for attention over pixels: click a pixel, see where it looks.

    Args:
        affinities: ``{variant: (N, M)}`` per query pixel (``N = H*W``, row-major) and key
            position (``M = h*w`` on ``key_grid``). For the variants named in ``softmax`` these are
            *scores* and the page computes ``softmax(score / temperature)``; for the others they
            are unnormalised pairwise values :math:`f(x_i, x_j)` and the page divides by ``M``.
        image: ``(H, W, 3)`` RGB in [0, 1] (or ``(H, W)`` grey), drawn for picking the query;
            finite, values outside [0, 1] are clipped.
        key_grid: ``(h, w)`` of the key positions (smaller than the image after subsampling).
        softmax: the names of the variants whose weights are a softmax (e.g. the Gaussian
            forms); each must be a variant of ``affinities``.

    Returns:
        an ``altair`` chart with the controls ``variant``, ``temperature``, ``qrow``, ``qcol``;
        clicking a pixel of the image picks the query too.
    """
    import altair as alt

    arrays = _variants(affinities, 2, "affinities")
    img = _as_array(image, "image")
    img = np.repeat(img[..., None], 3, axis=-1) if img.ndim == 2 else img
    if img.ndim != 3 or img.shape[-1] != 3 or 0 in img.shape:
        raise ValueError(f"image must have shape (H, W, 3) or (H, W), got {img.shape}")
    H, W = img.shape[:2]
    N, M = next(iter(arrays.values())).shape
    kh, kw = checks.int_pair(key_grid, "key_grid")
    if isinstance(softmax, (str, bytes)) or not all(isinstance(v, str) for v in softmax):
        raise TypeError(f"softmax must be a list of variant names, got {softmax!r:.60}")
    unknown = [v for v in softmax if v not in arrays]
    if unknown:
        raise ValueError(f"softmax names variants {unknown} that affinities does not have "
                         f"{list(arrays)}")
    checks.positive_int(cell, "cell"), _text(title, "title", optional=True)
    if N != H * W or M != kh * kw:
        raise ValueError(f"affinities must be (H*W, h*w) = ({H * W}, {kh * kw}), got {(N, M)}")
    names = list(arrays)
    rows = [{"v": v, "q": q, "norm": "softmax" if v in softmax else "mean", "ok": 1,
             "k": list(range(M)), "score": _rounded(a[q])}
            for v, a in arrays.items() for q in range(N)]
    pixels = [{"i": i, "j": j, "q": i * W + j, "rgb": "#%02x%02x%02x" % tuple(
        int(round(255 * c)) for c in np.clip(img[i, j], 0, 1))} for i in range(H) for j in range(W)]
    params = [
        _control("variant", names[0], len(names) > 1 and alt.binding_select(options=names,
                                                                            name="pairwise function ")),
        _control("temperature", 1.0, bool(softmax) and alt.binding_range(
            min=0.1, max=4.0, step=0.01, name="temperature (softmax forms) ")),
        _control("qrow", H // 2, alt.binding_range(min=0, max=H - 1, step=1, name="query row ")),
        _control("qcol", W // 2, alt.binding_range(min=0, max=W - 1, step=1, name="query column ")),
        _control("masked", False),
    ]
    picture = (alt.Chart(alt.Data(values=pixels)).mark_rect(stroke="white", strokeWidth=0.2)
               .encode(x=alt.X("j:O", title=None, axis=None), y=alt.Y("i:O", title=None, axis=None),
                       color=alt.Color("rgb:N", scale=None),
                       strokeWidth=alt.condition("datum.i == qrow && datum.j == qcol",
                                                 alt.value(3), alt.value(0.2)))
               .properties(width=cell * W, height=cell * H, title="click a pixel (the query)"))
    weights = _softmax(alt.Chart(alt.Data(values=rows))
                       .transform_filter("datum.v == variant && datum.q == qrow * %d + qcol" % W)
                       .transform_flatten(["k", "score"])
                       .transform_calculate(ki=f"floor(datum.k / {kw})", kj=f"datum.k % {kw}"),
                       group="q")
    heat = weights.mark_rect().encode(
        x=alt.X("kj:O", title=None, axis=None), y=alt.Y("ki:O", title=None, axis=None),
        color=alt.Color("weight:Q", scale=alt.Scale(scheme="viridis"), title="weight"),
        tooltip=[alt.Tooltip("weight:Q", format=".4f")],
    ).properties(width=cell * W, height=cell * H, title=alt.Title(alt.expr(
        "'weights of pixel (' + qrow + ', ' + qcol + ')'"
        # a form that divides by M has no temperature: say so where the slider acts on nothing
        f" + (indexof({json.dumps(list(softmax))}, variant) < 0 ? "
        f"' (divided by {M}: no temperature)' : '')")))
    # in the page, a click on a pixel sets the two sliders (see the loader in publish)
    usermeta = {"attnlab_click": {"qrow": "i", "qcol": "j"}}
    if softmax and len(softmax) < len(names):  # the slider acts on nothing for the other forms
        usermeta["attnlab_inactive"] = {"temperature": {
            "when": f"indexof({json.dumps(list(softmax))}, variant) < 0",
            "why": "not a softmax: this form divides by the number of keys"}}
    chart = alt.hconcat(picture, heat).add_params(*params).resolve_scale(
        color="independent").properties(usermeta=usermeta)
    return chart.properties(title=title) if title else chart


def window_explorer(image, out_size: int, *, scale: tuple[float, float, float] = (0.2, 1.0, 1.0),
                    shift: tuple[float, float] = (0.0, 0.0), title: str | None = None,
                    cell: int = 8):
    r"""An Altair chart of a spatial transformer's window: where it reads, and what it gives.

    The window is :math:`\theta = [[s, 0, t_x], [0, s, t_y]]` (as
    :func:`attnlab.spatial.affine_warp` reads it: output pixel :math:`(x^t, y^t)` reads the
    input at :math:`(s x^t + t_x, s y^t + t_y)`, normalised coordinates, pixel centres). The
    page draws the window on the image and resamples the ``out_size x out_size`` view the
    classifier sees with bilinear interpolation (zeros outside the image), as
    ``affine_warp`` does.

    Args:
        image: ``(H, W)`` grey image, finite.
        out_size: side of the resampled view.
        scale: ``(low, high, start)`` of the window's scale slider, ``0 < low``.
        shift: ``(t_x, t_y)`` the window starts at, each in [-1, 1].

    Returns:
        an ``altair`` chart with the controls ``s``, ``tx``, ``ty``; its resampled view is the
        data field ``seen``, ordered by ``o`` (row-major output pixel).
    """
    import altair as alt

    img = _as_array(image, "image", 2)
    H, W = img.shape
    if 0 in img.shape:
        raise ValueError(f"image must have at least one pixel, got shape {img.shape}")
    n = checks.positive_int(out_size, "out_size")
    low, high, start = _slider(scale, "scale", positive=True)
    if isinstance(shift, (str, bytes)) or not hasattr(shift, "__len__") or len(shift) != 2:
        raise TypeError(f"shift must be a pair (t_x, t_y), got {shift!r:.60}")
    tx0, ty0 = (checks.number(v, "shift") for v in shift)
    if not (-1 <= tx0 <= 1 and -1 <= ty0 <= 1):
        raise ValueError(f"shift must lie in [-1, 1] x [-1, 1], got {tuple(shift)}")
    checks.positive_int(cell, "cell"), _text(title, "title", optional=True)
    pixels = [{"key": i * W + j, "i": i, "j": j, "v": round(float(img[i, j]), 6)}
              for i in range(H) for j in range(W)]
    out = [{"o": a * n + b, "oi": a, "oj": b} for a in range(n) for b in range(n)]
    params = [
        _control("s", start, alt.binding_range(min=low, max=high, step=0.01, name="window scale ")),
        _control("tx", tx0, alt.binding_range(min=-1, max=1, step=0.01, name="shift x ")),
        _control("ty", ty0, alt.binding_range(min=-1, max=1, step=0.01, name="shift y ")),
    ]
    vmax = float(max(img.max(), 1e-12))
    colour = alt.Color("v:Q", scale=alt.Scale(domain=[min(0.0, float(img.min())), vmax],
                                              scheme="greys", reverse=True), title="ink")
    page = alt.Chart(alt.Data(values=pixels)).mark_rect().encode(
        x=alt.X("j:O", axis=None), y=alt.Y("i:O", axis=None), color=colour,
    ).properties(width=cell * W, height=cell * H, title="the page and the window")
    # the window's corners in pixel coordinates: (t - s + 1) * W / 2 - 0.5 ... (t + s + 1) * W / 2
    box = alt.Chart(alt.Data(values=[{}])).mark_rect(
        fill=None, stroke="orange", strokeWidth=2).encode(
        x=alt.X("x0:Q", scale=alt.Scale(domain=[0, W]), axis=None),
        x2="x1:Q", y=alt.Y("y0:Q", scale=alt.Scale(domain=[H, 0]), axis=None), y2="y1:Q",
    ).transform_calculate(x0=f"(tx - s + 1) * {W} / 2", x1=f"(tx + s + 1) * {W} / 2",
                          y0=f"(ty - s + 1) * {H} / 2", y1=f"(ty + s + 1) * {H} / 2")
    # bilinear sampling, zeros outside: u, v are the source's pixel coordinates
    seen = alt.Chart(alt.Data(values=out)).transform_calculate(
        u=f"(((s * ((2 * datum.oj + 1) / {n} - 1) + tx) + 1) * {W} - 1) / 2",
        v=f"(((s * ((2 * datum.oi + 1) / {n} - 1) + ty) + 1) * {H} - 1) / 2",
    ).transform_calculate(j0="floor(datum.u)", i0="floor(datum.v)").transform_calculate(
        wj="datum.u - datum.j0", wi="datum.v - datum.i0")
    corners = []
    for name, di, dj in (("a", 0, 0), ("b", 0, 1), ("c", 1, 0), ("d", 1, 1)):
        inside = (f"datum.i0 + {di} >= 0 && datum.i0 + {di} < {H} && "
                  f"datum.j0 + {dj} >= 0 && datum.j0 + {dj} < {W}")
        seen = seen.transform_calculate(**{f"k{name}": f"{inside} ? (datum.i0 + {di}) * {W} + "
                                                        f"datum.j0 + {dj} : -1"}).transform_lookup(
            lookup=f"k{name}", from_=alt.LookupData(alt.Data(values=pixels), "key", ["v"]),
            as_=[f"v{name}"], default=0)
        corners.append((name, di, dj))
    weight = {0: "(1 - datum.{})", 1: "datum.{}"}
    terms = " + ".join(f"{weight[di].format('wi')} * {weight[dj].format('wj')} * datum.v{name}"
                       for name, di, dj in corners)
    seen = seen.transform_calculate(seen=terms).mark_rect().encode(
        x=alt.X("oj:O", axis=None), y=alt.Y("oi:O", axis=None),
        color=alt.Color("seen:Q", scale=alt.Scale(domain=[min(0.0, float(img.min())), vmax],
                                                  scheme="greys", reverse=True), title="ink"),
    ).properties(width=cell * W, height=cell * H,
                 title=f"what the classifier sees ({n} x {n})")
    chart = alt.hconcat(alt.layer(page, box), seen).add_params(*params)
    return chart.properties(title=title) if title else chart


def _gate_rows(m, name: str, image: int, z_avg, z_max) -> list[dict]:
    """What the page needs to recompute gate ``m`` of one image for any input scale: the
    first layer's products with the pooled vectors ``z_avg``, ``z_max`` (C,)."""
    import torch

    from attnlab.channel import ChannelGate, EfficientChannelAttention

    C = z_avg.shape[0]
    with torch.no_grad():
        if isinstance(m, EfficientChannelAttention):  # sigmoid(s * conv1d(z)): one term per c
            v = m.conv(z_avg.view(1, 1, C)).view(C)
            return [{"v": name, "i": image, "c": c, "w2": 1.0, "ua": float(v[c]), "um": 0.0,
                     "b1": 0.0, "bias": 0.0, "relu": False} for c in range(C)]
        w1, b1 = m.fc1.weight.flatten(1), m.fc1.bias             # (R, C), (R,)
        w2, b2 = m.fc2.weight.flatten(1), m.fc2.bias             # (C, R), (C,)
        both = isinstance(m, ChannelGate)                        # MLP(avg) + MLP(max)
        ua, um = w1 @ z_avg, (w1 @ z_max if both else torch.zeros_like(b1))
        return [{"v": name, "i": image, "c": c, "w2": float(w2[c, r]), "ua": float(ua[r]),
                 "um": float(um[r]), "b1": float(b1[r]), "two": both,
                 "bias": float(b2[c]) * (2 if both else 1), "relu": True}
                for c in range(C) for r in range(w1.shape[0])]


def channel_gate_explorer(gates: Mapping[str, object], feature_map, *, groups: int = 1,
                          scale: tuple[float, float, float] = (0.0, 3.0, 1.0),
                          title: str | None = None):
    r"""An Altair chart: each channel's gate as the page rescales the feature map it reads.

    The page recomputes the gates of SE, ECA and CBAM's channel gate for the input
    :math:`s \cdot x` as the reader moves the slider ``scale`` :math:`s`: both pools scale with
    :math:`s`, so only the first layer's products with the pooled vectors are precomputed.

    Args:
        gates: ``{name: module}`` with :class:`attnlab.channel.SqueezeExcite`,
            :class:`~attnlab.channel.EfficientChannelAttention` or
            :class:`~attnlab.channel.ChannelGate` modules (ReLU and sigmoid, as built by default).
        feature_map: ``(n, C, H, W)``, the maps of n images the gates read, or ``{name: maps}``
            when each gate reads its own network's features; with n > 1 a slider picks the image.
        groups: colour the channels in this many equal groups (e.g. one per input channel).
        scale: ``(low, high, start)`` of the slider, ``low < high``.

    Returns:
        an ``altair`` chart with the controls ``scale``, ``variant`` and (n > 1) ``image``.
    """
    import altair as alt
    import torch

    from attnlab.channel import ChannelGate, EfficientChannelAttention, SqueezeExcite

    if not isinstance(gates, Mapping) or not gates:
        raise TypeError(f"gates must be a non-empty dict {{name: module}}, got {gates!r:.60}")
    maps = dict(feature_map) if isinstance(feature_map, Mapping) else {n: feature_map for n in gates}
    if set(maps) != set(gates):
        raise ValueError(f"feature_map must have a map for each gate {list(gates)}, "
                         f"got {list(maps)}")
    checks.positive_int(groups, "groups"), _text(title, "title", optional=True)
    low, high, start = _slider(scale, "scale", positive=False)
    widths = {name: checks.feature_map(x, "feature_map").shape[1] for name, x in maps.items()}
    counts = {x.shape[0] for x in maps.values()}
    if len(set(widths.values())) != 1 or len(counts) != 1 or 0 in counts:
        raise ValueError(f"feature_map must have shape (n, C, H, W), the same n >= 1 and C for "
                         f"every gate, got {[tuple(x.shape) for x in maps.values()]}")
    n_images = counts.pop()
    rows = []
    for name, m in gates.items():
        x = maps[name].detach().double().cpu()
        C = x.shape[1]
        if getattr(m, "channels", None) not in (None, C):
            raise ValueError(f"gates[{name!r}] is built for {m.channels} channels, its "
                             f"feature_map has {C}")
        if not isinstance(m, (EfficientChannelAttention, SqueezeExcite, ChannelGate)):
            raise TypeError(f"gates[{name!r}] must be SE, ECA or CBAM's channel gate, "
                            f"got {type(m).__name__}")
        m = copy.deepcopy(m).double().cpu()  # leave the caller's module as it is
        for i in range(n_images):
            rows += _gate_rows(m, name, i, x[i].mean(dim=(1, 2)), x[i].amax(dim=(1, 2)))
    names = list(gates)
    params = [_control("scale", start, alt.binding_range(min=low, max=high, step=0.01,
                                                         name="input scale s ")),
              _control("variant", names[0], len(names) > 1 and alt.binding_select(
                  options=names, name="gate ")),
              _control("image", 0, n_images > 1 and alt.binding_range(
                  min=0, max=n_images - 1, step=1, name="image "))]
    relu = "(datum.relu ? max(0, {0}) : {0})"  # parenthesised: a ternary binds loosely
    chart = (alt.Chart(alt.Data(values=[{k: (round(v, 8) if isinstance(v, float) else v)
                                         for k, v in r.items()} for r in rows]))
             .transform_filter("datum.v == variant && datum.i == image")
             .transform_calculate(t=(relu.format("scale * datum.ua + datum.b1") + " + (datum.two ? "
                                     + relu.format("scale * datum.um + datum.b1") + " : 0)"))
             .transform_calculate(t="datum.w2 * datum.t")
             .transform_aggregate(pre="sum(t)", bias="max(bias)", groupby=["c"])
             .transform_calculate(gate="1 / (1 + exp(-(datum.pre + datum.bias)))",
                                  group=f"floor(datum.c / {max(1, C // groups)})")
             .mark_bar()
             .encode(x=alt.X("c:O", title="channel", axis=alt.Axis(labelOverlap=True)),
                     y=alt.Y("gate:Q", scale=alt.Scale(domain=[0, 1]), title="gate"),
                     color=alt.Color("group:N", title="group", legend=None),
                     tooltip=[alt.Tooltip("gate:Q", format=".3f")])
             .add_params(*params).properties(width=12 * C, height=160))
    if n_images > 1 and low <= 0 <= high:  # at s = 0 every image gives the gates of the biases
        chart = chart.properties(usermeta={"attnlab_inactive": {"image": {
            "when": "scale == 0", "why": "at s = 0 the gates see no input: every image alike"}}})
    return chart.properties(title=title) if title else chart


def counted_cost(expr: str, name: str = "counted"):
    """A counted-cost expression of :func:`cost_explorer` as a Python function of ``n``.

    Only numbers, ``n``, ``+ - * / %`` and ``pow``, ``sqrt``, ``ceil``, ``floor``, ``max``,
    ``min``, ``log``, ``exp``, ``abs`` are allowed: the subset on which Vega's expression
    language (the page) and Python agree. Python uses it to check what the page will draw.
    """
    import ast
    import math

    funcs = {"pow": pow, "sqrt": math.sqrt, "ceil": math.ceil, "floor": math.floor,
             "max": max, "min": min, "log": math.log, "exp": math.exp, "abs": abs}
    ops = {ast.Add: lambda a, b: a + b, ast.Sub: lambda a, b: a - b,
           ast.Mult: lambda a, b: a * b, ast.Div: lambda a, b: a / b,
           ast.Mod: lambda a, b: math.fmod(a, b)}
    _text(expr, name)
    try:
        tree = ast.parse(expr, mode="eval").body
    except SyntaxError:
        raise ValueError(f"{name} must be an expression in n such as 'n * n', "
                         f"got {expr!r}") from None

    def ev(node, n):
        if isinstance(node, ast.Constant) and type(node.value) in (int, float):
            return float(node.value)
        if isinstance(node, ast.Name) and node.id == "n":
            return float(n)
        if isinstance(node, ast.UnaryOp) and isinstance(node.op, (ast.USub, ast.UAdd)):
            return -ev(node.operand, n) if isinstance(node.op, ast.USub) else ev(node.operand, n)
        if isinstance(node, ast.BinOp) and type(node.op) in ops:
            return ops[type(node.op)](ev(node.left, n), ev(node.right, n))
        if (isinstance(node, ast.Call) and isinstance(node.func, ast.Name)
                and node.func.id in funcs and not node.keywords):
            return float(funcs[node.func.id](*(ev(a, n) for a in node.args)))
        raise ValueError(f"{name} may use numbers, n, + - * / % and the functions "
                         f"{sorted(funcs)} only, got {expr!r}")

    try:  # refuse what the page could not read before anything is drawn
        ev(tree, 1)
    except (ZeroDivisionError, OverflowError):
        pass  # a function, not a bad expression: the sizes are checked by the caller

    def cost(n):
        try:
            return ev(tree, n)
        except (ZeroDivisionError, OverflowError, ValueError) as e:
            raise ValueError(f"{name} cannot be computed at n = {n}: {e}") from None

    return cost


def cost_explorer(sizes: Sequence[int], counted: Mapping[str, str], *,
                  measured: Mapping[str, Sequence[float]] | None = None, unit: str = "MiB",
                  size_name: str = "side", what: str = "scores", method: str | None = None,
                  title: str | None = None):
    r"""An Altair chart of the cost of attention against size, computed in the page.

    The page evaluates each method's counted cost :math:`c_m(n)` at the size the reader picks;
    for the method the reader picks it also computes, across the sizes, its cost relative to
    the first method, :math:`c_m(n) / c_1(n)` (a falling curve means a smaller exponent, a flat
    one a constant factor), and how much doubling the size multiplies its cost,
    :math:`c_m(2n) / c_m(n)` (:math:`2^p` for a cost that grows as :math:`n^p`).

    Args:
        sizes: the sizes the slider visits (e.g. image sides): distinct ints >= 1.
        counted: ``{method: expression}`` in the variable ``n`` (e.g. ``"n * n"``) for the
            counted cost at size ``n``: numbers, ``n``, ``+ - * / %`` and ``pow``, ``sqrt``,
            ``ceil``, ``floor``, ``max``, ``min``, ``log``, ``exp``, ``abs`` (read the same by
            the page and by Python, which checks each is > 0 at every size and its double).
            The first method is the reference the others are compared with.
        measured: optional ``{method: values}`` for methods of ``counted``: one measurement per
            size (e.g. memory), finite and > 0 (the axis is logarithmic), drawn as points on
            the same plot.
        unit: the unit of ``measured``.
        what: what ``counted`` counts, for the labels (e.g. ``"multiply-adds"``).
        method: the method the figure opens with (default: the last).

    Returns:
        an ``altair`` chart with the controls ``size`` and ``method``. Its data fields, for
        checks: ``cost`` (every method at the chosen size, ordered by ``order``), ``rel`` (the
        chosen method's cost over the first's at each size, ordered by ``n``) and ``readout``
        (the chosen method at the chosen size: cost, cost over the first's, cost at twice the
        size over cost; ordered by ``q``).
    """
    import altair as alt

    if isinstance(sizes, (str, bytes)) or not hasattr(sizes, "__len__") or not len(sizes):
        raise TypeError(f"sizes must be a non-empty list of ints, got {sizes!r:.60}")
    sizes = [checks.positive_int(n, "sizes") for n in sizes]
    if len(set(sizes)) != len(sizes):
        raise ValueError(f"sizes must be distinct, got {sizes}")
    if not isinstance(counted, Mapping) or not counted or not all(
            isinstance(m, str) and isinstance(e, str) for m, e in counted.items()):
        raise TypeError(f"counted must be a non-empty dict {{method: expression in n}} of "
                        f"strings, got {counted!r:.60}")
    for arg, name in ((unit, "unit"), (size_name, "size_name"), (what, "what")):
        _text(arg, name)
    _text(title, "title", optional=True), _text(method, "method", optional=True)
    names = list(counted)
    if method is not None and method not in counted:
        raise ValueError(f"method must be one of {names}, got {method!r}")
    for m, e in counted.items():  # the page would draw nothing (or NaN) where a cost is <= 0
        cost = counted_cost(e, f"counted[{m!r}]")
        for n in sorted({k * s for s in range(min(sizes), max(sizes) + 1) for k in (1, 2)}):
            c = cost(n)
            if not (np.isfinite(c) and c > 0):
                raise ValueError(f"counted[{m!r}] must be > 0 at every size from {min(sizes)} "
                                 f"to {2 * max(sizes)} (twice the largest), got {c} at n = {n}")
    if measured is not None and not isinstance(measured, Mapping):
        raise TypeError(f"measured must be a dict {{method: values}}, got "
                        f"{type(measured).__name__}")
    for m, values in (measured or {}).items():
        if m not in counted:
            raise ValueError(f"measured names a method {m!r} that counted does not have "
                             f"{names}")
        values = _as_array(values, f"measured[{m!r}]", 1)
        if len(values) != len(sizes) or not (values > 0).all():
            raise ValueError(f"measured[{m!r}] must hold one value > 0 per size ({len(sizes)}), "
                             f"got {values.tolist()}")

    rows = [{"m": m, "n": int(n), "order": i} for i, m in enumerate(names) for n in sizes]
    if measured:
        for m, values in measured.items():
            for n, val in zip(sizes, _as_array(values, "measured", 1)):
                rows.append({"m": m, "n": int(n), "measured": float(val), "order": names.index(m)})

    def of(e: str, n: str) -> str:  # the expression with n replaced
        return re.sub(r"\bn\b", f"({n})", e)

    def by_method(n: str, m: str = "datum.m") -> str:  # the cost of method m at size n
        return " : ".join(f"{m} == {json.dumps(k)} ? ({of(e, n)})"
                          for k, e in counted.items()) + " : 0"

    first = json.dumps(names[0])
    params = [_control("size", int(sizes[len(sizes) // 2]), alt.binding_range(
                  min=int(min(sizes)), max=int(max(sizes)), step=1, name=f"{size_name} ")),
              _control("method", method or names[-1], len(names) > 1 and alt.binding_select(
                  options=names, name="method "))]
    base = alt.Chart(alt.Data(values=rows)).transform_calculate(cost=by_method("datum.n"))
    color = alt.Color("m:N", title="method", sort=names,
                      legend=alt.Legend(orient="bottom", columns=2))
    x_scale = alt.Scale(type="log", domain=[int(min(sizes)), int(max(sizes))], nice=False)
    x = alt.X("n:Q", scale=x_scale, title=size_name)
    lines = base.transform_filter("!isValid(datum.measured)").mark_line().encode(
        x=x, y=alt.Y("cost:Q", scale=alt.Scale(type="log"), title=f"{what} (counted)"),
        color=color, strokeWidth=alt.condition("datum.m == method", alt.value(3), alt.value(1)))
    rule = alt.Chart(alt.Data(values=[{}])).mark_rule(strokeDash=[4, 4]).encode(
        x=alt.X("s:Q")).transform_calculate(s="size")
    # the chosen method against the first, at every size: computed in the page
    rel = (alt.Chart(alt.Data(values=[{"n": int(n)} for n in sizes]))
           .transform_calculate(rel=f"({by_method('datum.n', 'method')}) / "
                                    f"({of(counted[names[0]], 'datum.n')})"))
    rel_line = rel.mark_line(point=True).encode(
        x=x, y=alt.Y("rel:Q", scale=alt.Scale(type="log"),
                     title=f"{what} relative to {names[0]}"),
        color=alt.value("#444"), tooltip=[alt.Tooltip("rel:Q", format=".3g")])
    rel_panel = alt.layer(rel_line, rule).properties(
        width=190, height=200, title=alt.Title(alt.expr(f"method + ' / ' + {first}")))
    at_size = (alt.Chart(alt.Data(values=[{"m": m, "order": i} for i, m in enumerate(names)]))
               .transform_calculate(cost=by_method("size"))
               .transform_calculate(label="datum.m + ': ' + format(datum.cost, ',.0f')")
               .mark_text(align="left", x=0).encode(  # grey, the chosen method in black
                   y=alt.Y("m:N", sort=names, title=None, axis=None), text="label:N",
                   color=alt.condition("datum.m == method", alt.value("#000"),
                                       alt.value("#777")))
               .properties(width=300, height=18 * len(names), view={"stroke": None},
                           title=alt.Title(alt.expr(f"'{what} at {size_name} = ' + size"))))
    # the chosen method at the chosen size: its cost, against the first, and when doubled
    readout = (alt.Chart(alt.Data(values=[{"q": 0}, {"q": 1}, {"q": 2}]))
               .transform_calculate(c=by_method("size", "method"),
                                    c1=of(counted[names[0]], "size"),
                                    c2=by_method("2 * size", "method"))
               .transform_calculate(readout="datum.q == 0 ? datum.c : datum.q == 1 ? "
                                            "datum.c / datum.c1 : datum.c2 / datum.c")
               .transform_calculate(label=(
                   "datum.q == 0 ? method + ': ' + format(datum.readout, ',.0f') + "
                   f"' {what}' : datum.q == 1 ? 'that is ' + format(datum.readout, '.3g') + "
                   f"' times the count of ' + {first} : 'doubling {size_name} multiplies it by ' + "
                   "format(datum.readout, '.3g')"))
               .mark_text(align="left", x=0, fontWeight="bold")
               .encode(y=alt.Y("q:O", axis=None), text="label:N")
               .properties(width=300, height=54, view={"stroke": None},
                           title=alt.Title(alt.expr("'the method chosen: ' + method"))))
    left = alt.layer(lines, rule).properties(width=220, height=200)
    panels = [left, rel_panel]
    if measured:
        pts = base.transform_filter("isValid(datum.measured)").mark_point(filled=True).encode(
            x=x, y=alt.Y("measured:Q", scale=alt.Scale(type="log"), title=f"measured ({unit})"),
            color=color, size=alt.condition("datum.m == method && datum.n == size",
                                            alt.value(120), alt.value(30)))
        panels.insert(1, alt.layer(pts, rule).properties(width=220, height=200))
    chart = alt.vconcat(alt.hconcat(*panels), alt.hconcat(at_size, readout)).add_params(*params)
    return chart.properties(title=title) if title else chart


def _expected(checks: Sequence[Mapping]) -> list[dict]:
    """The checks as the page reads them (plain lists, a field to read and a key to sort by)."""
    out = []
    if isinstance(checks, (str, bytes, Mapping)) or not hasattr(checks, "__iter__"):
        raise TypeError(f"checks must be a list of dicts, got {type(checks).__name__}")
    for check in checks:
        if not isinstance(check, Mapping):
            raise TypeError(f"each check must be a dict, got {type(check).__name__}")
        if not {"params", "values"} <= set(check):
            raise ValueError("each check needs 'params' (control -> value) and 'values'")
        if not isinstance(check["params"], Mapping):
            raise TypeError(f"a check's 'params' must be a dict, got "
                            f"{type(check['params']).__name__}")
        out.append({"params": dict(check["params"]), "field": check.get("field", "weight"),
                    "sort": check.get("sort", "k"),
                    "values": _as_array(check["values"], "a check's 'values'").ravel().tolist()})
    return out


_LOADER = """
<script>
(function () {
  var L = window.attnlabLive = window.attnlabLive || {views: {}, ready: null};
  var base = (document.documentElement.dataset.content_root || "../") + "_static/vega/";
  function script(src) {
    return new Promise(function (ok, fail) {
      var s = document.createElement("script");
      s.src = src; s.onload = ok; s.onerror = fail; document.head.appendChild(s);
    });
  }
  if (!L.ready) {
    L.ready = (typeof define === "function" && define.amd) ?
      new Promise(function (ok, fail) {
        require.config({paths: {"vega": base + "vega.min", "vega-lite": base + "vega-lite.min",
                                "vega-embed": base + "vega-embed.min"}});
        require(["vega-embed"], ok, fail);
      }) :
      script(base + "vega.min.js").then(function () { return script(base + "vega-lite.min.js"); })
        .then(function () { return script(base + "vega-embed.min.js"); })
        .then(function () { return window.vegaEmbed; });
  }
  var id = "ID", el = document.getElementById(id);
  var spec = JSON.parse(document.getElementById(id + "-spec").textContent);
  var inactive = (spec.usermeta || {}).attnlab_inactive || {};
  function patch(vg) {  // usermeta.attnlab_click: a click on a mark sets these signals
    var click = (vg.usermeta || {}).attnlab_click || {};
    (vg.signals || []).forEach(function (s) {
      var f = click[s.name];
      if (f) s.on = (s.on || []).concat([{events: "click",
        update: "datum && isValid(datum." + f + ") ? datum." + f + " : " + s.name}]);
    });
    // usermeta.attnlab_inactive: {control: {when, why}}: a signal that says when it acts on nothing
    Object.keys(inactive).forEach(function (name) {
      vg.signals = (vg.signals || []).concat([{name: "attnlab_off_" + name,
                                               update: inactive[name].when}]);
    });
    return vg;
  }
  function disable(view) {  // a control that acts on nothing is greyed out, and says why
    Object.keys(inactive).forEach(function (name) {
      var input = el.querySelector('.vega-bindings [name="' + name + '"]');
      if (!input) return;
      var why = document.createElement("span");
      why.className = "attnlab-why";
      input.closest(".vega-bind").appendChild(why);
      function apply() {
        var off = !!view.signal("attnlab_off_" + name);
        input.disabled = off;
        why.textContent = off ? inactive[name].why : "";
      }
      view.addSignalListener("attnlab_off_" + name, apply);
      apply();
    });
  }
  L.ready.then(function (embed) {
    return embed(el, spec, {actions: false, renderer: "svg", patch: patch});
  })
    .then(function (result) { disable(result.view); L.views[id] = result.view; })
    .catch(function (err) { el.textContent = "This figure could not load its scripts: " + err; });
})();
</script>
"""


def publish(chart, checks: Sequence[Mapping] = ()):
    """Show ``chart`` so that its controls compute in the rendered page and in Jupyter.

    Args:
        chart: an ``altair`` chart with parameters bound to controls.
        checks: settings for a browser test: ``{"params": {name: value}, "values": [...],
            "field": "weight", "sort": "k"}``: the numbers (``field``, ordered by ``sort``) the
            page must compute for those settings (e.g. from :func:`softmax_weights`).

    In the book build the figure is HTML that loads Vega from the book's static folder; in
    Jupyter and Colab it is the Altair chart itself. Returns the spec's size in bytes.
    """
    from IPython.display import HTML, display

    if not callable(getattr(chart, "to_dict", None)):
        raise TypeError(f"chart must be an altair chart, got {type(chart).__name__}")
    expected = _expected(checks)  # checked before anything is shown
    spec = chart.to_dict()
    payload = json.dumps(spec, separators=(",", ":"))
    if not os.environ.get("ATTNLAB_BOOK_BUILD"):
        display(chart)
        return len(payload)
    fig_id = "live-" + uuid.uuid4().hex[:8]
    expected = html.escape(json.dumps(expected), quote=True)
    safe = payload.replace("</", "<\\/")  # a JSON string may not close the script element
    markup = (f'<div class="attnlab-live" id="{fig_id}" data-checks="{expected}"></div>\n'
              f'<script type="application/json" id="{fig_id}-spec">{safe}</script>'
              + _LOADER.replace('"ID"', f'"{fig_id}"'))
    display(HTML(markup))
    return len(payload)
