"""MMEngine's analysis API (``mmengine.analysis``), counted by one eager run instead of a
JIT trace: replace ``from mmengine.analysis import ...`` by ``from dispatchflops.mmengine
import ...``. MMEngine's analysis is a fork of fvcore's: the analyzers are the same
objects as ``dispatchflops.fvcore``'s; tables and strings are MMEngine's, drawn as its
rich console draws them when not writing to a terminal."""
from __future__ import annotations

from collections import defaultdict

import torch

from .analysis import ActivationAnalysis, ModelAnalysis
from .formatting import format_size
from .fvcore import flop_count, parameter_count, parameter_rows, table_rows
from .fvcore import flop_count_str as complexity_stats_str
from .table import console_width, draw

__all__ = ["FlopAnalyzer", "ActivationAnalyzer", "flop_count", "activation_count",
           "parameter_count", "parameter_count_table", "complexity_stats_str",
           "complexity_stats_table", "get_model_complexity_info"]


class FlopAnalyzer(ModelAnalysis):
    """FLOPs of ``model(*inputs)`` per module and operator, as MMEngine's."""


class ActivationAnalyzer(ActivationAnalysis):
    """Activations of ``model(*inputs)`` per module and operator, as MMEngine's."""


def activation_count(model: torch.nn.Module, inputs: tuple, supported_ops: dict | None = None):
    """({operator: millions of activations}, Counter of unsupported operators)."""
    analyzer = ActivationAnalyzer(model, inputs).set_op_handle(**(supported_ops or {}))
    return (defaultdict(float, {op: n / 1e6 for op, n in analyzer.by_operator().items()}),
            analyzer.unsupported_ops())


def parameter_count_table(model: torch.nn.Module, max_depth: int = 3) -> str:
    """MMEngine's table of parameters per module (and shapes of parameters)."""
    return draw(["name", "#elements or shape"], parameter_rows(model, max_depth),
                console_width(), title=f"parameter count of {model.__class__.__name__}")


def complexity_stats_table(flops: FlopAnalyzer, max_depth: int = 3,
                           activations: ActivationAnalyzer | None = None,
                           show_param_shapes: bool = True) -> str:
    """MMEngine's table: parameters (or shapes), FLOPs and, with ``activations``,
    activations per module to ``max_depth``."""
    headers, rows = table_rows(flops, max_depth, activations, show_param_shapes)
    return draw(headers, rows, console_width())


def _is_tuple_of(value, kind) -> bool:
    return isinstance(value, tuple) and all(isinstance(v, kind) for v in value)


def get_model_complexity_info(model: torch.nn.Module, input_shape=None, inputs=None,
                              show_table: bool = True, show_arch: bool = True) -> dict:
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
        raise ValueError('One of "input_shape" and "inputs" should be set.')
    if input_shape is not None and inputs is not None:
        raise ValueError('"input_shape" and "inputs" cannot be both set.')
    if inputs is None:
        device = next(model.parameters()).device
        if _is_tuple_of(input_shape, int):
            inputs = (torch.randn(1, *input_shape).to(device),)
        elif _is_tuple_of(input_shape, tuple) and all(_is_tuple_of(s, int) for s in input_shape):
            inputs = tuple(torch.randn(1, *s).to(device) for s in input_shape)
        else:
            raise ValueError('"input_shape" should be either a `tuple of int` (to construct'
                             'one input tensor) or a `tuple of tuple of int` (to construct'
                             'multiple input tensors).')
    flop_handler = FlopAnalyzer(model, inputs)
    activation_handler = ActivationAnalyzer(model, inputs)
    with torch.no_grad():  # one run serves both analyzers
        run = flop_handler.run()
    flop_handler.from_run(run)
    activation_handler.from_run(run)
    flops, activations = flop_handler.total(), activation_handler.total()
    params = parameter_count(model)[""]
    table = arch = ""
    if show_table:
        table = "\n" + complexity_stats_table(flop_handler, activations=activation_handler)
    if show_arch:
        arch = "\n" + complexity_stats_str(flop_handler, activations=activation_handler)
    return {"flops": flops, "flops_str": format_size(flops), "activations": activations,
            "activations_str": format_size(activations), "params": params,
            "params_str": format_size(params), "out_table": table, "out_arch": arch}
