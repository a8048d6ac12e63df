r"""Figures that compute in the rendered page, for the chapters on attention in language models.

The same machinery as :mod:`attnlab.live` (Vega-Lite charts built with Altair, published with
:func:`attnlab.live.publish`, checked against what Python computes): rotary angles and scores,
linear position biases, the size of a key-value cache, a window with sink tokens, one head's
softmax row over a stored sequence. Each builder checks what it embeds, as in :mod:`attnlab.live`.

Taught in: :ref:`chap-positions` and the chapters after it.
"""
from __future__ import annotations

__all__: list[str] = []

from typing import Sequence

import numpy as np

from attnlab import checks
from attnlab.live import _as_array, _control, _text

__all__ += ["rope_scores", "rope_explorer", "alibi_weights", "alibi_explorer"]


def _pairs(q, k, name: str = "q and k"):
    q, k = _as_array(q, "q", 1), _as_array(k, "k", 1)
    if q.shape != k.shape or q.shape[0] < 2 or q.shape[0] % 2:
        raise ValueError(f"{name} must be two vectors of the same even length d >= 2 (RoPE "
                         f"rotates pairs of features), got shapes {q.shape} and {k.shape}")
    return q, k


def rope_scores(q, k, distances, *, base: float = 10000.0, pairs=None) -> np.ndarray:
    r"""What the page computes: the RoPE score of query ``q`` at m and key ``k`` at n = m + r,
    :math:`\langle R_m q, R_n k\rangle / \sqrt d`, for each distance r of ``distances``, summed
    over the pairs ``pairs = (lo, hi)`` (inclusive; default all), interleaved pairing.

    Per pair i: :math:`a_i \cos r\theta_i + b_i \sin r\theta_i` with
    :math:`a_i = q_{2i}k_{2i} + q_{2i+1}k_{2i+1}`, :math:`b_i = q_{2i+1}k_{2i} - q_{2i}k_{2i+1}`.
    """
    q, k = _pairs(q, k)
    d = q.shape[0]
    lo, hi = (0, d // 2 - 1) if pairs is None else pairs
    theta = float(base) ** (-np.arange(0, d, 2) / d)
    a = q[0::2] * k[0::2] + q[1::2] * k[1::2]
    b = q[1::2] * k[0::2] - q[0::2] * k[1::2]
    r = np.asarray(distances, dtype=np.float64)[:, None]
    terms = (a * np.cos(r * theta) + b * np.sin(r * theta)) / np.sqrt(d)
    return terms[:, lo:hi + 1].sum(-1)


def rope_explorer(q, k, *, base: float = 10000.0, max_distance: int = 48, m: int = 20,
                  n: int = 15, title: str | None = None):
    r"""An Altair chart of one query and one key under RoPE, computed in the page.

    Controls: the query position m, the key position n, and the band of frequency pairs
    (lowest and highest pair index; pair 0 turns fastest). Left: the score
    :math:`\langle R_m q, R_n k\rangle/\sqrt d` of the band against the distance r = n - m,
    with a marker computed from the rotated vectors themselves, :math:`R_m q` and
    :math:`R_n k`: it lands on the curve at r = n - m, and moving m and n together moves
    nothing. Right: the lowest
    pair of the band, the query's and the key's two features after rotation by
    :math:`m\theta_i` and :math:`n\theta_i`.

    Args:
        q, k: ``(d,)`` a query and a key (d even), e.g. a trained head's.
        base: RoPE's b.
        max_distance: the curve covers r = -max_distance .. max_distance; m and n range over
            0 .. max_distance.
        m, n: the positions the figure opens with.

    Returns:
        an ``altair`` chart; for checks, the field ``score`` ordered by ``r`` (2 max_distance
        + 1 rows) for the parameters ``m``, ``n``, ``lo``, ``hi``, and the marker's ``at_mn``
        (one row).
    """
    import altair as alt

    q, k = _pairs(q, k)
    d = q.shape[0]
    R = checks.positive_int(max_distance, "max_distance")
    for v, name in ((m, "m"), (n, "n")):
        if checks.non_negative_int(v, name) > R:
            raise ValueError(f"{name} must lie in 0 .. max_distance = {R}, got {v}")
    if not (isinstance(base, (int, float)) and np.isfinite(base) and base > 1):
        raise ValueError(f"base must be a finite number > 1, got {base!r}")
    _text(title, "title", optional=True)
    theta = float(base) ** (-np.arange(0, d, 2) / d)
    a = q[0::2] * k[0::2] + q[1::2] * k[1::2]
    b = q[1::2] * k[0::2] - q[0::2] * k[1::2]
    curve = [{"i": i, "r": r} for i in range(d // 2) for r in range(-R, R + 1)]
    per_pair = alt.LookupData(alt.Data(values=[
        {"i": i, "a": float(a[i]), "b": float(b[i]), "t": float(theta[i])}
        for i in range(d // 2)]), key="i", fields=["a", "b", "t"])
    vecs = [{"who": who, "i": i, "x1": float(v[2 * i]), "x2": float(v[2 * i + 1]),
             "t": float(theta[i])} for who, v in (("query", q), ("key", k)) for i in range(d // 2)]
    last = d // 2 - 1
    params = [_control("m", int(m), alt.binding_range(min=0, max=R, step=1, name="query m ")),
              _control("n", int(n), alt.binding_range(min=0, max=R, step=1, name="key n ")),
              _control("lo", 0, alt.binding_range(min=0, max=last, step=1,
                                                  name="lowest pair (fastest = 0) ")),
              _control("hi", last, alt.binding_range(min=0, max=last, step=1,
                                                     name="highest pair "))]
    band = "datum.i >= min(lo, hi) && datum.i <= max(lo, hi)"
    score = (alt.Chart(alt.Data(values=curve)).transform_filter(band)
             .transform_lookup(lookup="i", from_=per_pair)
             .transform_calculate(c=f"(datum.a * cos(datum.r * datum.t) + datum.b * "
                                    f"sin(datum.r * datum.t)) / {float(np.sqrt(d))!r}")
             .transform_aggregate(score="sum(c)", groupby=["r"]))
    x = alt.X("r:Q", title="distance r = n - m", scale=alt.Scale(domain=[-R, R], nice=False))
    line = score.mark_line().encode(x=x, y=alt.Y("score:Q", title="score of the band"))
    # the marker: the rotated query (at m) times the rotated key (at n), summed over the band;
    # it lands on the curve at r = n - m because the score depends on the offset only
    rotated = [{"i": i, "q1": float(q[2 * i]), "q2": float(q[2 * i + 1]), "k1": float(k[2 * i]),
                "k2": float(k[2 * i + 1]), "t": float(theta[i])} for i in range(d // 2)]
    here = (alt.Chart(alt.Data(values=rotated)).transform_filter(band)
            .transform_calculate(
                dot="((datum.q1 * cos(m * datum.t) - datum.q2 * sin(m * datum.t)) * "
                    "(datum.k1 * cos(n * datum.t) - datum.k2 * sin(n * datum.t)) + "
                    "(datum.q1 * sin(m * datum.t) + datum.q2 * cos(m * datum.t)) * "
                    "(datum.k1 * sin(n * datum.t) + datum.k2 * cos(n * datum.t)))")
            .transform_aggregate(total="sum(dot)")
            .transform_calculate(r="n - m", at_mn=f"datum.total / {float(np.sqrt(d))!r}")
            .mark_point(size=90, filled=True, color="#d62728").encode(
                x=x, y="at_mn:Q", tooltip=[alt.Tooltip("at_mn:Q", format=".3f")]))
    left = alt.layer(line, here).properties(
        width=300, height=220, title=alt.Title(alt.expr(
            "'score against n - m (pairs ' + min(lo, hi) + '-' + max(lo, hi) + "
            "'); m = ' + m + ', n = ' + n")))
    lim = float(np.abs(np.concatenate([q, k])).max() * 1.05)
    rot = (alt.Chart(alt.Data(values=vecs)).transform_filter("datum.i == min(lo, hi)")
           .transform_calculate(p="datum.who == 'query' ? m : n", zero="0")
           .transform_calculate(x="datum.x1 * cos(datum.p * datum.t) - datum.x2 * "
                                  "sin(datum.p * datum.t)",
                                y="datum.x1 * sin(datum.p * datum.t) + datum.x2 * "
                                  "cos(datum.p * datum.t)"))
    scale = alt.Scale(domain=[-lim, lim], nice=False)
    arrows = rot.mark_rule(strokeWidth=3).encode(
        x=alt.X("zero:Q", scale=scale, title="feature 2i"),
        y=alt.Y("zero:Q", scale=scale, title="feature 2i+1"), x2="x:Q", y2="y:Q",
        color=alt.Color("who:N", title=None, legend=alt.Legend(orient="bottom")))
    tips = rot.mark_point(filled=True, size=60).encode(x="x:Q", y="y:Q", color="who:N")
    right = alt.layer(arrows, tips).properties(
        width=200, height=200, title=alt.Title(alt.expr(
            "'pair ' + min(lo, hi) + ' rotated by m and n'")))
    chart = alt.hconcat(left, right).add_params(*params)
    return chart.properties(title=title) if title else chart


def alibi_weights(scores, slope: float, t: int) -> np.ndarray:
    r"""What the page computes: query t's softmax over keys s <= t of
    ``scores[t, s] - slope * (t - s)`` (ALiBi's linear bias on a head's content scores)."""
    s = _as_array(scores, "scores", 2)
    if not 0 <= t < s.shape[0]:
        raise ValueError(f"t must lie in 0 .. {s.shape[0] - 1}, got {t}")
    z = s[t, :t + 1] - slope * (t - np.arange(t + 1))
    e = np.exp(z - z.max())
    return e / e.sum()


def alibi_explorer(scores, tokens: Sequence[str], *, log2_slopes: Sequence[float],
                   t: int | None = None, log2_slope: float | None = None,
                   title: str | None = None):
    r"""An Altair chart of ALiBi's bias on one head's softmax, computed in the page.

    Controls: the slope m (as :math:`\log_2 m`, over the values ``log2_slopes``) and the query
    position t. The page adds :math:`-m\,(t - s)` to the stored content scores of the keys
    s <= t and takes the softmax: a steep slope looks at the last few tokens whatever their
    content, a shallow one lets the content decide.

    Args:
        scores: ``(T, T)`` a head's content scores :math:`q_t\cdot k_s/\sqrt d` (no bias).
        tokens: T labels for the keys.
        log2_slopes: the slider's values (e.g. ALiBi's slopes of 8 heads: -1 .. -8).
        t, log2_slope: where the figure opens (default: the last query, the first slope).

    Returns:
        an ``altair`` chart; for checks, the field ``weight`` ordered by ``k`` (t + 1 rows)
        for the parameters ``t`` and ``log2m``.
    """
    import altair as alt

    s = _as_array(scores, "scores", 2)
    T = s.shape[0]
    if s.shape != (T, T):
        raise ValueError(f"scores must be square (T, T), got {s.shape}")
    if isinstance(tokens, (str, bytes)) or len(tokens) != T:
        raise ValueError(f"tokens must be a list of T = {T} labels")
    grid = _as_array(log2_slopes, "log2_slopes", 1)
    if len(grid) < 2 or np.any(np.diff(np.sort(grid)) <= 0):
        raise ValueError("log2_slopes must hold at least two distinct values")
    t = T - 1 if t is None else checks.non_negative_int(t, "t")
    if t >= T:
        raise ValueError(f"t must lie in 0 .. {T - 1}, got {t}")
    start = float(grid[0] if log2_slope is None else log2_slope)
    _text(title, "title", optional=True)
    step = float(np.min(np.diff(np.sort(grid))))
    rows = [{"q": i, "k": j, "score": float(s[i, j]), "tok": str(tokens[j])}
            for i in range(T) for j in range(i + 1)]
    params = [_control("t", int(t), alt.binding_range(min=0, max=T - 1, step=1,
                                                      name="query position t ")),
              _control("log2m", start, alt.binding_range(
                  min=float(grid.min()), max=float(grid.max()), step=step,
                  name="log2 of the slope m "))]
    chart = (alt.Chart(alt.Data(values=rows)).transform_filter("datum.q == t")
             .transform_calculate(z="datum.score - pow(2, log2m) * (t - datum.k)")
             .transform_joinaggregate(zmax="max(z)")
             .transform_calculate(e="exp(datum.z - datum.zmax)")
             .transform_joinaggregate(sum_e="sum(e)")
             .transform_calculate(weight="datum.e / datum.sum_e",
                                  key="datum.k + ' ' + datum.tok")
             .mark_bar().encode(
                 x=alt.X("k:O", title="key position s"),
                 y=alt.Y("weight:Q", title="weight", scale=alt.Scale(domain=[0, 1])),
                 tooltip=["key:N", alt.Tooltip("weight:Q", format=".3f")])
             .add_params(*params).properties(
                 width=420, height=200, title=alt.Title(alt.expr(
                     "'query ' + t + ': softmax(score - m (t - s)), m = 2^' + log2m"))))
    return chart.properties(title=title) if title else chart


__all__ += ["induction_roles", "induction_explorer"]

ROLES = ("other", "earlier occurrence", "its successor")


def induction_roles(tokens):
    r"""For each query ``t`` and key ``s`` of a sequence: 2 where ``s`` follows an earlier
    occurrence of ``t``'s token (``x_{s-1} = x_t``, ``s - 1 < t``: where an induction head looks),
    1 at the earlier occurrences themselves (``x_s = x_t``, ``s < t``), 0 elsewhere; ``(T, T)``."""
    import numpy as np

    from attnlab.live import _as_array

    x = _as_array(tokens, "tokens", 1)
    T = x.shape[0]
    same = (x[:, None] == x[None, :]) & np.tri(T, T, -1, dtype=bool)  # (T, S): x_s = x_t, s < t
    successor = np.zeros_like(same)
    successor[:, 1:] = same[:, :-1]
    return np.where(successor, 2, np.where(same, 1, 0))


def induction_explorer(scores, tokens, *, head_names: Sequence[str] | None = None,
                       temperature: tuple[float, float, float] = (0.1, 4.0, 1.0),
                       query: int | None = None, cell: int = 12):
    r"""An Altair chart: one head's causal softmax row over a stored sequence, recomputed in the
    page, with the earlier occurrences of the query's token and their successors marked.

    Args:
        scores: ``(H, T, T)`` scores before the softmax (and before any temperature), one map per
            head (e.g. the heads of every layer, in order), computed on ``tokens``.
        tokens: the ``T`` token ids of the stored sequence.
        head_names: ``H`` names for the head menu (default ``"head 0"``, ...).
        temperature: ``(low, high, start)`` of the temperature slider, ``0 < low < high``.
        query: the query position the figure opens at (default the last).
        cell: pixels per position in the heat map and the bar chart.

    The page computes ``softmax(score / temperature)`` over the keys ``s <= t`` (the causal
    mask, which a check box switches off) for the chosen head and query ``t``: the same numbers
    as :func:`attnlab.live.softmax_weights`. Controls: ``head``, ``query``, ``temperature``,
    ``masked``. Taught in: :ref:`chap-induction`.
    """
    import json

    import altair as alt
    import numpy as np

    from attnlab import checks
    from attnlab.live import _as_array, _control, _rounded, _slider, _softmax

    s = _as_array(scores, "scores", 3, hint=" (leave the causal mask to the page)")
    H, T, S = s.shape
    if T != S or T < 2:
        raise ValueError(f"scores must be self-attention scores (H, T, T) with T >= 2, got "
                         f"{s.shape}")
    x = _as_array(tokens, "tokens", 1)
    if x.shape != (T,) or not np.array_equal(x, np.round(x)):
        raise ValueError(f"tokens must be {T} integer ids (one per position of scores), got "
                         f"shape {x.shape}")
    names = [f"head {i}" for i in range(H)] if head_names is None else list(head_names)
    if len(names) != H or not all(isinstance(n, str) for n in names):
        raise ValueError(f"head_names must be {H} strings, one per head, got {head_names!r:.60}")
    low, high, start = _slider(temperature, "temperature", positive=True)
    q0 = T - 1 if query is None else checks.non_negative_int(query, "query")
    if q0 >= T:
        raise ValueError(f"query must be a position in [0, {T}), got {q0}")
    cell = checks.positive_int(cell, "cell")
    roles = induction_roles(x)
    allowed = np.tri(T, T, dtype=bool)                               # causal: s <= t
    labels = [f"{t}:{int(v)}" for t, v in enumerate(x)]
    rows = [{"h": i, "q": t, "k": list(range(T)), "score": _rounded(s[i, t]),
             "ok": [int(o) for o in allowed[t]], "role": [ROLES[r] for r in roles[t]]}
            for i in range(H) for t in range(T)]
    params = [
        _control("temperature", start, alt.binding_range(min=low, max=high, step=0.01,
                                                         name="temperature ")),
        _control("query", q0, alt.binding_range(min=0, max=T - 1, step=1,
                                                name="query position ")),
        _control("head", 0, alt.binding_select(options=list(range(H)), labels=names,
                                               name="head ")),
        _control("masked", True, alt.binding_checkbox(name="causal mask ")),
    ]
    base = _softmax(alt.Chart(alt.Data(values=rows)).transform_filter("datum.h == head")
                    .transform_flatten(["k", "score", "ok", "role"]))
    label_expr = json.dumps(labels) + "[datum.value]"
    x_keys = alt.X("k:O", title="keys (position:token)",
                   axis=alt.Axis(labelExpr=label_expr, labelAngle=-90, labelFontSize=8))
    heat = base.mark_rect().encode(
        x=x_keys,
        y=alt.Y("q:O", title="queries", axis=alt.Axis(labelExpr=label_expr, labelFontSize=8)),
        color=alt.Color("weight:Q", scale=alt.Scale(domain=[0, 1], scheme="viridis"),
                        title="weight"),
        opacity=alt.condition("datum.q == query", alt.value(1.0), alt.value(0.5)),
        tooltip=[alt.Tooltip("weight:Q", format=".3f")],
    ).properties(width=cell * T, height=cell * T, title="all queries of this head")
    one = base.transform_filter("datum.q == query")
    bars = one.mark_bar().encode(
        x=x_keys, y=alt.Y("weight:Q", scale=alt.Scale(domain=[0, 1]), title="weight"),
        color=alt.Color("role:N", scale=alt.Scale(domain=list(ROLES),
                                                  range=["#9e9e9e", "#4c78a8", "#e45756"]),
                        title="key"),
        tooltip=["role:N", alt.Tooltip("weight:Q", format=".3f")])
    chosen = bars.properties(width=cell * T, height=130, title=alt.Title(alt.expr(
        f"'weights of query ' + {json.dumps(labels)}[query]")))
    return alt.vconcat(heat, chosen).add_params(*params).resolve_scale(color="independent")


__all__ += ["kv_cache_bytes", "kv_cache_calculator", "window_sink_weights", "window_sink_explorer"]

DTYPE_BYTES = {"float32": 4.0, "float16 / bfloat16": 2.0, "int8": 1.0, "4-bit": 0.5}


def kv_cache_bytes(layers: int, kv_heads: int, head_dim: int, tokens: int,
                   bytes_per_number: float = 2.0, batch: int = 1) -> float:
    r"""The key/value cache's size, :math:`2 \times L \times h_{kv} \times d \times T \times
    \text{bytes} \times B`: a key and a value per layer, key/value head and token."""
    for v, name in ((layers, "layers"), (kv_heads, "kv_heads"), (head_dim, "head_dim"),
                    (tokens, "tokens"), (batch, "batch")):
        checks.positive_int(v, name)
    return 2.0 * layers * kv_heads * head_dim * tokens * checks.positive(
        bytes_per_number, "bytes_per_number") * batch


def kv_cache_calculator(presets, *, log2_tokens: tuple[int, int, int] = (8, 20, 12),
                        title: str | None = None):
    r"""An Altair chart of a model's key/value cache against the tokens held, computed in the page.

    Controls: a preset (a published shape, or ``custom``), and for ``custom`` the layers L,
    query heads h, key/value heads :math:`h_{kv}` and head width d; the number format (bytes per
    number) and the tokens held (a power of two). The page draws the cache in GiB against the
    tokens, for the chosen shape and for the same shape with one key/value head per query head
    (multi-head attention), and writes the bytes at the chosen length and the work of one new
    token (:math:`2 L h d T` multiply-adds: its scores and its weighted sum).

    Args:
        presets: ``{name: (layers, heads, kv_heads, head_dim)}``, e.g. from the papers.
        log2_tokens: ``(low, high, start)`` of the tokens slider, as powers of two.

    Returns:
        an ``altair`` chart; for checks, the field ``gib`` ordered by ``n`` (one row per power
        of two) for the parameters ``preset``, ``L``, ``h``, ``hkv``, ``d``, ``nbytes``.
    """
    import json

    import altair as alt

    if not hasattr(presets, "items") or not presets:
        raise TypeError("presets must be a non-empty dict {name: (layers, heads, kv_heads, "
                        "head_dim)}")
    shapes = {}
    for name, shape in presets.items():
        _text(name, "a preset's name")
        if name == "custom" or len(tuple(shape)) != 4:
            raise ValueError(f"preset {name!r} must be (layers, heads, kv_heads, head_dim) and "
                             "not be called 'custom'")
        L, h, kv, d = (checks.positive_int(v, f"preset {name!r}") for v in shape)
        if h % kv:
            raise ValueError(f"preset {name!r}: heads ({h}) must be divisible by kv_heads ({kv})")
        shapes[name] = (L, h, kv, d)
    low, high, start = (checks.non_negative_int(v, "log2_tokens") for v in log2_tokens)
    if not low < high or not low <= start <= high:
        raise ValueError(f"log2_tokens must be (low, high, start) with low < high and start "
                         f"between them, got {log2_tokens}")
    _text(title, "title", optional=True)
    names = list(shapes) + ["custom"]
    first = next(iter(shapes.values()))

    def pick(i, slider):  # the preset's value, or the slider's for 'custom'
        return "".join(f"preset == {json.dumps(n)} ? {s[i]} : " for n, s in shapes.items()) \
            + slider
    params = [_control("preset", names[0], alt.binding_select(options=names, name="preset ")),
              _control("L", first[0], alt.binding_range(min=1, max=128, step=1,
                                                        name="custom: layers ")),
              _control("h", first[1], alt.binding_range(min=1, max=128, step=1,
                                                        name="custom: query heads ")),
              _control("hkv", first[2], alt.binding_range(min=1, max=128, step=1,
                                                          name="custom: key/value heads ")),
              _control("d", first[3], alt.binding_range(min=16, max=256, step=16,
                                                        name="custom: head width ")),
              _control("nbytes", 2.0, alt.binding_select(
                  options=list(DTYPE_BYTES.values()), labels=list(DTYPE_BYTES),
                  name="number format ")),
              _control("log2T", start, alt.binding_range(min=low, max=high, step=1,
                                                         name="tokens held (log2) "))]
    rows = [{"n": 2 ** e} for e in range(low, high + 1)]
    shape = dict(Lx=pick(0, "L"), hx=pick(1, "h"), kvx=f"min({pick(2, 'hkv')}, {pick(1, 'h')})",
                 dx=pick(3, "d"))
    per = "2 * datum.Lx * datum.kvx * datum.dx * nbytes"
    base = alt.Chart(alt.Data(values=rows)).transform_calculate(**shape).transform_calculate(
        gib=f"{per} * datum.n / pow(2, 30)",
        mha=f"2 * datum.Lx * datum.hx * datum.dx * nbytes * datum.n / pow(2, 30)")
    x = alt.X("n:Q", scale=alt.Scale(type="log", base=2), title="tokens held")
    y = alt.Y("gib:Q", scale=alt.Scale(type="log"), title="cache, GiB (one sequence)")
    line = base.mark_line(point=True).encode(x=x, y=y, tooltip=[
        "n:Q", alt.Tooltip("gib:Q", format=".3f")])
    mha = base.mark_line(strokeDash=[4, 4], color="gray").encode(x=x, y=alt.Y("mha:Q"))
    rule = alt.Chart(alt.Data(values=[{}])).transform_calculate(n="pow(2, log2T)").mark_rule(
        color="red").encode(x="n:Q")
    text = (alt.Chart(alt.Data(values=[{"line": 0}, {"line": 1}, {"line": 2}]))
            .transform_calculate(**shape).transform_calculate(T="pow(2, log2T)")
            .transform_calculate(label=(
                "datum.line == 0 ? 'L = ' + datum.Lx + ', h = ' + datum.hx + ', h_kv = ' + "
                "datum.kvx + ', d = ' + datum.dx + ', ' + format(datum.T, ',') + ' tokens' : "
                f"datum.line == 1 ? 'cache: ' + format({per} * datum.T / pow(2, 30), ',.3f') + "
                "' GiB (' + format(" + per + " / 1024, ',.0f') + ' KiB per token)' : "
                "'one new token: ' + format(2 * datum.Lx * datum.hx * datum.dx * datum.T, "
                "',.0f') + ' multiply-adds in attention'"))
            .mark_text(align="left", x=0).encode(y=alt.Y("line:O", axis=None), text="label:N")
            .properties(width=320, height=60))
    chart = alt.vconcat(alt.layer(line, mha, rule).properties(
        width=420, height=220, title="solid: the chosen key/value heads; dashed: h_kv = h"),
        text).add_params(*params)
    # the custom sliders act only on the custom shape (and h_kv is at most h): say so in the page
    custom = {"when": "preset != 'custom'", "why": "choose the preset 'custom' to set it"}
    chart = chart.properties(usermeta={"attnlab_inactive": {
        "L": custom, "h": custom, "d": custom,
        "hkv": {"when": "preset != 'custom' || h == 1", "why": "custom only, and at most h"}}})
    return chart.properties(title=title) if title else chart


def window_sink_weights(scores, t: int, window: int, sinks: int = 0) -> np.ndarray:
    r"""What the page computes: query t's softmax over the keys a rolling cache holds, the last
    ``window`` (s > t - W) and the first ``sinks``; evicted keys get weight 0."""
    s = _as_array(scores, "scores", 1)
    window, sinks = checks.positive_int(window, "window"), checks.non_negative_int(sinks, "sinks")
    if not 0 <= t < len(s):
        raise ValueError(f"t must lie in 0 .. {len(s) - 1}, got {t}")
    k = np.arange(t + 1)
    held = (t - k < window) | (k < sinks)
    z = np.where(held, s[:t + 1], -np.inf)
    e = np.exp(z - z[held].max())
    return e / e.sum()


def window_sink_explorer(scores, tokens: Sequence[str], *, head_names: Sequence[str],
                         max_sinks: int = 4, window: int = 4, sinks: int = 0,
                         title: str | None = None):
    r"""An Altair chart of one query's softmax over the tokens a rolling cache holds.

    Controls: the head, the window W and the number of kept sink tokens. The page keeps the
    keys s with :math:`t - s < W` and the first ``sinks`` keys, and takes the softmax of the
    stored scores over them: with the sink evicted, the weight it held is spread over the
    window.

    Args:
        scores: ``(h, S)`` each head's scores :math:`q_t\cdot k_s/\sqrt d` of the last query
            t = S - 1 over the keys 0 .. S - 1 (as a model trained with full attention computes
            them).
        tokens: S labels for the keys.
        head_names: h names for the menu.

    Returns:
        an ``altair`` chart; for checks, the field ``weight`` ordered by ``k`` (S rows) for the
        parameters ``head``, ``W`` and ``sinks``.
    """
    import altair as alt

    s = _as_array(scores, "scores", 2)
    h, S = s.shape
    if isinstance(tokens, (str, bytes)) or len(tokens) != S:
        raise ValueError(f"tokens must be a list of S = {S} labels")
    if isinstance(head_names, (str, bytes)) or len(head_names) != h:
        raise ValueError(f"head_names must be a list of h = {h} names")
    max_sinks = checks.positive_int(max_sinks, "max_sinks")
    window, sinks = checks.positive_int(window, "window"), checks.non_negative_int(sinks, "sinks")
    if window > S or sinks > max_sinks:
        raise ValueError(f"window must be <= S = {S} and sinks <= max_sinks = {max_sinks}")
    _text(title, "title", optional=True)
    names = [str(n) for n in head_names]
    rows = [{"head": names[i], "k": j, "score": float(s[i, j]), "tok": str(tokens[j])}
            for i in range(h) for j in range(S)]
    t = S - 1
    params = [_control("head", names[0], alt.binding_select(options=names, name="head ")),
              _control("W", window, alt.binding_range(min=1, max=S, step=1, name="window W ")),
              _control("sinks", sinks, alt.binding_range(min=0, max=max_sinks, step=1,
                                                         name="sink tokens kept "))]
    held = f"({t} - datum.k < W) || (datum.k < sinks)"
    chart = (alt.Chart(alt.Data(values=rows)).transform_filter("datum.head == head")
             .transform_calculate(held=held)
             .transform_calculate(z=f"datum.held ? datum.score : -1e30")
             .transform_joinaggregate(zmax="max(z)")
             .transform_calculate(e="datum.held ? exp(datum.z - datum.zmax) : 0")
             .transform_joinaggregate(sum_e="sum(e)")
             .transform_calculate(
                 weight="datum.e / datum.sum_e", key="datum.k + ' ' + datum.tok",
                 kind=f"!datum.held ? 'evicted' : datum.k < sinks && {t} - datum.k >= W ? "
                      "'sink' : 'window'")
             .mark_bar().encode(
                 x=alt.X("k:O", title="key position s"),
                 y=alt.Y("weight:Q", title="weight", scale=alt.Scale(domain=[0, 1])),
                 color=alt.Color("kind:N", scale=alt.Scale(
                     domain=["window", "sink", "evicted"], range=["#4c78a8", "#e45756", "#ccc"]),
                     title="key"),
                 tooltip=["key:N", "kind:N", alt.Tooltip("weight:Q", format=".3f")])
             .add_params(*params).properties(
                 width=460, height=200, title=alt.Title(alt.expr(
                     f"'query {t}, ' + head + ': window ' + W + ', sinks ' + sinks"))))
    return chart.properties(title=title) if title else chart
