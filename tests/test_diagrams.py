"""srlib.diagrams: network diagrams drawn from a model's configuration (notebook 03)."""

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402

from srlib import diagrams  # noqa: E402


@pytest.fixture(autouse=True)
def _close_figures():
    yield
    plt.close("all")


def _flow_boxes():
    return [dict(label="x", detail="stream", kind="stream"),
            dict(label="SN", kind="neuron", group="branch"),
            dict(label="conv", detail="3×3\nBN", kind="conv", group="branch"),
            dict(label="+", shape="circle", kind="add"),
            dict(label="y", kind="stream")]


def test_plot_flow_diagram_draws_boxes_arrows_groups_and_skips():
    from matplotlib.patches import Circle, FancyBboxPatch

    ax = diagrams.plot_flow_diagram(_flow_boxes(), skips=[(0, 3)], palette={"add": "red"})
    frames = [p for p in ax.patches if isinstance(p, FancyBboxPatch)]
    boxes = [p for p in frames if p.get_facecolor()[3] > 0]
    groups = [p for p in frames if p.get_facecolor()[3] == 0]  # dashed, unfilled
    assert len(boxes) == 4 and len(groups) == 1  # one frame around the two "branch" boxes
    circles = [p for p in ax.patches if isinstance(p, Circle)]
    assert len(circles) == 1 and circles[0].get_facecolor()[:3] == (1.0, 0.0, 0.0)
    texts = [t.get_text() for t in ax.texts]
    for expected in ["x", "SN", "conv", "3×3\nBN", "+", "y", "branch"]:
        assert expected in texts
    # every box is joined to the next, and the skip ends in one more arrow
    assert sum(1 for child in ax.get_children() if type(child).__name__ == "Annotation") == 4 + 1
    assert len(ax.get_lines()) == 1  # the skip's path below the boxes
    legend = [t.get_text() for t in ax.get_legend().get_texts()]
    assert legend == ["stream", "neuron", "conv", "add"]  # one entry per kind, in order
    # boxes of the same kind share a colour, other kinds differ
    colours = [tuple(p.get_facecolor()) for p in boxes]
    assert colours[0] == colours[3] and len(set(colours)) == 3


def test_plot_flow_diagram_nests_skips_without_crossing():
    ax = diagrams.plot_flow_diagram(_flow_boxes(), skips=[(0, 4), (1, 3)])
    paths = sorted((np.ptp(line.get_xdata()), min(line.get_ydata())) for line in ax.get_lines())
    (inner_span, inner_depth), (outer_span, outer_depth) = paths
    assert inner_span < outer_span and outer_depth < inner_depth  # outer runs below inner


@pytest.mark.parametrize("boxes, skips, message", [
    ([], (), "at least one box"),
    ([dict(detail="no label")], (), "string 'label'"),
    ([dict(label="a", shape="hexagon")], (), "'box' or 'circle'"),
    ([dict(label="a"), dict(label="b")], [(1, 0)], "0 <= i < j < 2"),
    ([dict(label="a"), dict(label="b")], [(0, 2)], "0 <= i < j < 2"),
])
def test_plot_flow_diagram_rejects_bad_input(boxes, skips, message):
    with pytest.raises(ValueError, match=message):
        diagrams.plot_flow_diagram(boxes, skips=skips)


def test_plot_feature_pyramid_draws_maps_to_scale():
    from matplotlib.patches import Rectangle

    stages = [dict(name="stem", channels=64, height=56, kind="stem"),
              dict(name="stage 2", channels=192, height=28, kind="stage"),
              dict(name="stage 3", channels=384, height=14, width=7, kind="stage")]
    ax = diagrams.plot_feature_pyramid(stages, title="Ti")
    rectangles = [p for p in ax.patches if isinstance(p, Rectangle)]
    assert [(r.get_width(), r.get_height()) for r in rectangles] == [(64, 56), (192, 28), (384, 14)]
    lefts = [r.get_x() for r in rectangles]
    assert lefts == sorted(lefts)  # left to right, in order
    texts = [t.get_text() for t in ax.texts]
    assert "64×56×56\nN = 3,136" in texts and "384×14×7\nN = 98" in texts
    assert [t.get_text() for t in ax.get_legend().get_texts()] == ["stem", "stage"]
    assert ax.get_title() == "Ti"


def test_plot_feature_pyramids_on_shared_axes_share_one_scale():
    fig, axes = plt.subplots(2, 1, sharex=True, sharey=True)
    diagrams.plot_feature_pyramid([dict(name="a", channels=10, height=10)], ax=axes[0])
    diagrams.plot_feature_pyramid([dict(name="b", channels=1000, height=200)], ax=axes[1])
    low, high = axes[0].get_ylim()
    assert low < -100 and high > 100  # the first axes show the second's tall map too
    assert axes[0].get_xlim()[1] > 1000


@pytest.mark.parametrize("stages, message", [
    ([], "at least one"),
    ([dict(name="a", channels=3)], "missing \\['height'\\]"),
    ([dict(name="a", channels=0, height=4)], "positive integers"),
    ([dict(name="a", channels=3, height=4.5)], "positive integers"),
])
def test_plot_feature_pyramid_rejects_bad_input(stages, message):
    with pytest.raises(ValueError, match=message):
        diagrams.plot_feature_pyramid(stages)
