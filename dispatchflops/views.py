"""Views of a ``Results``: the module tree (to a depth, siblings sorted), the K most
expensive modules with their self and inclusive costs, and totals per aten op.

Views return plain rows (dicts of raw numbers); ``export`` formats them.

Two rules shared by every view (and by MMEngine's table):

- **Containers are rolled up.** A module whose forward never ran and that has no cost of
  its own (an ``nn.ModuleList``, an ``nn.ModuleDict``) holds the sum of the modules it
  owns, where the count, which follows the call stack, holds nothing.
- **Self cost is exact.** A module's self FLOPs and activations are those of the ops it
  ran itself, not inside a module it called (``ModuleCost.self_flops``, charged to the
  innermost running module). Its inclusive cost minus its children's would be wrong
  when a child is called from outside its parent (the child's cost is then not part of
  the parent's), so it is not computed that way. Self parameters are the parameters a
  module owns directly (its count minus its children's; a shared parameter counts once,
  under the first module that owns it).
"""
from __future__ import annotations

import copy

from .results import PHASES, ModuleCost, Results
from .roofline import Bound, roofline

SORT_KEYS = ("flops", "params", "activations", "bytes")

#: columns of a module row, in order (the CSV columns of the module and top views)
MODULE_COLUMNS = ("module", "depth", "calls", "params", "self_params", "flops",
                  "forward_flops", "backward_flops", "recompute_flops", "self_flops",
                  "share", "self_share", "activations", "self_activations", "comm_bytes",
                  "bytes", "self_bytes", "intensity")
#: more columns when the results have a device: its roofline (roofline.py)
ROOFLINE_COLUMNS = ("bound_s", "compute_s", "memory_s", "bound_by")
#: and when forward times were measured (timing.py): the time, the FLOP/s it achieved,
#: and the forward's bound over it (1.0: on the roofline)
MEASURED_COLUMNS = ("time_s", "flops_per_s", "of_bound")
#: columns of an op row (the by-op view; collectives are rows with bytes)
OP_COLUMNS = ("op", "calls", "flops", "share", "comm_bytes", "bytes", "intensity")


class Tree:
    """Parent and children of each module path of a ``Results`` (by dotted names: the
    parent is the nearest enclosing path present; "" is the root when present)."""

    def __init__(self, paths):
        self.paths = list(paths)
        present = set(self.paths)
        self.parent: dict = {}
        self.children: dict = {p: [] for p in self.paths}
        self.roots: list = []
        for p in self.paths:
            parent = _enclosing(p, present)
            self.parent[p] = parent
            if parent is None:
                self.roots.append(p)
            else:
                self.children[parent].append(p)
        self.depth: dict = {}
        for root in self.roots:
            stack = [(root, 0)]
            while stack:
                p, d = stack.pop()
                self.depth[p] = d
                stack.extend((c, d + 1) for c in self.children[p])

    def preorder(self, key=None, max_depth: int | None = None):
        """Paths, parents before children; siblings in ``named_modules()`` order or, with
        ``key`` (path -> number), largest first (ties keep that order)."""
        def kids(p):
            c = self.children[p]
            return sorted(c, key=lambda q: -key(q)) if key else c

        stack = list(reversed(sorted(self.roots, key=lambda q: -key(q)) if key else self.roots))
        while stack:
            p = stack.pop()
            if max_depth is not None and self.depth[p] > max_depth:
                continue
            yield p
            stack.extend(reversed(kids(p)))


def _enclosing(path: str, present: set):
    if path == "":
        return None
    head = path
    while "." in head:
        head = head.rpartition(".")[0]
        if head in present:
            return head
    return "" if "" in present else None


def module_costs(results: Results) -> dict:
    """{path: ModuleCost} with containers rolled up (see the module docstring); costs that
    need no roll-up are the results' own objects, the others are copies."""
    tree = Tree(results.modules)
    out = dict(results.modules)
    order = list(tree.preorder())
    for path in reversed(order):  # children before their parent
        cost = results.modules[path]
        if cost.calls > 0 or cost.flops or cost.activations or cost.bytes:
            continue
        kids = [out[c] for c in tree.children[path]]
        if not any(k.flops or k.activations or k.comm or k.bytes for k in kids):
            continue
        rolled = copy.deepcopy(cost)
        for k in kids:
            for phase in PHASES:
                rolled.phase_flops[phase] += k.phase_flops[phase]
                rolled.comm_phase_bytes[phase] += k.comm_phase_bytes[phase]
                rolled.phase_bytes[phase] += k.phase_bytes[phase]
            rolled.activations += k.activations
            rolled.by_op.update(k.by_op)
            rolled.op_calls.update(k.op_calls)
            rolled.comm_bytes.update(k.comm_bytes)
            rolled.comm_calls.update(k.comm_calls)
            rolled.bytes_by_op.update(k.bytes_by_op)
            rolled.counted |= k.counted
        out[path] = rolled
    return out


def share(part: int, whole: int) -> float:
    """``part`` as a fraction of ``whole`` (0.0 when ``whole`` is 0)."""
    return part / whole if whole else 0.0


def phases_run(results: Results) -> tuple:
    """The phases worth a column: () for a forward-only count, ("forward", "backward")
    when a backward ran, ("forward", "backward", "recompute") when modules recomputed."""
    t = results.total
    if t.recompute_flops:
        return PHASES
    if t.backward_flops:
        return ("forward", "backward")
    return ()


def module_columns(results: Results) -> tuple:
    """The CSV columns of the module and top views of ``results``."""
    return MODULE_COLUMNS + (ROOFLINE_COLUMNS if results.device is not None else ()) + (
        MEASURED_COLUMNS if results.measured is not None else ())


def op_columns(results: Results) -> tuple:
    """The CSV columns of the by-op view of ``results``."""
    return OP_COLUMNS + (ROOFLINE_COLUMNS if results.device is not None else ())


class _Lines:
    """The roofline of each module path (inclusive; containers rolled up as costs are),
    for all phases and for the forward, and the measured forward times."""

    def __init__(self, results: Results, tree: Tree):
        self.device = results.device
        self.measured = None if results.measured is None else rolled(results.measured, tree, 0.0)
        self.all = rolled(roofline(results, self.device).modules, tree)
        self.forward = rolled(roofline(results, self.device, ("forward",)).modules, tree)

    def columns(self, path: str, self_bytes: int) -> dict:
        b = self.all.get(path, Bound())
        row = {"self_bytes": self_bytes, "intensity": b.intensity}
        if self.device is not None:
            row.update(bound_s=b.seconds, compute_s=b.compute_s, memory_s=b.memory_s,
                       bound_by=b.bound_by)
        if self.measured is not None:
            t = self.measured.get(path)
            f = self.forward.get(path, Bound())
            row.update(time_s=t, flops_per_s=f.flops / t if t else None,
                       of_bound=f.seconds / t if t and self.device is not None else None)
        return row


def rolled(values: dict, tree: Tree, zero=None) -> dict:
    """``values`` ({path: roofline ``Bound`` or measured seconds}) with each path that has
    none, or an empty one (a container never called, such as an ``nn.ModuleList``), given
    the sum of its children's, as costs are rolled up; ``zero`` starts the sum (default:
    an empty ``Bound``)."""
    out = dict(values)
    for path in reversed(list(tree.preorder())):
        kids = [out[c] for c in tree.children[path] if c in out]
        if kids and not out.get(path):
            out[path] = sum(kids, Bound() if zero is None else zero)
    return out


def _row(path: str, cost: ModuleCost, depth: int, self_params: int, total: int,
         lines: _Lines) -> dict:
    return {
        "module": path,
        "depth": depth,
        "calls": cost.calls,
        "params": cost.params,
        "self_params": self_params,
        "flops": cost.flops,
        "forward_flops": cost.forward_flops,
        "backward_flops": cost.backward_flops,
        "recompute_flops": cost.recompute_flops,
        "self_flops": cost.self_flops,
        "share": share(cost.flops, total),
        "self_share": share(cost.self_flops, total),
        "activations": cost.activations,
        "self_activations": cost.self_activations,
        "comm_bytes": cost.comm,
        "bytes": cost.bytes,
        **lines.columns(path, cost.self_bytes),
    }


def _sort_value(costs: dict, sort: str | None):
    if sort is None:
        return None
    if sort not in SORT_KEYS:
        raise ValueError(f"sort by one of {', '.join(SORT_KEYS)}, not {sort!r}")
    return lambda p: getattr(costs[p], sort)


def _self_params(costs: dict, tree: Tree) -> dict:
    return {p: max(c.params - sum(costs[k].params for k in tree.children[p]), 0)
            for p, c in costs.items()}


def module_rows(results: Results, max_depth: int | None = None, sort: str | None = None,
                skip_zero: bool = False) -> list:
    """One row per module, parents before children, down to ``max_depth`` (the model is
    depth 0), siblings largest first by ``sort`` ("flops", "params", "activations") or in
    ``named_modules()`` order. ``skip_zero`` leaves out modules whose parameters, FLOPs
    and activations are zero, with everything below them (as MMEngine's table does)."""
    costs = module_costs(results)
    tree = Tree(costs)
    selfp = _self_params(costs, tree)
    total = results.total.flops
    lines = _Lines(results, tree)
    keep = None
    if skip_zero:
        keep = set()
        for p in reversed(list(tree.preorder())):
            c = costs[p]
            if c.params or c.flops or c.activations or any(k in keep for k in tree.children[p]):
                keep.add(p)
    return [_row(p, costs[p], tree.depth[p], selfp[p], total, lines)
            for p in tree.preorder(_sort_value(costs, sort), max_depth)
            if keep is None or p in keep]


def top_rows(results: Results, k: int, sort: str = "flops", max_depth: int | None = None) -> list:
    """The ``k`` modules with the largest inclusive ``sort`` statistic, at any depth (or
    down to ``max_depth``), the model itself left out; each row adds ``rank`` (1-based)."""
    if k < 1:
        raise ValueError("top takes a positive number of modules")
    costs = module_costs(results)
    tree = Tree(costs)
    selfp = _self_params(costs, tree)
    value = _sort_value(costs, sort or "flops")
    candidates = [p for p in tree.preorder(max_depth=max_depth) if p != ""]
    ranked = sorted(candidates, key=lambda p: -value(p))[:k]
    total = results.total.flops
    lines = _Lines(results, tree)
    return [{"rank": i, **_row(p, costs[p], tree.depth[p], selfp[p], total, lines)}
            for i, p in enumerate(ranked, 1)]


def op_rows(results: Results) -> list:
    """FLOPs, bytes and calls per aten op over everything counted (all phases: a backward
    kernel is an op of its own, e.g. ``aten.convolution_backward``), largest first by
    FLOPs, then the ops with bytes and no FLOPs, largest first by bytes; then the bytes
    and calls of each collective (``comm.all_reduce``, ...), largest first. With a device,
    each op's roofline columns too."""
    t = results.total
    total = t.flops
    lines = roofline(results, results.device).ops
    ops = sorted(t.by_op, key=lambda op: (-t.by_op[op], op)) + sorted(
        (op for op in t.bytes_by_op if op not in t.by_op),
        key=lambda op: (-t.bytes_by_op[op], op))
    moved = sorted(t.comm_bytes, key=lambda c: (-t.comm_bytes[c], c))
    calls = {o.op: 0 for o in results.ops}
    for o in results.ops:
        calls[o.op] += o.calls

    def row(op):
        b = lines.get(op, Bound())
        extra = {} if results.device is None else {
            "bound_s": b.seconds, "compute_s": b.compute_s, "memory_s": b.memory_s,
            "bound_by": b.bound_by}
        return {"op": op, "calls": t.op_calls.get(op) or calls.get(op, 0),
                "flops": t.by_op.get(op, 0), "share": share(t.by_op.get(op, 0), total),
                "comm_bytes": 0, "bytes": t.bytes_by_op.get(op, 0), "intensity": b.intensity,
                **extra}

    return [row(op) for op in ops] + [
        {"op": f"comm.{c}", "calls": t.comm_calls.get(c, 0), "flops": 0, "share": 0.0,
         "comm_bytes": t.comm_bytes[c], "bytes": 0, "intensity": None,
         **({} if results.device is None else dict.fromkeys(ROOFLINE_COLUMNS))}
        for c in moved]
