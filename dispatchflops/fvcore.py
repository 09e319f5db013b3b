"""fvcore's analysis API (``fvcore.nn``), counted by one eager run instead of a JIT trace.

Replace ``from fvcore.nn import FlopCountAnalysis, flop_count_table`` by
``from dispatchflops.fvcore import FlopCountAnalysis, flop_count_table``: the same
classes, methods, operator names and tables. Where fvcore sees every op the numbers are
fvcore's; it cannot see scaled-dot-product attention, which is counted here as its two
batched matmuls (operator "scaled_dot_product_attention"). Operator handles receive the
eager equivalent of fvcore's arguments (see ``dispatchflops.analysis``).
"""
from __future__ import annotations

from collections import defaultdict

import tabulate
import torch

from .analysis import ActivationAnalysis, ModelAnalysis
from .formatting import short_size
from .results import prefixes
from .table import arch_str, stats_rows

__all__ = ["FlopCountAnalysis", "ActivationCountAnalysis", "flop_count", "flop_count_str",
           "flop_count_table", "parameter_count", "parameter_count_table"]


class FlopCountAnalysis(ModelAnalysis):
    """FLOPs of ``model(*inputs)`` (one per multiply-add, fvcore's handles) per module and
    operator: ``total``, ``by_operator``, ``by_module``, ``by_module_and_operator``,
    ``unsupported_ops``, ``uncalled_modules``, as fvcore's."""


class ActivationCountAnalysis(ActivationAnalysis):
    """Activations (output elements of convolutions and matrix multiplications) of
    ``model(*inputs)`` per module and operator, as fvcore's."""


def flop_count(model: torch.nn.Module, inputs: tuple, supported_ops: dict | None = None):
    """fvcore's ``flop_count``: ({operator: GFLOPs}, Counter of unsupported operators)."""
    analysis = FlopCountAnalysis(model, inputs).set_op_handle(**(supported_ops or {}))
    gflops = defaultdict(float, {op: n / 1e9 for op, n in analysis.by_operator().items()})
    return gflops, analysis.unsupported_ops()


def parameter_count(model: torch.nn.Module) -> defaultdict:
    """{module or parameter name: parameters}; "" is the whole model."""
    counts: defaultdict = defaultdict(int)
    for name, p in model.named_parameters():
        for prefix in prefixes(name):
            counts[prefix] += p.numel()
    return counts


def _pipe(rows: list, headers: list) -> str:
    """tabulate's "pipe" table as fvcore draws it: with tabulate's module-wide switch to
    keep leading spaces, which tabulate 0.10 and later ignore (their cells are stripped)."""
    saved, tabulate.PRESERVE_WHITESPACE = tabulate.PRESERVE_WHITESPACE, True
    try:
        return tabulate.tabulate(rows, headers=headers, tablefmt="pipe")
    finally:
        tabulate.PRESERVE_WHITESPACE = saved


def parameter_rows(model: torch.nn.Module, max_depth: int) -> list:
    """The rows of fvcore's (and MMEngine's) parameter table: modules and parameters
    (their shapes) to ``max_depth``."""
    count = parameter_count(model)
    shapes = {name: tuple(p.shape) for name, p in model.named_parameters()}
    rows = [["model", short_size(count.pop(""))]]

    def fill(level: int, prefix: str) -> None:
        if level >= max_depth:
            return
        for name, n in count.items():
            if name.count(".") == level and name.startswith(prefix):
                indent = " " * (level + 1)
                if name in shapes:
                    rows.append([indent + name, indent + str(shapes[name])])
                else:
                    rows.append([indent + name, indent + short_size(n)])
                    fill(level + 1, name + ".")

    fill(0, "")
    return rows


def parameter_count_table(model: torch.nn.Module, max_depth: int = 3) -> str:
    """fvcore's table of parameters per module (and shapes of parameters) to ``max_depth``."""
    return _pipe(parameter_rows(model, max_depth), ["name", "#elements or shape"])


def _columns(flops: ModelAnalysis, activations: ModelAnalysis | None, params: str,
             acts: str) -> dict:
    """{header: {name: count}} of parameters, FLOPs and (with ``activations``) activations,
    the analyses' warnings off as fvcore's tables turn them off."""
    flops.unsupported_ops_warnings(False).uncalled_modules_warnings(False).tracer_warnings("none")
    columns = {params: dict(parameter_count(flops._model)), "#flops": flops.by_module()}
    if activations is not None:
        activations.unsupported_ops_warnings(False).uncalled_modules_warnings(False)
        columns[acts] = activations.by_module()
    return columns


def table_rows(flops: ModelAnalysis, max_depth: int, activations: ModelAnalysis | None,
               show_param_shapes: bool) -> tuple[list, list]:
    """(headers, rows) of fvcore's and MMEngine's module table; each draws them its way."""
    columns = _columns(flops, activations,
                       "#parameters" + (" or shape" if show_param_shapes else ""), "#activations")
    shapes = {name: tuple(p.shape) for name, p in flops._model.named_parameters()}
    # the flops' uncalled modules: the same as the activations' run
    rows = stats_rows(columns, shapes, flops.uncalled_modules(), max_depth,
                      show_shapes=show_param_shapes)
    return ["module", *columns], rows


def flop_count_table(flops: FlopCountAnalysis, max_depth: int = 3,
                     activations: ActivationCountAnalysis | None = None,
                     show_param_shapes: bool = True) -> str:
    """fvcore's table: parameters (or shapes), FLOPs and, with ``activations``, activations
    per module to ``max_depth``."""
    headers, rows = table_rows(flops, max_depth, activations, show_param_shapes)
    return _pipe(rows, headers)


def flop_count_str(flops: FlopCountAnalysis,
                   activations: ActivationCountAnalysis | None = None) -> str:
    """The model's repr with parameters, FLOPs and, with ``activations``, activations of
    each module (fvcore's ``flop_count_str``, MMEngine's ``complexity_stats_str``)."""
    columns = _columns(flops, activations, "#params", "#acts")
    uncalled = flops.uncalled_modules()
    if activations is not None:
        uncalled = uncalled | activations.uncalled_modules()
    return arch_str(flops._model, columns, uncalled)
