"""timm models by name, ``timm:NAME`` (the ``timm`` extra: ``pip install
"dispatchflops[timm]"``), with random weights (``pretrained=False``), ``--config k=v`` as
model keyword arguments, counted on images of the size of the model's pretrained config,
as timm's benchmark resolves it (``--shape`` overrides)."""
from __future__ import annotations

import difflib

from .common import Example, SpecError, construct, image_example, parse_overrides


def _timm():
    try:
        import timm
    except ImportError:
        raise SpecError("timm: models need timm: pip install timm") from None
    return timm


def example(name: str, args) -> Example:
    timm = _timm()
    if not timm.is_model(name):
        names = timm.list_models()
        close = difflib.get_close_matches(name, names, n=3, cutoff=0.6)
        hint = f"; did you mean {', '.join(close)}?" if close else ""
        raise SpecError(f"unknown timm model {name!r}{hint}")
    kwargs = {"pretrained": False, **parse_overrides(args.config)}
    model = construct(lambda: timm.create_model(name, **kwargs), args.device, f"timm:{name}")
    _, h, w = timm.data.resolve_data_config({}, model=model)["input_size"]
    return image_example(model, args.shape, args.batch, args.device, default=(h, w))
