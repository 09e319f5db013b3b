"""FlopCounterMode: count every aten call of a real eager run, per module path."""
from __future__ import annotations

import contextlib
import itertools
import os
import traceback
import types
import warnings
import weakref
from collections import Counter, defaultdict

import torch
import torch._dynamo
from torch.utils._python_dispatch import TorchDispatchMode

from . import _C, comm, fused, memory, ops, results, subclasses, traffic
from .blockmask import BlockMasks
from .composite import Composites, Cost
from .conventions import get_convention
from .layouts import CounterSlot, OpRecord, UncountedRecord, state_list
from .table import mmengine_table
from .torch_table import torch_table
from .tracker import ModuleTracker
from .version import __version__

try:  # where torch notes that a HOP compiles itself (see _Dispatch.ignore_compile_internals)
    from torch._higher_order_ops.utils import _hop_compile_tls as _hop_compile
except ImportError:
    _hop_compile = None

# the per-op bookkeeping, on the counter's state list (csrc/charge.h)
_charge, _tag = _C.charge, _C.tag_pending
_HOP_WAIT = 64  # ops a HOP's output may wait for its autograd node (see _tag_pending)
_DECOMPOSE, _FREE, _BYTES, _COUNT = ops.DECOMPOSE, ops.FREE, comm.Bytes, subclasses.COUNT
_MOVES, _COST = traffic.MOVES, Cost
_MARKERS = (ops.UNSUPPORTED, _MOVES)  # handlers charge() reads, never calls
_OVERLOAD = torch._ops.OpOverload
_instances = itertools.count()


def _no_dynamo(fn):
    """``fn`` run with dynamo off, as torch runs a mode's Python ``__torch_dispatch__``:
    what the C path calls back into Python would otherwise, inside a compiled model's call,
    be compiled by dynamo (the counter's own functions, with warnings)."""
    return torch._dynamo.disable(fn, recursive=True, wrapping=False)


def _op_call_is_plain() -> bool:
    """Whether calling an OpOverload is calling its C entry ``_op`` (unless it has a
    Python dispatcher, torch 2.14's only other branch): the C path then calls ``_op``."""
    code = getattr(_OVERLOAD.__call__, "__code__", None)
    return code is not None and code.co_names in (
        ("_op",), ("_pyobj_dispatcher", "torch", "_C", "_peek_should_skip_torch_function",
                   "_cpp_dispatch_handle", "_op"))


def _mode_call_fits() -> bool:
    """Whether torch calls a mode's ``__torch_dispatch__`` as the C path needs: the
    instance attribute, bound to the mode, given (func, types, args tuple, kwargs dict)."""
    class Probe(TorchDispatchMode):
        def __torch_dispatch__(self, func, types, args=(), kwargs=None):
            return func(*args, **(kwargs or {}))

    seen = []

    def record(mode, func, types, args=(), kwargs=None):
        seen.append((mode, func, args, kwargs))
        return func(*args, **(kwargs or {}))

    probe = Probe()
    probe.__torch_dispatch__ = types.MethodType(record, probe)
    try:
        x = torch.empty(2, device="meta")
        with probe:
            x.add(x)
    except Exception:
        return False
    return (len(seen) == 1 and seen[0][0] is probe and seen[0][1] is torch.ops.aten.add.Tensor
            and isinstance(seen[0][2], tuple) and isinstance(seen[0][3], dict))


_PLAIN_OP_CALL = _op_call_is_plain()
#: Whether this torch's mode machinery fits the per-op path in C (csrc/dispatch.h)
C_DISPATCH_FITS = _mode_call_fits()
#: Whether counters built from now on dispatch ops in C; else the mode's Python
#: __torch_dispatch__ runs. DISPATCHFLOPS_DISPATCH=python forces the Python path.
C_DISPATCH = os.environ.get("DISPATCHFLOPS_DISPATCH") != "python" and C_DISPATCH_FITS


class _Distributed:
    """Where _AfterBackward's work comes from: torch.distributed (csrc/charge.h)."""


_Distributed.__module__ = "torch.distributed"


class _AfterBackward:
    """The autograd node a collective is charged under in a backward's final callbacks
    (FSDP2 reduce-scatters the first unit's gradients there): no node runs, yet it is
    backward work of torch.distributed's, charged where backward last was."""

    metadata: dict = {}
    _forward_cls = _Distributed


_AFTER_BACKWARD = _AfterBackward()


def _collective_node():
    """The running autograd node, for a collective (see _AfterBackward)."""
    node = torch._C._current_autograd_node()
    if node is None and torch._C._current_graph_task_id() != -1:
        return _AFTER_BACKWARD
    return node


def _uncompiled(model):
    """The module torch.compile wrapped (its paths are the user's: ``conv1``, not
    ``_orig_mod.conv1``), or ``model`` itself."""
    if isinstance(model, torch._dynamo.eval_frame.OptimizedModule):
        return model._orig_mod
    return model


def _first_tensor(out):
    """The tensor an op returned, or the first of those it returned (None if none)."""
    if isinstance(out, torch.Tensor):
        return out
    if isinstance(out, (tuple, list)):
        return next((o for o in out if isinstance(o, torch.Tensor)), None)
    return None


def _caused_by(exc: BaseException, cause: BaseException) -> bool:
    """Whether ``cause`` is ``exc`` or in its chain of causes and contexts."""
    seen = set()
    while exc is not None and id(exc) not in seen:
        if exc is cause:
            return True
        seen.add(id(exc))
        exc = exc.__cause__ or exc.__context__
    return False


class _Dispatch(TorchDispatchMode):
    """The TorchDispatchMode: runs each op, then charges its cost. Higher-order operators
    (flex_attention, cond, ...) come here too: they run as they would, and are counted
    where ``ops`` has a formula for them."""

    supports_higher_order_operators = True

    @classmethod
    def ignore_compile_internals(cls) -> bool:
        # A HOP called eagerly compiles itself (flex_attention: torch.compile with the
        # eager backend and fullgraph=True), which a dispatch mode would make fail. Inside
        # that compile the mode steps aside; the compiled HOP call then reaches it.
        return getattr(_hop_compile, "in_hop_compile", False)

    def __init__(self, counter: FlopCounterMode):
        super().__init__()
        self.counter = counter
        if counter._c_dispatch:  # the instance's __torch_dispatch__: C, bound to the mode
            python_path = types.MethodType(type(self).__torch_dispatch__, self)
            self.__torch_dispatch__ = types.MethodType(
                _C.dispatch(counter._hot, _no_dynamo(self._c_entry), python_path,
                            _no_dynamo(counter._fail)), self)

    def close(self):
        """Drop the C path (it and the mode refer to each other)."""
        self.__dict__.pop("__torch_dispatch__", None)

    def _c_entry(self, func):
        """How the C path runs and charges ``func`` (csrc/dispatch.h): None where this
        Python path runs it, else (call, handler or None, state)."""
        if not isinstance(func, _OVERLOAD):  # higher-order operators
            return None
        c = self.counter
        handler = c._handlers.get(id(func))
        if handler is None:
            handler = c._handlers[id(func)] = c._resolve(func)
        if handler is _DECOMPOSE:
            return None
        call = func._op if (_PLAIN_OP_CALL and type(func) is _OVERLOAD
                            and getattr(func, "_pyobj_dispatcher", None) is None) else func
        if handler is _FREE:
            return call, None, None
        hot = c._comm_hot if handler.__class__ is _BYTES else c._hot
        if not isinstance(handler, types.BuiltinFunctionType) and handler not in _MARKERS:
            handler = _no_dynamo(handler)  # a Python formula (the C ones are builtins)
        return call, handler, hot

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        # Dicts are keyed by id(func): an OpOverload's __hash__ is Python code.
        c = self.counter
        if c._pending:
            _tag(c._hot)
        if types:  # tensor subclasses: DTensors run as their local ops
            out = self._subclass_op(func, types, args, kwargs or {})
            if out is not _COUNT:
                return out
        handler = c._handlers.get(id(func))
        if handler is None:
            handler = c._handlers[id(func)] = c._resolve(func)
        try:
            out = func(*args, **kwargs) if kwargs else func(*args)
        except Exception as e:
            c._fail(e, func)
            raise
        if c._ledger is not None:
            c._ledger.note(func, args, kwargs, out)
        if handler is _DECOMPOSE:  # run whole: its decomposition's FLOPs, its own bytes,
            moved = False  # which the first op with FLOPs carries (one kernel: one bound)
            for op, cost in c._composites.charges(func, args, kwargs or {}):
                if moved or cost.__class__ is not _COST:
                    _charge(c._decomposed_hot, op, cost, args, kwargs or {}, out)
                else:
                    _charge(c._hot, op, cost, args, kwargs or {}, out, func)
                    moved = True
            if not moved:
                _charge(c._hot, func, _MOVES, args, kwargs or {}, out)
            elif id(func) in c._fused:  # counted: note whose weights it read
                c._note_fused_reads(args)
        elif handler is not _FREE:  # collectives' bytes go to their own accumulator
            _charge(c._comm_hot if handler.__class__ is _BYTES else c._hot, func, handler,
                    args, kwargs or {}, out)
        return out

    def _subclass_op(self, func, types, args, kwargs):
        """An op on DTensors runs with the mode active, to count its local ops (it comes
        back here once, and is left to DTensor); DTensor's fake shape propagation is run
        uncounted; anything else is counted as usual (COUNT). See subclasses.py."""
        c = self.counter
        if all(t is torch.Tensor for t in types):  # (autograd's saved tensors come so)
            return _COUNT
        if subclasses.is_dtensor_op(types):
            if c._in_dtensor is not None:
                return NotImplemented  # DTensor takes it
            c._in_dtensor = subclasses.local_shards_fake(args, kwargs)
            try:
                with self:
                    out = func(*args, **kwargs)
            except Exception as e:
                if c._failed is None or c._failed[0] is not e:
                    c._fail(e, func)
                raise
            finally:
                c._in_dtensor = None
            t = _first_tensor(out)
            if t is not None and torch.is_grad_enabled():  # its backward, charged here
                c._pending.append((t, c._tracker.key))
            return out
        if c._in_dtensor is False and subclasses.is_fake(types):  # sharding propagation
            return func(*args, **kwargs)
        return _COUNT


class FlopCounterMode:
    """Count FLOPs, activations and parameters of what runs inside the ``with`` block.

    A drop-in for ``torch.utils.flop_counter.FlopCounterMode``: ``get_total_flops()``,
    ``get_flop_counts()`` (keys "Global" and module names as torch forms them) and
    ``get_table(depth)``. ``results`` adds, per module path relative to ``model`` ("" is
    the model), inclusive FLOPs split into forward / backward / recomputation, activations,
    parameters, calls and FLOPs per aten op.

    convention: "pytorch" (2 FLOPs per multiply-add, torch's and torchvision's numbers) or
    "fvcore" (1 per multiply-add plus fvcore's norm/pool/upsample handles, MMEngine's).
    formulas: this counter's own formulas, {op: f} (an OpOverloadPacket or OpOverload,
    custom ops included), ahead of those registered with ``register_flop_formula`` and the
    built-in ones: ``f(*args, out=out, **kwargs)`` returns FLOPs or (FLOPs, activations).

    count_bytes: also charge every op, with or without FLOPs, the bytes it reads and writes
    (traffic.py): what a roofline needs (roofline.py). Off by default, as in torch's
    counter: it reads each op's tensors' metadata, which costs time per op.

    count_memory: also follow every tensor storage live in the block, by device and
    category, and per module (memory.py; ``results.memory``). ``optimizer``: the optimizer
    whose state exists before the block (with count_memory). Off by default: a Python call
    per op.

    As torch's counter: ``depth`` and ``display`` (the table printed on exit; off by
    default here), ``custom_mapping`` ({op: f} in torch's conventions: ``f(*shapes,
    out_shape=...)``, or ``f(*args, out_val=...)`` for an ``f`` marked ``_get_raw``; below
    ``formulas``), ``mods`` (accepted with torch's warning, unused) and ``flop_counts``.
    """

    def __init__(self, model: torch.nn.Module | None = None, depth: int = 2,
                 display: bool = False, custom_mapping: dict | None = None, *,
                 convention: str = "pytorch", formulas: dict | None = None, mods=None,
                 count_bytes: bool = False, count_memory: bool = False, optimizer=None):
        if isinstance(model, (list, tuple)) and all(isinstance(m, torch.nn.Module) for m in model):
            mods, model = model, None  # torch's positional `mods`
        if model is not None and not isinstance(model, torch.nn.Module):
            raise TypeError(f"model must be a torch.nn.Module, got {type(model).__name__}")
        model = _uncompiled(model)
        if mods is not None:
            warnings.warn("mods argument is not needed anymore, you can stop passing it",
                          stacklevel=2)
        self.convention = get_convention(convention)
        self.formulas = {op: ops.from_torch_convention(f)
                         for op, f in (custom_mapping or {}).items()}
        self.formulas.update(formulas or {})
        self.depth = depth
        self.display = display
        self.count_bytes = count_bytes
        self.count_memory = count_memory
        if optimizer is not None and not isinstance(optimizer, torch.optim.Optimizer):
            raise TypeError(f"optimizer must be a torch.optim.Optimizer, got "
                            f"{type(optimizer).__name__}")
        if optimizer is not None and not count_memory:
            raise ValueError("optimizer= is what count_memory=True reads: pass both")
        self._optimizer_ref = weakref.ref(optimizer) if optimizer is not None else None
        self._c_dispatch = C_DISPATCH  # the per-op path its blocks take
        # weakly: after the block the counter holds no module (nor any tensor)
        self._model_ref = weakref.ref(model) if model is not None else None
        # the autograd-node metadata key of this counter (nested counters tag the same nodes)
        self._tag = f"dispatchflops.{next(_instances)}"
        self._raw = None  # what the last run counted, turned into results when first read
        self._memory: memory.Memory | None = None  # what the last run's ledger measured
        self._results: results.Results | None = None
        self._torch_counts: dict | None = None
        #: where the block raised: (module path or None, aten op name or None)
        self.failure: tuple | None = None
        self._reset()

    def _reset(self):
        self._acc: dict = {}  # (phase, module stack) -> {id(func): OpRecord's list}
        self._comm_acc: dict = {}  # the same for collectives, their bytes as FLOPs
        self._unsupported: dict = {}  # id(func) -> UncountedRecord's list
        # (output, module stack[, ops left to wait]) of forward ops to tag (_tag_pending)
        self._pending: list = []
        self._hot: list | None = None  # the state _C.charge works on
        self._comm_hot: list | None = None  # the same, for collectives (into _comm_acc)
        # the same, for the FLOPs of composite ops' decompositions (no bytes)
        self._decomposed_hot: list | None = None
        # {id(op): traffic plan} of the ops seen (traffic.py), None when not counting bytes
        self._plans: dict | None = {} if self.count_bytes else None
        self._failed = None
        #: inside an op on DTensors: whether their local shards are fake (else None)
        self._in_dtensor: bool | None = None
        self._handlers: dict = {}
        # {id(parameter): its module's path}, built when a fused kernel first runs, the
        # paths whose parameters counted fused kernels read, and the fused ops (ids) seen
        self._param_paths: dict | None = None
        self._fused: set = set()
        self._fused_reads: set = set()
        self._masks = BlockMasks()
        self._composites = Composites(
            lambda func: ops.resolve(func, self.convention, self.formulas))
        self._tracker: ModuleTracker | None = None
        self._mode: _Dispatch | None = None
        self._ledger: memory.Ledger | None = None

    # --- context --------------------------------------------------------------------
    def __enter__(self):
        if self._mode is not None:
            raise RuntimeError("this FlopCounterMode is already active")
        self._reset()
        self._raw = self._results = self._torch_counts = self._memory = None
        self.failure = None
        self._tracker = ModuleTracker(self._model())
        if self.count_memory:
            optimizer = self._optimizer_ref() if self._optimizer_ref is not None else None
            self._ledger = memory.Ledger(self._tracker, self._tag, optimizer)
        note = _no_dynamo(self._ledger.note) if self._ledger is not None else None
        last_backward = [None]  # shared: collectives in backward follow the FLOPs' modules
        self._hot, self._comm_hot, self._decomposed_hot = (state_list(
            CounterSlot, acc=acc, tracker=self._tracker.state, pending=self._pending,
            fwd_key=None, fwd_acc=None, tag=self._tag, unsupported=self._unsupported,
            no_formula=ops.UNSUPPORTED, current_node=node, grad_enabled=torch.is_grad_enabled,
            last_backward=last_backward, plans=plans, moves=_MOVES, tensor=torch.Tensor,
            memory=note)
            for acc, node, plans in (
                (self._acc, torch._C._current_autograd_node, self._plans),
                (self._comm_acc, _no_dynamo(_collective_node), None),
                (self._acc, torch._C._current_autograd_node, None)))
        try:
            if self._ledger is not None:
                self._ledger.open(self._model(), _no_dynamo)
            self._tracker.__enter__()
            self._mode = _Dispatch(self)
            self._mode.__enter__()
        except BaseException:
            try:
                if self._mode is not None:
                    self._mode.close()
                if self._ledger is not None:
                    self._ledger.close(None)
            finally:
                self._tracker.__exit__(None, None, None)
                self._reset()
            raise
        return self

    def __exit__(self, exc_type, exc, tb):
        tracker = self._tracker
        try:
            self._mode.__exit__(exc_type, exc, tb)
            self._tag_pending()
            if exc is not None:
                self.failure = self._locate(exc, tracker)
        finally:
            try:
                self._raw = self._snapshot(final=True)
            finally:
                self._mode.close()
                try:
                    if self._ledger is not None:  # (a model freed in the block: no modules)
                        model = self._model_ref() if self._model_ref is not None else None
                        self._memory = self._ledger.close(model)
                finally:
                    tracker.__exit__(exc_type, exc, tb)
                    self._reset()
        if self.display and exc_type is None:
            print(self.get_table(self.depth))
        return False

    def _tag_pending(self):
        """Label the autograd nodes of counted forward ops with the module stack that ran
        them, so that their backward is charged there (``_C.tag_pending``; a HOP's output
        waits for its node over the next ``_HOP_WAIT`` ops at most)."""
        if self._pending:
            _tag(self._hot)

    def _resolve(self, func):
        """The handler of ``func``; a HOP's also keeps its BlockMask and has its output
        tagged once it has an autograd node."""
        kind = comm.collective(func)
        if kind is not None:  # communication: bytes, not FLOPs (comm.py)
            return comm.Bytes(func) if kind else ops.FREE
        handler = ops.resolve(func, self.convention, self.formulas)
        if handler is ops.DECOMPOSE and fused.reference(func) is not None:
            self._fused.add(id(func))
        plan = traffic.plan(func) if self._plans is not None else None
        if plan is not None:  # the bytes it moves (traffic.py)
            self._plans[id(func)] = plan
            if handler is ops.FREE:
                handler = _MOVES
        if not isinstance(func, torch._ops.HigherOrderOperator) or not callable(handler):
            return handler
        handler = self._masks.recording(func, handler)

        def tagged_later(args, kwargs, out):
            cost = handler(args, kwargs, out)
            if any(isinstance(a, torch.Tensor) and a.requires_grad for a in args):
                self._pending.append((out, self._tracker.key, _HOP_WAIT))
            return cost

        return tagged_later

    def _fail(self, exc, func):
        """Note that ``func`` raised ``exc``, in the running module stack (see _locate)."""
        self._failed = (exc, func, self._tracker.key)

    def _note_fused_reads(self, args):
        """Note the modules whose parameters a fused kernel's arguments are: a fused kernel
        reads its callee modules' weights without calling them (results.read_by_fused)."""
        if not self._tracker.model_given:
            return
        if self._param_paths is None:
            self._param_paths = {id(p): path for m, path in self._tracker.paths.items()
                                 for p in m._parameters.values() if p is not None}
        for a in args:
            path = self._param_paths.get(id(a)) if isinstance(a, torch.Tensor) else None
            if path is not None:
                self._fused_reads.add(path)

    def _locate(self, exc, tracker):
        """(module path, op) that were running when ``exc`` was raised."""
        op = path = None
        if self._failed is not None and _caused_by(exc, self._failed[0]):
            _, func, key = self._failed
            op = ops.op_name(func)
            path = key[-1] if key else None
        if path is None:
            # An error raised by Python code: the innermost module frame of the traceback.
            for frame, _ in traceback.walk_tb(exc.__traceback__):
                owner = frame.f_locals.get("self")
                if isinstance(owner, torch.nn.Module) and owner in tracker.paths:
                    path = tracker.paths[owner]
        return path, op

    # --- for peers' fronts ------------------------------------------------------------
    @property
    def module_stack(self) -> tuple[str, ...]:
        """The paths of the modules running now, outermost first (inside the block)."""
        return self._tracker.key

    @contextlib.contextmanager
    def charging_into(self, acc: dict):
        """Inside (the counter's block), counted ops are kept in ``acc`` ({(phase, module
        stack): {id(op): an ``OpRecord``'s list}}) instead of this counter's results: how
        a peer's front keeps them apart by its own operator names."""
        if self._hot is None:
            raise RuntimeError("charging_into works inside the counter's block")
        saved = self._hot[CounterSlot.ACC]
        for hot in (self._hot, self._decomposed_hot):
            hot[CounterSlot.ACC], hot[CounterSlot.FWD_KEY], hot[CounterSlot.FWD_ACC] = acc, None, None
        try:
            yield acc
        finally:
            for hot in (self._hot, self._decomposed_hot):
                hot[CounterSlot.ACC], hot[CounterSlot.FWD_KEY], hot[CounterSlot.FWD_ACC] = \
                    saved, None, None

    # --- results --------------------------------------------------------------------
    def _model(self) -> torch.nn.Module | None:
        if self._model_ref is None:
            return None
        model = self._model_ref()
        if model is None:
            raise RuntimeError("the model given to FlopCounterMode no longer exists")
        return model

    def _counted(self):
        """(acc, calls, unsupported, root name, model paths, parameter numels, paths of
        containers, FLOPs of the blocks flex_attention masks ran, the collectives'
        accumulator, paths whose parameters fused kernels read) of the last run, or of the
        running one (whose masks are read only once it ends)."""
        if self._mode is not None:
            return self._snapshot()
        if self._raw is None:
            raise RuntimeError("nothing counted yet: use the counter in a `with` block first")
        return self._raw

    def _snapshot(self, final: bool = False):
        t = self._tracker
        paths = list(t.paths.values()) if t.model_given else []
        return (self._acc, t.calls, self._unsupported, t.root_name, paths, t.param_numels,
                t.containers, self._masks.blocks_run() if final else {}, self._comm_acc,
                set(self._fused_reads))

    @property
    def results(self) -> results.Results:
        """Per-module results of the last run (built when first read; live inside the block)."""
        if self._results is not None:
            return self._results
        (acc, calls, unsupported, _, paths, param_numels, containers, blocks,
         comm_acc, fused_reads) = self._counted()
        params = results.parameter_counts(param_numels)
        res = results.build(self.convention.name, acc, calls, params, paths, containers,
                            torch_version=torch.__version__, dispatchflops_version=__version__)
        results.add_communication(res, results.build(self.convention.name, comm_acc, calls,
                                                     params, paths, containers), comm.COLLECTIVE)
        by_name: Counter = Counter()
        for rec in map(UncountedRecord._make, unsupported.values()):
            by_name[ops.op_name(rec.op)] += rec.calls
        res.unsupported = dict(by_name.most_common())
        res.blocks_run = blocks
        res.read_by_fused = [p for p in res.uncalled if p in fused_reads]
        res.bytes_counted = self.count_bytes
        res.memory = (self._ledger.read(self._model()) if self._ledger is not None
                      else self._memory)
        if self._mode is None:
            self._results = res
        return res

    def _torch_style_counts(self) -> dict:
        """{"Global" | torch-style module name: {op packet: flops}}, as torch's counter."""
        if self._torch_counts is not None:
            return self._torch_counts
        acc, _, _, prefix, *_ = self._counted()

        def torch_name(path):
            if prefix is None:
                return path
            return prefix if path == "" else f"{prefix}.{path}"

        counts: dict = {}
        for (_, key), ops_ in acc.items():
            names = ["Global"] + [torch_name(p) for p in dict.fromkeys(key)]
            for rec in map(OpRecord._make, ops_.values()):
                if rec.flops is None:  # bytes only
                    continue
                packet = ops.packet(rec.op)
                for n in names:
                    d = counts.setdefault(n, {})
                    d[packet] = d.get(packet, 0) + rec.flops
        if self._mode is None:
            self._torch_counts = counts
        return counts

    def table(self, max_depth: int = 3) -> str:
        """MMEngine's per-module table (``get_model_complexity_info()["out_table"]``)."""
        model = self._model()
        if model is None:
            raise RuntimeError("table() needs the model: FlopCounterMode(model)")
        return mmengine_table(model, self.results, max_depth)

    # --- torch.utils.flop_counter API -----------------------------------------------
    @property
    def flop_counts(self) -> defaultdict:
        """{"Global" | module name: {op packet: flops}}, defaulting to 0, as torch's."""
        return defaultdict(lambda: defaultdict(int), {
            name: defaultdict(int, counts) for name, counts in self._torch_style_counts().items()})

    def get_total_flops(self) -> int:
        return sum(self._torch_style_counts().get("Global", {}).values())

    def get_flop_counts(self) -> dict:
        return {k: dict(v) for k, v in self._torch_style_counts().items()}

    def get_table(self, depth: int | None = None) -> str:
        return torch_table(self.get_flop_counts(), self.depth if depth is None else depth)
