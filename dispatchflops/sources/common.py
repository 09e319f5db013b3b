"""What every model source shares: the example a model is counted on, the one error a
bad spec raises, and building a model on a device."""
from __future__ import annotations

import json
from dataclasses import dataclass, field

import torch


class SpecError(ValueError):
    """A MODEL spec or input description that cannot be used; the message says why."""


@dataclass
class Example:
    """A model and the inputs it is counted on."""

    model: torch.nn.Module
    args: tuple = ()
    kwargs: dict = field(default_factory=dict)
    #: the summary's input line, as get_flops.py prints it ("Input shape: (3, 224, 224)")
    headline: str = ""
    #: the inputs in words, for the saved result ("x: float32[1, 3, 224, 224]")
    words: str = ""
    #: whether a training step can run on these inputs (detection needs targets)
    trainable: bool = True
    #: the method counted in place of forward (a config model's extract_feat), or None
    method: str | None = None

    def __call__(self):
        return self.model(*self.args, **self.kwargs)


def in_dtype(ex: Example, dtype: torch.dtype) -> Example:
    """``ex`` with its model's floating parameters and buffers and its floating inputs
    cast to ``dtype``."""
    ex.model.to(dtype)

    def cast(t):
        if isinstance(t, torch.Tensor) and t.is_floating_point():
            return t.to(dtype)
        return t

    ex.args, ex.kwargs = torch.utils._pytree.tree_map(cast, (ex.args, ex.kwargs))
    ex.words = ex.words.replace("float32", str(dtype).removeprefix("torch."))
    return ex


def first_line(e: BaseException) -> str:
    """The first line of an error's message (its type's name if it has none)."""
    text = str(e).strip()
    return text.splitlines()[0] if text else type(e).__name__


def construct(factory, device: str, where: str) -> torch.nn.Module:
    """``factory()`` built on ``device`` (on "meta" without memory; a constructor that
    reads data is built on the CPU and moved there); any failure is one SpecError."""
    try:
        try:
            with torch.device(device):
                model = factory()
        except NotImplementedError:
            if device != "meta":
                raise
            model = factory().to("meta")
    except SpecError:
        raise
    except Exception as e:
        raise SpecError(f"building {where} failed: {type(e).__name__}: {first_line(e)}") from None
    if not isinstance(model, torch.nn.Module):
        raise SpecError(f"{where} returned {type(model).__name__}, not a torch.nn.Module")
    return model


def parse_overrides(overrides) -> dict:
    """``--config key=value`` items as a dict (values read as JSON where they parse)."""
    values = {}
    for text in overrides:
        key, sep, raw = text.partition("=")
        if not sep or not key:
            raise SpecError(f"bad --config {text!r}: expected key=value")
        try:
            values[key] = json.loads(raw)
        except json.JSONDecodeError:
            values[key] = raw
    return values


def image_shape(shape, default: tuple[int, int] = (224, 224)) -> tuple[int, int]:
    """The seed's --shape: one value is a square, two are (H, W)."""
    if not shape:
        return default
    if len(shape) == 1:
        return shape[0], shape[0]
    if len(shape) == 2:
        return shape[0], shape[1]
    raise SpecError(f"--shape takes one or two values (H or H W), got {len(shape)}")


def positive(**sizes) -> None:
    """Refuse sizes below 1, naming them."""
    bad = {k: v for k, v in sizes.items() if v is not None and v < 1}
    if bad:
        raise SpecError(", ".join(f"--{k.replace('_', '-')}" for k in bad) + " must be positive, "
                        f"got {', '.join(str(v) for v in bad.values())}")


def tensor_words(name: str, t: torch.Tensor) -> str:
    """``x: float32[1, 3, 224, 224]``"""
    dtype = str(t.dtype).removeprefix("torch.")
    return f"{name}: {dtype}[{', '.join(str(s) for s in t.shape)}]"


def image_example(model, shape, batch: int, device: str,
                  default: tuple[int, int] = (224, 224)) -> Example:
    """``model(x)`` on one batch of random images, x: (batch, 3, H, W)."""
    h, w = image_shape(shape, default)
    positive(shape=min(h, w), batch=batch)
    x = torch.randn(batch, 3, h, w, device=device)
    return Example(model, (x,), headline=f"Input shape: {tuple(x.shape[1:])}",
                   words=tensor_words("x", x))
