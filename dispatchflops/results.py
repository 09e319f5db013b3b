"""What a count produced: per module path, inclusive costs split by phase and by op."""
from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field

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


@dataclass
class Results:
    convention: str
    #: path -> inclusive cost; "" is the model (when one was given).
    modules: dict
    #: everything counted inside the context, in or out of any module
    total: ModuleCost
    #: op name -> calls, for ops with no formula that are not free by nature
    unsupported: dict
    #: paths of the model's modules whose forward never ran
    uncalled: list


def build(convention: str, acc: dict, calls: Counter, params: dict, all_paths: list) -> Results:
    """Turn raw accumulators into inclusive per-module costs.

    ``acc`` maps (phase, stack key) -> {id(op): [flops, activations, calls, op]}, where the stack
    key is the tuple of module paths that were running.
    """
    modules = {p: ModuleCost(p, params=params.get(p, 0), calls=calls.get(p, 0)) for p in all_paths}
    total = ModuleCost("Global", params=params.get("", 0))
    for (phase, key), ops in acc.items():
        owners = [total] + [_get(modules, p, params, calls) for p in dict.fromkeys(key)]
        for flops, acts, n, func in ops.values():
            name = str(func._overloadpacket)
            for m in owners:
                m.phase_flops[phase] += flops
                m.activations += acts
                m.by_op[name] += flops
                m.op_calls[name] += n
                m.counted = True
    for path, n in calls.items():
        _get(modules, path, params, calls)
    uncalled = [p for p in all_paths if calls.get(p, 0) == 0]
    return Results(convention, modules, total, {}, uncalled)


def _get(modules, path, params, calls):
    m = modules.get(path)
    if m is None:
        m = modules[path] = ModuleCost(path, params=params.get(path, 0), calls=calls.get(path, 0))
    return m


def parameter_counts(param_numels) -> dict:
    """Parameters per module path (inclusive) from (owning module path, numel) pairs."""
    counts: Counter = Counter()
    for path, n in param_numels:
        parts = path.split(".") if path else []
        for k in range(len(parts) + 1):
            counts[".".join(parts[:k])] += n
    return dict(counts)
