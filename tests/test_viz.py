"""attnlab.viz: heatmaps, overlays, widgets and their static twins."""
import matplotlib

matplotlib.use("Agg")
import ipywidgets  # noqa: E402
import matplotlib.pyplot as plt  # noqa: E402
import pytest  # noqa: E402
import torch  # noqa: E402

from attnlab import viz  # noqa: E402


def test_heatmap_labels_and_shape_errors():
    ax = viz.heatmap(torch.rand(2, 3), x_labels=["a", "b", "c"], y_labels=["x", "y"], title="t", annotate=True)
    assert [t.get_text() for t in ax.get_xticklabels()] == ["a", "b", "c"]
    assert ax.get_xlabel() == "keys" and ax.get_ylabel() == "queries" and ax.get_title() == "t"
    assert len(ax.texts) == 6
    with pytest.raises(ValueError, match="2-D"):
        viz.heatmap(torch.rand(2, 3, 4))
    with pytest.raises(ValueError, match="expected 3 labels"):
        viz.heatmap(torch.rand(2, 3), x_labels=["a"])
    plt.close("all")


def test_show_heads_and_overlay():
    a = torch.rand(3, 4, 4)
    a[2] *= 0.5
    fig = viz.show_heads(a)
    assert len(fig.axes) == 4 and fig.axes[1].get_title() == "head 1"  # 3 heads + 1 colour scale
    limits = {ax.images[0].get_clim() for ax in fig.axes[:3]}
    assert limits == {(0.0, float(a.max()))}, "heads must share one colour scale"
    assert fig.axes[3].get_ylabel() == "weight"
    with pytest.raises(ValueError, match="3-D"):
        viz.show_heads(torch.rand(4, 4))
    ax = viz.overlay(torch.rand(1, 8, 8), torch.rand(1, 1, 4, 4))
    assert len(ax.images) == 2 and len(ax.figure.axes) == 2  # the map and its colour scale
    with pytest.raises(ValueError, match="attn_map"):
        viz.overlay(torch.rand(8, 8), torch.rand(2, 4, 4))
    plt.close("all")


def draw(fig, a=1, name="x"):
    ax = fig.add_subplot()
    ax.plot([0, 1], [0, a])
    ax.set_title(name)


def test_static_twin_has_one_frame_per_value_and_no_cdn():
    html = viz.static_twin(draw, {"a": [1, 2, 3]}).data
    assert html.count("frames[") >= 3
    assert 'type="range"' in html and "_anim_slider" in html
    assert "https://" not in html and "http://" not in html and "font-awesome" not in html


def test_static_twin_keeps_one_control_per_parameter():
    """Two parameters stay two controls (a slider and a menu), not one long strip of frames."""
    html = viz.static_twin(draw, {"a": [1, 2, 3], "name": ["p", "q"]}).data
    assert html.count("data:image/png;base64,") == 6 + 1  # the frames, and the first one shown
    assert html.count('type="range"') == 1 and html.count("<select>") == 1
    assert "attnlab-twin" in html and "https://" not in html and "http://" not in html


def test_widget_has_one_control_per_parameter():
    w = viz.widget(draw, {"a": [1, 2], "name": ["p", "q"]})
    controls = w.children[0].children
    assert isinstance(controls[0], ipywidgets.SelectionSlider)
    assert isinstance(controls[1], ipywidgets.Dropdown)
    controls[0].value = 2  # redraws without error
    plt.close("all")


def test_params_are_checked():
    with pytest.raises(TypeError, match="params"):
        viz.static_twin(draw, {})
    with pytest.raises(ValueError, match="at least one value"):
        viz.static_twin(draw, {"a": []})


# Every heat map has its colour scale: each helper that draws one (any public function of viz
# whose body calls imshow or heatmap) must add a colour bar by default.
HEATMAP_HELPERS = {
    "heatmap": lambda: viz.heatmap(torch.rand(3, 4)).figure,
    "show_heads": lambda: viz.show_heads(torch.rand(2, 3, 3)),
    "overlay": lambda: viz.overlay(torch.rand(3, 8, 8), torch.rand(4, 4)).figure,
}


def _colour_bars(fig):
    return [ax for ax in fig.axes if getattr(ax, "_colorbar", None) is not None]


def test_every_heat_map_helper_draws_a_colour_bar():
    import inspect
    import re

    drawing = {name for name, f in inspect.getmembers(viz, inspect.isfunction)
               if not name.startswith("_") and f.__module__ == viz.__name__
               and re.search(r"\b(imshow|heatmap)\(", inspect.getsource(f).split(":", 1)[1])}
    assert drawing == set(HEATMAP_HELPERS), f"heat-map helpers without a test: {drawing}"
    for name, draw in HEATMAP_HELPERS.items():
        fig = draw()
        assert len(_colour_bars(fig)) == 1, f"viz.{name} drew no colour bar"
        plt.close(fig)
    assert not _colour_bars(viz.heatmap(torch.rand(2, 2), colorbar=False).figure)  # can fail
    plt.close("all")


def test_show_heads_lays_out_beside_a_title_without_a_warning():
    import warnings

    fig = plt.figure(figsize=(6, 3))
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # a second tight_layout warned and clipped the bar
        viz.show_heads(torch.rand(2, 3, 3), fig=fig, rect=(0, 0, 1, 0.9))
    assert max(ax.get_position().y1 for ax in fig.axes) <= 0.9 + 1e-6
    fig.canvas.draw()  # the colour scale's ticks and label lie inside the figure, not cut off
    bar = _colour_bars(fig)[0].get_tightbbox(fig.canvas.get_renderer())
    assert bar.x1 <= fig.bbox.x1 and bar.y0 >= fig.bbox.y0, (bar, fig.bbox)
    plt.close(fig)
