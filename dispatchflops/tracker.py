"""Which module is running: a stack of module paths, kept as modules are entered and left."""
from __future__ import annotations

import threading
from collections import Counter

import torch
from torch.nn.modules.module import register_module_forward_hook, register_module_forward_pre_hook

from . import _C
from .layouts import TrackerSlot, state_list


def _shadows_work() -> bool:
    """Whether this torch calls a module as the shadows need (csrc/shadow.h):
    ``Module.__call__`` is ``_wrapped_call_impl``, whose first argument is the module and
    which looks ``_call_impl`` up on the instance, where a shadow takes precedence.
    Otherwise trackers follow modules with global hooks."""
    call = getattr(torch.nn.Module, "_wrapped_call_impl", None)
    code = getattr(call, "__code__", None)
    return (code is not None and torch.nn.Module.__call__ is call
            and code.co_varnames[:1] == ("self",) and "_call_impl" in code.co_names
            and callable(vars(torch.nn.Module).get("_call_impl")))


SHADOWS_WORK = _shadows_work()
# The states of the trackers that follow their model's modules by shadowing each module's
# _call_impl, and the code of the shadows' caller, in a list they read.
_SHADOWING: list = [(), torch.nn.Module._wrapped_call_impl.__code__ if SHADOWS_WORK else None]


class ModuleTracker:
    """Keeps ``key``, the tuple of module paths from the outermost running module inwards.

    With a ``model``, paths are its ``named_modules()`` names ("" is the model itself; a
    module registered twice keeps its first name) and modules outside it are transparent.
    Without one, like torch's counter, the first module seen becomes a root named by its
    class and its submodules ``Root.child.grandchild``. Only the thread that entered the
    tracker is followed: other threads calling the same modules are transparent.

    Modules are followed, in C on ``state`` (a list: ``layouts.TrackerSlot``), by
    shadowing the model's modules' ``_call_impl`` for the block (``csrc/shadow.h``):
    global hooks would send every module call down torch's slow path. A copy of a module
    made in the block (copy.copy, a DataParallel replica) runs as itself, not followed,
    like any module outside the model. Without a model, with a compiled module in it, or
    on a torch whose module call the shadows do not fit (``SHADOWS_WORK``), global forward
    hooks follow every module (``_C.tracker_hooks``).
    """

    def __init__(self, model: torch.nn.Module | None):
        self.model_given = model is not None
        self.paths: dict[torch.nn.Module, str] = {}
        self.root_name = type(model).__name__ if model is not None else None
        #: (module path, numel) of each parameter, once, under its first module
        self.param_numels: list[tuple[str, int]] = []
        if model is not None:
            _C.walk_modules(model, self.paths, self.param_numels)
        self.calls: Counter = Counter()
        #: path -> the key its first forward call ran under
        self.parent_key: dict[str, tuple[str, ...]] = {}
        #: what the C engine reads and changes as modules are entered and left
        self.state = state_list(TrackerSlot, paths=self.paths, key=(), calls=self.calls,
                                parent_key=self.parent_key, frames=[],
                                adopt=None if self.model_given else self._adopt,
                                thread=threading.get_ident())
        self._handles = []
        self._shadowing = False

    @property
    def key(self) -> tuple[str, ...]:
        return self.state[TrackerSlot.KEY]

    def __enter__(self):
        self.state[TrackerSlot.THREAD] = threading.get_ident()  # the thread counting
        # A compiled module (Module.compile) calls its compiled _call_impl, not a shadow.
        self._shadowing = SHADOWS_WORK and self.model_given and not any(
            getattr(m, "_compiled_call_impl", None) is not None for m in self.paths)
        if self._shadowing:
            _SHADOWING[0] = _SHADOWING[0] + (self.state,)
            try:
                _C.shadow_modules(_SHADOWING, self.paths)
            except BaseException:
                self.__exit__(None, None, None)
                raise
        else:
            pre, post = _C.tracker_hooks(self.state)
            self._handles = [
                register_module_forward_pre_hook(pre),
                register_module_forward_hook(post, always_call=True),
            ]
        return self

    def __exit__(self, *exc):
        if self._shadowing:
            self._shadowing = False
            _SHADOWING[0] = tuple(s for s in _SHADOWING[0] if s is not self.state)
            _C.unshadow_modules(_SHADOWING, self.paths)
        for h in self._handles:
            h.remove()
        self._handles = []
        self.state[TrackerSlot.PATHS] = self.paths = {}  # hold no module after the block
        self.state[TrackerSlot.KEY] = ()
        self.state[TrackerSlot.FRAMES] = []

    def _adopt(self, mod: torch.nn.Module) -> str:
        root = type(mod).__name__
        for name, m in mod.named_modules(prefix=root):
            self.paths.setdefault(m, name)
        return self.paths[mod]
