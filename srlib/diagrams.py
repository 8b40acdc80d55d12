"""Network diagrams drawn by code: a row of blocks with skip connections, feature maps to scale.

Used by notebook 03 (the architecture) to draw SpikingResformer and Spikformer from their
configurations, so every variant gets the right picture. Like :mod:`srlib.plotting`, the
helpers take plain data and an optional ``ax`` and return the axes.
"""

import matplotlib.pyplot as plt
import numpy as np
import seaborn as sns

from srlib.plotting import FIGSIZE, _axes


FLOW_BOX_WIDTH = 1.2  # data units per box (a unit is about an inch at the default size)
FLOW_NODE_RADIUS = 0.16  # a "circle" box, e.g. a residual addition
FLOW_GAP = 0.42  # between neighbouring boxes, room for the arrow
FLOW_LINE_HEIGHT = 0.2  # data units per line of text inside a box
FLOW_SKIP_STEP = 0.2  # vertical distance between nested skip connections
FLOW_INCHES_PER_UNIT = 1.0
FLOW_SKIP_OFFSET = 0.2  # a skip leaves right of a box centre and enters left of it


def _check_diagram_boxes(boxes) -> list[dict]:
    boxes = list(boxes)
    if not boxes:
        raise ValueError("boxes must hold at least one box, got none")
    for index, box in enumerate(boxes):
        if not isinstance(box, dict) or not isinstance(box.get("label"), str):
            raise ValueError(f"boxes[{index}] must be a dict with a string 'label', got {box!r}")
        if box.get("shape", "box") not in ("box", "circle"):
            raise ValueError(f"boxes[{index}]['shape'] must be 'box' or 'circle', "
                             f"got {box.get('shape')!r}")
    return boxes


def _diagram_colors(kinds, palette: dict | None, colors) -> dict:
    """One colour per kind, in order of appearance: ``palette`` first, then ``colors``."""
    palette = dict(palette or {})
    spare = iter([c for c in colors if c not in palette.values()])
    return {kind: palette[kind] if kind in palette else next(spare, "0.85") for kind in kinds}


def _diagram_legend(ax: plt.Axes, colors: dict, **legend_kwargs) -> None:
    from matplotlib.patches import Patch

    if colors:
        handles = [Patch(facecolor=color, edgecolor="0.3", label=kind)
                   for kind, color in colors.items()]
        ax.legend(handles=handles, **legend_kwargs)


def plot_flow_diagram(boxes, *, skips=(), ax: plt.Axes | None = None,
                      palette: dict | None = None, title: str | None = None) -> plt.Axes:
    """A network (or one block of it) as a row of boxes joined by arrows, left to right.

    Residual connections are drawn as ``skips``: an arrow leaves below box ``i`` and enters
    box ``j`` from below (nested skips are stacked so that they never cross). Consecutive boxes
    with the same ``group`` are framed together, the group's name above the frame.

    Args:
        boxes: one dict per box, in order: ``label`` (first line, bold), optional ``detail``
            (further lines, smaller; ``"\\n"`` separates them), ``kind`` (the colour; one legend
            entry per kind), ``group`` (a frame around a run of boxes) and ``shape``
            (``"box"``, the default, or ``"circle"`` for a small node such as an addition).
        skips: pairs ``(i, j)``, ``0 <= i < j < len(boxes)``: an arrow from box i to box j.
        ax: axes to draw on; a new figure sized to the diagram if ``None``.
        palette: ``{kind: colour}``; other kinds take seaborn's pastel palette in order.
        title: optional title.

    Returns:
        The axes (aspect equal, no frame).
    """
    from matplotlib.patches import Circle, FancyBboxPatch

    boxes = _check_diagram_boxes(boxes)
    skips = [tuple(skip) for skip in skips]
    for skip in skips:
        if (len(skip) != 2 or not all(isinstance(k, (int, np.integer)) for k in skip)
                or not 0 <= skip[0] < skip[1] < len(boxes)):
            raise ValueError(f"skips must be pairs (i, j) with 0 <= i < j < {len(boxes)}, "
                             f"got {skip!r}")
    lines = [1 + (box["detail"].count("\n") + 1 if box.get("detail") else 0) for box in boxes]
    height = 0.22 + FLOW_LINE_HEIGHT * max(lines)  # every box is as tall as the tallest
    kinds = list(dict.fromkeys(box["kind"] for box in boxes if box.get("kind") is not None))
    colors = _diagram_colors(kinds, palette, sns.color_palette("pastel"))
    # x extents of every box
    extents, cursor = [], 0.0
    for box in boxes:
        size = 2 * FLOW_NODE_RADIUS if box.get("shape") == "circle" else FLOW_BOX_WIDTH
        extents.append((cursor, cursor + size))
        cursor += size + FLOW_GAP
    right = cursor - FLOW_GAP
    # skip levels: a skip that spans another one goes below it
    levels = {}  # shortest first; a skip goes below every placed skip that it overlaps
    for skip in sorted(set(skips), key=lambda s: s[1] - s[0]):
        below = [level for other, level in levels.items()
                 if skip[0] < other[1] and other[0] < skip[1]]
        levels[skip] = 1 + max(below, default=-1)
    deepest = -height / 2 - 0.2 - FLOW_SKIP_STEP * max(levels.values(), default=-1)
    groups = [box.get("group") for box in boxes]
    top = height / 2 + (0.42 if any(g is not None for g in groups) else 0.1)
    bottom = min(deepest, -height / 2) - 0.12
    if ax is None:
        size = (max(3.0, (right + 0.3) * FLOW_INCHES_PER_UNIT),
                max(1.2, (top - bottom) * FLOW_INCHES_PER_UNIT + (0.6 if kinds else 0.2)))
        _, ax = plt.subplots(figsize=size)
    for index, (box, (left, end)) in enumerate(zip(boxes, extents)):
        color = colors.get(box.get("kind"), "white")
        center = (left + end) / 2
        if box.get("shape") == "circle":
            ax.add_patch(Circle((center, 0), FLOW_NODE_RADIUS, facecolor=color, edgecolor="0.3"))
            ax.text(center, 0, box["label"], ha="center", va="center", fontweight="bold")
        else:
            ax.add_patch(FancyBboxPatch((left, -height / 2), end - left, height,
                                        boxstyle="round,pad=0,rounding_size=0.06",
                                        facecolor=color, edgecolor="0.3"))
            ax.text(center, height / 2 - 0.1, box["label"], ha="center", va="top",
                    fontsize="small", fontweight="bold")
            if box.get("detail"):
                ax.text(center, height / 2 - 0.1 - FLOW_LINE_HEIGHT, box["detail"],
                        ha="center", va="top", fontsize="x-small", linespacing=1.25)
        if index + 1 < len(boxes):
            ax.annotate("", xy=(extents[index + 1][0], 0), xytext=(end, 0),
                        arrowprops=dict(arrowstyle="-|>", color="0.2", lw=1.0,
                                        shrinkA=0, shrinkB=0))
    for (start, stop), level in levels.items():
        bottom_of = [-FLOW_NODE_RADIUS if boxes[k].get("shape") == "circle" else -height / 2
                     for k in (start, stop)]
        x_from, x_to = ((extents[k][0] + extents[k][1]) / 2 for k in (start, stop))
        if boxes[start].get("shape") != "circle":
            x_from += FLOW_SKIP_OFFSET
        if boxes[stop].get("shape") != "circle":
            x_to -= FLOW_SKIP_OFFSET
        y = -height / 2 - 0.2 - FLOW_SKIP_STEP * level
        ax.plot([x_from, x_from, x_to], [bottom_of[0], y, y], color="0.35", lw=1.0)
        ax.annotate("", xy=(x_to, bottom_of[1]), xytext=(x_to, y),
                    arrowprops=dict(arrowstyle="-|>", color="0.35", lw=1.0,
                                    shrinkA=0, shrinkB=0))
    start = 0
    for index in range(1, len(boxes) + 1):  # frame each run of boxes with one group name
        if index < len(boxes) and groups[index] == groups[start]:
            continue
        if groups[start] is not None:
            left, end = extents[start][0] - 0.1, extents[index - 1][1] + 0.1
            ax.add_patch(FancyBboxPatch((left, -height / 2 - 0.1), end - left, height + 0.2,
                                        boxstyle="round,pad=0,rounding_size=0.08",
                                        facecolor="none", edgecolor="0.5", ls="--", lw=0.9))
            ax.text((left + end) / 2, height / 2 + 0.16, groups[start], ha="center",
                    va="bottom", fontsize="small", color="0.25")
        start = index
    ax.set_xlim(-0.15, right + 0.15)
    ax.set_ylim(bottom, top)
    ax.set_aspect("equal")
    ax.axis("off")
    _diagram_legend(ax, colors, loc="upper center", bbox_to_anchor=(0.5, 0.0),
                      ncol=min(len(colors), 6), fontsize="x-small")
    if title:
        ax.set_title(title)
    return ax


def plot_feature_pyramid(stages, *, ax: plt.Axes | None = None, title: str | None = None,
                         palette: dict | None = None) -> plt.Axes:
    """Feature maps drawn to scale, left to right: one rectangle per entry, as wide as its
    channels C and as tall as its spatial side H.

    Both axes are to scale within themselves (every width in channels, every height in
    pixels), so a multi-stage network shows as tall narrow maps turning into short wide ones,
    and a single-stage network as a run of equal rectangles.

    Args:
        stages: one dict per feature map: ``name``, ``channels`` (C), ``height`` (H), optional
            ``width`` (W, default H) and ``kind`` (the colour; one legend entry per kind).
        ax: axes to draw on; a new figure if ``None``.
        title: optional title.
        palette: ``{kind: colour}``; other kinds take seaborn's colour-blind palette in order.

    Returns:
        The axes (no ticks: the labels carry the sizes).
    """
    from matplotlib.patches import Rectangle

    stages = list(stages)
    if not stages:
        raise ValueError("stages must hold at least one feature map, got none")
    for index, stage in enumerate(stages):
        missing = [key for key in ("name", "channels", "height")
                   if not isinstance(stage, dict) or key not in stage]
        if missing:
            raise ValueError(f"stages[{index}] needs keys name, channels, height; "
                             f"missing {missing} in {stage!r}")
        sizes = (stage["channels"], stage["height"], stage.get("width", stage["height"]))
        if not all(isinstance(s, (int, np.integer)) and s > 0 for s in sizes):
            raise ValueError(f"stages[{index}]: channels, height and width must be positive "
                             f"integers, got {sizes}")
    kinds = list(dict.fromkeys(s["kind"] for s in stages if s.get("kind") is not None))
    colors = _diagram_colors(kinds, palette, sns.color_palette("colorblind"))
    widest = max(stage["channels"] for stage in stages)
    tallest = max(stage["height"] for stage in stages)
    gap = 0.35 * widest
    ax = _axes(ax, (FIGSIZE[0] * 1.6, FIGSIZE[1]))
    cursor = 0.0
    for stage in stages:
        C, H = stage["channels"], stage["height"]
        W = stage.get("width", H)
        drawn = max(C, 0.012 * widest)  # a 3-channel image stays visible next to 1024
        ax.add_patch(Rectangle((cursor, -H / 2), drawn, H, alpha=0.85, edgecolor="0.25",
                               facecolor=colors.get(stage.get("kind"), "0.75")))
        center = cursor + drawn / 2
        ax.text(center, H / 2 + 0.04 * tallest, stage["name"], ha="center", va="bottom",
                fontsize="small", fontweight="bold")
        ax.text(center, -H / 2 - 0.04 * tallest, f"{C}×{H}×{W}\nN = {H * W:,}", ha="center",
                va="top", fontsize="x-small")
        cursor += drawn + gap
    # data limits rather than fixed ones, so that axes shared between two pyramids (one scale
    # for two networks) autoscale to both
    ax.update_datalim([(-0.5 * gap, -0.8 * tallest), (cursor - 0.5 * gap, 0.72 * tallest)])
    ax.autoscale_view()
    ax.set_xticks([])
    ax.set_yticks([])
    ax.grid(False)
    for spine in ax.spines.values():
        spine.set_visible(False)
    ax.set_xlabel("width ∝ channels C, height ∝ pixels per side H "
                  "(labels: C×H×W, tokens N = HW)", fontsize="x-small")
    _diagram_legend(ax, colors, loc="upper right", fontsize="x-small")
    if title:
        ax.set_title(title)
    return ax
