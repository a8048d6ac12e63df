r"""Pictures of attention: heatmaps, overlays, and widgets with static twins.

Every interactive figure in the book is made by :func:`interactive`, which shows an
``ipywidgets`` control when a kernel is running *and* a ``matplotlib.animation`` rendered with
``to_jshtml()`` over the same values: the static twin keeps a working slider in the rendered
page, where no kernel is behind the widget.
"""
from __future__ import annotations

import itertools
import os
import re
from typing import Callable, Mapping, Sequence

import matplotlib.pyplot as plt
import numpy as np
import torch

__all__ = ["heatmap", "show_heads", "overlay", "interactive", "static_twin", "widget"]


def _to_numpy(x) -> np.ndarray:
    if isinstance(x, torch.Tensor):
        return x.detach().float().cpu().numpy()
    return np.asarray(x, dtype=float)


def heatmap(weights, x_labels: Sequence[str] | None = None, y_labels: Sequence[str] | None = None,
            ax=None, title: str | None = None, xlabel: str = "keys", ylabel: str = "queries",
            annotate: bool = False, cmap: str = "viridis", vmin: float | None = 0.0,
            vmax: float | None = None, colorbar: bool = True):
    """Draw a ``(T, S)`` matrix of attention weights with labelled axes; returns the axes."""
    w = _to_numpy(weights)
    if w.ndim != 2:
        raise ValueError(f"weights must be 2-D (T, S), got shape {tuple(w.shape)}")
    if ax is None:
        _, ax = plt.subplots(figsize=(0.4 * w.shape[1] + 2, 0.4 * w.shape[0] + 1.5))
    im = ax.imshow(w, cmap=cmap, vmin=vmin, vmax=vmax, aspect="auto")
    for labels, n, setter, ticks in ((x_labels, w.shape[1], ax.set_xticklabels, ax.set_xticks),
                                     (y_labels, w.shape[0], ax.set_yticklabels, ax.set_yticks)):
        if labels is not None:
            if len(labels) != n:
                raise ValueError(f"expected {n} labels, got {len(labels)}")
            ticks(range(n))
            setter([str(s) for s in labels])
    if x_labels is not None:
        plt.setp(ax.get_xticklabels(), rotation=90 if max(len(str(s)) for s in x_labels) > 2 else 0)
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    if title:
        ax.set_title(title)
    if annotate:
        hi = np.nanmax(w) if w.size else 0.0
        for i, j in itertools.product(range(w.shape[0]), range(w.shape[1])):
            ax.text(j, i, f"{w[i, j]:.2f}", ha="center", va="center", fontsize=7,
                    color="black" if w[i, j] > 0.6 * hi else "white")
    if colorbar:
        ax.figure.colorbar(im, ax=ax, fraction=0.046, pad=0.04)
    return ax


def show_heads(attn, titles: Sequence[str] | None = None, x_labels=None, y_labels=None,
               ncols: int | None = None, size: float = 2.6, fig=None,
               rect: tuple[float, float, float, float] = (0, 0, 1, 1), **kwargs):
    """Grid of per-head heatmaps from an ``(h, T, S)`` tensor, on one colour scale (shown once,
    beside the grid) so that the heads can be compared; returns the figure. ``rect`` is the part
    of the figure the grid is laid out in (e.g. ``(0, 0, 1, 0.93)`` leaves room for a title
    above); lay the figure out here, not afterwards: the colour scale's axes do not take part in
    a second ``tight_layout``."""
    a = _to_numpy(attn)
    if a.ndim != 3:
        raise ValueError(f"attn must be 3-D (h, T, S), got shape {tuple(a.shape)}")
    h = a.shape[0]
    ncols = ncols or min(h, 4)
    nrows = -(-h // ncols)
    if fig is None:
        fig = plt.figure(figsize=(size * ncols + 1.0, size * nrows + 0.3))
    kwargs.setdefault("vmax", float(np.nanmax(a)) if a.size else 1.0)
    axes = []
    for i in range(h):
        ax = fig.add_subplot(nrows, ncols, i + 1)
        heatmap(a[i], x_labels=x_labels, y_labels=y_labels, ax=ax, colorbar=False,
                title=titles[i] if titles else f"head {i}", **kwargs)
        axes.append(ax)
    room = 0.8 / fig.get_figwidth()  # the colour scale's ticks and label, 0.8 inch, on the right
    fig.tight_layout(rect=(rect[0], rect[1], rect[2] - room, rect[3]))
    if axes:
        fig.colorbar(axes[-1].images[0], ax=axes, fraction=0.025, pad=0.02, label="weight")
    return fig


def overlay(image, attn_map, ax=None, alpha: float = 0.5, cmap: str = "jet", title: str | None = None,
            colorbar: bool = True):
    """Show an attention map over an image (``(H, W)`` or ``(C, H, W)``), resized to fit, with
    the map's colour scale beside it (``colorbar=False`` to leave it out)."""
    img = _to_numpy(image)
    if img.ndim == 3:
        img = img[0] if img.shape[0] == 1 else np.moveaxis(img[:3], 0, -1)
    m = _to_numpy(attn_map).squeeze()
    if m.ndim != 2:
        raise ValueError(f"attn_map must squeeze to 2-D (H, W), got shape {tuple(m.shape)}")
    if ax is None:
        _, ax = plt.subplots(figsize=(3, 3))
    h, w = img.shape[:2]
    ax.imshow(img, cmap="gray" if img.ndim == 2 else None)
    im = ax.imshow(m, cmap=cmap, alpha=alpha, extent=(-0.5, w - 0.5, h - 0.5, -0.5),
                   interpolation="bilinear")
    ax.set_axis_off()
    if colorbar:
        ax.figure.colorbar(im, ax=ax, fraction=0.046, pad=0.04)
    if title:
        ax.set_title(title)
    return ax


# --- widgets and their static twins ------------------------------------------------------

def _check_params(params: Mapping[str, Sequence]) -> dict[str, list]:
    if not isinstance(params, Mapping) or not params:
        raise TypeError("params must be a non-empty dict: name -> list of values")
    out = {}
    for name, values in params.items():
        values = list(values)
        if not values:
            raise ValueError(f"params[{name!r}] must list at least one value")
        out[name] = values
    return out


def _fmt(v) -> str:
    return f"{v:.3g}" if isinstance(v, float) else str(v)


def static_twin(draw: Callable, params: Mapping[str, Sequence], *, figsize=(6, 4),
                title: str | None = None, interval: int = 700):
    """The static twin of a widget: every combination of ``params`` drawn in advance.

    ``draw(fig, **values)`` draws one state on a cleared figure. With one parameter the result
    is a ``to_jshtml`` animation (a slider and play buttons); with several, one control per
    parameter (a slider, or a menu for names) that picks the frame, as the widget does. Both
    work in a static page with no kernel. Returns an ``IPython`` HTML object.
    """
    from IPython.display import HTML
    from matplotlib import animation

    params = _check_params(params)
    combos = [dict(zip(params, vals)) for vals in itertools.product(*params.values())]
    if len(params) > 1:
        return HTML(_control_twin(draw, params, combos, figsize, title))
    fig = plt.figure(figsize=figsize)

    def frame(i):
        fig.clear()
        draw(fig, **combos[i])
        label = ", ".join(f"{k} = {_fmt(v)}" for k, v in combos[i].items())
        fig.suptitle(f"{title}: {label}" if title else label, fontsize=10)
        return []

    anim = animation.FuncAnimation(fig, frame, frames=len(combos), interval=interval, blit=False)
    html = anim.to_jshtml(default_mode="once")
    plt.close(fig)
    # matplotlib links Font Awesome 4 from a CDN for its button icons; the book's theme already
    # ships Font Awesome (and Jupyter does too), so drop the link: the page must work offline.
    html = re.sub(r'<link rel="stylesheet"[^>]*font-awesome[^>]*>', "", html)
    return HTML(html)


def _control_twin(draw, params, combos, figsize, title) -> str:
    """HTML with one control per parameter choosing among frames drawn in advance."""
    import base64
    import html as html_lib
    import io
    import json
    import uuid

    frames = []
    for combo in combos:
        fig = plt.figure(figsize=figsize)
        draw(fig, **combo)
        label = ", ".join(f"{k} = {_fmt(v)}" for k, v in combo.items())
        fig.suptitle(f"{title}: {label}" if title else label, fontsize=10)
        buf = io.BytesIO()
        fig.savefig(buf, format="png", dpi=100)
        plt.close(fig)
        frames.append("data:image/png;base64," + base64.b64encode(buf.getvalue()).decode())
    uid = "twin-" + uuid.uuid4().hex[:8]
    controls = []
    for name, values in params.items():
        label = html_lib.escape(str(name))
        if all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in values):
            field = (f'<input type="range" min="0" max="{len(values) - 1}" step="1" value="0">'
                     f'<span> {html_lib.escape(_fmt(values[0]))}</span>')
        else:
            options = "".join(f'<option value="{i}">{html_lib.escape(_fmt(v))}</option>'
                              for i, v in enumerate(values))
            field = f"<select>{options}</select><span></span>"
        controls.append(f'<div><label>{label} {field}</label></div>')
    names = [[_fmt(v) for v in values] for values in params.values()]
    script = f"""<script>(function () {{
  const root = document.getElementById({json.dumps(uid)});
  const frames = {json.dumps(frames)}, names = {json.dumps(names)};
  const fields = root.querySelectorAll("input, select");
  function show() {{
    let index = 0;
    fields.forEach((el, k) => {{
      index = index * names[k].length + Number(el.value);
      if (el.tagName === "INPUT") el.nextElementSibling.textContent = " " + names[k][el.value];
    }});
    root.querySelector("img").src = frames[index];
  }}
  fields.forEach(el => el.addEventListener("input", show));
  fields.forEach(el => el.addEventListener("change", show));
}})();</script>"""
    return (f'<div class="attnlab-twin" id="{uid}"><img src="{frames[0]}" alt="figure" '
            f'style="max-width: 100%">{"".join(controls)}{script}</div>')


def widget(draw: Callable, params: Mapping[str, Sequence], *, figsize=(6, 4), title: str | None = None):
    """An ``ipywidgets`` control (a slider or dropdown per parameter) that redraws the figure."""
    import ipywidgets as widgets
    from IPython.display import display

    params = _check_params(params)
    controls = {}
    for name, values in params.items():
        if all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in values):
            controls[name] = widgets.SelectionSlider(options=[(_fmt(v), v) for v in values],
                                                     value=values[0], description=name,
                                                     continuous_update=False)
        else:
            controls[name] = widgets.Dropdown(options=[(_fmt(v), v) for v in values],
                                              value=values[0], description=name)
    out = widgets.Output()

    def update(**values):
        with out:
            out.clear_output(wait=True)
            fig = plt.figure(figsize=figsize)
            draw(fig, **values)
            if title:
                fig.suptitle(title, fontsize=10)
            display(fig)
            plt.close(fig)

    widgets.interactive_output(update, controls)
    return widgets.VBox([widgets.HBox(list(controls.values())), out])


def interactive(draw: Callable, params: Mapping[str, Sequence], *, figsize=(6, 4),
                title: str | None = None, static: bool = True):
    """Display a live widget and, below it, its static twin (see :func:`static_twin`).

    In the book build (``ATTNLAB_BOOK_BUILD=1``) there is no kernel behind a widget, so only the
    static twin is shown, with a note: a control that cannot act is not drawn.
    """
    from IPython.display import Markdown, display

    if os.environ.get("ATTNLAB_BOOK_BUILD"):
        display(Markdown("*The frames below were computed in advance; run this notebook in "
                         "Jupyter or Colab to get the live controls.*"))
        display(static_twin(draw, params, figsize=figsize, title=title))
        return
    display(widget(draw, params, figsize=figsize, title=title))
    if static:
        display(Markdown("*Static twin (works in the rendered page, no kernel needed):*"))
        display(static_twin(draw, params, figsize=figsize, title=title))
