"""Memory: every tensor storage live during a counted block, by device and category, and
per module (``FlopCounterMode(count_memory=True)``; ``Results.memory``).

A storage is known from the op that created it (the counter notes each op's outputs) or,
for one that existed before the block, from the model (parameters, buffers, gradients),
the optimizer handed to the counter (its state) or the first op that reads it (inputs);
it is live until its last reference dies (a weak reference tells). Its bytes are exact,
rounded up to the caching allocator's 512-byte blocks on CUDA. Each storage has one
category, set when it is created, as PyTorch's ``MemTracker`` sets it: made in a forward
(or recomputed in backward) an activation, in a backward a temporary, in an optimizer's
step optimizer state; a gradient once autograd accumulates it into a parameter's
``.grad``. Memory is read at the end of each op (its outputs made, its inputs still held),
and when a module starts and ends its forward.
"""
from __future__ import annotations

import threading
import warnings
import weakref
from collections import Counter
from dataclasses import dataclass, field
from functools import partial

import torch
from torch.optim.optimizer import (register_optimizer_step_post_hook,
                                   register_optimizer_step_pre_hook)

from .layouts import TrackerSlot
from .results import prefixes

#: Each storage's category, in report order.
CATEGORIES = ("parameters", "buffers", "gradients", "optimizer", "activations",
              "temporaries", "inputs")
PARAMETERS, BUFFERS, GRADIENTS, OPTIMIZER, ACTIVATIONS, TEMPORARIES, INPUTS = CATEGORIES
_CUDA_BLOCK = 512  # the CUDA caching allocator's rounding
_TENSOR = torch.Tensor
_node = torch._C._current_autograd_node
_grad_enabled = torch.is_grad_enabled
_DEVICE, _BYTES, _CATEGORY, _KEY, _REF = range(5)  # a live storage's record
# ops that hand over a tensor made outside the dispatcher: their input is new, not an input
_FRESH = frozenset(getattr(torch.ops.aten, name).default for name in ("lift_fresh", "lift_fresh_copy"))


@dataclass
class ModuleMemory:
    """One module's memory, in bytes (all devices together)."""

    #: live when its first forward call started, and when it ended
    start: int = 0
    end: int = 0
    #: the most live during its forward calls, and during its backward (the ops charged to
    #: it in backward, recomputation included)
    peak_forward: int = 0
    peak_backward: int = 0
    #: made in its forward (inclusive) and still live when backward began or, with no
    #: backward, when the block ended: what autograd saved (and outputs still held)
    saved: int = 0
    #: of its parameters (inclusive, each storage once), their gradients and optimizer
    #: state, when the block ended
    parameters: int = 0
    gradients: int = 0
    optimizer: int = 0


@dataclass
class Memory:
    """The memory of one counted block."""

    #: device -> the most bytes live at once
    peak: dict = field(default_factory=dict)
    #: device -> {category: bytes} at that peak
    breakdown: dict = field(default_factory=dict)
    #: device -> (phase, innermost module path or None) when the peak was reached; phase
    #: is "forward", "backward", "recompute" or "optimizer"
    peak_at: dict = field(default_factory=dict)
    #: device -> {category: bytes} live when the block ended
    end: dict = field(default_factory=dict)
    #: module path -> ModuleMemory
    modules: dict = field(default_factory=dict)
    #: tensors whose storage could not be read (sparse and other layouts): kind -> count
    untracked: dict = field(default_factory=dict)

    @property
    def peak_bytes(self) -> int:
        """The peak of the device the model ran on: the largest off the CPU (which then
        holds only scalars such as AdamW's step counts), else the CPU's (0: none)."""
        off_cpu = [n for d, n in self.peak.items() if d != "cpu"]
        return max(off_cpu) if off_cpu else self.peak.get("cpu", 0)


def _rounded(nbytes: int, device: torch.device) -> int:
    if device.type == "cuda":
        return -(-nbytes // _CUDA_BLOCK) * _CUDA_BLOCK
    return nbytes


class Ledger:
    """The live storages of one block and what was read of them; ``note`` after each op,
    ``watch`` after each module entered or left (the tracker's state calls it)."""

    def __init__(self, tracker, tag: str, optimizer=None):
        self._tracker = tracker
        self._state = tracker.state
        self._tag = tag + ".memory"  # autograd-node metadata: the module stack it ran in
        self._untagged: list = []  # (weak output, key) of the last forward op, to tag
        self._optimizer = optimizer
        self._live: dict = {}  # id(storage) -> [device, bytes, category, key, weakref]
        self._now: dict = {}  # device -> Counter {category: bytes}, "total" too
        self._total = 0  # all devices
        self._peak: dict = {}
        self._breakdown: dict = {}
        self._peak_at: dict = {}
        self._start: dict = {}
        self._end: dict = {}
        self._peak_fw: dict = {}
        self._peak_bw: dict = {}
        self._saved: dict | None = None
        self._untracked: Counter = Counter()
        self._key: tuple = ()
        self._stepping = 0
        self._handles: list = []
        self._resize = None  # torch's UntypedStorage.resize_ while the block follows it
        self._resize_own = False  # whether UntypedStorage defined resize_ itself
        self._hooks_were_none: list = []  # parameters whose hook dict we made
        self._refilled: dict = {}  # id -> weak storage: resized before we knew it
        # one thread at a time: autograd's device threads note ops, GC frees storages
        self._lock = threading.RLock()
        self._failed = False

    # --- the block -------------------------------------------------------------------
    def open(self, model, no_dynamo) -> None:
        """Know what exists before the block; follow gradients and optimizer steps (and
        module calls, through ``no_dynamo(watch)``: see mode._no_dynamo)."""
        paths = self._tracker.paths if model is not None else {}
        for _, p in _parameters(paths):
            self._add(p, PARAMETERS, None)
            if p.grad is not None:
                self._add(p.grad, GRADIENTS, None, recategorize=True)
            if p.requires_grad:
                if p._post_accumulate_grad_hooks is None:
                    self._hooks_were_none.append(p)
                self._handles.append(p.register_post_accumulate_grad_hook(self._grad))
        for m in paths:
            for b in m._buffers.values():
                if b is not None:
                    self._add(b, BUFFERS, None)
        if self._optimizer is not None:
            self._add_optimizer_state(self._optimizer)
        self._handles += [register_optimizer_step_pre_hook(self._step_starts),
                          register_optimizer_step_post_hook(self._step_ends)]
        self._state[TrackerSlot.WATCH] = no_dynamo(self.watch)
        self._resize_own = "resize_" in vars(torch.UntypedStorage)
        resize = self._resize = torch.UntypedStorage.resize_
        ledger = self

        def resize_(st, size):
            out = resize(st, size)
            ledger._resized(st)
            return out

        torch.UntypedStorage.resize_ = resize_  # not dispatched: followed here for the block
        for dev, now in self._now.items():
            self._peak[dev], self._breakdown[dev] = now["total"], dict(now)
            self._peak_at[dev] = ("forward", None)

    def close(self, model) -> Memory:
        """Stop following (first, whatever fails after); what was measured, as plain data
        (nothing held)."""
        self._state[TrackerSlot.WATCH] = None
        if self._resize is not None:
            if self._resize_own:
                torch.UntypedStorage.resize_ = self._resize
            else:  # inherited: the class gets none of its own
                del torch.UntypedStorage.resize_
            self._resize = None
        for h in self._handles:
            h.remove()
        for p in self._hooks_were_none:
            if not p._post_accumulate_grad_hooks:
                p._post_accumulate_grad_hooks = None
        self._handles, self._hooks_were_none = [], []
        try:
            with self._lock:
                self._tag_nodes()
                if self._saved is None:
                    self._settle_saved()
                return self.read(model)
        finally:
            self._live.clear()  # its weak references go: no callback after the block
            self._refilled.clear()

    def read(self, model) -> Memory:
        """What was measured so far."""
        with self._lock:
            return self._read(model)

    def _read(self, model) -> Memory:
        modules = {p: ModuleMemory(start=self._start.get(p, 0), end=self._end.get(p, 0),
                                   peak_forward=self._peak_fw.get(p, 0),
                                   peak_backward=self._peak_bw.get(p, 0),
                                   saved=(self._saved or {}).get(p, 0))
                   for p in {*self._start, *self._peak_fw, *self._peak_bw, *(self._saved or {})}}
        if model is not None:
            self._own_state(modules)
        return Memory(
            peak=dict(self._peak), breakdown={d: _categories(b) for d, b in self._breakdown.items()},
            peak_at=dict(self._peak_at),
            end={d: _categories(now) for d, now in self._now.items()},
            modules=modules, untracked=dict(self._untracked))

    # --- per op ----------------------------------------------------------------------
    def note(self, func, args, kwargs, out) -> None:
        """After an op: its unseen inputs, its outputs, and the peaks. A failure here is
        a warning: the op has run, and the user's program goes on."""
        try:
            with self._lock:
                self._note(func, args, kwargs, out)
        except Exception as e:
            if not self._failed:
                self._failed = True
                warnings.warn(f"dispatchflops: memory accounting failed after {func}: "
                              f"{type(e).__name__}: {e}; its figures are incomplete",
                              RuntimeWarning, stacklevel=2)

    def _note(self, func, args, kwargs, out) -> None:
        if self._untagged:
            self._tag_nodes()
        phase, category, key = self._where()
        if phase != "backward" and key and _grad_enabled():  # weakly: it may die before the next op
            for t in out if isinstance(out, (tuple, list)) else (out,):
                if isinstance(t, _TENSOR):
                    self._untagged.append((weakref.ref(t), key))
        if func not in _FRESH:  # (torch.tensor(...) comes in fresh)
            for a in (*args, *kwargs.values()) if kwargs else args:
                if isinstance(a, _TENSOR):
                    if not self._known(a):
                        self._add(a, INPUTS, None)
                elif isinstance(a, (list, tuple)):
                    for t in a:
                        if isinstance(t, _TENSOR) and not self._known(t):
                            self._add(t, INPUTS, None)
        if isinstance(out, _TENSOR):
            self._add(out, category, key)
        elif isinstance(out, (tuple, list)):
            for t in out:
                if isinstance(t, _TENSOR):
                    self._add(t, category, key)
        self._peaks(phase, key)

    def _where(self) -> tuple:
        """(phase, category of what is made now, module stack it is charged to)."""
        node = _node()
        key = self._state[TrackerSlot.KEY]
        if node is None:
            if self._stepping:
                return "optimizer", OPTIMIZER, key
            return "forward", ACTIVATIONS, key
        self._stepping = 0  # (a step that raised never ended)
        if key:  # under the modules around its first call, as its FLOPs (csrc/charge.h)
            return "recompute", ACTIVATIONS, self._tracker.parent_key.get(key[0], ()) + key
        if self._saved is None:
            self._settle_saved()
        return "backward", TEMPORARIES, node.metadata.get(self._tag, ())

    def _resized(self, st) -> None:
        """A storage resized in place (FSDP2 frees and refills its unsharded parameters
        so, outside the dispatcher)."""
        with self._lock:
            rec = self._live.get(id(st))
            if rec is None:  # known, a temporary, once an op writes into it (a FakeTensor's
                self._refilled[id(st)] = weakref.ref(st)  # storage does not say its device)
                return
            phase, _, key = self._where()
            nbytes = _rounded(st.nbytes(), torch.device(rec[_DEVICE]))
            if nbytes != rec[_BYTES]:
                self._change(rec[_DEVICE], rec[_CATEGORY], nbytes - rec[_BYTES])
                rec[_BYTES] = nbytes
            self._peaks(phase, key)

    def _tag_nodes(self) -> None:
        """Tag the autograd nodes of the last forward op's outputs (autograd attaches them
        once the op has returned) with the module stack it ran in: their backward is that
        stack's. Every op's, not only those the counter charges."""
        for ref, key in self._untagged:
            t = ref()
            fn = t.grad_fn if t is not None else None
            if fn is not None:
                fn.metadata.setdefault(self._tag, key)
        self._untagged.clear()

    def _known(self, t) -> bool:
        if t.__class__ is not _TENSOR:
            return False  # a subclass: _add looks inside
        try:
            return id(t.untyped_storage()) in self._live
        except Exception:
            return True  # an input whose storage cannot be read: not listed

    def _peaks(self, phase: str, key: tuple) -> None:
        for dev, now in self._now.items():
            if now["total"] > self._peak.get(dev, -1):
                self._peak[dev], self._breakdown[dev] = now["total"], dict(now)
                self._peak_at[dev] = (phase, key[-1] if key else None)
        if key:
            peaks = self._peak_fw if phase == "forward" else self._peak_bw
            total = self._total
            for p in key:
                if total > peaks.get(p, -1):
                    peaks[p] = total

    def watch(self) -> None:
        """The module stack changed: modules starting or ending their forward."""
        with self._lock:
            key = self._state[TrackerSlot.KEY]
            old, self._key = self._key, key
            if _node() is not None:
                return  # recomputation in backward
            self._stepping = 0  # a forward runs: no optimizer step does (one raised)
            i, n = 0, min(len(old), len(key))
            while i < n and old[i] == key[i]:
                i += 1
            total = self._total
            for p in old[i:]:
                self._end.setdefault(p, total)
            for p in key[i:]:
                self._start.setdefault(p, total)
                if total > self._peak_fw.get(p, -1):
                    self._peak_fw[p] = total

    # --- storages --------------------------------------------------------------------
    def _add(self, t, category: str, key, recategorize: bool = False) -> None:
        """Know t's storage (or each of a wrapper subclass's), made now in ``category``."""
        for leaf in (t,) if t.__class__ is _TENSOR else _leaves(t):
            self._add_storage(leaf, category, key, recategorize)

    def _add_storage(self, t, category: str, key, recategorize: bool) -> None:
        try:
            st = t.untyped_storage()
            nbytes = st.nbytes()
        except Exception:
            self._untracked[_kind(t)] += 1
            return
        rec = self._live.get(id(st))
        device = t.device  # (a FakeTensor's storage is on meta, the tensor on its device)
        if rec is None:
            refilled = self._refilled.pop(id(st), None)
            if refilled is not None and refilled() is st:
                category = TEMPORARIES
            self._know(st, device, category, key, _rounded(nbytes, device))
            return
        if recategorize and rec[_CATEGORY] != category:
            self._change(rec[_DEVICE], rec[_CATEGORY], -rec[_BYTES])
            rec[_CATEGORY] = category
            self._change(rec[_DEVICE], category, rec[_BYTES])
        nbytes = _rounded(nbytes, device)
        if nbytes != rec[_BYTES]:  # resized in place
            self._change(rec[_DEVICE], rec[_CATEGORY], nbytes - rec[_BYTES])
            rec[_BYTES] = nbytes

    def _know(self, st, device, category: str, key, nbytes: int) -> None:
        """A storage not seen before, live from now on until its last reference dies."""
        k = id(st)
        dev = str(device)
        self._live[k] = [dev, nbytes, category, key, weakref.ref(st, partial(self._free, k))]
        self._change(dev, category, nbytes)

    def _change(self, dev: str, category: str, nbytes: int) -> None:
        now = self._now.get(dev)
        if now is None:
            now = self._now[dev] = Counter(total=0)
        now[category] += nbytes
        now["total"] += nbytes
        self._total += nbytes

    def _free(self, k: int, _ref) -> None:
        with self._lock:
            rec = self._live.pop(k, None)
            if rec is not None:
                self._change(rec[_DEVICE], rec[_CATEGORY], -rec[_BYTES])

    def _grad(self, p) -> None:
        """Autograd accumulated p's gradient."""
        if p.grad is not None:
            with self._lock:
                self._add(p.grad, GRADIENTS, None, recategorize=True)

    def _add_optimizer_state(self, optimizer) -> None:
        for state in optimizer.state.values():
            for v in state.values():
                if isinstance(v, _TENSOR):
                    self._add(v, OPTIMIZER, None, recategorize=True)

    def _step_starts(self, optimizer, args, kwargs) -> None:
        with self._lock:
            self._add_optimizer_state(optimizer)
            self._stepping += 1

    def _step_ends(self, optimizer, args, kwargs) -> None:
        with self._lock:
            self._stepping = max(0, self._stepping - 1)
            self._add_optimizer_state(optimizer)

    # --- what is read at the end -------------------------------------------------------
    def _settle_saved(self) -> None:
        """Activations still live now (backward begins, or the block ends): per module."""
        saved: Counter = Counter()
        for rec in list(self._live.values()):
            if rec[_CATEGORY] == ACTIVATIONS and rec[_KEY]:
                for p in dict.fromkeys(rec[_KEY]):
                    saved[p] += rec[_BYTES]
        self._saved = dict(saved)

    def _own_state(self, modules: dict) -> None:
        """Each module's parameters, gradients and optimizer state, inclusive."""
        state = self._optimizer.state if self._optimizer is not None else {}
        seen: set = set()
        for path, p in _parameters(self._tracker.paths):
            sizes = [(PARAMETERS, p), (GRADIENTS, p.grad)]
            sizes += [(OPTIMIZER, v) for v in state.get(p, {}).values() if isinstance(v, _TENSOR)]
            for what, t in sizes:
                nbytes = _storage_bytes(t, seen)
                if not nbytes:
                    continue
                for owner in prefixes(path):
                    mm = modules.get(owner)
                    if mm is None:
                        mm = modules[owner] = ModuleMemory()
                    setattr(mm, what, getattr(mm, what) + nbytes)


def _parameters(paths: dict):
    """(module path, parameter) for the modules of ``paths``, each parameter once, under
    its first module (as the tracker's parameter counts)."""
    seen: set = set()
    for m, path in paths.items():
        for p in m._parameters.values():
            if p is not None and id(p) not in seen:
                seen.add(id(p))
                yield path, p


def _leaves(t):
    """The plain tensors a wrapper subclass holds (a DTensor's local shard), at any depth;
    t itself otherwise."""
    if t.__class__ is not _TENSOR and hasattr(t, "__tensor_flatten__"):
        for name in t.__tensor_flatten__()[0]:
            inner = getattr(t, name)
            if isinstance(inner, _TENSOR):
                yield from _leaves(inner)
    else:
        yield t


def _storage_bytes(t, seen: set) -> int:
    """The bytes of t's storages (its leaves'), those not seen before (0 for None)."""
    total = 0
    for leaf in _leaves(t) if t is not None else ():
        try:
            st = leaf.untyped_storage()
        except Exception:
            continue
        if id(st) not in seen:
            seen.add(id(st))
            total += _rounded(st.nbytes(), leaf.device)
    return total


def _categories(now: Counter) -> dict:
    return {c: now.get(c, 0) for c in CATEGORIES}


def _kind(t) -> str:
    """A tensor's kind, for the untracked count."""
    if t.layout is not torch.strided:
        return str(t.layout).replace("torch.", "")
    return type(t).__name__
