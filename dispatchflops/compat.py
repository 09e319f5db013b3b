"""A stand-in for ``mmengine.analysis.get_model_complexity_info``.

Replace ``from mmengine.analysis import get_model_complexity_info`` by
``from dispatchflops.compat import get_model_complexity_info``: same arguments, same
checks, same keys and numbers, counted by one eager run of the model instead of two JIT
traces.
"""
from __future__ import annotations

import torch
from torch.overrides import TorchFunctionMode

from .mode import FlopCounterMode
from .results import not_owning
from .tracker import ModuleTracker
from .formatting import format_size
from .table import mmengine_arch, mmengine_table

__all__ = ["get_model_complexity_info"]

# Tensor queries that a JIT trace answers with constants, leaving no op in the graph.
_NO_TRACE = frozenset({"__get__", "dim", "ndimension", "is_floating_point", "is_complex",
                       "get_device", "is_contiguous", "__len__"})


class _ScopeWatch(TorchFunctionMode):
    """Which modules of ``model`` had something run in their scope, the sense in which
    MMEngine calls a module "called" (a traced op inside it or inside a module it owns):
    a module whose forward ran but did nothing (``nn.Identity``, ``StochasticDepth`` in
    eval mode) stays "uncalled"."""

    def __init__(self, model: torch.nn.Module):
        super().__init__()
        self.tracker = ModuleTracker(model)
        self.paths = dict(self.tracker.paths)
        self.active: set = set()

    def __enter__(self):
        self.tracker.__enter__()
        return super().__enter__()

    def __exit__(self, *exc):
        try:
            return super().__exit__(*exc)
        finally:
            self.tracker.__exit__(*exc)

    def __torch_function__(self, func, types, args=(), kwargs=None):
        key = self.tracker.key
        if key and getattr(func, "__name__", None) not in _NO_TRACE:
            self.active.add(key[-1])
        return func(*args, **(kwargs or {}))

    def uncalled(self) -> set:
        return not_owning(self.paths.values(), self.active)


def _is_tuple_of(value, kind) -> bool:
    return isinstance(value, tuple) and all(isinstance(v, kind) for v in value)


def _dummy_inputs(model: torch.nn.Module, input_shape) -> tuple:
    device = next(model.parameters()).device
    if _is_tuple_of(input_shape, int):
        return (torch.randn(1, *input_shape).to(device),)
    if _is_tuple_of(input_shape, tuple) and all(_is_tuple_of(s, int) for s in input_shape):
        return tuple(torch.randn(1, *s).to(device) for s in input_shape)
    raise ValueError(
        "input_shape must be a tuple of ints (the shape of one input, without the batch "
        "dimension) or a tuple of such tuples (one per input), got "
        f"{input_shape!r}")


def get_model_complexity_info(
    model: torch.nn.Module,
    input_shape=None,
    inputs=None,
    show_table: bool = True,
    show_arch: bool = True,
) -> dict:
    """FLOPs (one per multiply-add, fvcore's handles), parameters and activations of
    ``model``, as ``mmengine.analysis.get_model_complexity_info`` reports them.

    Give ``inputs`` (a tensor, or a tuple of the model's positional arguments) or
    ``input_shape`` (a tuple of ints for one input, or a tuple of such tuples for several;
    each becomes ``torch.randn(1, *shape)`` on the device of the model's first
    parameter), not both. Returns ``flops``, ``flops_str``, ``activations``,
    ``activations_str``, ``params``, ``params_str``, ``out_table`` (``""`` unless
    ``show_table``) and ``out_arch`` (``""`` unless ``show_arch``).
    """
    if input_shape is None and inputs is None:
        raise ValueError('give one of "input_shape" and "inputs"')
    if input_shape is not None and inputs is not None:
        raise ValueError('give "input_shape" or "inputs", not both')
    if inputs is None:
        inputs = _dummy_inputs(model, input_shape)
    elif not isinstance(inputs, tuple):
        inputs = (inputs,)

    watch = _ScopeWatch(model)
    with torch.no_grad(), FlopCounterMode(model, convention="fvcore") as counter, watch:
        model(*inputs)
    res = counter.results
    uncalled = watch.uncalled()

    flops = res.total.flops
    activations = res.total.activations
    params = sum(p.numel() for p in model.parameters())
    return {
        "flops": flops,
        "flops_str": format_size(flops),
        "activations": activations,
        "activations_str": format_size(activations),
        "params": params,
        "params_str": format_size(params),
        "out_table": mmengine_table(model, res, uncalled=uncalled) if show_table else "",
        "out_arch": mmengine_arch(model, res, uncalled=uncalled) if show_arch else "",
    }
