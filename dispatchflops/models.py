"""MODEL specs of the CLI: a torchvision name, ``package.module:callable`` or
``path/to/file.py:callable``; and the inputs to count them with."""
from __future__ import annotations

import difflib
import importlib
import importlib.util
import os
import sys

import torch


class SpecError(ValueError):
    """A MODEL spec or input description that cannot be used; the message says why."""


def build_model(spec: str, device: str = "cpu") -> torch.nn.Module:
    """The nn.Module that ``spec`` names, built on ``device`` (on "meta" without memory)."""
    if ":" in spec:
        factory = _load_callable(spec)
        where = spec
    else:
        factory = _torchvision_factory(spec)
        where = f"torchvision model {spec!r}"
    model = _construct(factory, device, where)
    if not isinstance(model, torch.nn.Module):
        raise SpecError(f"{where} returned {type(model).__name__}, not a torch.nn.Module")
    return model


def _construct(factory, device, where):
    try:
        with torch.device(device):
            return factory()
    except NotImplementedError:
        if device != "meta":
            raise
    except SpecError:
        raise
    except Exception as e:
        raise SpecError(f"building {where} failed: {type(e).__name__}: {_first_line(e)}") from None
    # A constructor that reads data cannot run on the meta device: build it on the CPU.
    return factory().to("meta")


def _torchvision_factory(name: str):
    import torchvision

    names = torchvision.models.list_models()
    if name not in names:
        close = difflib.get_close_matches(name, names, n=3, cutoff=0.6)
        hint = f"; did you mean {', '.join(close)}?" if close else ""
        raise SpecError(
            f"unknown model {name!r}: not a torchvision model name, package.module:callable "
            f"or file.py:callable{hint}"
        )
    return lambda: torchvision.models.get_model(name, weights=None)


def _load_callable(spec: str):
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
            raise SpecError(f"cannot import {target!r}: {_first_line(e)}") from None
    factory = getattr(module, attr, None)
    if factory is None:
        raise SpecError(f"{target} has no attribute {attr!r}")
    if not callable(factory):
        raise SpecError(f"{spec} is not callable")
    return factory


def _import_file(path: str):
    name = "_dispatchflops_user_" + os.path.splitext(os.path.basename(path))[0]
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    try:
        spec.loader.exec_module(module)
    except Exception as e:
        raise SpecError(f"importing {path} failed: {type(e).__name__}: {_first_line(e)}") from None
    return module


def image_shape(shape: list[int] | None) -> tuple[int, int]:
    """The seed's --shape: one value is a square, two are (H, W); default 224 x 224."""
    if not shape:
        return 224, 224
    if len(shape) == 1:
        return shape[0], shape[0]
    if len(shape) == 2:
        return shape[0], shape[1]
    raise SpecError(f"--shape takes one or two values (H or H W), got {len(shape)}")


def image_input(shape, batch: int, device: str) -> torch.Tensor:
    h, w = image_shape(shape)
    if min(h, w, batch) < 1:
        raise SpecError(f"--shape and --batch must be positive, got {h}x{w} and {batch}")
    return torch.randn(batch, 3, h, w, device=device)


def _first_line(e: BaseException) -> str:
    text = str(e).strip()
    return text.splitlines()[0] if text else type(e).__name__
