"""OpenMMLab configs, as their ``get_flops.py`` counts them: ``dispatchflops
path/to/config.py [--shape H [W]] [--cfg-options key=value ...]``. The config (an mmengine
``Config``, ``_base_`` inheritance and ``custom_imports`` included) gives a ``model`` dict,
built through the registry of its ``default_scope``; its ``extract_feat`` is counted when
it has one, on a (batch, 3, H, W) image batch (224 x 224 unless ``--shape``)."""
from __future__ import annotations

import contextlib
import importlib.util
import logging
import os

from .common import Example, SpecError, construct, first_line, image_example


def is_config(spec: str) -> bool:
    """Whether the MODEL names a config file (a .py path without ``:callable``)."""
    return spec.endswith(".py") and ":" not in spec


def _mmengine():
    try:
        from mmengine.config import Config, DictAction
        from mmengine.registry import MODELS, init_default_scope
    except ImportError:
        raise SpecError("config files need mmengine: pip install mmengine") from None
    return Config, DictAction, MODELS, init_default_scope


@contextlib.contextmanager
def _quiet():
    """mmengine's log (which prints to stdout, where the report goes) down to errors."""
    from mmengine.logging import MMLogger

    logger = MMLogger.get_current_instance()
    saved = logger.level
    logger.setLevel(logging.ERROR)
    try:
        yield
    finally:
        logger.setLevel(saved)


def example(path: str, args) -> Example:
    Config, DictAction, MODELS, init_default_scope = _mmengine()
    if not os.path.isfile(path):
        raise SpecError(f"no such file: {path}")
    try:
        cfg = Config.fromfile(path)
        options = {}
        for item in args.cfg_options:
            key, sep, value = item.partition("=")
            if not sep or not key:
                raise SpecError(f"bad --cfg-options {item!r}: expected key=value")
            options[key] = DictAction._parse_iterable(value)
        cfg.merge_from_dict(options)
    except SpecError:
        raise
    except Exception as e:
        raise SpecError(f"reading {path} failed: {type(e).__name__}: {first_line(e)}") from None
    if not isinstance(cfg.get("model"), dict):
        raise SpecError(f"{path} has no model dict")
    scope = cfg.get("default_scope")
    if scope is None:
        raise SpecError(f"{path} sets no default_scope (the OpenMMLab package whose "
                        "registry builds its model)")
    if scope not in MODELS.children and importlib.util.find_spec(scope) is None:
        raise SpecError(f"{path} is for {scope}, which is not installed: pip install {scope}")
    with _quiet():
        init_default_scope(scope)
        model = construct(lambda: MODELS.build(cfg.model), args.device,
                          f"the model of {path} ({cfg.model.get('type')})")
    ex = image_example(model, args.shape, args.batch, args.device)
    if hasattr(model, "extract_feat"):  # as get_flops.py counts it
        ex.method = "extract_feat"
    return ex
