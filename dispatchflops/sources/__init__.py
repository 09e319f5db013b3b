"""Where a model comes from: each source builds, from what the user names, a model and the
inputs to count it on (an ``Example``).

- a torchvision name (``resnet50``, ``fasterrcnn_mobilenet_v3_large_320_fpn``): ``torchvision``
- ``timm:NAME``: ``timm``
- ``hf:<model_type>`` or ``hf:config.json``: ``hf``
- ``package.module:callable`` or ``path/to/file.py:callable``: ``files``
- an OpenMMLab config file, ``path/to/config.py``: ``openmmlab``
"""
from __future__ import annotations

import torch

from . import files, hf, openmmlab, timm, torchvision
from .common import Example, SpecError, first_line, in_dtype

__all__ = ["Example", "SpecError", "example", "first_line"]


def example(args) -> Example:
    """The model ``args.model`` names and its example inputs. ``args`` carries the CLI's
    device, batch, shape, frames, seq_len, task, config and cfg_options ("key=value"
    strings), and dtype (None, or the floating dtype to cast the model and inputs to)."""
    ex = _build(args)
    if getattr(args, "dtype", None):
        ex = in_dtype(ex, getattr(torch, args.dtype))
    return ex


def _build(args) -> Example:
    spec = args.model
    if args.cfg_options and not openmmlab.is_config(spec):
        raise SpecError("--cfg-options applies to OpenMMLab config files")
    if spec.startswith("hf:"):
        return hf.example(spec[3:], args)
    if spec.startswith("timm:"):
        return timm.example(spec[5:], args)
    if openmmlab.is_config(spec):
        return openmmlab.example(spec, args)
    if ":" in spec:
        return files.example(spec, args)
    return torchvision.example(spec, args)
