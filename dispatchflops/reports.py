"""The command's report flags (``--format``, ``--output``, views, ``--plot``, budgets),
and the report they ask for."""
from __future__ import annotations

import os
import sys

from . import export, views
from .budget import BUDGETS, parse
from .formatting import format_size, memory_size, percent
from .plot import KINDS, image_format
from .table import mmengine_table
from .views import SORT_KEYS

FORMATS = ("table", "markdown", "json", "csv")


class ReportError(ValueError):
    """Report flags that cannot be honoured; one line for the user, exit status 2."""


def add_arguments(p) -> None:
    r = p.add_argument_group("reports")
    r.add_argument("--format", choices=FORMATS, default="table",
                   help="table: MMEngine's table with each module's share, and get_flops.py's "
                        "summary (default); markdown: a GitHub table and the summary; json: "
                        "the whole result (versioned schema, what `compare` reads); csv: one "
                        "row per module")
    r.add_argument("--output", metavar="FILE", help="write the report to FILE instead of stdout")
    r.add_argument("--by-op", action="store_true",
                   help="FLOPs per aten op, with their share of the total")
    r.add_argument("--top", type=int, metavar="K",
                   help="the K modules of largest inclusive cost at any depth, self vs inclusive")
    r.add_argument("--sort", choices=SORT_KEYS,
                   help="siblings (or --top's ranking) largest first by this statistic")
    r.add_argument("--plot", metavar="FILE",
                   help="also draw FLOPs by module path into FILE.svg or FILE.png "
                        "(needs matplotlib: pip install 'dispatchflops[plot]')")
    r.add_argument("--plot-kind", choices=KINDS, default="icicle", help="default icicle")
    b = p.add_argument_group("budgets (exit status 1 when one is exceeded; N takes a K, M, "
                             "G or T suffix, 1000-based: 5G, 30M, 1.5e9)")
    for name, (flag, what) in BUDGETS.items():
        b.add_argument(flag, dest=f"max_{name}", metavar="N", help=f"most {what}")


def check(args) -> dict:
    """Refuse contradictory report flags before anything is counted; return the budgets
    as {name: (text, value)}."""
    if args.by_op and args.top is not None:
        raise ReportError("--by-op and --top are two views: pick one")
    if args.format == "json" and (args.by_op or args.top is not None):
        raise ReportError("--format json writes the whole result; --by-op and --top shape "
                          "table, markdown and csv output")
    if args.by_op and args.sort not in (None, "flops"):
        raise ReportError("--by-op sorts by flops only")
    if args.top is not None and args.top < 1:
        raise ReportError("--top takes a positive number of modules")
    if args.max_depth is not None and args.max_depth < 0:
        raise ReportError("--max-depth takes 0 or more")
    for path in (args.output, args.plot):
        folder = os.path.dirname(path) if path else ""
        if folder and not os.path.isdir(folder):
            raise ReportError(f"cannot write {path}: no such directory {folder}")
    if args.plot:
        image_format(args.plot)
    if args.plot and args.plot_kind == "roofline" and not (
            args.device_spec or args.bandwidth_gbs is not None):
        raise ReportError("--plot-kind roofline needs a device: --device-spec NAME or "
                          "--peak-tflops X --bandwidth-gbs Y")
    limits = {}
    for name in BUDGETS:
        text = getattr(args, f"max_{name}")
        if text is not None:
            limits[name] = (text, parse(name, text))
    return limits


def render(args, model, res, footer: str) -> str:
    """The report ``--format`` asks for, of the view the flags ask for; ``footer`` (the
    summary lines) follows a table."""
    if args.format == "json":
        return export.to_json(res)
    phases = views.phases_run(res)
    if args.by_op:
        view, rows = "ops", views.op_rows(res)
    elif args.top is not None:
        view, rows = "top", views.top_rows(res, args.top, args.sort or "flops", args.max_depth)
    else:
        view = "modules"
        if args.format == "table":  # MMEngine's table, drawn from the model and results
            depth = 3 if args.max_depth is None else args.max_depth
            return module_table(model, res, depth, args.sort, phases) + "\n" + \
                footer.rstrip("\n") + "\n"
        depth = args.max_depth if args.max_depth is not None or args.format == "csv" else 3
        rows = views.module_rows(res, depth, args.sort, skip_zero=args.format != "csv")
    if args.format == "csv":
        columns = {"ops": views.op_columns(res), "top": ("rank", *views.module_columns(res))}
        return export.csv_text(rows, columns.get(view, views.module_columns(res)))
    columns = export.human_columns(view, phases, comm=bool(res.total.comm),
                                   device=res.device is not None,
                                   measured=res.measured is not None)
    if args.format == "markdown":
        return export.markdown_report(res, rows, columns)
    table = "\n" + export.text_table(rows, columns) + "\n"
    return table + "\n" + footer.rstrip("\n") + "\n"


def module_table(model, res, max_depth: int, sort, phases) -> str:
    """MMEngine's table, plus each module's share of the total FLOPs, after a backward
    its FLOPs per phase, where collectives ran, the bytes they moved, with a device its
    roofline and with measured times, those."""
    costs = views.module_costs(res)
    total = res.total.flops
    extra = {"share": {p: percent(views.share(c.flops, total)) for p, c in costs.items()}}
    for phase in phases:
        extra[f"#{phase}"] = {p: format_size(c.phase_flops[phase]) for p, c in costs.items()}
    if res.total.comm:  # collectives ran: the bytes each module's moved on this rank
        extra["#comm bytes"] = {p: format_size(c.comm) for p, c in costs.items()}
    if res.memory is not None:  # --memory
        mods = res.memory.modules
        columns = [("#peak fwd", "peak_forward"), ("#saved", "saved")]
        if any(m.peak_backward for m in mods.values()):
            columns.insert(1, ("#peak bwd", "peak_backward"))
        for header, field in columns:
            extra[header] = {p: memory_size(getattr(mods[p], field)) for p in costs if p in mods}
    shown = export.human_columns("modules", (), device=res.device is not None,
                                 measured=res.measured is not None)
    shown = shown[shown.index("activations") + 1:]
    if shown:
        rows = {r["module"]: r for r in views.module_rows(res)}
        for column in shown:
            header, text = export.COLUMNS[column]
            extra[f"#{header}"] = {p: text(r[column]) for p, r in rows.items()}
    return mmengine_table(model, res, max_depth=max_depth, sort=sort, extra=extra)


def write(text: str, path: str | None) -> None:
    if path is None:
        sys.stdout.write(text)
        return
    try:
        with open(path, "w", encoding="utf-8", newline="") as f:
            f.write(text)
    except OSError as e:
        raise ReportError(f"cannot write {path}: {e.strerror or e}") from None
