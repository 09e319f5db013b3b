"""Models named by a callable: ``package.module:callable`` or ``path/to/file.py:callable``
returning an ``nn.Module``, counted on a batch of images."""
from __future__ import annotations

import importlib
import importlib.util
import os
import sys

from .common import Example, SpecError, construct, first_line, image_example


def load_callable(spec: str):
    """The callable ``spec`` (``module:name`` or ``file.py:name``) names."""
    target, _, attr = spec.rpartition(":")
    if not target or not attr:
        raise SpecError(f"bad model spec {spec!r}: expected module:callable or file.py:callable")
    if target.endswith(".py") or os.sep in target:
        if not os.path.isfile(target):
            raise SpecError(f"no such file: {target}")
        module = _import_file(target)
    else:
        try:
            module = importlib.import_module(target)
        except ImportError as e:
            raise SpecError(f"cannot import {target!r}: {first_line(e)}") from None
        except Exception as e:
            raise SpecError(f"importing {target!r} failed: {type(e).__name__}: "
                            f"{first_line(e)}") from None
    factory = getattr(module, attr, None)
    if factory is None:
        raise SpecError(f"{target} has no attribute {attr!r}")
    if not callable(factory):
        raise SpecError(f"{spec} is not callable")
    return factory


def _import_file(path: str):
    name = "_dispatchflops_user_" + os.path.splitext(os.path.basename(path))[0]
    spec = importlib.util.spec_from_file_location(name, path)
    if spec is None:
        raise SpecError(f"{path} is not a Python file")
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    try:
        spec.loader.exec_module(module)
    except Exception as e:
        raise SpecError(f"importing {path} failed: {type(e).__name__}: {first_line(e)}") from None
    return module


def example(spec: str, args) -> Example:
    if args.config:
        raise SpecError("--config applies to torchvision, timm: and hf: models")
    model = construct(load_callable(spec), args.device, spec)
    return image_example(model, args.shape, args.batch, args.device)
