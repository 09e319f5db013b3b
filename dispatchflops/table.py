"""MMEngine-style reports of a count: the ``out_table`` and ``out_arch`` strings of
``mmengine.analysis.get_model_complexity_info``, rebuilt from a ``Results``.

Both follow MMEngine's rules (statistics per module and per parameter, zero pruning,
fast-forwarding of single-child chains, "called" meaning "something ran in its scope")
and draw the same characters MMEngine's ``rich`` console prints when it writes to
something that is not a terminal (no colour codes), at the console width ``rich``
would pick (``COLUMNS``, the terminal's width, or 80).
"""
from __future__ import annotations

import inspect
import os
import re
import sys
import unicodedata

import tabulate as _tabulate_module
import torch
from tabulate import tabulate

from .formatting import format_size
from .results import not_owning, prefixes
from .views import module_costs

__all__ = ["arch_str", "console_width", "draw", "mmengine_arch", "mmengine_table",
           "mmengine_uncalled", "stats_rows"]

_PARAMS = "#parameters or shape"
_FLOPS = "#flops"
_ACTS = "#activations"

# --------------------------------------------------------------------------- statistics
def _param_stats(model: torch.nn.Module) -> tuple[dict, dict]:
    """({module or parameter name: parameters}, {parameter name: shape}) in MMEngine's
    order: for each parameter of ``named_parameters()``, each prefix of its name."""
    counts: dict = {}
    shapes: dict = {}
    for name, p in model.named_parameters():
        n = p.numel()
        for prefix in prefixes(name):
            counts[prefix] = counts.get(prefix, 0) + n
        shapes[name] = tuple(p.shape)
    return counts, shapes


def _module_paths(model: torch.nn.Module) -> list:
    return [name for name, _ in model.named_modules()]


def _per_module(model: torch.nn.Module, results) -> tuple[dict, dict]:
    """FLOPs and activations per module path, charged by ownership as MMEngine does: a
    module that never ran itself (a ``ModuleList``, a ``ModuleDict``) holds the sum of
    the modules it owns (``views.module_costs``), where the count, which follows the call
    stack, holds nothing."""
    costs = module_costs(results)
    flops, acts = {}, {}
    for path in _module_paths(model):
        cost = costs.get(path)
        flops[path] = cost.flops if cost is not None else 0
        acts[path] = cost.activations if cost is not None else 0
    return flops, acts


def mmengine_uncalled(model: torch.nn.Module, results) -> set:
    """Module paths MMEngine would call "uncalled": neither the module nor anything it
    owns ran. Approximated from forward calls: a module whose forward ran but executed no
    op at all (``nn.Identity``, ``StochasticDepth`` in eval) counts as called here, while
    MMEngine, which looks for traced ops, calls it uncalled;
    ``dispatchflops.mmengine`` watches for ops and gives the exact set."""
    called = [path for path, cost in results.modules.items() if cost.calls > 0]
    return not_owning(_module_paths(model), called)


def _group(columns: dict) -> dict:
    """{stat: {name: value}} -> {name: {stat: value}}, names in first-seen order."""
    out: dict = {}
    for stat, values in columns.items():
        for name, v in values.items():
            out.setdefault(name, {})[stat] = v
    return out


def _parent(name: str) -> str:
    return name.rpartition(".")[0]


def _children(names) -> dict:
    """{name: [direct children in order]}; a child is one more dotted part."""
    kids: dict = {n: [] for n in names}
    for n in names:
        if n:
            kids.setdefault(_parent(n), []).append(n)
    return kids


def _prune_zeros(stats: dict, force_keep: set, keep_parents: bool) -> dict:
    """Drop entries whose statistics are all zero, unless forced; with ``keep_parents``
    an entry also stays while any of its children stays. The result is in post-order
    (children before their parent), as MMEngine builds it."""
    kids = _children(stats)
    out: dict = {}

    def visit(name):
        any_kept = False
        for child in kids.get(name, ()):
            visit(child)
            any_kept |= child in out
        if (any(v != 0 for v in stats[name].values()) or name in force_keep
                or (keep_parents and any_kept)):
            out[name] = dict(stats[name])

    visit("")
    return out


def _pretty(stats: dict, sig_figs: int) -> dict:
    return {name: {k: format_size(v, sig_figs) for k, v in s.items()} for name, s in stats.items()}


def _mark(stats: dict, stat: str, names, mark: str) -> dict:
    out = {name: dict(s) for name, s in stats.items()}
    for name in names:
        out.setdefault(name, {})[stat] = mark
    return out


# --------------------------------------------------------------------------- the table
def stats_rows(columns: dict, shapes: dict, uncalled: set, max_depth: int,
               order: dict | None = None, extra: dict | None = None,
               show_shapes: bool = True) -> list:
    """The rows of fvcore's and MMEngine's module-statistics table. ``columns``: {header:
    {module or parameter name: count}}, the parameters first; ``shapes``: {parameter name:
    shape}, shown in the first column (``show_shapes=False``: parameter rows left out);
    the other columns blank for ``uncalled`` modules. Entries all zero, with nothing kept
    below them, are left out; a module whose only child shows the same numbers shares its
    row, named after the deepest of the chain."""
    first, *counted = columns
    stats = _group(columns)
    stats = _prune_zeros(stats, force_keep={""}, keep_parents=True)
    stats = _pretty(stats, 3)
    hidden = uncalled & stats.keys()
    for header in counted:
        stats = _mark(stats, header, hidden, "")
    for name in list(stats):
        if name in shapes:
            if show_shapes:
                stats[name][first] = str(shapes[name])
            else:
                del stats[name]
    return _table_rows(stats, list(columns), max_depth, order, extra)


def _merge(a: dict, b: dict):
    """One row for a module and its only child, or None when their values clash."""
    if a.keys() != b.keys():
        return None
    out = {}
    for k, va in a.items():
        vb = b[k]
        if va and vb and va != vb:
            return None
        out[k] = va if va else vb
    return out


def _table_rows(stats: dict, columns: list, max_depth: int, order: dict | None = None,
                extra: dict | None = None) -> list:
    kids = _children(stats)
    if order is not None:  # siblings largest first (stable: ties keep MMEngine's order)
        kids = {n: sorted(c, key=lambda k: -order.get(k, 0)) for n, c in kids.items()}
    extra = extra or {}

    def forward(name):
        # Follow a chain of only children while their values agree, merging rows.
        while True:
            below = kids.get(name, [])
            if len(below) != 1:
                return name
            merged = _merge(stats[name], stats[below[0]])
            if merged is None:
                return name
            name = below[0]
            stats[name] = merged

    def row(label, s, depth, name):
        pad = " " * depth
        cells = [pad + label] + [pad + s[c] if c in s else "" for c in columns]
        return cells + [pad + col[name] if col.get(name) else "" for col in extra.values()]

    rows = []
    root = forward("")
    rows.append(row(root or "model", stats[root], 0, root))
    strip = root + "." if root else ""

    def fill(depth, parent):
        if depth > max_depth:
            return
        for child in kids.get(parent, []):
            name = forward(child)
            label = name[len(strip):] if strip and name.startswith(strip) else name
            rows.append(row(label, stats[name], depth, name))
            fill(depth + 1, name)

    fill(1, root)
    return rows


# --------------------------------------------------------------------------- drawing
def _cell_len(text: str) -> int:
    if text.isascii():
        return len(text)
    n = 0
    for ch in text:
        if unicodedata.combining(ch):
            continue
        n += 2 if unicodedata.east_asian_width(ch) in ("W", "F") else 1
    return n


def _crop(text: str, width: int) -> str:
    """The longest prefix of ``text`` that fits ``width`` cells, padded to it."""
    out, used = [], 0
    for ch in text:
        w = _cell_len(ch)
        if used + w > width:
            break
        out.append(ch)
        used += w
    return "".join(out) + " " * (width - used)


def console_width() -> int:
    """The width ``rich.console.Console()`` picks (MMEngine prints its table with one):
    rich's own answer when rich is installed, else its rules redone: Jupyter's
    ``JUPYTER_COLUMNS`` or 115, ``COLUMNS``, the terminal's width, 80."""
    try:
        from rich.console import Console
    except ImportError:
        pass
    else:
        return Console().width
    env = os.environ
    shell = sys.modules.get("IPython")
    if shell is not None:
        ip = getattr(shell, "get_ipython", lambda: None)()
        if type(ip).__name__ == "ZMQInteractiveShell":
            cols = env.get("JUPYTER_COLUMNS", "")
            return int(cols) if cols.isdigit() else 115
    cols = env.get("COLUMNS", "")
    if cols.isdigit():
        return int(cols)
    for fd in (0, 1, 2):
        try:
            width = os.get_terminal_size(fd).columns
        except (AttributeError, ValueError, OSError):
            continue
        return width or 80
    return 80


def _measure(cells, limit: int) -> int:
    """Widest cell of a column plus its padding of 1 and 1, capped at ``limit``."""
    if limit < 1:
        return 0
    best = 0
    for cell in cells:
        if limit - 2 < 1:
            w = limit
        else:
            natural = max((_cell_len(line) for line in cell.splitlines()), default=0)
            natural = min(natural, limit)
            w = 0 if natural < 1 else min(natural + 2, limit)
        best = max(best, w)
    return min(best, limit)


def _reduce(total: int, ratios: list, maximums: list, values: list) -> list:
    """Take ``total`` away from ``values`` in proportion to ``ratios``, at most
    ``maximums[i]`` from each (rich's rounding)."""
    ratios = [r if m else 0 for r, m in zip(ratios, maximums)]
    left_ratio = sum(ratios)
    if not left_ratio:
        return list(values)
    left = total
    out = []
    for r, m, v in zip(ratios, maximums, values):
        if r and left_ratio > 0:
            cut = min(m, round(r * left / left_ratio))
            out.append(v - cut)
            left -= cut
            left_ratio -= r
        else:
            out.append(v)
    return out


def _column_widths(columns: list, table_width: int) -> list:
    """Column widths (padding included, borders not) as rich lays out a table of plain
    text columns in ``table_width`` cells: natural widths, then, when too wide, shrink
    the widest columns down towards the next widest, then all evenly."""
    limit = table_width - (len(columns) + 1)
    widths = [_measure(cells, limit) or 1 for cells in columns]
    if sum(widths) > limit:
        excess = sum(widths) - limit
        while sum(widths) and excess > 0:
            widest = max(widths)
            runner_up = max((w for w in widths if w != widest), default=0)
            gap = widest - runner_up
            if not gap:
                break
            ratios = [1 if w == widest else 0 for w in widths]
            widths = _reduce(excess, ratios, [min(excess, gap)] * len(widths), widths)
            excess = sum(widths) - limit
        if sum(widths) > limit:
            widths = _reduce(sum(widths) - limit, [1] * len(widths), widths, widths)
        widths = [_measure(cells, w) for cells, w in zip(columns, widths)]
    return widths


_WORD = re.compile(r"\s*\S+\s*")
_TRAILING_SPACE = re.compile(r"\s+$")


def _wrap(text: str, width: int) -> list:
    """Lines of ``text`` in ``width`` cells as rich wraps a table cell: break before a
    word that does not fit, keep a word longer than a line whole and end it with "…",
    pad every line to ``width``."""
    lines = []
    for para in text.split("\n"):
        breaks, used = [], 0
        for m in _WORD.finditer(para):
            start, word = m.start(), m.group(0)
            need = _cell_len(word.rstrip())
            if width - used >= need:
                used += _cell_len(word)
            elif need > width:
                if start:
                    breaks.append(start)
                used = _cell_len(word)
            elif used and start:
                breaks.append(start)
                used = _cell_len(word)
        bounds = [0] + breaks + [len(para)]
        for a, b in zip(bounds, bounds[1:]):
            line = para[a:b]
            if len(line) > width:
                space = _TRAILING_SPACE.search(line)
                if space is not None:
                    line = line[: len(line) - min(len(space.group(0)), len(line) - width)]
            if _cell_len(line) > width:
                line = _crop(line, max(width - 1, 0)) + "…"
            lines.append(line + " " * (width - _cell_len(line)))
    return lines


def draw(headers: list, rows: list, table_width: int, fitted: int | None = None,
          title: str | None = None) -> str:
    """The rows in rich's ASCII2 box, drawn with tabulate's "pretty" format. Only the
    first ``fitted`` columns (default all) are fitted to ``table_width``; the others
    keep their natural width and widen the table. ``title`` is centred above it."""
    columns = [[h] + [r[i] for r in rows] for i, h in enumerate(headers)]
    fitted = len(columns) if fitted is None else fitted
    widths = (_column_widths(columns[:fitted], table_width)
              + [_measure(cells, 1 << 30) for cells in columns[fitted:]])
    inner = [max(w - 2, 0) for w in widths]

    def shape(cells, bottom):
        wrapped = [_wrap(c, w) if w else [""] for c, w in zip(cells, inner)]
        height = max(len(lines) for lines in wrapped)
        out = []
        for lines, w in zip(wrapped, inner):
            blank = [" " * w] * (height - len(lines))
            out.append("\n".join(blank + lines if bottom else lines + blank))
        return out

    table = _tabulate_keeping_spaces([shape(r, bottom=False) for r in rows],
                                     shape(headers, bottom=True)) + "\n"
    if title is None:
        return table
    width = _cell_len(table.partition("\n")[0])
    lines = []
    for line in _wrap(title, width):
        text = line.rstrip()
        left = (width - _cell_len(text)) // 2
        lines.append(" " * left + text + " " * (width - left - _cell_len(text)))
    return "\n".join(lines) + "\n" + table


def _tabulate_keeping_spaces(rows: list, headers: list) -> str:
    """tabulate's "pretty" grid (rich's ASCII2 box), left-aligned, cells taken verbatim."""
    kwargs = dict(headers=headers, tablefmt="pretty", stralign="left", disable_numparse=True)
    if "preserve_whitespace" in inspect.signature(tabulate).parameters:
        return tabulate(rows, preserve_whitespace=True, **kwargs)
    # tabulate < 0.10 has only the module-wide switch.
    saved = _tabulate_module.PRESERVE_WHITESPACE
    _tabulate_module.PRESERVE_WHITESPACE = True
    try:
        return tabulate(rows, **kwargs)
    finally:
        _tabulate_module.PRESERVE_WHITESPACE = saved


def mmengine_table(model: torch.nn.Module, results, max_depth: int = 3, *,
                   width: int | None = None, sort: str | None = None,
                   extra: dict | None = None) -> str:
    """MMEngine's ``get_model_complexity_info(...)["out_table"]`` for a count of ``model``
    (a leading newline included, as MMEngine returns it).

    Rows: the model, then modules and their parameters (shape in the parameters column)
    to ``max_depth`` levels, siblings ordered parameters-first as MMEngine does (modules
    holding parameters in ``named_parameters()`` order, then the others in
    ``named_modules()`` order); entries whose parameters, FLOPs and activations are all
    zero, with nothing kept below them, are left out; a module whose only child shows
    the same numbers shares its row, named after the deepest of the chain. Blank cells:
    parameters of a module without any, FLOPs and activations of parameter rows and of
    modules never called (:func:`mmengine_uncalled`); ``width`` the console width
    (default: :func:`console_width`).

    Beyond MMEngine (the defaults draw its table exactly): ``sort`` ("params", "flops"
    or "activations") orders siblings largest first; ``extra`` ({header: {module path:
    text}}) adds columns on the right, blank for parameters and modules never called,
    which widen the table rather than narrow MMEngine's columns.
    """
    uncalled = mmengine_uncalled(model, results)
    params, shapes = _param_stats(model)
    flops, acts = _per_module(model, results)
    columns = {_PARAMS: params, _FLOPS: flops, _ACTS: acts}
    order = None
    if sort is not None:
        order = {"params": params, "flops": flops, "activations": acts}[sort]
    if extra:
        extra = {h: {p: v for p, v in col.items() if p not in uncalled} for h, col in extra.items()}
    rows = stats_rows(columns, shapes, uncalled, max_depth, order, extra)
    width = console_width() if width is None else width
    headers = ["module", _PARAMS, _FLOPS, _ACTS, *(extra or {})]
    return "\n" + draw(headers, rows, width, fitted=4)


# --------------------------------------------------------------------------- the arch
_NOTE = ("N/A indicates a possibly missing statistic due to how the module was called. "
         "Missing values are still included in the parent's total.\n")


def _indent_after_first(text: str, spaces: int) -> str:
    first, *rest = text.split("\n")
    if not rest:
        return text
    pad = " " * spaces
    return "\n".join([first] + [pad + line for line in rest])


def mmengine_arch(model: torch.nn.Module, results) -> str:
    """MMEngine's ``get_model_complexity_info(...)["out_arch"]`` for a count of ``model``
    (a leading newline included), modules called as :func:`mmengine_uncalled` says."""
    params, _ = _param_stats(model)
    flops, acts = _per_module(model, results)
    return "\n" + arch_str(model, {"#params": params, "#flops": flops, "#acts": acts},
                           mmengine_uncalled(model, results))


def arch_str(model: torch.nn.Module, columns: dict, uncalled: set) -> str:
    """MMEngine's ``complexity_stats_str`` (fvcore's ``flop_count_str``): the model's repr
    with the statistics of ``columns`` ({header: {name: count}}, "#params" first; two
    decimals) of every module that has a nonzero one or was never called (``N/A`` but
    for the parameters, with a note on top)."""
    columns = {h: dict(c) for h, c in columns.items()}
    for path in _module_paths(model):
        for col in columns.values():
            col.setdefault(path, 0)
    stats = _group(columns)
    # MMEngine keeps the model's own entry only when nothing is uncalled.
    stats = _prune_zeros(stats, force_keep=uncalled or {""}, keep_parents=False)
    stats = _pretty(stats, 2)
    for header in list(columns)[1:]:
        stats = _mark(stats, header, uncalled, "N/A")

    def render(module, name):
        extra = module.extra_repr()
        lines = extra.split("\n") if extra else []
        if name in stats:
            printed = ", ".join(f"{k}: {v}" for k, v in stats[name].items())
            if printed:
                lines += printed.split("\n")
        children = []
        for key, sub in module._modules.items():
            path = f"{name}.{key}" if name else key
            text = render(sub, path) if sub is not None else "None"
            children.append(f"({key}): " + _indent_after_first(text, 2))
        head = module._get_name() + "("
        if len(lines) == 1 and not children:
            return head + lines[0] + ")"
        body = lines + children
        if not body:
            return head + ")"
        return head + "\n  " + "\n  ".join(body) + "\n)"

    return (_NOTE if uncalled else "") + render(model, "")
