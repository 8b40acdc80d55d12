"""Spikes over time as animations: one frame per time step, for notebooks and the docs site.

Built on matplotlib's ``FuncAnimation``. In a notebook, :func:`to_html` embeds the frames as
JavaScript-driven PNGs (``to_jshtml``: no ffmpeg needed, plays offline, on GitHub it shows as
static HTML); :func:`save_gif` writes a small GIF into the figures folder through Pillow. Every
frame of one animation shares one colour scale, so brightness means the same at every step.
"""

import re

import matplotlib.pyplot as plt
import numpy as np
from matplotlib import animation
from matplotlib.ticker import MaxNLocator

from srlib.plotting import SPIKE_COLOR, _to_numpy, write_figure_file

ANIMATION_DPI = 72  # frames are embedded in notebooks: keep them light
INTERVAL_MS = 700  # one time step per 0.7 s: slow enough to follow a spike


def animate_panels(frames, *, titles=None, suptitle: str = "", cmap: str = "magma",
                   vmin: float | None = None, vmax: float | None = None,
                   colorbar_label: str = "", panel_size: float = 2.0) -> animation.FuncAnimation:
    """Animate maps over time: frame ``t`` shows ``frames[t]``, one panel per map.

    Args:
        frames: ``[T, H, W]`` (one panel) or ``[T, P, H, W]`` (P panels side by side, e.g. the
            heads of a DSSA layer).
        titles: one title per panel (``P`` strings).
        suptitle: figure title; ``{t}`` in it is replaced by the step (``"step {t}"``).
        cmap: matplotlib colour map.
        vmin: lower end of the shared colour scale (default: the minimum over all frames).
        vmax: upper end (default: the maximum over all frames).
        colorbar_label: label of the shared colour bar.
        panel_size: inches per panel.

    Returns:
        The animation (``T`` frames).
    """
    frames = _to_numpy(frames, "frames", (3, 4))
    if frames.ndim == 3:
        frames = frames[:, None]  # [T, 1, H, W]
    T, P = frames.shape[:2]
    if titles is not None and len(titles) != P:
        raise ValueError(f"titles needs one entry per panel ({P}), got {len(titles)}")
    vmin = float(frames.min()) if vmin is None else vmin
    vmax = float(frames.max()) if vmax is None else vmax
    fig, axes = plt.subplots(1, P, figsize=(panel_size * P + 0.8, panel_size + 0.5),
                             squeeze=False, dpi=ANIMATION_DPI, layout="constrained")
    images = []
    for panel, ax in enumerate(axes[0]):
        images.append(ax.imshow(frames[0, panel], cmap=cmap, vmin=vmin, vmax=vmax,
                                interpolation="nearest"))
        ax.set_xticks([])
        ax.set_yticks([])
        ax.grid(False)
        if titles is not None:
            ax.set_title(titles[panel], fontsize="small")
    fig.colorbar(images[0], ax=list(axes[0]), label=colorbar_label, fraction=0.046 / P ** 0.5,
                 pad=0.02)
    heading = fig.suptitle(suptitle.format(t=0))

    def draw(t):
        for panel, image in enumerate(images):
            image.set_data(frames[t, panel])
        heading.set_text(suptitle.format(t=t))
        return [*images, heading]

    return animation.FuncAnimation(fig, draw, frames=T, interval=INTERVAL_MS, blit=False)


def animate_raster(spikes, *, title: str = "", figsize=(5.0, 2.6)) -> animation.FuncAnimation:
    """Animate a raster being written: frame ``t`` shows the spikes of steps ``0..t-1``, the
    current step's spikes highlighted (:func:`animate_rasters` with one panel).

    Args:
        spikes: ``[T, N]`` (time-major), nonzero where neuron ``n`` fires at step ``t``.
        title: figure title; ``{t}`` is replaced by the step.
        figsize: inches.

    Returns:
        The animation (``T`` frames).
    """
    width, height = figsize
    return animate_rasters([spikes], suptitle=title, width=width, panel_height=height - 0.9)


# matplotlib's player links Font Awesome from a CDN for its button icons; the lessons must work
# offline (a classroom without internet, the docs site): the link is dropped and each icon is
# replaced by a plain Unicode symbol
_PLAYER_FONT_LINK = re.compile(r'<link rel="stylesheet"\s+href="https?://[^"]*font-awesome[^"]*">')
_PLAYER_ICONS = {"fast-backward": "\u23ee", "step-backward": "\u25c0\u2758", "play": "\u25b6",
                 "pause": "\u23f8", "step-forward": "\u2758\u25b6", "fast-forward": "\u23ed",
                 "minus": "\u2212", "plus": "+"}
_PLAYER_ICON = re.compile(r'<i class="fa fa-([a-z\-]+)( fa-flip-horizontal)?"></i>')


def to_html(anim: animation.FuncAnimation):
    """The animation as an ``IPython.display.HTML`` player (frames embedded as PNG, no network
    needed); closes its figure so the notebook does not also show a still of it."""
    from IPython.display import HTML

    with plt.rc_context({"savefig.dpi": "figure"}):  # frames at the animation's own dpi
        html = anim.to_jshtml(default_mode="loop")
    plt.close(anim._fig)
    html = _PLAYER_FONT_LINK.sub("", html)
    html = _PLAYER_ICON.sub(lambda match: "\u25c0" if match.group(2) else
                            _PLAYER_ICONS.get(match.group(1), match.group(1)), html)
    return HTML(html)


def save_gif(anim: animation.FuncAnimation, name: str):
    """Write the animation as ``<figures_dir()>/<name>.gif`` (Pillow, no ffmpeg); returns the
    path. Written to a temporary file and renamed."""
    fps = 1000 / INTERVAL_MS

    def write(tmp):
        with plt.rc_context({"savefig.dpi": "figure"}):  # frames at the animation's own dpi
            anim.save(tmp, writer=animation.PillowWriter(fps=fps))

    return write_figure_file(name, ".gif", write)




def animate_rasters(rasters, *, titles=None, suptitle: str = "", width: float = 5.0,
                    panel_height: float = 1.5) -> animation.FuncAnimation:
    """Animate several rasters over the same steps, one panel above the other (e.g. one layer
    under two input encodings): frame ``t`` shows each panel's spikes of steps ``0..t-1`` and
    highlights step ``t``, as :func:`animate_raster` does for one.

    Args:
        rasters: a sequence of ``[T, N_i]`` spike arrays (time-major, nonzero where neuron ``n``
            fires at step ``t``), the same ``T`` for all; the neuron counts ``N_i`` may differ.
        titles: one title per panel.
        suptitle: figure title; ``{t}`` is replaced by the step.
        width: inches.
        panel_height: inches per panel.

    Returns:
        The animation (``T`` frames).
    """
    rasters = [_to_numpy(spikes, "every raster", (2,)) != 0 for spikes in rasters]
    if not rasters:
        raise ValueError("rasters is empty: expected one or more [T, N] spike arrays")
    steps = [spikes.shape[0] for spikes in rasters]
    if len(set(steps)) != 1:
        raise ValueError(f"every raster needs the same number of steps T, got T = {steps}")
    if titles is not None and len(titles) != len(rasters):
        raise ValueError(f"titles needs one entry per raster ({len(rasters)}), got {len(titles)}")
    T = steps[0]
    fig, axes = plt.subplots(len(rasters), 1, sharex=True, squeeze=False, dpi=ANIMATION_DPI,
                             figsize=(width, panel_height * len(rasters) + 0.9),
                             layout="constrained")  # room for the titles and the time axis
    panels = []
    for index, (spikes, ax) in enumerate(zip(rasters, axes[:, 0])):
        ax.set_xlim(-0.5, T - 0.5)
        ax.set_ylim(-0.5, spikes.shape[1] - 0.5)
        ax.set_ylabel("neuron")
        ax.grid(False, axis="y")
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))  # steps are whole numbers
        ax.yaxis.set_major_locator(MaxNLocator(nbins=4, integer=True))  # few, on short panels
        if titles is not None:
            ax.set_title(titles[index], fontsize="small")
        past = ax.scatter([], [], marker="|", color=SPIKE_COLOR, s=30, linewidths=1.2)
        now = ax.scatter([], [], marker="|", color="tab:red", s=60, linewidths=2.0)
        cursor = ax.axvspan(-0.5, 0.5, color="tab:red", alpha=0.08)
        panels.append((spikes, past, now, cursor))
    axes[-1, 0].set_xlabel("time step t")
    heading = fig.suptitle(suptitle.format(t=0))

    def draw(t):
        artists = [heading]
        for spikes, past, now, cursor in panels:
            times, neurons = np.nonzero(spikes[:t])  # steps before t
            past.set_offsets(np.column_stack([times, neurons]) if len(times) else np.empty((0, 2)))
            current = np.flatnonzero(spikes[t])
            now.set_offsets(np.column_stack([np.full(len(current), t), current])
                            if len(current) else np.empty((0, 2)))
            cursor.set_x(t - 0.5)
            artists += [past, now, cursor]
        heading.set_text(suptitle.format(t=t))
        return artists

    return animation.FuncAnimation(fig, draw, frames=T, interval=INTERVAL_MS, blit=False)


__all__ = ["animate_panels", "animate_raster", "animate_rasters", "save_gif", "to_html"]
