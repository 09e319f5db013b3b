"""A ``Results`` as data and as documents: the versioned dict / JSON form (exact round
trip), and view rows (``views``) as CSV, GitHub Markdown or a plain-text grid.

Schema version 5 (``SCHEMA_VERSION``)::

    {"schema": "dispatchflops.results", "schema_version": 5,
     "dispatchflops_version": str, "torch_version": str,
     "convention": "fvcore" | "pytorch", "model": str | null, "input": str | null,
     "total": COST,                       # everything counted, in or out of the model
     "modules": {path: COST, ...},        # "" is the model; named_modules() order
     "unsupported": {op: calls, ...},     # ops with no formula, not free by nature
     "uncalled": [path, ...],             # forward never ran (nn.ModuleList & co. have none)
     "blocks_run": {op: flops, ...},      # flex_attention: FLOPs of the blocks its mask ran
                                          # (version 2; read as {} from version 1)
     # version 3 (read as empty / null / false from older versions):
     "bytes_counted": bool,               # whether memory bytes were counted
     "ops": [[stack, phase, op, calls, flops | null, bytes, dtype | null], ...],
                                          # each op's calls per module stack (a list of
                                          # paths) and phase; flops null: bytes only
     "device": null | {"name": str, "peaks": {dtype: flop/s}, "bandwidth": bytes/s,
                       "source": str,     # the roofline's device
                       "memory": bytes | null},  # its capacity (version 5)
     "measured": null | {"how": str, "seconds": {path: float}},  # forward time per module
     "roofline": null | {"total": BOUND, "modules": {path: BOUND}},  # written, not read:
                                          # derived from "ops" and "device" (roofline.py)
     # version 4 (read as [] from older versions):
     "read_by_fused": [path, ...],        # uncalled modules whose parameters a fused
                                          # kernel read (counted in their caller)
     # version 5 (read as null from older versions):
     "memory": null | MEMORY}             # FlopCounterMode(count_memory=True), memory.py
    MEMORY = {"peak": {device: bytes}, "breakdown": {device: {category: bytes}},
              "peak_at": {device: [phase, path | null]},
              "end": {device: {category: bytes}}, "untracked": {kind: tensors},
              "modules": {path: {"start": int, "end": int, "peak_forward": int,
                                 "peak_backward": int, "saved": int, "parameters": int,
                                 "gradients": int, "optimizer": int}}}
    BOUND = {"flops": int, "bytes": int, "seconds": float, "compute_s": float,
             "memory_s": float, "bound_by": "compute" | "memory" | "",
             "intensity": float | null}
    COST = {"calls": int, "params": int, "activations": int,
            "flops": int,                 # = the sum of phase_flops
            "phase_flops": {"forward": int, "backward": int, "recompute": int},
            "self_flops": int, "self_activations": int,
            "by_op": {op: flops, ...}, "op_calls": {op: calls, ...},
            "counted": bool,
            # version 2: bytes this rank moved in collectives (comm.py), by collective
            "comm_bytes": {collective: bytes, ...}, "comm_calls": {collective: calls, ...},
            "comm_phase_bytes": {"forward": int, "backward": int, "recompute": int},
            # version 3: bytes read and written in memory by every op (traffic.py)
            "bytes": int,                 # = the sum of phase_bytes
            "phase_bytes": {"forward": int, "backward": int, "recompute": int},
            "self_bytes": int, "bytes_by_op": {op: bytes, ...}}

Costs are inclusive (an op counts for its module and every module around it); ``self_*``
are the ops a module ran itself. Readers accept every version up to their own.
"""
from __future__ import annotations

import csv
import dataclasses
import io
import json
from collections import Counter

from tabulate import tabulate

from .devices import DeviceSpec
from .memory import Memory, ModuleMemory
from .formatting import format_size, memory_size, percent, rate, ratio, seconds
from .results import PHASES, ModuleCost, OpCost, Results
from .roofline import Bound, roofline

SCHEMA = "dispatchflops.results"
#: version of the dict/JSON layout that ``to_dict`` writes
SCHEMA_VERSION = 5


class SchemaError(ValueError):
    """Data that is not a dispatchflops result this version can read; says why."""


# --------------------------------------------------------------------------- dict / JSON
def _cost_to_dict(c: ModuleCost) -> dict:
    return {
        "calls": c.calls,
        "params": c.params,
        "activations": c.activations,
        "flops": c.flops,
        "phase_flops": {p: c.phase_flops[p] for p in PHASES},
        "self_flops": c.self_flops,
        "self_activations": c.self_activations,
        "by_op": dict(c.by_op),
        "op_calls": dict(c.op_calls),
        "counted": c.counted,
        "comm_bytes": dict(c.comm_bytes),
        "comm_calls": dict(c.comm_calls),
        "comm_phase_bytes": {p: c.comm_phase_bytes[p] for p in PHASES},
        "bytes": c.bytes,
        "phase_bytes": {p: c.phase_bytes[p] for p in PHASES},
        "self_bytes": c.self_bytes,
        "bytes_by_op": dict(c.bytes_by_op),
    }


def _bound_to_dict(b: Bound) -> dict:
    return {"flops": b.flops, "bytes": b.bytes, "seconds": b.seconds, "compute_s": b.compute_s,
            "memory_s": b.memory_s, "bound_by": b.bound_by, "intensity": b.intensity}


def _roofline_to_dict(results: Results) -> dict | None:
    if results.device is None:
        return None
    r = roofline(results, results.device)
    return {"total": _bound_to_dict(r.total),
            "modules": {p: _bound_to_dict(b) for p, b in r.modules.items()}}


def to_dict(results: Results) -> dict:
    """The JSON-ready form of ``results`` (schema in this module's docstring)."""
    return {
        "schema": SCHEMA,
        "schema_version": SCHEMA_VERSION,
        "dispatchflops_version": results.dispatchflops_version,
        "torch_version": results.torch_version,
        "convention": results.convention,
        "model": results.model,
        "input": results.input,
        "total": _cost_to_dict(results.total),
        "modules": {path: _cost_to_dict(c) for path, c in results.modules.items()},
        "unsupported": dict(results.unsupported),
        "uncalled": list(results.uncalled),
        "read_by_fused": list(results.read_by_fused),
        "blocks_run": dict(results.blocks_run),
        "bytes_counted": results.bytes_counted,
        "ops": [[list(o.stack), o.phase, o.op, o.calls, o.flops, o.bytes, o.dtype]
                for o in results.ops],
        "device": None if results.device is None else {
            "name": results.device.name, "peaks": dict(results.device.peaks),
            "bandwidth": results.device.bandwidth, "source": results.device.source,
            "memory": results.device.memory},
        "measured": None if results.measured is None else {
            "how": results.measured_how, "seconds": dict(results.measured)},
        "roofline": _roofline_to_dict(results),
        "memory": None if results.memory is None else {
            **dataclasses.asdict(results.memory),
            "peak_at": {d: list(at) for d, at in results.memory.peak_at.items()}},
    }


def _get(d: dict, key: str, kind, where: str):
    if not isinstance(d, dict) or key not in d:
        raise SchemaError(f"{where}: missing {key!r}")
    v = d[key]
    ok = (isinstance(v, int) and not isinstance(v, bool)) if kind is int else isinstance(v, kind)
    if not ok:
        raise SchemaError(f"{where}: {key!r} is {type(v).__name__}, expected {kind}")
    return v


def _counts(d: dict, key: str, where: str) -> Counter:
    raw = _get(d, key, dict, where)
    for op in raw:
        _get(raw, op, int, f"{where}.{key}")
    return Counter(raw)


def _cost_from_dict(path: str, d: dict, where: str, version: int) -> ModuleCost:
    phases = _get(d, "phase_flops", dict, where)
    c = ModuleCost(
        path,
        params=_get(d, "params", int, where),
        activations=_get(d, "activations", int, where),
        calls=_get(d, "calls", int, where),
        phase_flops={p: _get(phases, p, int, f"{where}.phase_flops") for p in PHASES},
        by_op=_counts(d, "by_op", where),
        op_calls=_counts(d, "op_calls", where),
        counted=_get(d, "counted", bool, where),
        self_flops=_get(d, "self_flops", int, where),
        self_activations=_get(d, "self_activations", int, where),
    )
    if _get(d, "flops", int, where) != c.flops:
        raise SchemaError(f"{where}: 'flops' is not the sum of 'phase_flops'")
    if version >= 2:
        c.comm_bytes = _counts(d, "comm_bytes", where)
        c.comm_calls = _counts(d, "comm_calls", where)
        moved = _get(d, "comm_phase_bytes", dict, where)
        c.comm_phase_bytes = {p: _get(moved, p, int, f"{where}.comm_phase_bytes") for p in PHASES}
    if version >= 3:
        moved = _get(d, "phase_bytes", dict, where)
        c.phase_bytes = {p: _get(moved, p, int, f"{where}.phase_bytes") for p in PHASES}
        if _get(d, "bytes", int, where) != c.bytes:
            raise SchemaError(f"{where}: 'bytes' is not the sum of 'phase_bytes'")
        c.self_bytes = _get(d, "self_bytes", int, where)
        c.bytes_by_op = _counts(d, "bytes_by_op", where)
    return c


def _number(v, where: str) -> float:
    if isinstance(v, bool) or not isinstance(v, (int, float)):
        raise SchemaError(f"{where} is {type(v).__name__}, expected a number")
    return v


def _ops_from(data: dict) -> list:
    out = []
    for i, row in enumerate(_get(data, "ops", list, "result")):
        where = f"ops[{i}]"
        if not isinstance(row, list) or len(row) != 7:
            raise SchemaError(f"{where}: expected [stack, phase, op, calls, flops, bytes, dtype]")
        stack, phase, op, calls, flops, moved, dtype = row
        if not (isinstance(stack, list) and all(isinstance(p, str) for p in stack)
                and phase in PHASES and isinstance(op, str)
                and all(isinstance(n, int) and not isinstance(n, bool) for n in (calls, moved))
                and (flops is None or isinstance(flops, int) and not isinstance(flops, bool))
                and (dtype is None or isinstance(dtype, str))):
            raise SchemaError(f"{where}: malformed")
        out.append(OpCost(tuple(stack), phase, op, calls, flops, moved, dtype))
    return out


def _device_from(data: dict):
    d = data.get("device")
    if d is None:
        return None
    where = "device"
    peaks = _get(d, "peaks", dict, where)
    return DeviceSpec(_get(d, "name", str, where),
                      {k: _number(v, f"device.peaks[{k!r}]") for k, v in peaks.items()},
                      _number(_get(d, "bandwidth", (int, float), where), "device.bandwidth"),
                      _get(d, "source", str, where), _bytes(d.get("memory"), "device.memory"))


def _bytes(v, where: str, optional: bool = True):
    if (v is None and optional) or (isinstance(v, int) and not isinstance(v, bool)):
        return v
    raise SchemaError(f"{where}: expected a number of bytes, got {v!r}")


def _keyed(d: dict, key: str, read) -> dict:
    return {k: read(v, f"memory.{key}[{k!r}]") for k, v in _get(d, key, dict, "memory").items()}


def _categories(v, where: str) -> dict:
    if not isinstance(v, dict):
        raise SchemaError(f"{where}: malformed")
    return {c: _bytes(n, f"{where}[{c!r}]", False) for c, n in v.items()}


def _memory_from(data: dict):
    m = data.get("memory")
    if m is None:
        return None
    if not isinstance(m, dict):
        raise SchemaError("memory: malformed")

    def place(v, where):
        if not (isinstance(v, list) and len(v) == 2 and isinstance(v[0], str)
                and (v[1] is None or isinstance(v[1], str))):
            raise SchemaError(f"{where}: malformed")
        return tuple(v)

    def module(v, where):
        if not isinstance(v, dict) or set(v) != {f.name for f in dataclasses.fields(ModuleMemory)}:
            raise SchemaError(f"{where}: malformed")
        return ModuleMemory(**{k: _bytes(n, f"{where}.{k}", False) for k, n in v.items()})

    return Memory(peak=_keyed(m, "peak", lambda v, w: _bytes(v, w, False)),
                  breakdown=_keyed(m, "breakdown", _categories),
                  peak_at=_keyed(m, "peak_at", place),
                  end=_keyed(m, "end", _categories),
                  modules=_keyed(m, "modules", module),
                  untracked=_keyed(m, "untracked", lambda v, w: _bytes(v, w, False)))


def _measured_from(data: dict):
    m = data.get("measured")
    if m is None:
        return None, None
    seconds = _get(m, "seconds", dict, "measured")
    how = m.get("how")
    if how is not None and not isinstance(how, str):
        raise SchemaError("measured.how is not a string")
    return {p: _number(v, f"measured.seconds[{p!r}]") for p, v in seconds.items()}, how


def _optional_str(data: dict, key: str):
    v = data.get(key)
    if v is not None and not isinstance(v, str):
        raise SchemaError(f"{key!r} is {type(v).__name__}, expected a string or null")
    return v


def from_dict(data: dict) -> Results:
    """A ``Results`` from ``to_dict``'s form, of this schema version or an earlier one."""
    if not isinstance(data, dict) or data.get("schema") != SCHEMA:
        raise SchemaError("not a dispatchflops result (no \"schema\": \"dispatchflops.results\")")
    version = _get(data, "schema_version", int, "result")
    if version > SCHEMA_VERSION:
        raise SchemaError(f"schema version {version} is newer than this dispatchflops reads "
                          f"({SCHEMA_VERSION}): upgrade dispatchflops")
    if version < 1:
        raise SchemaError(f"bad schema version {version}")
    modules = {path: _cost_from_dict(path, c, f"modules[{path!r}]", version)
               for path, c in _get(data, "modules", dict, "result").items()}
    uncalled = _get(data, "uncalled", list, "result")
    if not all(isinstance(p, str) for p in uncalled):
        raise SchemaError("'uncalled' must list module paths")
    read_by_fused = _get(data, "read_by_fused", list, "result") if version >= 4 else []
    if not all(isinstance(p, str) for p in read_by_fused):
        raise SchemaError("'read_by_fused' must list module paths")
    unsupported = _get(data, "unsupported", dict, "result")
    for op in unsupported:
        _get(unsupported, op, int, "unsupported")
    blocks_run = _get(data, "blocks_run", dict, "result") if version >= 2 else {}
    for op in blocks_run:
        _get(blocks_run, op, int, "blocks_run")
    measured, how = _measured_from(data) if version >= 3 else (None, None)
    return Results(
        convention=_get(data, "convention", str, "result"),
        modules=modules,
        total=_cost_from_dict("Global", _get(data, "total", dict, "result"), "total", version),
        unsupported=dict(unsupported),
        uncalled=list(uncalled),
        read_by_fused=list(read_by_fused),
        blocks_run=dict(blocks_run),
        ops=_ops_from(data) if version >= 3 else [],
        bytes_counted=_get(data, "bytes_counted", bool, "result") if version >= 3 else False,
        device=_device_from(data) if version >= 3 else None,
        measured=measured,
        measured_how=how,
        input=_optional_str(data, "input"),
        model=_optional_str(data, "model"),
        torch_version=_optional_str(data, "torch_version"),
        dispatchflops_version=_optional_str(data, "dispatchflops_version"),
        memory=_memory_from(data) if version >= 5 else None,
    )


def to_json(results: Results) -> str:
    """``to_dict`` as JSON, one line per module (readable, and diffs line by line)."""
    lines = []
    for key, value in to_dict(results).items():
        if key == "modules" and value:
            value = "{\n" + ",\n".join(f"  {json.dumps(p)}: {json.dumps(c)}"
                                        for p, c in value.items()) + "\n }"
        else:
            value = json.dumps(value)
        lines.append(f" {json.dumps(key)}: {value}")
    return "{\n" + ",\n".join(lines) + "\n}\n"


def from_json(text: str) -> Results:
    try:
        data = json.loads(text)
    except json.JSONDecodeError as e:
        raise SchemaError(f"not JSON: {e}") from None
    return from_dict(data)


def load(path) -> Results:
    """Read a result that ``--format json`` (or ``to_json``) wrote."""
    try:
        with open(path, encoding="utf-8") as f:
            text = f.read()
    except OSError as e:
        raise SchemaError(f"cannot read {path}: {e.strerror or e}") from None
    except UnicodeDecodeError:
        raise SchemaError(f"{path} is not a UTF-8 text file") from None
    try:
        return from_json(text)
    except SchemaError as e:
        raise SchemaError(f"{path}: {e}") from None


# --------------------------------------------------------------------------- columns
#: column -> (header, formatter of the raw value) for the human formats
COLUMNS = {
    "rank": ("#", str),
    "module": ("module", None),
    "op": ("op", lambda op: f"`{op}`"),
    "depth": ("depth", str),
    "calls": ("calls", str),
    "params": ("params", format_size),
    "self_params": ("self params", format_size),
    "flops": ("flops", format_size),
    "forward_flops": ("forward", format_size),
    "backward_flops": ("backward", format_size),
    "recompute_flops": ("recompute", format_size),
    "self_flops": ("self flops", format_size),
    "share": ("share", percent),
    "self_share": ("self share", percent),
    "activations": ("activations", format_size),
    "self_activations": ("self activations", format_size),
    "comm_bytes": ("comm bytes", format_size),
    "bytes": ("bytes", format_size),
    "self_bytes": ("self bytes", format_size),
    "intensity": ("flop/byte", ratio),
    "bound_s": ("bound", seconds),
    "compute_s": ("compute-bound", seconds),
    "memory_s": ("memory-bound", seconds),
    "bound_by": ("bound by", str),
    "time_s": ("time", seconds),
    "flops_per_s": ("flop/s", rate),
    "of_bound": ("of bound", lambda x: "-" if x is None else percent(x)),
}
_LEFT = {"module", "op"}


def human_columns(view: str, phases: tuple, comm: bool = False, device: bool = False,
                  measured: bool = False) -> list:
    """The columns the table and Markdown show for a view ("modules", "top", "ops");
    ``phases`` (``views.phases_run``) adds the FLOPs per phase of a training step,
    ``comm`` (collectives ran) the bytes they moved, ``device`` (a roofline) the bytes,
    intensity and bound, ``measured`` (forward times) the times, FLOP/s and their
    fraction of the bound."""
    split = [f"{p}_flops" for p in phases]
    moved = ["comm_bytes"] if comm else []
    line = ["bytes", "intensity", "bound_s", "bound_by"] if device else []
    timed = ["time_s", "flops_per_s"] + (["of_bound"] if device else []) if measured else []
    if view == "ops":
        return ["op", "calls", "flops", "share", *moved, *line]
    if view == "top":
        return ["rank", "module", "flops", "self_flops", *split, "share", "self_share",
                "params", "self_params", "activations", "self_activations", *moved, *line,
                *timed]
    return ["module", "params", "flops", *split, "share", "activations", *moved, *line, *timed]


def module_label(path: str, markdown: bool) -> str:
    if path == "":
        return "model"
    return f"`{path}`" if markdown else path


def _cells(rows: list, columns: list, markdown: bool) -> list:
    out = []
    for r in rows:
        line = []
        for c in columns:
            v = r[c]
            if c == "module":
                line.append(module_label(v, markdown))
            elif c == "op" and not markdown:
                line.append(v)
            else:
                line.append(COLUMNS[c][1](v))
        out.append(line)
    return out


def csv_text(rows: list, columns) -> str:
    """Rows as CSV with the raw values (integers; shares as fractions), ``columns`` as
    the header."""
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(columns)
    for r in rows:
        w.writerow([f"{r[c]:.6g}" if isinstance(r[c], float) else r[c] for c in columns])
    return buf.getvalue()


def _md_escape(text: str) -> str:
    return text.replace("\\", "\\\\").replace("|", "\\|")


def markdown_grid(head: list, cells: list, left: list) -> str:
    """A GitHub-flavoured Markdown table of text cells (escaped here); the columns whose
    ``left`` is true are left-aligned, the others right-aligned."""
    align = [":--" if is_left else "--:" for is_left in left]
    lines = ["| " + " | ".join(head) + " |", "|" + "|".join(align) + "|"]
    lines += ["| " + " | ".join(_md_escape(x) for x in line) + " |" for line in cells]
    return "\n".join(lines) + "\n"


def text_grid(head: list, cells: list, left: list) -> str:
    """A plain-text grid of text cells in the box style of MMEngine's table; the columns
    whose ``left`` is true are left-aligned, the others right-aligned."""
    align = ["left" if is_left else "right" for is_left in left]
    return tabulate(cells, headers=head, tablefmt="pretty", colalign=align,
                    disable_numparse=True)


def markdown_table(rows: list, columns: list) -> str:
    """View rows as a Markdown table: names left-aligned, numbers right-aligned."""
    return markdown_grid([COLUMNS[c][0] for c in columns], _cells(rows, columns, markdown=True),
                         [c in _LEFT for c in columns])


def text_table(rows: list, columns: list) -> str:
    """View rows as a plain-text grid."""
    return text_grid([COLUMNS[c][0] for c in columns], _cells(rows, columns, markdown=False),
                     [c in _LEFT for c in columns])


def provenance(results: Results) -> str:
    """What counted, in words: the convention and the versions that are known."""
    versions = [f"{name} {v}" for name, v in (("torch", results.torch_version),
                                              ("dispatchflops", results.dispatchflops_version))
                if v]
    return results.convention + (f" ({', '.join(versions)})" if versions else "")


def notes(results: Results, code=str) -> list:
    """(label, value) pairs for what fvcore warns about: the ops with no formula and the
    modules never called; ``code`` formats a name (an op, a path)."""
    items = []
    if results.unsupported:
        items.append(("Not counted (no formula)", ", ".join(
            f"{code(op)} x{n}" for op, n in results.unsupported.items())))
    fused = set(results.read_by_fused)
    alone = [p for p in results.uncalled if p not in fused]
    if alone:
        items.append(("Never called", ", ".join(code(p) for p in alone)))
    if fused:
        items.append(("Never called, parameters read by a fused kernel of its caller",
                      ", ".join(code(p) for p in results.read_by_fused)))
    return items


def roofline_items(results: Results) -> list:
    """(label, value) pairs: the total on the results' roofline, and the measured forward
    time against it; none without a device or times."""
    items = []
    if results.device is not None:
        r = roofline(results, results.device).total
        items.append((f"Roofline on {results.device.name}",
                      f"bound {seconds(r.seconds)} ({seconds(r.compute_s)} in compute-bound "
                      f"ops, {seconds(r.memory_s)} in memory-bound ops), {format_size(r.bytes)} "
                      f"bytes, {ratio(r.intensity)} FLOPs per byte"))
    if results.measured is not None and "" in results.measured:
        t = results.measured[""]
        value = f"{seconds(t)} ({results.measured_how})"
        if results.device is not None:
            f = roofline(results, results.device, ("forward",)).total
            value += f", {format_size(f.flops / t)} FLOP/s, {percent(f.seconds / t)} of its bound"
        items.append(("Measured forward", value))
    return items


def summary_items(results: Results, markdown: bool = False) -> list:
    """(label, value) pairs, totals and provenance in words: model, input, convention,
    versions, FLOPs (per phase when a backward ran), parameters, activations, what was
    not counted. ``markdown`` puts names (ops, paths) in code spans."""
    code = (lambda x: f"`{x}`") if markdown else str
    t = results.total
    items = []
    if results.model:
        items.append(("Model", code(results.model)))
    if results.input:
        items.append(("Input", results.input))
    items.append(("Convention", provenance(results)))
    root = results.modules.get("", t)
    items.append(("Flops", f"{format_size(root.flops)}, Params: {format_size(root.params)}, "
                           f"Activation: {format_size(root.activations)}"))
    if t.backward_flops or t.recompute_flops:
        split = ", ".join(f"{p} {format_size(t.phase_flops[p])}" for p in PHASES
                          if p != "recompute" or t.recompute_flops)
        items.append(("Step flops", f"{format_size(t.flops)} ({split})"))
    return items + roofline_items(results) + memory_items(results) + notes(results, code)


def memory_items(results: Results) -> list:
    """(label, value) per device where memory was followed: its peak, when and where,
    and what it held then."""
    mem = results.memory
    items = []
    for dev, peak in (mem.peak.items() if mem is not None else ()):
        phase, path = mem.peak_at[dev]
        where = f"in {phase}" + (f" ({path})" if path else "")
        held = ", ".join(f"{c} {memory_size(n)}" for c, n in mem.breakdown[dev].items() if n)
        items.append((f"Peak memory on {dev}", f"{memory_size(peak)} {where}: {held or 'nothing'}"))
    return items


def markdown_report(results: Results, rows: list, columns: list, title: str | None = None) -> str:
    """A Markdown document: a heading, the view's table and the summary as a list."""
    title = title or f"dispatchflops: {results.model or 'model'}"
    items = [f"- **{key}**: {value}" for key, value in summary_items(results, markdown=True)]
    return f"### {title}\n\n{markdown_table(rows, columns)}\n" + "\n".join(items) + "\n"
