"""The cost of a composite op (one with a CompositeImplicitAutograd decomposition that
reached the counter whole, e.g. ``linear`` under inference_mode or ``silu_backward``) or
of a fused kernel (fused.py: its unfused path), found from its decomposition run on meta
tensors of the call's shapes, never on its data.

The op itself runs as the program would run it (its own kernel, bit for bit); the
decomposition only says what it costs: the ops it decomposes into, each resolved and
costed as if it had been called. Costs are cached per call signature (shapes, strides,
dtypes and other arguments), and per op where it has no decomposition.
"""
from __future__ import annotations

import torch
from torch.utils._python_dispatch import TorchDispatchMode, _disable_current_modes
from torch.utils._pytree import tree_map

from . import fused, ops


class Cost:
    """A handler that charges a fixed cost: one op of a decomposition, already costed."""

    __slots__ = ("cost",)

    def __init__(self, flops: int, activations: int):
        self.cost = (flops, activations)

    def __call__(self, args, kwargs, out):
        return self.cost


def _signature(x):
    if isinstance(x, torch.Tensor):
        return (x.shape, x.stride(), x.dtype, x.device.type)
    if isinstance(x, (list, tuple)):
        return tuple(map(_signature, x))
    return x


def _meta_copies(tree):
    """``tree`` with each tensor replaced by an empty meta tensor of its shape, strides
    and dtype; a tensor passed twice is one meta tensor (the slow paths test identity)."""
    seen = {}

    def meta(x):
        if not isinstance(x, torch.Tensor):
            return x
        if id(x) not in seen:
            seen[id(x)] = torch.empty_strided(x.shape, x.stride(), dtype=x.dtype, device="meta")
        return seen[id(x)]

    return tree_map(meta, tree)


def _functional(func, kwargs: dict) -> dict:
    """``kwargs`` without an ``out=`` overload's outputs."""
    outs = {a.name for a in func._schema.arguments if a.is_out}
    return {k: v for k, v in kwargs.items() if k not in outs} if outs else kwargs


class _Recorder(TorchDispatchMode):
    """Runs a decomposition on meta tensors and notes (op, handler) for each op in it."""

    def __init__(self, resolve):
        super().__init__()
        self.resolve = resolve
        self.charges: list = []

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        handler = self.resolve(func)
        if handler is ops.DECOMPOSE:
            with self:
                out = func.decompose(*args, **kwargs)
            if out is not NotImplemented:
                return out
            handler = ops.UNSUPPORTED
        out = func(*args, **kwargs)
        if handler is ops.UNSUPPORTED:
            self.charges.append((func, ops.UNSUPPORTED))
        elif handler is not ops.FREE:
            try:
                flops, acts = handler(args, kwargs, out)
                self.charges.append((func, Cost(flops, acts)))
            except ValueError:
                self.charges.append((func, ops.UNSUPPORTED))
        return out


class Composites:
    """What each composite op call costs, for one counter: ``charges(func, args, kwargs)``
    is a list of (op, handler) to charge in its place."""

    def __init__(self, resolve):
        self._resolve = resolve  # OpOverload -> handler | FREE | UNSUPPORTED | DECOMPOSE
        # the dispatch keys the program runs with where the counter is entered: what a
        # decomposition runs with, also from inside an op, where autograd's keys are
        # excluded and a fused backward's reference could not differentiate its unfused
        # path (fused.py)
        self._keys = (torch._C._dispatch_tls_local_include_set(),
                      torch._C._dispatch_tls_local_exclude_set())
        self._by_call: dict = {}  # (id(op), signature) -> charges
        self._by_op: dict = {}  # id(op) -> charges, for ops with no decomposition

    def charges(self, func, args, kwargs) -> list:
        found = self._by_op.get(id(func))
        if found is not None:
            return found
        try:
            key = (id(func), _signature(args), _signature(tuple(kwargs.items())))
            found = self._by_call.get(key)
        except (TypeError, RuntimeError):  # symbolic shapes, sparse strides: not cached
            key = None
        if found is None:
            found, decomposes = self._decompose(func, args, kwargs)
            if not decomposes:
                self._by_op[id(func)] = found
            elif key is not None:
                self._by_call[key] = found
        return found

    def _decompose(self, func, args, kwargs) -> tuple:
        """(charges, whether ``func`` has a decomposition at all)."""
        recorder = _Recorder(self._resolve)
        unfused = fused.reference(func)
        try:
            meta_args, meta_kwargs = _meta_copies((args, kwargs))
            with torch._C._ForceDispatchKeyGuard(*self._keys), \
                    _disable_current_modes(), torch.no_grad(), recorder:
                if unfused is not None:
                    out = unfused(*meta_args, **_functional(func, meta_kwargs))
                else:
                    out = func.decompose(*meta_args, **meta_kwargs)
        except Exception:  # one that needs data, or no meta kernel: this call not counted
            return [(func, ops.UNSUPPORTED)], True
        if out is NotImplemented:
            return [(func, ops.UNSUPPORTED)], False
        return recorder.charges, True
