"""fvcore's and MMEngine's model analysis, counted by one eager run instead of a JIT trace:
the object behind ``dispatchflops.fvcore.FlopCountAnalysis`` and
``dispatchflops.mmengine.FlopAnalyzer`` (MMEngine's analysis is a fork of fvcore's).

The dispatch counter (``FlopCounterMode``, fvcore convention) counts the aten ops; a
``TorchFunctionMode`` beside it sees the torch functions the model calls, which is what a
JIT trace records (``aten::linear``, ``aten::matmul``, ``aten::einsum``, ...): each counted
aten op is kept under the outermost torch function that issued it (the mode steps aside
while a function runs, so it sees no deeper), named as
fvcore names its operators ("conv", "linear", "matmul", "batch_norm", ...). The same
watch gives fvcore's "unsupported" ops (functions with no handle that fvcore does not
ignore) and its "uncalled" modules (nothing ran in their scope).

Operator handles (``set_op_handle``) take the eager equivalent of fvcore's: a handle
receives the function's arguments (``inputs``: positional then keyword values, tensors as
tensors; read ``.shape``) and its outputs as a list, where fvcore passes
``torch._C.Value``s; it returns a number or a Counter, as in fvcore.
"""
from __future__ import annotations

import inspect
import logging
from collections import Counter
from numbers import Number

import torch
from torch.overrides import TorchFunctionMode

from . import ops
from .layouts import OpRecord
from .mode import FlopCounterMode
from .results import prefixes

#: the operators fvcore and MMEngine never count nor report (they have no FLOPs)
IGNORED_OPS = frozenset("aten::" + n for n in """
    Int ScalarImplicit __and__ arange bitwise_not cat chunk clamp clamp_ constant_pad_nd
    contiguous copy_ detach dropout empty eq expand flatten floor floor_divide full
    full_like gather ge gt index index_put_ masked_fill max narrow new_empty new_full
    new_zeros nonzero ones permute relu relu_ remainder reshape roll select size slice split
    split_with_sizes squeeze stack t to transpose type_as unbind unsqueeze unsqueeze_ view
    zeros zeros_like""".split())

#: the operators whose FLOPs fvcore counts by default; dispatchflops also counts
#: scaled-dot-product attention (as its two batched matmuls), which fvcore cannot see
FLOP_OPS = frozenset("aten::" + n for n in """
    addmm bmm conv einsum matmul mm linear batch_norm group_norm layer_norm instance_norm
    upsample_nearest2d upsample_bilinear2d adaptive_avg_pool2d grid_sampler
    scaled_dot_product_attention""".split())
#: the operators whose output elements fvcore counts as activations
ACTIVATION_OPS = frozenset("aten::" + n for n in """
    conv addmm bmm einsum matmul linear scaled_dot_product_attention""".split())

# Python helpers whose aten ops a trace records as those ops (F.interpolate's upsampling,
# multi_head_attention_forward's projections), and the operator it records for each.
_HELPERS = frozenset({"interpolate", "upsample", "upsample_nearest", "upsample_bilinear",
                      "multi_head_attention_forward"})
_ATEN_OPS = {"convolution": "conv", "addmm": "linear", "mm": "linear", "bmm": "bmm",
             "native_batch_norm": "batch_norm", "_native_batch_norm_legit": "batch_norm",
             "_native_batch_norm_legit_no_training": "batch_norm",
             "native_layer_norm": "layer_norm", "native_group_norm": "group_norm",
             "mean": "adaptive_avg_pool2d", "_adaptive_avg_pool2d": "adaptive_avg_pool2d",
             "adaptive_avg_pool2d": "adaptive_avg_pool2d",
             "grid_sampler_2d": "grid_sampler", "upsample_nearest2d": "upsample_nearest2d",
             "upsample_bilinear2d": "upsample_bilinear2d",
             # F.scaled_dot_product_attention inside a helper (multi_head_attention_forward)
             **{name.removeprefix("aten."): "scaled_dot_product_attention"
                for name in ops.ATTENTION_NAMES}}


def _aten_name(op) -> str:
    """An aten op's name without the namespace ("mm")."""
    return ops.op_name(op).removeprefix("aten.")


_CONV = frozenset("""conv1d conv2d conv3d conv_transpose1d conv_transpose2d conv_transpose3d
    convolution _convolution conv_tbc""".split())
_DUNDER = {"__add__": "add", "__radd__": "add", "__iadd__": "add_", "__sub__": "sub",
           "__rsub__": "rsub", "__isub__": "sub_", "__mul__": "mul", "__rmul__": "mul",
           "__imul__": "mul_", "__truediv__": "div", "__rtruediv__": "div",
           "__itruediv__": "div_", "__matmul__": "matmul", "__rmatmul__": "matmul",
           "__pow__": "pow", "__rpow__": "pow", "__neg__": "neg", "__getitem__": "slice",
           "__setitem__": "copy_", "__and__": "__and__", "__or__": "__or__",
           "__eq__": "eq", "__ne__": "ne", "__lt__": "lt", "__le__": "le", "__gt__": "gt",
           "__ge__": "ge", "__floordiv__": "floor_divide", "__mod__": "remainder"}
# Tensor queries a JIT trace answers with constants, leaving no op in the graph.
_NOT_TRACED = frozenset("""__get__ __set__ dim ndimension is_floating_point is_complex
    get_device is_contiguous __len__ __repr__ __format__ __bool__ __index__ __int__
    __float__ __hash__ numel __iter__ __reversed__ __contains__ data_ptr element_size
    nelement tolist item requires_grad_ __array__ _assert""".split())


def op_name(func) -> str | None:
    """The operator a JIT trace would record for a built-in torch function, as fvcore
    names it ("aten::conv", "aten::linear", "aten::add_"), or None for a query it would
    not record."""
    name = getattr(func, "__name__", None)
    if name is None or name in _NOT_TRACED:
        return None
    if name in _CONV:
        return "aten::conv"
    if name in ("grid_sampler_2d", "grid_sample"):
        name = "grid_sampler"
    return "aten::" + _DUNDER.get(name, name)


def _inplace(func, args, kwargs) -> bool:
    """Whether a Python function with an ``inplace`` parameter was called with it set."""
    try:
        bound = inspect.signature(func).bind(*args, **kwargs)
    except (TypeError, ValueError):
        return False
    return bool(bound.arguments.get("inplace", False))


def _canonical(handle_name: str) -> str:
    """A handle's operator name as ``op_name`` spells it ("aten::_convolution" is
    "aten::conv")."""
    short = handle_name.partition("::")[2] if "::" in handle_name else handle_name
    return "aten::conv" if short in _CONV else handle_name


def short_name(op: str) -> str:
    """fvcore's key for an operator: its name without the namespace."""
    return op.partition("::")[2] if "::" in op else op


class _Watch(TorchFunctionMode):
    """Beside the counter: keeps each torch function's counted aten ops apart,
    runs user handles, and records which module scopes ran something and which ops have
    no handle."""

    def __init__(self, analysis: ModelAnalysis, counter: FlopCounterMode):
        super().__init__()
        self.analysis, self.counter = analysis, counter
        self.accs: dict = {}  # op -> {(phase, key): records}
        self.handled: list = []  # (key, op, Counter) from user handles
        self.unsupported: Counter = Counter()  # (key, op) -> calls
        self.scopes: set = set()  # keys under which something ran

    def __torch_function__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        op = op_name(func)
        if op is not None and inspect.isfunction(func) and _inplace(func, args, kwargs):
            op += "_"  # F.hardswish(x, inplace=True) is traced as aten::hardswish_
        if op is None:
            return func(*args, **kwargs)
        a = self.analysis
        key = self.counter.module_stack
        self.scopes.add(key)
        handle = a._handles.get(op)
        if handle is not None:
            with self.counter.charging_into({}):  # the handle counts it
                out = func(*args, **kwargs)
            self._handle(handle, op, args, kwargs, out, key)
            return out
        if op in a._ignored:
            with self.counter.charging_into({}):
                return func(*args, **kwargs)
        if op in a._supported or not inspect.isfunction(func):
            if op not in a._supported:
                self.unsupported[key, op] += 1
            with self.counter.charging_into(self.accs.setdefault(op, {})):
                return func(*args, **kwargs)
        if short_name(op) not in _HELPERS:
            # A trace records what this Python function calls as ops of their own, which
            # the mode does not see: it stands for them, as an op with no handle.
            self.unsupported[key, op] += 1
            with self.counter.charging_into({}):
                return func(*args, **kwargs)
        return self._helper(func, args, kwargs, key)

    def _helper(self, func, args, kwargs, key):
        """A Python helper whose aten ops are named after themselves (F.interpolate's
        upsampling); a handle for one of those names gets the helper's inputs and outputs."""
        with self.counter.charging_into({}) as inside:
            out = func(*args, **kwargs)
        handled = set()
        into = self.accs.setdefault(None, {})
        for at, records in inside.items():
            for k, rec in records.items():
                name = "aten::" + _ATEN_OPS.get(_aten_name(OpRecord._make(rec).op), "")
                if name in self.analysis._handles:
                    handled.add(name)
                else:
                    _merge(into.setdefault(at, {}), k, rec)
        for name in sorted(handled):
            self._handle(self.analysis._handles[name], name, args, kwargs, out, key)
        return out

    def _handle(self, handle, op, args, kwargs, out, key):
        inputs = list(args) + list(kwargs.values())
        outputs = list(out) if isinstance(out, (tuple, list)) else [out]
        counts = handle(inputs, outputs)
        if isinstance(counts, Number):
            counts = Counter({short_name(op): counts})
        self.handled.append((key, counts))


def _merge(into: dict, k, rec: list) -> None:
    """Add an op record to ``into[k]``."""
    old = into.get(k)
    if old is None:
        into[k] = list(rec)
        return
    a, b = OpRecord._make(old), OpRecord._make(rec)
    into[k] = list(a._replace(flops=a.flops + b.flops, activations=a.activations + b.activations,
                              calls=a.calls + b.calls))


class ModelAnalysis:
    """One statistic ("flops" or "activations") of ``model(*inputs)``, per module and per
    operator, counted on first query (``copy``, ``set_op_handle`` and
    ``clear_op_handles`` start over). The API of fvcore's ``JitModelAnalysis``."""

    _statistic = "flops"
    _default_ops: frozenset = FLOP_OPS

    def __init__(self, model: torch.nn.Module, inputs):
        self._model = model
        self._inputs = inputs
        self._named_modules = dict(model.named_modules(remove_duplicate=False))
        self._aliases = {}
        for name, module in model.named_modules(remove_duplicate=False):
            self._aliases.setdefault(module, name)
            self._aliases[name] = self._aliases[module]
        self._stats = None
        self._handles: dict = {}
        self._supported: set = set(self._default_ops)  # counted by the engine's formulas
        self._ignored: set = set(IGNORED_OPS)
        self.unsupported_ops_warnings(True)
        self.uncalled_modules_warnings(True)
        self.tracer_warnings("no_tracer_warning")
        self.ancestor_mode("owner")

    # --- settings ---------------------------------------------------------------------
    def set_op_handle(self, *args, **kwargs):
        """Add or replace handles: (name, handle) pairs and/or name=handle; a handle of
        None ignores the operator. See the module docstring for what a handle receives."""
        self._stats = None
        if len(args) % 2 != 0:
            raise TypeError("set_op_handle should be called with pairs of names and handles!")
        for name, handle in zip(args[::2], args[1::2]):
            kwargs[name] = handle
        for name, handle in kwargs.items():
            op = _canonical(name)
            self._supported.discard(op)
            self._handles.pop(op, None)
            if handle is None:
                self._ignored.add(op)
            else:
                self._handles[op] = handle
        return self

    def clear_op_handles(self):
        """No handles, the default ones included, and the default ignored operators:
        nothing is counted (as fvcore's)."""
        self._handles, self._supported, self._ignored = {}, set(), set(IGNORED_OPS)
        self._stats = None
        return self

    def ancestor_mode(self, mode: str):
        """"owner" (an op counts for the module running it and its owners by name) or
        "caller" (for every module running at the time)."""
        if mode not in ("owner", "caller"):
            raise ValueError(f"Unrecognized ancestor mode: {mode}")
        self._ancestor_mode = mode
        self._stats = None
        return self

    def unsupported_ops_warnings(self, enabled: bool):
        self._warn_unsupported = enabled
        return self

    def uncalled_modules_warnings(self, enabled: bool):
        self._warn_uncalled = enabled
        return self

    def tracer_warnings(self, mode: str):
        """Accepted as fvcore's ("all", "no_tracer_warning", "none"); nothing is traced,
        so there are no tracer warnings to filter."""
        if mode not in ("all", "no_tracer_warning", "none"):
            raise ValueError(f"Unrecognized tracer warning mode {mode}.")
        self._warn_trace = mode
        return self

    def copy(self, new_model: torch.nn.Module | None = None, new_inputs=None):
        """The same settings on another model or inputs."""
        new = type(self)(self._model if new_model is None else new_model,
                         self._inputs if new_inputs is None else new_inputs)
        new._handles, new._supported = dict(self._handles), set(self._supported)
        new._ignored = set(self._ignored)
        new._warn_unsupported, new._warn_uncalled = self._warn_unsupported, self._warn_uncalled
        new._warn_trace, new._ancestor_mode = self._warn_trace, self._ancestor_mode
        return new

    def canonical_module_name(self, name: str) -> str:
        """The name results are reported under for ``name`` (the first of a shared module's)."""
        assert isinstance(name, str), "Module name must be a string."
        if name in self._aliases:
            return self._aliases[name]
        raise KeyError("Requested module name is not among the descendants of the "
                       "analyzed model.")

    # --- results ----------------------------------------------------------------------
    def total(self, module_name: str = "") -> int:
        stats = self._analyze()
        return sum(stats["counts"][self.canonical_module_name(module_name)].values())

    def by_operator(self, module_name: str = "") -> Counter:
        stats = self._analyze()
        return Counter(stats["counts"][self.canonical_module_name(module_name)])

    def by_module_and_operator(self) -> dict:
        return {m: Counter(c) for m, c in self._analyze()["counts"].items()}

    def by_module(self) -> Counter:
        return Counter({m: sum(c.values()) for m, c in self._analyze()["counts"].items()})

    def unsupported_ops(self, module_name: str = "") -> Counter:
        if self._stats is None:
            raise RuntimeError("Analysis results should be computed before calling "
                               "unsupported_ops()")
        return Counter(self._stats["unsupported"][self.canonical_module_name(module_name)])

    def uncalled_modules(self) -> set:
        return set(self._analyze()["uncalled"])

    # --- the run ----------------------------------------------------------------------
    def _ancestors(self, key: tuple) -> set:
        if self._ancestor_mode == "caller":
            return {""} | set(key)
        return set(prefixes(key[-1])) if key else {""}

    def _analyze(self) -> dict:
        if self._stats is None:
            self.from_run(self.run())
        return self._stats

    def run(self) -> _Watch:
        """Run the model once under the counter and the watch; what ``from_run`` reads."""
        inputs = self._inputs if isinstance(self._inputs, tuple) else (self._inputs,)
        counter = FlopCounterMode(self._model, convention="fvcore")
        with counter:
            watch = _Watch(self, counter)
            with watch:
                self._model(*inputs)
        return watch

    def from_run(self, watch: _Watch) -> None:
        """This analysis's results from a run (its own, or that of an analysis of the same
        model and inputs whose operators include this one's: the FLOPs analysis's run
        serves the activations one)."""
        names = dict.fromkeys(self._aliases[m] for m in self._named_modules.values())
        counts = {name: Counter() for name in names}
        unsupported = {name: Counter() for name in names}
        field = "flops" if self._statistic == "flops" else "activations"
        for op, acc in watch.accs.items():
            for (_, key), records in acc.items():
                for rec in map(OpRecord._make, records.values()):
                    name = op or "aten::" + _ATEN_OPS.get(_aten_name(rec.op), "")
                    value = getattr(rec, field)
                    if value and name in self._supported:
                        for module in self._ancestors(key):
                            counts[module][short_name(name)] += value
        for key, handled in watch.handled:
            for name in self._ancestors(key):
                counts[name] += handled
        for (key, op), n in watch.unsupported.items():
            for name in self._ancestors(key):
                unsupported[name][op] += n
        seen = set()
        for key in watch.scopes:
            seen |= self._ancestors(key) | set(key)
        self._stats = {"counts": counts, "unsupported": unsupported,
                       "uncalled": set(names) - seen}
        self._warn(unsupported[""], self._stats["uncalled"])

    def _warn(self, unsupported: Counter, uncalled: set) -> None:
        logger = logging.getLogger(type(self).__module__)
        if self._warn_unsupported:
            for op, freq in unsupported.items():
                logger.warning("Unsupported operator %s encountered %d time(s)", op, freq)
        uncalled = {m for m in uncalled if self._has_forward(m)}
        if self._warn_uncalled and uncalled:
            logger.warning(
                "The following submodules of the model were never called during the run. "
                "They may be unused, or they were accessed by direct calls to .forward() or "
                "via other python methods. In the latter case they will have zeros for "
                "statistics, though their statistics will still contribute to their parent "
                "calling module.\n" + ", ".join(sorted(uncalled)))

    def _has_forward(self, name: str) -> bool:
        module = self._named_modules.get(name)
        if module is None:
            return False
        no_forward = (torch.nn.ModuleList, torch.nn.ModuleDict, torch.nn.Module, torch.nn.Identity)
        return not any(type(module).forward is m.forward for m in no_forward)


class ActivationAnalysis(ModelAnalysis):
    """Output elements of convolutions and matrix multiplications (fvcore's activations)."""

    _statistic = "activations"
    _default_ops = ACTIVATION_OPS
