"""Which module is running: a stack of module paths kept by global forward hooks."""
from __future__ import annotations

from collections import Counter

import torch
from torch.nn.modules.module import register_module_forward_hook, register_module_forward_pre_hook


class ModuleTracker:
    """Keeps ``key``, the tuple of module paths from the outermost running module inwards.

    With a ``model``, paths are its ``named_modules()`` names ("" is the model itself; a
    module registered twice keeps its first name) and modules outside it are transparent.
    Without one, like torch's counter, the first module seen becomes a root named by its
    class and its submodules ``Root.child.grandchild``.
    """

    def __init__(self, model: torch.nn.Module | None):
        self.model_given = model is not None
        self.paths: dict[torch.nn.Module, str] = {}
        self.root_name = type(model).__name__ if model is not None else None
        #: (module path, numel) of each parameter, once, under its first module
        self.param_numels: list[tuple[str, int]] = []
        if model is not None:
            self._walk(model)
        self.key: tuple[str, ...] = ()
        self.calls: Counter = Counter()
        #: path -> the key its first forward call ran under
        self.parent_key: dict[str, tuple[str, ...]] = {}
        self._frames: list[tuple[torch.nn.Module, tuple[str, ...]]] = []
        self._handles = []

    def _walk(self, model: torch.nn.Module):
        """``model.named_modules()``'s names and order, and each parameter's numel once under
        its first module, in one recursive pass (it runs on every entry: torch's nested
        generators cost a third more)."""
        paths, numels, seen = self.paths, self.param_numels, set()

        def visit(name, module):
            paths[module] = name
            params = module._parameters
            if params:
                for p in params.values():
                    if p is not None and id(p) not in seen:
                        seen.add(id(p))
                        numels.append((name, p.numel()))
            prefix = name + "." if name else ""
            for key, child in module._modules.items():
                if child is not None and child not in paths:
                    visit(prefix + key, child)

        visit("", model)

    def __enter__(self):
        self._handles = [
            register_module_forward_pre_hook(self._pre),
            register_module_forward_hook(self._post, always_call=True),
        ]
        return self

    def __exit__(self, *exc):
        for h in self._handles:
            h.remove()
        self._handles = []
        self._frames = []
        self.key = ()
        self.paths = {}

    def _adopt(self, mod: torch.nn.Module) -> str:
        root = type(mod).__name__
        for name, m in mod.named_modules(prefix=root):
            self.paths.setdefault(m, name)
        return self.paths[mod]

    def _pre(self, mod, args):
        path = self.paths.get(mod)
        if path is None:
            if self.model_given:
                return
            path = self._adopt(mod)
        if path not in self.parent_key:  # kept from the first call (recomputation reads it)
            self.parent_key[path] = self.key
        self._frames.append((mod, self.key))
        self.key = self.key + (path,)
        self.calls[path] += 1

    def _post(self, mod, args, output):
        frames = self._frames
        if not frames or mod not in self.paths:
            return
        # Pop up to and including this module's frame (frames above it were left by an
        # exception that skipped their post hooks).
        for i in range(len(frames) - 1, -1, -1):
            if frames[i][0] is mod:
                self.key = frames[i][1]
                del frames[i:]
                break
