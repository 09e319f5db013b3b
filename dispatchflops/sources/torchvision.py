"""torchvision models by name, every family, with inputs of their kind and no download
(``weights=None``, and ``weights_backbone=None`` where a model has a backbone):

- classification (and quantizable ones): ``model(x)``, x (batch, 3, H, W), 224 x 224;
- detection and keypoints: ``model(images)``, a list of ``batch`` (3, H, W) images;
- segmentation: ``model(x)``, as classification;
- video: ``model(x)``, x (batch, 3, frames, H, W), 16 frames at the crop size of the
  model's published weights (112 or 224);
- optical flow: ``model(image1, image2)``, two (batch, 3, H, W) images, 224 x 224.
"""
from __future__ import annotations

import difflib

import torch

from .common import (Example, SpecError, construct, image_example, image_shape, parse_overrides,
                     positive, tensor_words)

#: family -> the torchvision.models submodule that lists it
FAMILIES = ("detection", "segmentation", "video", "optical_flow")


def _torchvision():
    try:
        import torchvision
    except ImportError:
        raise SpecError("torchvision models need torchvision: pip install torchvision") from None
    return torchvision


def family(name: str) -> str | None:
    """The family of a torchvision model name, "classification" for the others, None for
    a name torchvision does not know."""
    models = _torchvision().models
    if name not in models.list_models():
        return None
    for fam in FAMILIES:
        if name in models.list_models(module=getattr(models, fam)):
            return fam
    return "classification"


def example(name: str, args) -> Example:
    """The model torchvision names ``name``, built on ``args.device`` with ``args.config``
    ("key=value" strings) as keyword arguments, and inputs of its family (``args.shape``,
    ``args.batch``, ``args.frames``)."""
    models = _torchvision().models
    fam = family(name)
    if fam is None:
        names = models.list_models()
        close = difflib.get_close_matches(name, names, n=3, cutoff=0.6)
        hint = f"; did you mean {', '.join(close)}?" if close else ""
        raise SpecError(f"unknown model {name!r}: not a torchvision model name, "
                        f"package.module:callable or file.py:callable{hint}")
    kwargs = {"weights": None, **parse_overrides(args.config)}
    if fam in ("detection", "segmentation"):
        kwargs.setdefault("weights_backbone", None)
    model = construct(lambda: models.get_model(name, **kwargs), args.device,
                      f"torchvision model {name!r}")
    if fam != "video" and args.frames is not None:
        raise SpecError("--frames applies to video models only")
    device, batch = args.device, args.batch
    if fam == "detection":
        h, w = image_shape(args.shape)
        positive(shape=min(h, w), batch=batch)
        images = [torch.randn(3, h, w, device=device) for _ in range(batch)]
        return Example(model, (images,), headline=f"Input shape: (3, {h}, {w})",
                       words=f"images: {batch} x float32[3, {h}, {w}]", trainable=False)
    if fam == "video":
        crop = models.get_model_weights(name).DEFAULT.transforms().crop_size
        h, w = image_shape(args.shape, (crop[0], crop[-1]))
        frames = 16 if args.frames is None else args.frames
        positive(shape=min(h, w), batch=batch, frames=frames)
        x = torch.randn(batch, 3, frames, h, w, device=device)
        return Example(model, (x,), headline=f"Input shape: {tuple(x.shape[1:])}",
                       words=tensor_words("x", x))
    if fam == "optical_flow":
        h, w = image_shape(args.shape)
        positive(shape=min(h, w), batch=batch)
        pair = tuple(torch.randn(batch, 3, h, w, device=device) for _ in range(2))
        return Example(model, pair, headline=f"Input shape: 2 x (3, {h}, {w})",
                       words=", ".join(map(tensor_words, ("image1", "image2"), pair)))
    return image_example(model, args.shape, batch, device)
