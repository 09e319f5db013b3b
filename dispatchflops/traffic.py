"""Memory traffic: what each op reads and writes, as a plan per op that ``_C.charge``
turns into bytes for each call (csrc/traffic.h), from shapes, strides and dtypes.

By default an op reads every tensor it is given (its distinct elements: a broadcast
dimension is read once) and writes every tensor it returns; an in-place op so reads and
writes its target. The plan names the arguments that differ: targets an op only writes
(``copy_``, ``fill_``, ``out=``), tables it gathers rows from (``embedding``), sources an
in-place scatter writes into its target (``index_put_``), targets of in-place ops that
return nothing (``_foreach_add_``). Views, metadata and uninitialised allocations move
nothing (no plan).
"""
from __future__ import annotations

import torch

from .layouts import TrafficRole as Role

#: The handler of an op with no FLOPs that moves bytes (a copy, a gather, a fill).
MOVES = "moves"
# Higher-order operators that run as one fused kernel (the others run ops of their own,
# which are charged themselves).
_FUSED_HOPS = frozenset({"flex_attention", "flex_attention_backward"})

# Allocation, metadata and bookkeeping: no data read or written.
_NOTHING = frozenset(
    """
    empty empty_like empty_strided empty_permuted new_empty new_empty_strided
    sym_size sym_stride sym_numel sym_storage_offset size stride numel dim is_contiguous
    is_strides_like_format is_non_overlapping_and_dense storage_offset is_pinned
    _has_compatible_shallow_copy_type record_stream set_ resize_ resize_as_ _resize_output_
    lift lift_fresh detach_ _unsafe_view _assert_async _assert_scalar _functional_assert_async
    """.split())
_NOTHING_NAMESPACES = frozenset({"prim", "profiler"})

# Ops that overwrite their target, or make a tensor like it, without reading it: packet
# name -> that argument.
_OVERWRITE = {name: "self" for name in
              "copy_ fill_ zero_ uniform_ normal_ bernoulli_ random_ exponential_ geometric_ "
              "cauchy_ log_normal_".split()}
_OVERWRITE.update({name: "self" for name in  # made like self: its metadata only
                   "zeros_like ones_like full_like rand_like randn_like randint_like new_zeros "
                   "new_ones new_full".split()})
_OVERWRITE["_copy_from"] = "dst"
_OVERWRITE["_copy_from_and_resize"] = "dst"

# Gathers: (packet name) -> the argument they read only the output's worth of.
_GATHER = {"embedding": "weight", "index_select": "self", "gather": "self", "index": "self",
           "take": "self", "take_along_dim": "self"}

# In-place scatters: packet name -> (its source argument, whether it accumulates into the
# target); the target is written where the source goes, not whole.
_SCATTER = {"index_put_": ("values", False), "_index_put_impl_": ("values", False),
            "index_copy_": ("source", False), "masked_scatter_": ("source", False),
            "scatter_": ("src", False), "put_": ("source", False),
            "index_add_": ("source", True), "scatter_add_": ("src", True),
            "scatter_reduce_": ("src", True), "index_reduce_": ("source", True)}


# Fused optimizers: their gradients are marked mutable (AMP's unscaling writes them, with
# a grad_scale) but a step without one only reads them.
_READ_ONLY = {name: "grads" for name in
              "_fused_adam_ _fused_adamw_ _fused_sgd_ _fused_adagrad_".split()}


def _is_view(schema) -> bool:
    return bool(schema.returns) and all(
        r.alias_info is not None and not r.alias_info.is_write for r in schema.returns)


# id(op) -> (op, its plan): ops live as long as the process; keeping op makes the id its own
_plans: dict = {}


def plan(func):
    """The traffic plan of ``func`` (an OpOverload or a higher-order operator): a tuple of
    (position, name, role) entries (empty: every tensor in read, every tensor out
    written), or None where it moves nothing. Cached per op."""
    found = _plans.get(id(func))
    if found is None:
        found = _plans[id(func)] = (func, _plan(func))
    return found[1]


def _plan(func):
    if isinstance(func, torch._ops.HigherOrderOperator):
        return () if func.name() in _FUSED_HOPS else None
    name = func._overloadpacket.__name__
    if (func.namespace in _NOTHING_NAMESPACES or name in _NOTHING or _is_view(func._schema)
            or torch.Tag.inplace_view in func.tags):  # unsqueeze_, t_: metadata in place
        return None
    args = func._schema.arguments
    roles = {}
    for a in args:
        if a.is_out:
            roles[a.name] = Role.SKIP
    if name in _OVERWRITE:
        roles[_OVERWRITE[name]] = Role.SKIP
    if name in _GATHER:
        roles[_GATHER[name]] = Role.GATHER
    if name in _SCATTER:
        source, accumulates = _SCATTER[name]
        roles["self"] = Role.SKIP
        roles[source] = Role.ACCUMULATE if accumulates else Role.SOURCE
    if name in _READ_ONLY:
        roles[_READ_ONLY[name]] = Role.PLAIN
    if not func._schema.returns:  # in place, returning nothing: its targets are written
        for a in args:
            if a.alias_info is not None and a.alias_info.is_write:
                roles.setdefault(a.name, Role.READ_WRITE)
    return tuple((-1 if a.kwarg_only else i, a.name, int(roles[a.name]))
                 for i, a in enumerate(args) if a.name in roles)
