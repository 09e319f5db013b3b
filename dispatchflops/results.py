"""What a count produced: per module path, inclusive costs split by phase and by op."""
from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field

from .layouts import OpRecord
from .ops import op_name

PHASES = ("forward", "backward", "recompute")


@dataclass
class ModuleCost:
    """Inclusive cost of one module path (an op counts for its module and every ancestor)."""

    path: str
    params: int = 0
    activations: int = 0
    calls: int = 0
    #: FLOPs per phase ("forward", "backward", "recompute").
    phase_flops: dict = field(default_factory=lambda: dict.fromkeys(PHASES, 0))
    #: FLOPs per aten op (overload packet name, e.g. "aten.convolution"), all phases.
    by_op: Counter = field(default_factory=Counter)
    #: calls per counted aten op, all phases (e.g. how many expert matmuls ran)
    op_calls: Counter = field(default_factory=Counter)
    #: whether any counted op ran inside it
    counted: bool = False
    #: FLOPs (all phases) and activations of the ops this module ran itself: those whose
    #: innermost running module it was, not inside any of the modules it called. Exact
    #: also when a submodule is called from outside its parent (charged where it ran).
    self_flops: int = 0
    self_activations: int = 0
    #: bytes this rank moved in collectives, per collective ("all_reduce", ...), all
    #: phases, with their calls, and per phase (comm.py says what counts)
    comm_bytes: Counter = field(default_factory=Counter)
    comm_calls: Counter = field(default_factory=Counter)
    comm_phase_bytes: dict = field(default_factory=lambda: dict.fromkeys(PHASES, 0))
    #: bytes read plus written in memory per phase, by every op (with or without FLOPs;
    #: traffic.py says what each reads and writes), and per op name, all phases
    phase_bytes: dict = field(default_factory=lambda: dict.fromkeys(PHASES, 0))
    bytes_by_op: Counter = field(default_factory=Counter)
    #: bytes of the ops this module ran itself (as self_flops)
    self_bytes: int = 0

    @property
    def bytes(self) -> int:
        """Bytes read and written in memory, all phases."""
        return sum(self.phase_bytes.values())

    @property
    def comm(self) -> int:
        """Bytes moved in collectives, all phases."""
        return sum(self.comm_bytes.values())

    @property
    def flops(self) -> int:
        return sum(self.phase_flops.values())

    @property
    def forward_flops(self) -> int:
        return self.phase_flops["forward"]

    @property
    def backward_flops(self) -> int:
        return self.phase_flops["backward"]

    @property
    def recompute_flops(self) -> int:
        return self.phase_flops["recompute"]


@dataclass(frozen=True)
class OpCost:
    """The calls of one op under one module stack and phase: what a roofline is built from."""

    stack: tuple  #: the module paths that were running, outermost first
    phase: str
    op: str  #: its name, as in ``by_op``
    calls: int
    flops: int | None  #: None: an op with no FLOP formula (its bytes alone are counted)
    bytes: int
    dtype: str | None  #: of its first tensor argument ("bfloat16"); None if it had none


@dataclass
class Results:
    """Everything one count produced, as plain data; every report (tables, exports, plot,
    budgets, compare) is a view of it, and ``export`` reads and writes it."""

    convention: str
    #: path -> inclusive cost; "" is the model (when one was given).
    modules: dict
    #: everything counted inside the context, in or out of any module
    total: ModuleCost
    #: op name -> calls, for ops with no formula that are not free by nature
    unsupported: dict
    #: paths of the model's modules whose forward never ran (containers without a forward,
    #: such as nn.ModuleList, are not listed: there is nothing to run)
    uncalled: list
    #: op name -> FLOPs of the blocks that flex_attention's BlockMasks ran (the op's
    #: FLOPs in ``total.by_op`` are dense); see blockmask.py. Known once the block ends.
    blocks_run: dict = field(default_factory=dict)
    #: every op's calls per module stack and phase, with FLOPs, bytes and dtype
    ops: list = field(default_factory=list)
    #: whether bytes were counted (``FlopCounterMode(count_bytes=True)``, the CLI): a
    #: roofline needs them
    bytes_counted: bool = False
    #: the device a roofline is drawn for (``devices.DeviceSpec``; None: no roofline)
    device: object = None
    #: measured forward time per module path, {path: seconds per run} (timing.py), and how
    #: it was measured, in words; None when not measured
    measured: dict | None = None
    measured_how: str | None = None
    #: what the model was called with, in words (the CLI sets it; None when unknown)
    input: str | None = None
    #: the model, in words (the CLI's MODEL spec; None when unknown)
    model: str | None = None
    #: the versions that counted (the counter sets them; None when unknown)
    torch_version: str | None = None
    dispatchflops_version: str | None = None
    #: of the uncalled modules, those whose parameters a fused kernel read
    #: (nn.MultiheadAttention's out_proj under its fast path, nn.TransformerEncoderLayer's
    #: children under theirs): never called, yet their work is counted in their caller's
    read_by_fused: list = field(default_factory=list)
    #: what ``FlopCounterMode(count_memory=True)`` measured (``memory.Memory``), else None
    memory: object = None


def build(convention: str, acc: dict, calls: Counter, params: dict, all_paths: list,
          containers: set = frozenset(), **provenance) -> Results:
    """Turn raw accumulators into inclusive per-module costs.

    ``acc`` maps (phase, stack key) -> {id(op): an ``OpRecord``'s list}, where the stack key
    is the tuple of module paths that were running. ``containers``: paths of modules with
    no forward of their own, which are never "uncalled". ``provenance``: ``Results``'
    version fields.
    """
    modules = {p: ModuleCost(p, params=params.get(p, 0), calls=calls.get(p, 0)) for p in all_paths}
    total = ModuleCost("Global", params=params.get("", 0))
    op_costs = []
    for (phase, key), ops in acc.items():
        owners = [total] + [_get(modules, p, params, calls) for p in dict.fromkeys(key)]
        # the module that ran these ops itself (the total: ops outside any module)
        innermost = _get(modules, key[-1], params, calls) if key else total
        for rec in map(OpRecord._make, ops.values()):
            name = op_name(rec.op)
            op_costs.append(OpCost(key, phase, name, rec.calls, rec.flops, rec.bytes,
                                   _dtype_name(rec.dtype)))
            for m in owners:
                m.phase_bytes[phase] += rec.bytes
                if rec.bytes:
                    m.bytes_by_op[name] += rec.bytes
            innermost.self_bytes += rec.bytes
            if rec.flops is None:  # an op charged only for its bytes
                continue
            for m in owners:
                m.phase_flops[phase] += rec.flops
                m.activations += rec.activations
                m.by_op[name] += rec.flops
                m.op_calls[name] += rec.calls
                m.counted = True
            innermost.self_flops += rec.flops
            innermost.self_activations += rec.activations
    for path, n in calls.items():
        _get(modules, path, params, calls)
    uncalled = [p for p in all_paths if calls.get(p, 0) == 0 and p not in containers]
    return Results(convention, modules, total, {}, uncalled, ops=op_costs, **provenance)


def _dtype_name(dtype) -> str | None:
    return None if dtype is None else str(dtype).rsplit(".", 1)[-1]


def add_communication(res: Results, moved: Results, collective: dict) -> None:
    """Give ``res``'s modules the communication of ``moved`` (results built from the
    collectives' accumulator, bytes as FLOPs), by collective (``collective``: op name in
    its namespace -> collective)."""
    for path, m in [("Global", moved.total), *moved.modules.items()]:
        if not m.counted:
            continue
        into = res.total if path == "Global" else _get(res.modules, path, {}, {})
        into.comm_phase_bytes = dict(m.phase_flops)
        for name, n in m.by_op.items():
            kind = collective[name.split(".", 1)[1]]
            into.comm_bytes[kind] += n
            into.comm_calls[kind] += m.op_calls[name]


def _get(modules, path, params, calls):
    m = modules.get(path)
    if m is None:
        m = modules[path] = ModuleCost(path, params=params.get(path, 0), calls=calls.get(path, 0))
    return m


def prefixes(path: str) -> list:
    """"" and every dotted prefix of ``path``, the path itself last: its owners."""
    parts = path.split(".") if path else []
    return [".".join(parts[:k]) for k in range(len(parts) + 1)]


def not_owning(paths, active) -> set:
    """The ``paths`` that are neither in ``active`` nor an owner of any of them."""
    covered = {prefix for path in active for prefix in prefixes(path)}
    return {p for p in paths if p not in covered}


def parameter_counts(param_numels: dict) -> dict:
    """Parameters per module path (inclusive) from {owning module path: numel}."""
    counts: Counter = Counter()
    for path, n in param_numels.items():
        for prefix in prefixes(path):
            counts[prefix] += n
    return dict(counts)
