r"""Figures that compute in the rendered page, for the chapters on attention in language models.

The same machinery as :mod:`attnlab.live` (Vega-Lite charts built with Altair, published with
:func:`attnlab.live.publish`, checked against what Python computes): rotary angles and scores,
linear position biases, the size of a key-value cache, a window with sink tokens, one head's
softmax row over a stored sequence. Each builder checks what it embeds, as in :mod:`attnlab.live`.

Taught in: :ref:`chap-positions` and the chapters after it.
"""
from __future__ import annotations

__all__: list[str] = []


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
