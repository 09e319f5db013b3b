"""``dispatchflops compare A.json B.json``: per-module differences between two saved runs
(``--format json``)."""
from __future__ import annotations

import argparse
import sys

from . import export, views
from .export import SchemaError
from .formatting import format_size, signed
from .reports import ReportError, write

STATS = ("flops", "params", "activations")
#: CSV columns (raw values; a module missing from a run is an empty cell)
CSV_COLUMNS = ("module", "flops_a", "flops_b", "flops_delta", "params_a", "params_b",
               "params_delta", "activations_a", "activations_b", "activations_delta")
_HUMAN = (("module", "module"), ("flops_a", "flops A"), ("flops_b", "flops B"),
          ("flops_delta", "Δ flops"), ("flops_change", "Δ %"), ("params_a", "params A"),
          ("params_b", "params B"), ("params_delta", "Δ params"),
          ("activations_delta", "Δ activations"))


def diff_rows(a, b, max_depth: int | None = None, everything: bool = False) -> list:
    """Rows for the total ("Global") and for each module of A or B (A's order, then B's
    new ones) down to ``max_depth`` whose FLOPs, parameters or activations differ (all
    of them with ``everything``). Containers are rolled up as in every view; a module
    missing from one run has None there."""
    ca, cb = views.module_costs(a), views.module_costs(b)
    ta, tb = views.Tree(ca), views.Tree(cb)
    rows = [_row("Global", a.total, b.total)]
    for path in list(ca) + [p for p in cb if p not in ca]:
        depth = ta.depth[path] if path in ca else tb.depth[path]
        if max_depth is not None and depth > max_depth:
            continue
        row = _row(path, ca.get(path), cb.get(path))
        if everything or any(row[f"{s}_a"] != row[f"{s}_b"] for s in STATS):
            rows.append(row)
    return rows


def _row(path, ca, cb) -> dict:
    row = {"module": path}
    for s in STATS:
        va = getattr(ca, s) if ca is not None else None
        vb = getattr(cb, s) if cb is not None else None
        row[f"{s}_a"], row[f"{s}_b"] = va, vb
        row[f"{s}_delta"] = (vb or 0) - (va or 0)
    return row


def _change(row) -> str:
    a, b = row["flops_a"], row["flops_b"]
    if a is None:
        return "new"
    if b is None:
        return "removed"
    if a == 0:
        return "" if b == 0 else "new"
    return f"{(b - a) / a * 100:+.1f}%"


def _human(rows: list, markdown: bool) -> tuple:
    head = [h for _, h in _HUMAN]
    cells = []
    for r in rows:
        line = []
        for key, _ in _HUMAN:
            if key == "module":
                v = r["module"]
                line.append("total" if v == "Global" else export.module_label(v, markdown))
            elif key == "flops_change":
                line.append(_change(r))
            elif key.endswith("_delta"):
                line.append(signed(r[key]))
            else:
                line.append("—" if r[key] is None else format_size(r[key]))
        cells.append(line)
    return head, cells


def _describe(name: str, res) -> str:
    bits = [res.model or "model", f"{res.convention} convention"]
    if res.torch_version:
        bits.append(f"torch {res.torch_version}")
    if res.input:
        bits.append(res.input)
    return f"{name}: {', '.join(bits)}"


def render(a, b, rows: list, names: tuple, fmt: str = "table") -> str:
    if fmt == "csv":
        return export.csv_text([{k: ("" if v is None else v) for k, v in r.items()}
                                for r in rows], CSV_COLUMNS)
    head, cells = _human(rows, fmt == "markdown")
    lines = [_describe("A", a) + f" ({names[0]})", _describe("B", b) + f" ({names[1]})"]
    if a.convention != b.convention:
        lines.append(f"Note: A counts with the {a.convention} convention, B with {b.convention}: "
                     "FLOPs are not comparable")
    if len(rows) == 1:
        lines.append("No module differs.")
    left = [True] + [False] * (len(head) - 1)
    if fmt == "markdown":
        return ("\n".join(f"- {x}" for x in lines) + "\n\n"
                + export.markdown_grid(head, cells, left))
    return "\n".join(lines) + "\n" + export.text_grid(head, cells, left) + "\n"


class _Parser(argparse.ArgumentParser):
    def error(self, message):
        raise SchemaError(message)


def _parser():
    p = _Parser(prog="dispatchflops compare",
                description="Per-module differences between two runs saved with --format json.")
    p.add_argument("a", metavar="A.json")
    p.add_argument("b", metavar="B.json")
    p.add_argument("--max-depth", type=int, default=None, metavar="D",
                   help="modules down to this depth (default all)")
    p.add_argument("--all", action="store_true", help="also list modules that did not change")
    p.add_argument("--format", choices=("table", "markdown", "csv"), default="table")
    p.add_argument("--output", metavar="FILE", help="write to FILE instead of stdout")
    return p


def main(argv) -> int:
    try:
        args = _parser().parse_args(argv)
        a, b = export.load(args.a), export.load(args.b)
        rows = diff_rows(a, b, args.max_depth, args.all)
        write(render(a, b, rows, (args.a, args.b), args.format), args.output)
    except (SchemaError, ReportError) as e:
        print(f"dispatchflops compare: error: {e}", file=sys.stderr)
        return 2
    return 0
