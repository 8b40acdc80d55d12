"""Tests for srlib.plotting: savefig's naming and location, and every helper on small inputs."""

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import pytest  # noqa: E402
import torch  # noqa: E402

from srlib import plotting  # noqa: E402

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


@pytest.fixture(autouse=True)
def _close_figures():
    yield
    plt.close("all")


@pytest.fixture
def figures(tmp_path, monkeypatch):
    monkeypatch.setenv(plotting.FIGURES_ENV, str(tmp_path / "figs"))
    return tmp_path / "figs"


def test_savefig_writes_small_png_of_the_given_name(figures):
    plotting.set_style()
    ax = plotting.plot_raster(np.eye(8))
    path = plotting.savefig(ax.figure, "01_test-figure")
    assert path == figures / "01_test-figure.png"
    assert path.read_bytes()[:8] == PNG_SIGNATURE
    assert path.stat().st_size < 150_000
    assert [p.name for p in figures.iterdir()] == ["01_test-figure.png"]  # no temporary left
    image = plt.imread(path)  # [H, W, 4]
    width = image.shape[1]
    assert 300 < width < 900, f"width {width}px: dpi/figsize drifted"


@pytest.mark.parametrize("name", ["a/b", "..", "../up", "x.png", "", " spaced", "fig\\x", ".h"])
def test_savefig_rejects_bad_names(figures, name):
    fig, _ = plt.subplots()
    with pytest.raises(ValueError, match="figure name"):
        plotting.savefig(fig, name)
    assert not figures.exists() or not any(figures.iterdir())


def test_plot_trace_draws_membrane_threshold_and_spikes():
    v = torch.tensor([0.0, 0.5, 0.75, 0.0, 0.5])
    spikes = torch.tensor([0.0, 0.0, 0.0, 1.0, 0.0])
    ax = plotting.plot_trace(v, spikes, v_threshold=1.0, inputs=torch.ones(5))
    assert isinstance(ax, plt.Axes)
    membrane = [line for line in ax.get_lines() if line.get_label() == "V[t]"][0]
    np.testing.assert_allclose(membrane.get_ydata(), v.numpy())
    labels = ax.get_legend_handles_labels()[1]
    assert "spikes (1)" in labels and "V_threshold" in labels
    with pytest.raises(ValueError, match="spikes must have length 5"):
        plotting.plot_trace(v, torch.zeros(4))
    with pytest.raises(ValueError, match="1 dimensions"):
        plotting.plot_trace(torch.zeros(2, 3))


def test_plot_raster_places_one_dot_per_spike():
    spikes = torch.zeros(6, 3)  # [T, N]
    spikes[[0, 2, 5], [1, 1, 2]] = 1
    _, ax = plt.subplots()
    assert plotting.plot_raster(spikes, ax=ax) is ax
    offsets = ax.collections[0].get_offsets()  # [num_spikes, 2] as (t, neuron)
    assert sorted(map(tuple, np.asarray(offsets).tolist())) == [(0, 1), (2, 1), (5, 2)]
    with pytest.raises(ValueError, match="2 dimensions"):
        plotting.plot_raster(torch.zeros(4))


def test_plot_fi_curve_with_closed_form():
    inputs = np.linspace(0, 3, 7)
    rates = np.clip(inputs / 4, 0, 1)
    ax = plotting.plot_fi_curve(inputs, rates, closed_form=rates)
    assert len(ax.get_lines()) == 2
    with pytest.raises(ValueError, match="rates must have shape"):
        plotting.plot_fi_curve(inputs, rates[:3])


def test_plot_curves_tolerates_missing_columns():
    metrics = pd.DataFrame({"epoch": [0, 1, 2], "train_loss": [2.0, 1.5, 1.0],
                            "test_loss": [2.1, np.nan, 1.2], "test_acc": [0.3, 0.5, 0.6]})
    fig = plotting.plot_curves(metrics)
    assert isinstance(fig, plt.Figure) and len(fig.axes) == 2
    assert len(fig.axes[0].get_lines()) == 2 and len(fig.axes[1].get_lines()) == 1
    np.testing.assert_allclose(fig.axes[0].get_lines()[1].get_ydata(), [2.1, 1.2])  # NaN dropped
    fig = plotting.plot_curves(metrics[["epoch", "train_loss"]])
    assert len(fig.axes) == 1
    with pytest.raises(ValueError, match="none of the columns"):
        plotting.plot_curves(metrics[["epoch"]])
    with pytest.raises(ValueError, match="missing \\['epoch'\\]"):
        plotting.plot_curves(metrics.drop(columns="epoch"))


def _rates_table(num_layers: int = 12) -> pd.DataFrame:
    return pd.DataFrame({"name": [f"layers.{i // 4}.{i % 4}" for i in range(num_layers)],
                         "rate": np.linspace(0.05, 0.3, num_layers),
                         "kind": ["attn", "ffn"] * (num_layers // 2),
                         "stage": [i // 4 for i in range(num_layers)]})


def test_plot_layer_rates_bar_and_strip():
    table = _rates_table()
    ax = plotting.plot_layer_rates(table)
    heights = sorted(p.get_height() for p in ax.patches if p.get_height() > 0)
    np.testing.assert_allclose(heights, sorted(table["rate"]))
    assert [t.get_text() for t in ax.get_xticklabels()] == list(table["name"])
    ax = plotting.plot_layer_rates(table, by="stage")
    points = np.concatenate([c.get_offsets()[:, 1] for c in ax.collections])
    np.testing.assert_allclose(sorted(points), sorted(table["rate"]))
    with pytest.raises(ValueError, match="missing \\['kind'\\]"):
        plotting.plot_layer_rates(table.drop(columns="kind"))
    with pytest.raises(ValueError, match="by must be"):
        plotting.plot_layer_rates(table, by="head")


def test_plot_attention_map_and_rate_map():
    attention = torch.rand(4, 16)  # [N_kv, N]
    ax = plotting.plot_attention_map(attention, title="DSSA")
    np.testing.assert_allclose(ax.images[0].get_array(), attention.numpy(), rtol=1e-6)
    assert ax.get_title() == "DSSA"
    rates = torch.rand(3, 5, 6)  # [C, H, W]
    ax = plotting.plot_rate_map(rates)
    np.testing.assert_allclose(ax.images[0].get_array(), rates.mean(0).numpy(), rtol=1e-6)
    assert plotting.plot_rate_map(rates[0]).images[0].get_array().shape == (5, 6)
    with pytest.raises(ValueError, match="2 or 3 dimensions"):
        plotting.plot_rate_map(torch.rand(2, 3, 4, 5))
    with pytest.raises(ValueError, match="2 dimensions"):
        plotting.plot_attention_map(torch.rand(16))


def test_png_bytes_is_a_small_faithful_palette_png():
    import io

    from PIL import Image

    fig, ax = plt.subplots(figsize=(4, 3))
    ax.plot(np.sin(np.linspace(0, 6, 200)), label="sin")
    ax.legend()
    compact = plotting.png_bytes(fig, dpi=100)
    reference = io.BytesIO()
    fig.savefig(reference, format="png", dpi=100, bbox_inches="tight")  # matplotlib's RGBA PNG
    image, original = Image.open(io.BytesIO(compact)), Image.open(reference)
    assert image.mode == "P" and image.size == original.size
    assert len(compact) < 0.7 * len(reference.getvalue())
    difference = np.abs(np.asarray(image.convert("RGB"), dtype=float)
                        - np.asarray(original.convert("RGB"), dtype=float))  # [H, W, 3]
    assert difference.mean() < 0.1 and np.percentile(difference, 99.9) < 8  # measured 0.006, 1


def test_use_compact_png_shows_compact_pngs_in_ipython(monkeypatch):
    import base64
    import types

    import IPython
    from IPython.core.formatters import DisplayFormatter

    shell = types.SimpleNamespace(display_formatter=DisplayFormatter())
    monkeypatch.setattr(IPython, "get_ipython", lambda: shell)
    plotting.set_style()  # the look only: no PNG printer registered for figures
    fig, ax = plt.subplots(figsize=(3, 2))
    ax.plot([0, 1], [1, 0])
    assert "image/png" not in shell.display_formatter.format(fig)[0]
    assert plotting.use_compact_png()
    data, _ = shell.display_formatter.format(fig)
    assert base64.b64decode(data["image/png"]) == plotting.png_bytes(fig, dpi=fig.dpi)
    assert "image/png" not in shell.display_formatter.format(plt.figure())[0]  # empty: no image


def test_use_compact_png_outside_ipython_does_nothing(monkeypatch):
    import IPython

    monkeypatch.setattr(IPython, "get_ipython", lambda: None)
    assert plotting.use_compact_png() is False


def test_style_applies_the_look_inside_the_block_only():
    with plt.rc_context({"axes.grid": False, "figure.dpi": 50}):
        with plotting.style():
            assert plt.rcParams["axes.grid"] is True
            assert plt.rcParams["figure.dpi"] == plotting.FIGURE_DPI
        assert plt.rcParams["axes.grid"] is False and plt.rcParams["figure.dpi"] == 50


def test_plot_image_scales_min_to_black_and_max_to_white():
    image = torch.randn(1, 5, 6)  # [C, H, W], one channel
    ax = plotting.plot_image(image, title="one channel")
    drawn = np.asarray(ax.images[0].get_array())
    expected = ((image[0] - image.min()) / (image.max() - image.min())).numpy()
    np.testing.assert_allclose(drawn, expected, rtol=1e-6, atol=1e-7)
    assert ax.images[0].get_cmap().name == "gray" and ax.images[0].get_clim() == (0.0, 1.0)
    colour = plotting.plot_image(torch.rand(3, 4, 4)).images[0].get_array()
    assert colour.shape == (4, 4, 3) and colour.min() == 0.0 and colour.max() == 1.0
    assert np.all(plotting.plot_image(np.full((4, 4), 2.0)).images[0].get_array() == 0.0)
    with pytest.raises(ValueError, match="1 or 3 channels"):
        plotting.plot_image(torch.rand(2, 4, 4))


def test_plot_raster_by_image_puts_step_t_of_image_b_in_column_b_t_plus_t():
    rng = np.random.default_rng(0)
    spikes = rng.random((3, 2, 5)) < 0.4  # [T, B, N]
    T, B, N = spikes.shape
    ax = plotting.plot_raster_by_image(spikes, image=1, step=2)
    expected = sorted((b * T + t, n) for t in range(T) for b in range(B) for n in range(N)
                      if spikes[t, b, n])  # naive loop over every (step, image, neuron)
    ticks, marked = ax.collections[0], ax.collections[1]
    assert sorted(map(tuple, ticks.get_offsets().tolist())) == expected
    assert sorted(map(tuple, marked.get_offsets().tolist())) == [
        (1 * T + 2, n) for n in range(N) if spikes[2, 1, n]]
    assert sum(line.get_linestyle() == ":" for line in ax.lines) == B - 1
    assert ax.get_xlim() == (-0.5, B * T - 0.5)
    with pytest.raises(ValueError, match="step needs an image"):
        plotting.plot_raster_by_image(spikes, step=0)
    with pytest.raises(ValueError, match="image must be in"):
        plotting.plot_raster_by_image(spikes, image=2)


def test_plot_runs_draws_every_run_its_group_mean_and_range():
    table = pd.DataFrame({"attention": ["dssa"] * 3 + ["ssa"] * 3 + ["vanilla"] * 2,
                          "accuracy": [0.5, 0.6, 0.7, 0.4, 0.4, 0.46, 0.3, 0.5]})
    ax = plotting.plot_runs(table, group="attention", value="accuracy",
                            order=["vanilla", "dssa", "ssa"])
    assert [tick.get_text() for tick in ax.get_xticklabels()] == ["vanilla", "dssa", "ssa"]
    points = [collection.get_offsets() for collection in ax.collections
              if type(collection).__name__ == "PathCollection"]
    assert [len(p) for p in points] == [2, 3, 3]  # one point per run, none hidden
    np.testing.assert_allclose(points[1][:, 1], [0.5, 0.6, 0.7])
    np.testing.assert_allclose(points[1][:, 0], [0.85, 1.0, 1.15])  # fixed offsets at x = 1
    np.testing.assert_allclose(points[2][:2, 1], [0.4, 0.4])  # equal values stay two points
    assert len(set(points[2][:2, 0])) == 2
    means = [c for c in ax.collections if type(c).__name__ == "LineCollection"][0::2]
    np.testing.assert_allclose([m.get_segments()[0][0, 1] for m in means], [0.4, 0.6, 0.42])
    ranges = [c for c in ax.collections if type(c).__name__ == "LineCollection"][1::2]
    np.testing.assert_allclose(ranges[2].get_segments()[0][:, 1], [0.4, 0.46])
    with pytest.raises(ValueError, match="missing"):
        plotting.plot_runs(table, group="attention", value="accuracy", order=["dssa", "ssa"])
    with pytest.raises(ValueError, match="needs columns"):
        plotting.plot_runs(table, group="mechanism", value="accuracy")


def test_plot_map_grid_shares_one_scale_per_column_or_for_all():
    maps = np.arange(2 * 3 * 4 * 5, dtype=float).reshape(2, 3, 4, 5)  # [R, C, H, W]
    axes = plotting.plot_map_grid(maps, column_titles=["a", "b", "c"])
    assert axes.shape == (2, 3) and axes[0, 1].get_title() == "b"
    for c in range(3):
        column = maps[:, c]
        for r in range(2):
            assert axes[r, c].images[0].get_clim() == (column.min(), column.max())
            np.testing.assert_array_equal(axes[r, c].images[0].get_array(), maps[r, c])
    axes = plotting.plot_map_grid(maps, share="all", vmin=0.0)
    assert {ax.images[0].get_clim() for ax in axes.ravel()} == {(0.0, maps.max())}
    constant = plotting.plot_map_grid(np.zeros((1, 1, 2, 2)))  # no spike at all: still drawn
    low, high = constant[0, 0].images[0].get_clim()
    assert low == 0.0 and high > low
    _, given = plt.subplots(2, 4)
    with pytest.raises(ValueError, match="2 x 3 axes"):
        plotting.plot_map_grid(maps, axes=given)
    plotting.plot_map_grid(maps, axes=given[:, 1:])  # a part of a larger figure
    assert given[1, 3].images[0].get_clim() == (maps[:, 2].min(), maps[:, 2].max())
    with pytest.raises(ValueError, match="share must be"):
        plotting.plot_map_grid(maps, share="row")
    with pytest.raises(ValueError, match="4 dimensions"):
        plotting.plot_map_grid(maps[0])


def test_interact_shows_the_figure_once_and_closes_it():
    """The wrapped function keeps the drawing function's signature (ipywidgets builds controls
    from it), returns the figure for ipywidgets to show, and leaves no figure open for the
    inline backend to show a second time."""
    import inspect

    from ipywidgets import FloatSlider

    def show_line(slope=1.0, label="line"):
        fig, ax = plt.subplots()
        ax.plot([0, 1], [0, slope], label=label)
        return fig

    before = set(plt.get_fignums())
    view = plotting.interact(show_line, slope=FloatSlider(1.0, min=0.0, max=2.0))
    assert list(inspect.signature(view).parameters) == ["slope", "label"]
    fig = view(slope=0.5)
    assert fig.axes[0].lines[0].get_ydata()[1] == 0.5
    assert set(plt.get_fignums()) == before  # nothing left open: shown once, by ipywidgets
