"""Tests for srlib.plotting: savefig's naming and location, and every helper on small inputs."""

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import pytest  # noqa: E402
import torch  # noqa: E402

import srlib  # noqa: E402
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
