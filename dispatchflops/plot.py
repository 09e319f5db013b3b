"""A picture of where the FLOPs go: an icicle (or sunburst) chart of the module tree,
each module sized by its inclusive FLOPs and labelled where the label fits; or a roofline
chart of the modules at one depth on the results' device.

matplotlib is an optional extra (``pip install 'dispatchflops[plot]'``), imported only
when a chart is drawn.
"""
from __future__ import annotations

import math
import os
from dataclasses import dataclass

from . import views
from .formatting import format_size
from .roofline import Bound, roofline

KINDS = ("icicle", "sunburst", "roofline")
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


@dataclass
class Point:
    """One point of the roofline chart: a module, or modules whose paths differ only in
    indices (``paths`` holds them all), at ``flops / bytes`` FLOPs per byte and ``flops /
    seconds`` FLOP/s. ``seconds`` is the measured forward time (``flops`` and ``bytes``
    then of the forward) when ``measured``, else the roofline's lower bound (all phases)."""

    label: str
    paths: list
    depth: int
    flops: int  #: 2 per multiply-add
    bytes: int
    seconds: float
    measured: bool
    bound_by: str  #: "compute" or "memory" (of the lower bound)

    @property
    def intensity(self) -> float:
        return self.flops / self.bytes

    @property
    def rate(self) -> float:
        return self.flops / self.seconds


NO_DEVICE = ("--plot-kind roofline needs a device: --device-spec NAME or --peak-tflops X "
             "--bandwidth-gbs Y")
MAX_LABELS = 30


def _number_pattern(path: str) -> str:
    """``path`` with each all-digit name (a ``ModuleList``'s or ``Sequential``'s index) as #."""
    return ".".join("#" if n.isdigit() else n for n in path.split("."))


def _indices(nums: list) -> str:
    """``0-31``; ``0,2`` where the run has gaps (up to four of them)."""
    nums = sorted(set(nums))
    if nums[-1] - nums[0] + 1 == len(nums) or len(nums) > 4:
        return f"{nums[0]}-{nums[-1]}"
    return ",".join(map(str, nums))


def _group_label(paths: list) -> str:
    """``layers.0-31 (×32)``, ``layers.0-31.mlp (×32)``: the paths' names from the one
    before the first index that differs, each index as the members' range."""
    shown, first = [], None
    for i, column in enumerate(zip(*(p.split(".") for p in paths))):
        if column[0].isdigit() and len(set(column)) > 1:
            first = i if first is None else first
            shown.append(_indices([int(n) for n in column]))
        else:
            shown.append(column[0])
    return f"{'.'.join(shown[max(first - 1, 0):])} (×{len(paths)})"


def _point(label, paths, depth, bounds, forward, measured) -> Point:
    b, f = Bound(), Bound()
    for p in paths:
        b.add(bounds.get(p, Bound()))
        f.add(forward.get(p, Bound()))
    times = [measured.get(p) for p in paths] if measured else [None]
    if all(times) and f.flops:
        return Point(label, list(paths), depth, f.flops, f.bytes, sum(times), True, b.bound_by)
    return Point(label, list(paths), depth, b.flops, b.bytes, b.seconds, False, b.bound_by)


def roofline_points(results, max_depth: int | None = None) -> tuple:
    """The points of the roofline chart and how many were left out: ``(points, left_out)``.
    The model comes first (depth 0), then the modules at ``max_depth`` (default 1; a leaf
    above it stands for itself). Modules whose paths differ only in indices (``layers.0``
    ... ``layers.31``, or ``layers.0.mlp`` ... ``layers.31.mlp``) and that ran the same ops
    are one point with their summed FLOPs, bytes and seconds. A point with no FLOPs or no
    bytes cannot sit on log axes: it is left out, and its modules are counted."""
    device = results.device
    if device is None:
        raise PlotError(NO_DEVICE)
    depth = 1 if max_depth is None else max_depth
    tree = views.Tree(results.modules)
    everything = roofline(results, device)
    fwd = roofline(results, device, ("forward",))
    bounds = views.rolled(everything.modules, tree)
    forward = views.rolled(fwd.modules, tree)
    if "" not in results.modules:  # no model given: the model is everything counted
        bounds[""], forward[""] = everything.total, fwd.total
    offset = 0 if "" in results.modules else 1
    measured = results.measured or {}
    costs = views.module_costs(results)
    points = [_point(results.model or "model", [""], 0, bounds, forward, measured)]
    groups: dict = {}
    for p in tree.preorder(max_depth=depth - offset):
        d = tree.depth[p] + offset
        if p and (d == depth or not tree.children[p]):
            ops = frozenset(costs[p].by_op) | frozenset(costs[p].bytes_by_op)
            groups.setdefault((_number_pattern(p), ops), []).append(p)
    for members in groups.values():
        if len(members) > 1:
            label = _group_label(members)
        else:
            head, _, last = members[0].rpartition(".")
            label = f"{head.rpartition('.')[2]}.{last}" if last.isdigit() and head else last
        points.append(_point(label, members, tree.depth[members[0]] + offset, bounds,
                             forward, measured))
    placed = [pt for pt in points if pt.flops > 0 and pt.bytes > 0 and pt.seconds > 0]
    if not placed:
        raise PlotError("nothing to place on the roofline: no module has both FLOPs and bytes")
    return placed, sum(len(pt.paths) for pt in points) - sum(len(pt.paths) for pt in placed)


def _roofs(results) -> list:
    """(label, peak FLOP/s) of each roof the ops with FLOPs need, highest first; dtypes
    that share a peak share a roof."""
    dtypes = sorted({o.dtype or "float32" for o in results.ops if o.flops})
    peaks: dict = {}
    for dt in dtypes:
        peaks.setdefault(results.device.peak(dt), []).append(dt)
    if not peaks:
        peaks = {results.device.peak(None): ["float32"]}
    return [(f"{', '.join(names)} {peak / 1e12:g} TFLOP/s", peak)
            for peak, names in sorted(peaks.items(), reverse=True)]


def _place_labels(ax, points, fontsize) -> int:
    """Label ``points`` in turn, each beside its point (further out, with a leader line,
    where that overlaps a label already placed; left off where nothing fits); how many."""
    to_pt = 72 / ax.figure.dpi
    boxes: list = []
    height = fontsize * 1.2
    for pt in points:
        x, y = (v * to_pt for v in ax.transData.transform((pt.intensity, pt.rate)))
        width = len(pt.label) * fontsize * 0.62
        for dy in (4, -4 - height, 4 + height, -4 - 2 * height, 4 + 2 * height,
                   -4 - 3 * height, 4 + 3 * height, -4 - 4 * height):
            for dx in (5, -5 - width):
                box = (x + dx, y + dy, x + dx + width, y + dy + height)
                if not any(box[0] < b[2] and b[0] < box[2] and box[1] < b[3] and b[1] < box[3]
                           for b in boxes):
                    break
            else:
                continue
            break
        else:
            continue
        boxes.append(box)
        far = abs(dy) > height + 4
        ax.annotate(pt.label, (pt.intensity, pt.rate), xytext=(dx, dy),
                    textcoords="offset points", fontsize=fontsize, va="bottom",
                    arrowprops=dict(arrowstyle="-", color="0.6", linewidth=0.5) if far else None)
    return len(boxes)


def _draw_roofline(results, max_depth, fontsize):
    from matplotlib.figure import Figure

    points, left_out = roofline_points(results, max_depth)
    device = results.device
    roofs = _roofs(results)
    xs = [pt.intensity for pt in points] + [peak / device.bandwidth for _, peak in roofs]
    ys = [pt.rate for pt in points]
    x0, x1 = min(xs) / 4, max(xs) * 4
    y0, y1 = min(ys + [device.bandwidth * x0]) / 2, max(ys + [roofs[0][1]]) * 3
    fig = Figure(figsize=(10, 6.5))
    ax = fig.add_axes((0.09, 0.1, 0.88, 0.8))
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlim(x0, x1)
    ax.set_ylim(y0, y1)
    top_ridge = roofs[0][1] / device.bandwidth
    ax.plot([x0, top_ridge], [device.bandwidth * x0, roofs[0][1]], color="0.3", linewidth=1.2)
    ax.text(x0 * 1.3, device.bandwidth * x0 * 1.6, f"{device.bandwidth / 1e9:g} GB/s",
            color="0.3", fontsize=fontsize)
    for label, peak in roofs:
        ridge = peak / device.bandwidth
        ax.plot([ridge, x1], [peak, peak], color="0.3", linewidth=1.2)
        ax.text(x1 / 1.1, peak * 1.12, label, ha="right", va="bottom", color="0.3",
                fontsize=fontsize)
    colours = {"compute": "tab:orange", "memory": "tab:blue", "": "0.5"}
    model = next(pt for pt in points if pt.depth == 0)
    modules = [pt for pt in points if pt is not model]
    for measured, label in ((True, "measured forward FLOP/s"),
                            (False, "bound FLOP/s (attainable)")):
        mods = [pt for pt in modules if pt.measured == measured]
        if mods:
            edges = [colours[pt.bound_by] for pt in mods]
            ax.scatter([pt.intensity for pt in mods], [pt.rate for pt in mods], s=30,
                       facecolor=edges if measured else "none", edgecolor=edges, zorder=3,
                       label=label)
    for bound in ("memory", "compute"):
        if any(pt.bound_by == bound for pt in modules):
            ax.scatter([], [], s=30, marker="s", color=colours[bound], label=f"{bound}-bound")
    ax.scatter([model.intensity], [model.rate], s=140, marker="*", color="black", zorder=4,
               label=f"{model.label} ({'measured' if model.measured else 'bound'})")
    largest = sorted(modules, key=lambda pt: -pt.flops)[:MAX_LABELS]
    labelled = _place_labels(ax, [model] + largest, fontsize) - 1
    ax.set_xlabel("arithmetic intensity (FLOPs per byte)")
    ax.set_ylabel("FLOP/s (2 per multiply-add)")
    ax.grid(True, which="major", color="0.9", linewidth=0.6)
    ax.legend(loc="lower right", fontsize=fontsize, frameon=False)
    kinds = {pt.measured for pt in points}
    what = ("measured forward" if kinds == {True} else "bound (attainable)" if kinds == {False}
            else "measured forward where timed, else bound")
    depth = 1 if max_depth is None else max_depth
    fig.suptitle(f"Roofline: {results.model or 'model'} on {device.name}, modules at depth "
                 f"{depth}; FLOP/s {what}", fontsize=fontsize + 2)
    notes = []
    if left_out:
        notes.append(f"{left_out} module{'s' if left_out > 1 else ''} with no FLOPs or no "
                     "bytes left out")
    if labelled < len(modules):
        notes.append(f"labels on {labelled} of {len(modules)} (the largest by FLOPs that fit)")
    if notes:
        fig.text(0.01, 0.01, "; ".join(notes), fontsize=fontsize, color="0.4")
    return fig


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
        raise PlotError(f"unknown chart kind {kind!r}: use {', '.join(KINDS[:-1])} or "
                        f"{KINDS[-1]}")
    if kind == "roofline" and results.device is None:
        raise PlotError(NO_DEVICE)
    try:
        import matplotlib
    except ImportError:
        raise PlotError("--plot needs matplotlib: pip install 'dispatchflops[plot]'") from None
    fontsize = 7.0
    with matplotlib.rc_context({"svg.fonttype": "none", "font.size": fontsize}):
        if kind == "roofline":
            fig = _draw_roofline(results, max_depth, fontsize)
        else:
            fig = _draw_tree(results, kind, max_depth, fontsize)
        try:
            fig.savefig(path, format=fmt, dpi=110)
        except OSError as e:
            raise PlotError(f"cannot write {path}: {e.strerror or e}") from None


def _draw_tree(results, kind, max_depth, fontsize):
    import matplotlib
    from matplotlib.figure import Figure
    from matplotlib.patches import Rectangle, Wedge

    boxes = layout(results, max_depth)
    levels = max(b.depth for b in boxes) + 1
    palette = matplotlib.colormaps["tab20"]
    title = (f"FLOPs by module: {results.model or 'model'}, {format_size(results.total.flops)} "
             f"({results.convention} convention)")
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
    return fig
