"""Which module is running: a stack of module paths, kept as modules are entered and left."""
from __future__ import annotations

import inspect
import sys
import threading
import types
import warnings
from collections import Counter

import torch
from torch.nn.modules.module import register_module_forward_hook, register_module_forward_pre_hook

from . import _C
from .layouts import TrackerSlot, state_list

_TORCH_CALL = torch.nn.Module._wrapped_call_impl  # what Module.__call__ is


def _module_call_fits() -> bool:
    """Whether torch calls modules as the ModuleCall expects (csrc/module_call.h):
    ``Module.__call__`` is ``_wrapped_call_impl(self, *args, **kwargs)``, a plain function
    that calls the module's ``_compiled_call_impl`` if set, else its ``_call_impl``.
    Otherwise trackers follow modules with global hooks."""
    code = getattr(_TORCH_CALL, "__code__", None)
    return (torch.nn.Module.__call__ is _TORCH_CALL and code is not None
            and _TORCH_CALL.__closure__ is None and code.co_argcount == 1
            and code.co_flags & inspect.CO_VARARGS and code.co_flags & inspect.CO_VARKEYWORDS
            and code.co_names == ("_compiled_call_impl", "_call_impl"))


_SENTINEL = "dispatchflops: the ModuleCall"


def _calling(module_call) -> types.CodeType | None:
    """The code ``_wrapped_call_impl`` runs while trackers follow modules: a call of
    ``module_call``, held as a constant of the code (torch's globals stay untouched). None
    if this Python's compiler does not make one that way (checked by calling it)."""
    source = f"def _wrapped_call_impl(self, *args, **kwargs):\n    return {_SENTINEL!r}(self, args, kwargs)\n"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", SyntaxWarning)  # "'str' object is not callable"
        namespace: dict = {}
        exec(compile(source, "<dispatchflops: Module.__call__ while counting>", "exec"), namespace)
    code = namespace["_wrapped_call_impl"].__code__
    if _SENTINEL not in code.co_consts:
        return None
    code = code.replace(co_consts=tuple(module_call if c == _SENTINEL else c
                                        for c in code.co_consts))
    if sys.version_info >= (3, 11):
        code = code.replace(co_qualname=_TORCH_CALL.__qualname__)

    class Probe:  # what a module looks like to _wrapped_call_impl
        _compiled_call_impl = None

        def _call_impl(self, *args, **kwargs):
            return args, kwargs

    try:
        works = types.FunctionType(code, {})(Probe(), 1, k=2) == ((1,), {"k": 2})
    except Exception:
        works = False
    return code if works else None


_HOLDER: list = [()]  # the tracker states the ModuleCall enters modules in: holder[0]
_FOLLOWING_CODE = _calling(_C.module_call(_HOLDER)) if _module_call_fits() else None
# torch's Module.__call__ runs _FOLLOWING_CODE while any tracker follows modules that way
MODULE_CALL_FITS = _FOLLOWING_CODE is not None
_TORCH_CODE = _TORCH_CALL.__code__
_LOCK = threading.Lock()


def _follow(state: list) -> None:
    """Enter modules in ``state`` as they are called (from now on)."""
    with _LOCK:
        if not _HOLDER[0]:
            _TORCH_CALL.__code__ = _FOLLOWING_CODE
        _HOLDER[0] += (state,)


def _unfollow(state: list) -> None:
    """Undo ``_follow(state)``; the last one puts torch's code back."""
    with _LOCK:
        _HOLDER[0] = tuple(s for s in _HOLDER[0] if s is not state)
        if not _HOLDER[0] and _TORCH_CALL.__code__ is _FOLLOWING_CODE:
            _TORCH_CALL.__code__ = _TORCH_CODE


class ModuleTracker:
    """Keeps ``key``, the tuple of module paths from the outermost running module inwards.

    With a ``model``, paths are its ``named_modules()`` names ("" is the model itself; a
    module registered twice keeps its first name) and modules outside it are transparent.
    Without one, like torch's counter, the first module seen becomes a root named by its
    class and its submodules ``Root.child.grandchild``. Only the thread that entered the
    tracker is followed: other threads calling the same modules are transparent.

    Modules are followed, in C on ``state`` (a list: ``layouts.TrackerSlot``), by running
    torch's ``Module.__call__`` through a ModuleCall for the block (``csrc/module_call.h``):
    global hooks would send every module call down torch's slow path, and nothing is put
    in the user's modules or classes. A copy of a module made in the block (copy.copy,
    deepcopy, pickle, a DataParallel replica) is a module the tracker does not follow. On
    a torch whose module call does not fit (``MODULE_CALL_FITS``), global forward hooks
    follow every module (``_C.tracker_hooks``).
    """

    def __init__(self, model: torch.nn.Module | None):
        self.model_given = model is not None
        self.paths: dict[torch.nn.Module, str] = {}
        self.root_name = type(model).__name__ if model is not None else None
        #: {module path: numel of its parameters}, each parameter once, under its first module
        self.param_numels: dict[str, int] = {}
        #: paths of the modules with no forward of their own (nn.ModuleList): never "uncalled"
        self.containers: set[str] = set()
        if model is not None:
            _C.walk_modules(model, self.paths, self.param_numels, self.containers,
                            torch.nn.Module.forward)
        self.calls: Counter = Counter()
        #: path -> the key its first forward call ran under
        self.parent_key: dict[str, tuple[str, ...]] = {}
        #: what the C engine reads and changes as modules are entered and left
        self.state = state_list(TrackerSlot, paths=self.paths, key=(), calls=self.calls,
                                parent_key=self.parent_key, frames=[],
                                adopt=None if self.model_given else self._adopt,
                                thread=threading.get_ident(), watch=None)
        self._handles = []
        self._following = False

    @property
    def key(self) -> tuple[str, ...]:
        return self.state[TrackerSlot.KEY]

    def __enter__(self):
        self.state[TrackerSlot.THREAD] = threading.get_ident()  # the thread counting
        self._following = MODULE_CALL_FITS
        if self._following:
            _follow(self.state)
        else:
            pre, post = _C.tracker_hooks(self.state)
            self._handles = [
                register_module_forward_pre_hook(pre),
                register_module_forward_hook(post, always_call=True),
            ]
        return self

    def __exit__(self, *exc):
        if self._following:
            self._following = False
            _unfollow(self.state)
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
