"""Which module is running: a stack of module paths kept by global forward hooks."""
from __future__ import annotations

from collections import Counter

import torch
from torch.nn.modules.module import register_module_forward_hook, register_module_forward_pre_hook

from . import _C


class ModuleTracker:
    """Keeps ``key``, the tuple of module paths from the outermost running module inwards.

    With a ``model``, paths are its ``named_modules()`` names ("" is the model itself; a
    module registered twice keeps its first name) and modules outside it are transparent.
    Without one, like torch's counter, the first module seen becomes a root named by its
    class and its submodules ``Root.child.grandchild``.

    The walk and the hooks, which run on every module call, are C (``_C.walk_modules``,
    ``_C.tracker_hooks``) working on this object's dicts and its state list.
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
        # [paths, key, calls, parent_key, frames of (module, key outside it), adopt]
        self._state = [self.paths, (), self.calls, self.parent_key, [],
                       None if self.model_given else self._adopt]
        self._handles = []

    @property
    def key(self) -> tuple[str, ...]:
        return self._state[1]

    def __enter__(self):
        pre, post = _C.tracker_hooks(self._state)
        self._handles = [
            register_module_forward_pre_hook(pre),
            register_module_forward_hook(post, always_call=True),
        ]
        return self

    def __exit__(self, *exc):
        for h in self._handles:
            h.remove()
        self._handles = []
        self._state[1] = ()
        self._state[4] = []
        self.paths = {}

    def _adopt(self, mod: torch.nn.Module) -> str:
        root = type(mod).__name__
        for name, m in mod.named_modules(prefix=root):
            self.paths.setdefault(m, name)
        return self.paths[mod]
