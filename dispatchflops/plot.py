"""A picture of where the FLOPs go: an icicle (or sunburst) chart of the module tree,
each module sized by its inclusive FLOPs and labelled where the label fits.

matplotlib is an optional extra (``pip install 'dispatchflops[plot]'``), imported only
when a chart is drawn.
"""
from __future__ import annotations

import math
import os
from dataclasses import dataclass

from . import views
from .formatting import format_size

KINDS = ("icicle", "sunburst")
FORMATS = ("svg", "png")


class PlotError(ValueError):
    """A chart that cannot be drawn; the message says why in one line."""


@dataclass
class Box:
    """One module in the chart: ``start`` and ``width`` are fractions of all FLOPs
    counted; ``depth`` 0 is the model."""

    path: str
    label: str
    depth: int
    start: float
    width: float
    flops: int
    branch: int  # index of the top-level module it belongs to (-1: the model)


def image_format(path: str) -> str:
    """"svg" or "png", from the file name's extension."""
    ext = os.path.splitext(path)[1].lower().lstrip(".")
    if ext not in FORMATS:
        raise PlotError(f"--plot {path}: name the file .svg or .png (the extension picks the format)")
    return ext


def layout(results, max_depth: int | None = None) -> list:
    """The boxes of the chart, parents before children. A module's children share its
    span in proportion to their inclusive FLOPs; children whose FLOPs add up to more than
    their parent's (a child also called from outside it) are scaled into its span."""
    costs = views.module_costs(results)
    tree = views.Tree(costs)
    total = results.total.flops
    roots = [r for r in tree.roots if costs[r].flops > 0]
    whole = max(total, sum(costs[r].flops for r in roots))
    if not whole:
        raise PlotError("nothing to plot: no FLOPs were counted")
    boxes: list = []

    def place(path, start, width, depth, branch):
        name = path.rpartition(".")[2] if path else (results.model or "model")
        boxes.append(Box(path, name, depth, start, width, costs[path].flops, branch))
        if max_depth is not None and depth >= max_depth:
            return
        kids = [k for k in tree.children[path] if costs[k].flops > 0]
        span = max(costs[path].flops, sum(costs[k].flops for k in kids))
        x = start
        for i, k in enumerate(kids):
            w = width * costs[k].flops / span
            place(k, x, w, depth + 1, i if branch < 0 else branch)
            x += w

    x = 0.0
    for i, r in enumerate(roots):
        w = costs[r].flops / whole
        place(r, x, w, 0, -1 if r == "" else i)
        x += w
    return boxes


def _colour(box, palette):
    if box.branch < 0:
        return (0.78, 0.80, 0.84)
    r, g, b = palette(2 * box.branch % 20)[:3]  # tab20's darker half: ten distinct hues
    fade = min(0.12 * max(box.depth - 1, 0), 0.6)
    return tuple(c + (1 - c) * fade for c in (r, g, b))


def _text(box, room_in: float, fontsize: float) -> str | None:
    """The label that fits ``room_in`` inches: name and FLOPs, the name alone, nothing."""
    char_in = fontsize * 0.62 / 72  # an average character of the sans-serif font
    full = f"{box.label}\n{format_size(box.flops)}"
    if room_in >= (max(len(box.label), len(format_size(box.flops))) + 1) * char_in:
        return full
    if room_in >= (len(box.label) + 1) * char_in:
        return box.label
    return None


def plot(results, path: str, kind: str = "icicle", max_depth: int | None = None) -> None:
    """Draw ``results`` into ``path`` (.svg or .png)."""
    fmt = image_format(path)
    if kind not in KINDS:
        raise PlotError(f"unknown chart kind {kind!r}: use {' or '.join(KINDS)}")
    try:
        import matplotlib
        from matplotlib.figure import Figure
        from matplotlib.patches import Rectangle, Wedge
    except ImportError:
        raise PlotError("--plot needs matplotlib: pip install 'dispatchflops[plot]'") from None
    boxes = layout(results, max_depth)
    levels = max(b.depth for b in boxes) + 1
    palette = matplotlib.colormaps["tab20"]
    title = (f"FLOPs by module: {results.model or 'model'}, {format_size(results.total.flops)} "
             f"({results.convention} convention)")
    fontsize = 7.0
    with matplotlib.rc_context({"svg.fonttype": "none", "font.size": fontsize}):
        if kind == "icicle":
            width_in = 12.0
            fig = Figure(figsize=(width_in, 0.55 * levels + 0.6))
            ax = fig.add_axes((0.01, 0.01, 0.98, 1 - 0.5 / fig.get_figheight()))
            ax.set_xlim(0, 1)
            ax.set_ylim(levels, 0)
            for b in boxes:
                ax.add_patch(Rectangle((b.start, b.depth), b.width, 1, facecolor=_colour(b, palette),
                                       edgecolor="white", linewidth=0.6))
                text = _text(b, b.width * width_in * 0.98, fontsize)
                if text:
                    ax.text(b.start + b.width / 2, b.depth + 0.5, text, ha="center",
                            va="center", fontsize=fontsize)
        else:
            size_in = 9.0
            fig = Figure(figsize=(size_in, size_in + 0.4))
            ax = fig.add_axes((0.01, 0.01, 0.98, 0.98 * size_in / (size_in + 0.4)))
            ax.set_xlim(-levels, levels)
            ax.set_ylim(-levels, levels)
            ax.set_aspect("equal")
            inch_per_unit = size_in * 0.98 / (2 * levels)
            for b in boxes:
                inner, outer = (0, 1) if b.depth == 0 else (b.depth, b.depth + 1)
                t0, t1 = 90 - 360 * (b.start + b.width), 90 - 360 * b.start  # clockwise from 12
                ax.add_patch(Wedge((0, 0), outer, t0, t1, width=outer - inner,
                                   facecolor=_colour(b, palette), edgecolor="white", linewidth=0.6))
                mid = (inner + outer) / 2 if b.depth else 0
                arc_in = (2 * math.pi * mid * b.width if b.depth else 2) * inch_per_unit
                text = _text(b, min(arc_in, (2 if b.depth == 0 else 1.2) * inch_per_unit),
                             fontsize)
                if text:
                    angle = math.radians((t0 + t1) / 2)
                    ax.text(mid * math.cos(angle), mid * math.sin(angle), text, ha="center",
                            va="center", fontsize=fontsize)
        ax.set_axis_off()
        fig.suptitle(title, fontsize=fontsize + 2, y=1 - 0.08 / fig.get_figheight())
        try:
            fig.savefig(path, format=fmt, dpi=110)
        except OSError as e:
            raise PlotError(f"cannot write {path}: {e.strerror or e}") from None
