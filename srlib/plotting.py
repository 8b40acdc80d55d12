"""Plots for spikes, membranes, rates, attention and training curves, animations, one ``savefig``.

Every notebook and script draws through these helpers so the figures share one look
(:data:`STYLE`: seaborn's white grid, colour-blind palette) and land in one place
(:func:`savefig` writes ``<figures>/<name>.png``, the folder given by
:func:`srlib.paths.figures_dir`). The helpers take plain data (numpy arrays, torch tensors or
pandas DataFrames) and an optional matplotlib ``ax``; they draw on it (or on a new figure) and
return the axes, so callers can add titles or combine panels. Time is the first axis, as
everywhere in srlib: a trace is ``[T]``, a raster ``[T, N]``.

Nothing here changes process-wide state unless asked: :func:`set_style` applies the look
globally, :func:`style` applies it inside a ``with`` block only, and :func:`use_compact_png`
makes IPython show figures as compact PNGs.
"""

import base64
import contextlib
import io
import os
import re
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import seaborn as sns
from matplotlib.ticker import MaxNLocator
from PIL import Image

from srlib.paths import FIGURES_ENV, figures_dir

FIGURE_DPI = 110  # keeps a 6 x 3.5 inch figure near 660 x 385 px, well under 150 KB as PNG
FIGSIZE = (6.0, 3.5)  # inches, one panel
PNG_COLORS = 256  # palette PNG: ~3x smaller than matplotlib's RGBA output, no visible change
_NAME_PATTERN = re.compile(r"[A-Za-z0-9][A-Za-z0-9_\-]*")  # "01_lif_traces": no dots, no slashes
SPIKE_COLOR = "black"
THRESHOLD_COLOR = "tab:red"
STYLE = {"figure.figsize": FIGSIZE, "figure.dpi": FIGURE_DPI, "savefig.dpi": FIGURE_DPI,
         "axes.titlesize": "medium", "axes.labelsize": "medium", "legend.fontsize": "small",
         "legend.frameon": False, "image.cmap": "viridis"}


def _style_params() -> dict:
    """The rcParams of the repository's look: seaborn's notebook context, white grid,
    colour-blind palette, then :data:`STYLE`."""
    params = {**sns.plotting_context("notebook"), **sns.axes_style("whitegrid")}
    params["axes.prop_cycle"] = plt.cycler(color=sns.color_palette("colorblind"))
    return {**params, **STYLE}


def set_style() -> None:
    """Apply the repository's plotting look to every later figure (matplotlib's rcParams)."""
    plt.rcParams.update(_style_params())


@contextlib.contextmanager
def style():
    """The repository's look inside a ``with`` block only; rcParams are restored afterwards.

    For library code that draws into files (e.g. the trainer's curves) without touching the
    caller's settings.
    """
    with plt.rc_context(_style_params()):
        yield


def png_bytes(fig: plt.Figure, *, dpi: int = FIGURE_DPI) -> bytes:
    """Render ``fig`` as a compact PNG: tight bounding box, 256-colour palette, optimised.

    Plots use few distinct colours, so the palette keeps them (and anti-aliasing) intact while
    the file shrinks about threefold; used by :func:`savefig` and for notebook outputs.

    Args:
        fig: the matplotlib figure.
        dpi: resolution in dots per inch.
    """
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=dpi, bbox_inches="tight")
    image = Image.open(buffer).convert("RGB")  # drop alpha: figures have an opaque background
    palette = image.quantize(colors=PNG_COLORS, method=Image.Quantize.MEDIANCUT,
                             dither=Image.Dither.NONE)
    out = io.BytesIO()
    palette.save(out, format="png", optimize=True)  # Pillow writes no timestamp: reproducible
    return out.getvalue()


def use_compact_png() -> bool:
    """In IPython/Jupyter, show figures through :func:`png_bytes` (keeps notebooks small).

    Replaces the PNG formatter of the running IPython shell for matplotlib figures; call it once
    in a notebook's setup cell. Returns ``False`` (and does nothing) outside IPython.
    """
    try:
        from IPython import get_ipython
    except ImportError:
        return False
    shell = get_ipython()
    if shell is None or "image/png" not in shell.display_formatter.formatters:
        return False
    # The inline backend installs its own PNG formatter when it is first loaded, which happens
    # at the first figure: load it now so that ours, registered after, is the one that stays.
    plt.close(plt.figure())

    def _format(fig: plt.Figure) -> str | None:
        if not fig.axes:  # like IPython's own formatter: nothing to show
            return None
        return base64.b64encode(png_bytes(fig, dpi=fig.dpi)).decode("ascii")

    shell.display_formatter.formatters["image/png"].for_type(plt.Figure, _format)
    return True


def savefig(fig: plt.Figure, name: str, *, dpi: int = FIGURE_DPI) -> Path:
    """Save ``fig`` as ``<figures_dir()>/<name>.png`` and return the path.

    The PNG (see :func:`png_bytes`) is written to a temporary file and renamed, so a crash
    never leaves half a figure.

    Args:
        fig: the matplotlib figure.
        name: file stem such as ``"01_lif_traces"``: letters, digits, ``_`` and ``-`` only
            (no folder, no extension).
        dpi: resolution; the default keeps figures small enough to commit.
    """
    return write_figure_file(name, ".png", lambda tmp: tmp.write_bytes(png_bytes(fig, dpi=dpi)))


def write_figure_file(name: str, suffix: str, write) -> Path:
    """Call ``write(tmp_path)`` in the figures folder, then rename the file to
    ``<name><suffix>``; returns the final path. The temporary file never outlives the call.

    Args:
        name: file stem (letters, digits, ``_`` and ``-``; no folder, no extension).
        suffix: the extension with its dot, e.g. ``".png"``.
        write: a callable writing the whole file to the path it is given.
    """
    if not isinstance(name, str) or not _NAME_PATTERN.fullmatch(name):
        raise ValueError(f"figure name must be a bare stem like '01_lif_traces' (letters, digits, "
                         f"'_' or '-', no folder, no extension), got {name!r}")
    directory = figures_dir()
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / f"{name}{suffix}"
    tmp = directory / f".{name}.tmp{suffix}"  # keeps the extension (Pillow reads it)
    try:
        write(tmp)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    return path


def interact(show, **controls):
    """``ipywidgets.interact`` for a function that draws and returns a figure, shown once.

    ``show(**values)`` builds a figure and returns it (so an ordinary cell can call it with its
    defaults, save the figure and show it). Inside a widget the figure would appear twice: as
    the function's return value and again through the inline backend, which shows every figure
    still open when the call ends. The wrapper closes the figure after drawing, so only the
    returned one is shown, and old figures do not pile up in memory while a student moves the
    controls.

    Args:
        show: the drawing function; its signature gives the controls' names and defaults.
        **controls: widgets or abbreviations for ``ipywidgets.interact``, e.g.
            ``tau=FloatSlider(2.0, min=1.1, max=10.0, continuous_update=False)``.

    Returns:
        What ``ipywidgets.interact`` returns (the wrapped function, with its widget shown).
    """
    import functools

    from ipywidgets import interact as ipywidgets_interact

    @functools.wraps(show)
    def view(*args, **values):
        fig = show(*args, **values)
        plt.close(fig)
        return fig

    return ipywidgets_interact(view, **controls)


def _to_numpy(x, name: str, ndims: tuple[int, ...]) -> np.ndarray:
    """Convert a tensor/array-like to a float numpy array and check its rank."""
    if hasattr(x, "detach"):  # torch tensor, without importing torch here
        x = x.detach().cpu().numpy()
    array = np.asarray(x, dtype=float)
    if array.ndim not in ndims:
        raise ValueError(f"{name} must have {' or '.join(map(str, ndims))} dimensions, "
                         f"got shape {tuple(array.shape)}")
    return array


def _axes(ax: plt.Axes | None, figsize: tuple[float, float] = FIGSIZE) -> plt.Axes:
    """Return ``ax`` or the axes of a new figure."""
    if ax is None:
        _, ax = plt.subplots(figsize=figsize)
    return ax


def _require_columns(table: pd.DataFrame, columns: list[str], name: str) -> None:
    missing = [c for c in columns if c not in table.columns]
    if missing:
        raise ValueError(f"{name} needs columns {columns}; missing {missing}, "
                         f"got {list(table.columns)}")


def plot_trace(v, spikes=None, *, v_threshold: float | None = 1.0, inputs=None,
               ax: plt.Axes | None = None, label: str = "V[t]") -> plt.Axes:
    """Membrane potential over time, with the threshold and the spike times.

    Args:
        v: membrane potential ``[T]`` (e.g. ``ReferenceLIF.v_seq`` or the charge ``H[t]``).
        spikes: optional spikes ``[T]`` (0/1); drawn as ticks above the trace.
        v_threshold: drawn as a dashed line; ``None`` draws none.
        inputs: optional input current ``[T]``, drawn in grey behind the membrane.
        ax: axes to draw on; a new figure if ``None``.
        label: legend label of the membrane trace.

    Returns:
        The axes.
    """
    v = _to_numpy(v, "v", (1,))
    steps = np.arange(len(v))
    ax = _axes(ax)
    if inputs is not None:
        inputs = _to_numpy(inputs, "inputs", (1,))
        if len(inputs) != len(v):
            raise ValueError(f"inputs must have length {len(v)} like v, got {len(inputs)}")
        ax.step(steps, inputs, where="mid", color="0.6", lw=1, label="X[t]")
    ax.plot(steps, v, marker=".", lw=1.5, label=label)
    if v_threshold is not None:
        ax.axhline(v_threshold, ls="--", lw=1, color=THRESHOLD_COLOR, label="V_threshold")
    if spikes is not None:
        spikes = _to_numpy(spikes, "spikes", (1,))
        if len(spikes) != len(v):
            raise ValueError(f"spikes must have length {len(v)} like v, got {len(spikes)}")
        drawn = [v] + ([inputs] if inputs is not None else [])
        drawn += [[v_threshold]] if v_threshold is not None else []
        low = min(np.nanmin(d) for d in drawn)
        top = max(np.nanmax(d) for d in drawn)
        height = 0.12 * max(top - low, 1e-6)  # spike ticks sit in a band above everything else
        times = steps[spikes > 0]
        ax.vlines(times, top + height * 0.5, top + height * 1.5, color=SPIKE_COLOR, lw=1.5,
                  label=f"spikes ({len(times)})")
    ax.set_xlabel("time step t")
    ax.set_ylabel("membrane potential")
    ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0))  # outside: never hides the trace
    return ax


def plot_raster(spikes, *, ax: plt.Axes | None = None, color: str = SPIKE_COLOR,
                marker_size: float = 4.0) -> plt.Axes:
    """Spike raster: one row per neuron, a dot at every step it fires.

    Args:
        spikes: ``[T, N]`` (time-major), nonzero where a neuron spikes.
        ax: axes to draw on; a new figure if ``None``.
        color: dot colour.
        marker_size: dot size in points.

    Returns:
        The axes.
    """
    spikes = _to_numpy(spikes, "spikes", (2,))
    T, N = spikes.shape
    times, neurons = np.nonzero(spikes)  # [num_spikes] each
    ax = _axes(ax)
    ax.scatter(times, neurons, s=marker_size ** 2, marker="|", color=color, linewidths=1.2)
    ax.set_xlim(-0.5, T - 0.5)
    ax.set_ylim(-0.5, N - 0.5)
    ax.yaxis.set_major_locator(MaxNLocator(integer=True))  # neurons are whole numbers
    ax.grid(False, axis="y")
    ax.set_xlabel("time step t")
    ax.set_ylabel("neuron")
    ax.set_title(f"{N} neurons, {T} steps, firing rate {spikes.astype(bool).mean():.3f}")
    return ax


def plot_fi_curve(inputs, rates, *, closed_form=None, ax: plt.Axes | None = None,
                  label: str = "simulated") -> plt.Axes:
    """Firing rate against constant input (the f-I curve), optionally with a closed form.

    Args:
        inputs: constant input values ``[K]``.
        rates: measured firing rates ``[K]`` (spikes per step).
        closed_form: optional predicted rates ``[K]``, drawn as a line over the measured dots.
        ax: axes to draw on; a new figure if ``None``.
        label: legend label of the measured rates.

    Returns:
        The axes.
    """
    inputs = _to_numpy(inputs, "inputs", (1,))
    rates = _to_numpy(rates, "rates", (1,))
    if rates.shape != inputs.shape:
        raise ValueError(f"rates must have shape {inputs.shape} like inputs, got {rates.shape}")
    ax = _axes(ax)
    if closed_form is not None:
        closed_form = _to_numpy(closed_form, "closed_form", (1,))
        if closed_form.shape != inputs.shape:
            raise ValueError(f"closed_form must have shape {inputs.shape}, "
                             f"got {closed_form.shape}")
        ax.plot(inputs, closed_form, lw=2, color="0.5", label="closed form")
    ax.plot(inputs, rates, ls="none", marker="o", ms=3.5, label=label)
    ax.set_xlabel("constant input X")
    ax.set_ylabel("firing rate (spikes / step)")
    ax.legend(loc="upper left")
    return ax


def plot_curves(metrics: pd.DataFrame, *, axes=None) -> plt.Figure:
    """Training curves: loss (train/test) and accuracy (train/test) against epoch.

    Args:
        metrics: one row per epoch with column ``epoch`` and any of ``train_loss``,
            ``test_loss``, ``train_acc``, ``test_acc`` (missing or all-NaN columns are skipped;
            the accuracy panel is dropped when there is no accuracy).
        axes: optional sequence of axes, one per panel drawn (loss first).

    Returns:
        The figure.
    """
    _require_columns(metrics, ["epoch"], "metrics")
    panels = {"loss": ["train_loss", "test_loss"], "accuracy": ["train_acc", "test_acc"]}
    panels = {title: [c for c in cols if c in metrics and metrics[c].notna().any()]
              for title, cols in panels.items()}
    panels = {title: cols for title, cols in panels.items() if cols}
    if not panels:
        raise ValueError("metrics has none of the columns train_loss, test_loss, train_acc, "
                         f"test_acc with values; got {list(metrics.columns)}")
    if axes is None:
        fig, axes = plt.subplots(1, len(panels), figsize=(FIGSIZE[0], FIGSIZE[1] * 0.9),
                                 squeeze=False)
        axes = axes[0]
    if len(axes) != len(panels):
        raise ValueError(f"axes must hold {len(panels)} axes ({list(panels)}), got {len(axes)}")
    for ax, (title, columns) in zip(axes, panels.items()):
        for column in columns:
            rows = metrics[["epoch", column]].dropna()
            split = column.split("_")[0]  # "train" or "test": same colour in both panels
            ax.plot(rows["epoch"], rows[column], marker="o", ms=3, label=split,
                    ls="-" if split == "train" else "--", color="C0" if split == "train" else "C1")
        ax.set_xlabel("epoch")
        ax.set_ylabel("accuracy (%)" if title == "accuracy" else title)  # the engine logs %
        ax.legend()
    fig = axes[0].figure
    fig.tight_layout()
    return fig


def plot_layer_rates(table: pd.DataFrame, *, by: str = "layer",
                     ax: plt.Axes | None = None) -> plt.Axes:
    """Firing rate of every spiking layer, coloured by kind (e.g. ``"attn"``, ``"ffn"``).

    Args:
        table: one row per layer with columns ``name``, ``rate``, ``kind``, ``stage``, in network
            order (e.g. from a firing-rate monitor).
        by: ``"layer"`` draws one bar per layer with stage boundaries; ``"stage"`` draws every
            layer's rate as a dot in a strip per stage.
        ax: axes to draw on; a new figure if ``None``.

    Returns:
        The axes.
    """
    _require_columns(table, ["name", "rate", "kind", "stage"], "table")
    if len(table) == 0:
        raise ValueError("table has no rows")
    table = table.reset_index(drop=True).assign(stage=lambda t: t["stage"].astype(str))
    if by == "stage":
        ax = _axes(ax)
        sns.stripplot(data=table, x="stage", y="rate", hue="kind", ax=ax, jitter=0.25, size=4)
        ax.set_xlabel("stage")
    elif by == "layer":
        ax = _axes(ax, (max(FIGSIZE[0], 0.12 * len(table)), FIGSIZE[1]))
        sns.barplot(data=table.assign(position=table.index), x="position", y="rate", hue="kind",
                    dodge=False, ax=ax, native_scale=True, width=0.85)
        boundaries = np.flatnonzero(table["stage"].to_numpy()[1:] != table["stage"].to_numpy()[:-1])
        for b in boundaries:
            ax.axvline(b + 0.5, color="0.4", lw=0.8, ls=":")
        if len(table) <= 30:  # readable names; otherwise index ticks only
            ax.set_xticks(table.index, table["name"], rotation=90, fontsize="x-small")
        ax.set_xlabel("layer (network order; dotted lines separate stages)")
    else:
        raise ValueError(f"by must be 'layer' or 'stage', got {by!r}")
    ax.set_ylabel("firing rate")
    ax.set_ylim(bottom=0)
    return ax


def _image(array: np.ndarray, *, ax: plt.Axes | None, title: str | None, cmap: str,
           colorbar_label: str, vmin=None, vmax=None) -> plt.Axes:
    ax = _axes(ax, (4.2, 3.5))
    image = ax.imshow(array, cmap=cmap, vmin=vmin, vmax=vmax, interpolation="nearest")
    ax.figure.colorbar(image, ax=ax, label=colorbar_label, fraction=0.046, pad=0.04)
    ax.grid(False)
    if title:
        ax.set_title(title)
    return ax


def plot_attention_map(attention, *, ax: plt.Axes | None = None, title: str | None = None,
                       cmap: str = "magma") -> plt.Axes:
    """An attention matrix ``[N_kv, N]`` (keys x queries) or a spatial map ``[H, W]``.

    Args:
        attention: 2-D array; a DSSA map after averaging over time, batch and heads.
        ax: axes to draw on; a new figure if ``None``.
        title: optional title.
        cmap: matplotlib colour map.

    Returns:
        The axes.
    """
    attention = _to_numpy(attention, "attention", (2,))
    return _image(attention, ax=ax, title=title, cmap=cmap, colorbar_label="attention")


def plot_rate_map(rates, *, ax: plt.Axes | None = None, title: str | None = None,
                  cmap: str = "viridis") -> plt.Axes:
    """Spatial firing-rate map: ``[H, W]``, or ``[C, H, W]`` averaged over channels.

    Args:
        rates: firing rates in [0, 1], ``[H, W]`` or ``[C, H, W]``.
        ax: axes to draw on; a new figure if ``None``.
        title: optional title.
        cmap: matplotlib colour map.

    Returns:
        The axes.
    """
    rates = _to_numpy(rates, "rates", (2, 3))
    if rates.ndim == 3:
        rates = rates.mean(axis=0)  # [C, H, W] -> [H, W]
    return _image(rates, ax=ax, title=title, cmap=cmap, colorbar_label="firing rate", vmin=0.0,
                  vmax=max(float(rates.max()), 1e-6))


def plot_image(image, *, ax: plt.Axes | None = None, title: str | None = None) -> plt.Axes:
    """An input image as a picture: min-max scaled to [0, 1], one channel in grey.

    Normalised inputs have no fixed range, so the image's own minimum is black and its maximum
    white (a constant image is drawn black).

    Args:
        image: ``[C, H, W]`` with 1 or 3 channels (channels first, as models take it), or
            ``[H, W]``.
        ax: axes to draw on; a new figure if ``None``.
        title: optional title.

    Returns:
        The axes (axis lines off).
    """
    image = _to_numpy(image, "image", (2, 3))
    if image.ndim == 3:
        if image.shape[0] not in (1, 3):
            raise ValueError(f"image must be [C, H, W] with 1 or 3 channels, or [H, W]; "
                             f"got shape {tuple(image.shape)}")
        image = image.transpose(1, 2, 0)  # [C, H, W] -> [H, W, C]
        if image.shape[-1] == 1:
            image = image[..., 0]  # [H, W]
    low, high = float(image.min()), float(image.max())
    picture = (image - low) / (high - low) if high > low else np.zeros_like(image)
    ax = _axes(ax, (3.0, 3.0))
    ax.imshow(picture, cmap="gray", vmin=0.0, vmax=1.0, interpolation="nearest")
    ax.axis("off")
    if title:
        ax.set_title(title)
    return ax


def plot_raster_by_image(spikes, *, ax: plt.Axes | None = None, image: int | None = None,
                         step: int | None = None, color: str = SPIKE_COLOR,
                         marker_size: float = 4.0) -> plt.Axes:
    """Rasters of several images side by side: image after image, ``T`` columns each.

    Column ``b T + t`` holds step ``t`` of image ``b``; dotted lines separate the images. One
    image can be highlighted (a shaded band), and one of its steps marked (its spikes in red).

    Args:
        spikes: ``[T, B, N]`` (time-major), nonzero where neuron ``n`` fires at step ``t`` on
            image ``b``.
        ax: axes to draw on; a new figure if ``None``.
        image: index of the image to highlight, or ``None``.
        step: with ``image``, the step to mark, or ``None``.
        color: colour of the spikes.
        marker_size: tick size in points.

    Returns:
        The axes.
    """
    spikes = _to_numpy(spikes, "spikes", (3,))
    T, B, N = spikes.shape
    if image is not None and not 0 <= image < B:
        raise ValueError(f"image must be in [0, {B}) for spikes of {B} images, got {image}")
    if step is not None and (image is None or not 0 <= step < T):
        raise ValueError(f"step needs an image and must be in [0, {T}), got step={step}, "
                         f"image={image}")
    raster = spikes.transpose(1, 0, 2).reshape(B * T, N)  # [T, B, N] -> [B * T, N], by image
    ax = plot_raster(raster, ax=ax, color=color, marker_size=marker_size)
    ax.grid(False, axis="x")  # the ticks mark the middle of each image, not a boundary
    for b in range(1, B):
        ax.axvline(b * T - 0.5, color="0.6", lw=0.8, ls=":")
    ax.set_xticks(np.arange(B) * T + (T - 1) / 2, [f"#{b}" for b in range(B)])
    ax.set_xlabel(f"image ({T} steps each)")
    ax.set_title(f"{N} neurons, {B} images x {T} steps, "
                 f"firing rate {raster.astype(bool).mean():.3f}")
    if image is not None:
        ax.axvspan(image * T - 0.5, (image + 1) * T - 0.5, color="tab:orange", alpha=0.12, lw=0)
    if step is not None:
        column = image * T + step
        ax.axvspan(column - 0.5, column + 0.5, color=THRESHOLD_COLOR, alpha=0.12, lw=0)
        neurons = np.flatnonzero(raster[column])  # [spikes at that step]
        ax.scatter(np.full(len(neurons), column), neurons, s=(1.3 * marker_size) ** 2,
                   marker="|", color=THRESHOLD_COLOR, linewidths=1.8)
    return ax


def plot_runs(table: pd.DataFrame, *, group: str, value: str, ax: plt.Axes | None = None,
              order=None, colors=None, label_format: str | None = "{:.3f}") -> plt.Axes:
    """Every run as a point, grouped, with each group's mean (a short bar) and range (a line).

    For results of a few seeds: all points are drawn, none hidden behind a bar. Points of one
    group are spread sideways by fixed offsets (no random jitter), so equal values stay visible
    and the figure is the same at every call.

    Args:
        table: one row per run, with columns ``group`` and ``value``.
        group: column naming the group of each run (e.g. ``"attention"``); one x position each.
        value: column with the number to show (e.g. ``"test_accuracy"``).
        ax: axes to draw on; a new figure if ``None``.
        order: the groups, left to right (default: in order of first appearance).
        colors: one matplotlib colour per group (default: the colour cycle).
        label_format: format of the mean written next to each bar; ``None`` writes nothing.

    Returns:
        The axes.
    """
    _require_columns(table, [group, value], "plot_runs")
    order = list(pd.unique(table[group])) if order is None else list(order)
    unknown = sorted(set(table[group]) - set(order), key=str)
    if unknown:
        raise ValueError(f"order must list every group of column {group!r}; missing {unknown}")
    if colors is None:
        colors = [f"C{index}" for index in range(len(order))]
    if len(colors) != len(order):
        raise ValueError(f"colors needs one entry per group ({len(order)}), got {len(colors)}")
    ax = _axes(ax)
    for position, (name, color) in enumerate(zip(order, colors)):
        values = table.loc[table[group] == name, value].to_numpy(dtype=float)  # [runs]
        if len(values) == 0:
            continue
        offsets = np.linspace(-0.15, 0.15, len(values)) if len(values) > 1 else np.zeros(1)
        ax.scatter(position + offsets, values, color=color, s=28, zorder=3,
                   edgecolor="white", linewidth=0.5)
        mean = float(values.mean())
        ax.hlines(mean, position - 0.25, position + 0.25, color=color, lw=2.5, zorder=2)
        ax.vlines(position + 0.3, values.min(), values.max(), color=color, lw=1.2, zorder=2)
        if label_format is not None:
            ax.annotate(label_format.format(mean), (position + 0.34, mean), va="center",
                        fontsize="x-small", color=color)
    ax.set_xticks(range(len(order)), [str(name) for name in order])
    ax.set_xlim(-0.6, len(order) - 0.4)
    ax.set_ylabel(value)
    return ax


def plot_map_grid(maps, *, axes=None, share: str = "column", cmap: str = "magma",
                  column_titles=None, colorbar_label: str = "", vmin: float | None = None):
    """A grid of maps on shared colour scales: the same colour means the same value wherever
    panels are compared.

    Args:
        maps: ``[R, C, H, W]``: row ``r``, column ``c`` is one map (e.g. rows = images,
            columns = mechanisms).
        axes: an ``[R, C]`` array of axes to draw on; a new figure if ``None``.
        share: ``"column"``: one colour scale and colour bar per column (the maps of a column
            are compared, columns have different units); ``"all"``: one scale and one bar for
            the whole grid.
        cmap: matplotlib colour map.
        column_titles: one title per column, written above the first row.
        colorbar_label: label of the colour bar(s).
        vmin: lower end of every scale (default: the minimum of the maps it covers); the upper
            end is always their maximum.

    Returns:
        The ``[R, C]`` array of axes.
    """
    maps = _to_numpy(maps, "maps", (4,))
    R, C = maps.shape[:2]
    if share not in ("column", "all"):
        raise ValueError(f"share must be 'column' or 'all', got {share!r}")
    if column_titles is not None and len(column_titles) != C:
        raise ValueError(f"column_titles needs one entry per column ({C}), "
                         f"got {len(column_titles)}")
    if axes is None:
        _, axes = plt.subplots(R, C, figsize=(2.3 * C + 0.6, 2.1 * R + 0.9), squeeze=False,
                               layout="constrained")
    axes = np.asarray(axes, dtype=object)
    if axes.shape != (R, C):
        raise ValueError(f"axes must be an array of {R} x {C} axes for maps of shape "
                         f"{tuple(maps.shape)}, got shape {axes.shape}")
    columns = [maps.reshape(R * C, -1)] if share == "all" else [maps[:, c] for c in range(C)]
    limits = [(float(part.min()) if vmin is None else vmin, float(part.max()))
              for part in columns]
    for c in range(C):
        low, high = limits[0] if share == "all" else limits[c]
        high = max(high, low + 1e-12)  # a constant map still gets a valid scale
        for r in range(R):
            image = axes[r, c].imshow(maps[r, c], cmap=cmap, vmin=low, vmax=high,
                                      interpolation="nearest")
            axes[r, c].set_xticks([])
            axes[r, c].set_yticks([])
            axes[r, c].grid(False)
        if column_titles is not None:
            axes[0, c].set_title(column_titles[c])
        if share == "column":
            axes[0, c].figure.colorbar(image, ax=list(axes[:, c]), location="bottom",
                                       label=colorbar_label, fraction=0.05, pad=0.04,
                                       shrink=0.9)
    if share == "all":
        axes[0, 0].figure.colorbar(image, ax=list(axes.ravel()), label=colorbar_label,
                                   fraction=0.03, pad=0.02)
    return axes
