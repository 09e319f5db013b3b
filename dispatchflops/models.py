"""MODEL specs of the CLI: a torchvision name, ``package.module:callable`` or
``path/to/file.py:callable``; and the inputs to count them with."""
from __future__ import annotations

import difflib
import importlib
import importlib.util
import json
import os
import sys

import torch


class SpecError(ValueError):
    """A MODEL spec or input description that cannot be used; the message says why."""


HF_TASKS = {
    "base": "AutoModel",
    "causal-lm": "AutoModelForCausalLM",
    "masked-lm": "AutoModelForMaskedLM",
    "seq2seq-lm": "AutoModelForSeq2SeqLM",
    "sequence-classification": "AutoModelForSequenceClassification",
    "image-classification": "AutoModelForImageClassification",
}


def build_model(spec: str, device: str = "cpu", *, config: list[str] = (),
                task: str = "base") -> torch.nn.Module:
    """The nn.Module that ``spec`` names, built on ``device`` (on "meta" without memory).
    ``config`` ("key=value" overrides) and ``task`` apply to ``hf:`` specs."""
    if spec.startswith("hf:"):
        factory = _hf_factory(spec[3:], config, task)
        where = spec
    elif config:
        raise SpecError("--config applies to hf: models only")
    elif ":" in spec:
        factory = load_callable(spec)
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
        try:
            with torch.device(device):
                return factory()
        except NotImplementedError:
            if device != "meta":
                raise
        # A constructor that reads data cannot run on the meta device: build it on the CPU.
        return factory().to("meta")
    except SpecError:
        raise
    except Exception as e:
        raise SpecError(f"building {where} failed: {type(e).__name__}: {first_line(e)}") from None


def _hf_factory(name: str, overrides, task: str):
    """A transformers model built from a config (no download): hf:<model_type> or
    hf:path/to/config.json, with key=value overrides."""
    try:
        import transformers
    except ImportError:
        raise SpecError("hf: models need transformers: pip install transformers") from None
    if task not in HF_TASKS:
        raise SpecError(f"unknown --task {task!r}: choose one of {', '.join(HF_TASKS)}")
    values = dict(_parse_override(o) for o in overrides)
    attn = values.pop("attn_implementation", None)
    try:
        if name.endswith(".json"):
            if not os.path.isfile(name):
                raise SpecError(f"no such file: {name}")
            config = transformers.AutoConfig.from_pretrained(name, **values)
        else:
            config = transformers.AutoConfig.for_model(name, **values)
    except SpecError:
        raise
    except (ValueError, KeyError, OSError) as e:
        raise SpecError(f"hf:{name}: {first_line(e)}") from None
    auto = getattr(transformers, HF_TASKS[task])
    kwargs = {"attn_implementation": attn} if attn else {}

    def factory():
        try:
            return auto.from_config(config, **kwargs)
        except ValueError as e:
            raise SpecError(f"hf:{name} has no {task} model: {first_line(e)}") from None

    return factory


def _parse_override(text: str):
    key, sep, raw = text.partition("=")
    if not sep or not key:
        raise SpecError(f"bad --config {text!r}: expected key=value")
    try:
        return key, json.loads(raw)
    except json.JSONDecodeError:
        return key, raw


def hf_inputs(model, batch: int, seq_len: int | None, shape, device: str) -> tuple[dict, str]:
    """Keyword inputs for a transformers model and a description of them: input_ids and
    an attention mask for text, pixel values for vision, both for text-image models, and
    decoder input ids for encoder-decoders. ``seq_len`` defaults to 128, or the model's
    maximum if lower. On the meta device the all-ones mask is left out: transformers reads
    a mask's values, and without one it computes the same thing."""
    config = model.config
    text_config = getattr(config, "text_config", None) or config
    if seq_len is None:
        seq_len = min(128, getattr(text_config, "max_position_embeddings", None) or 128)
    if min(batch, seq_len) < 1:
        raise SpecError(f"--batch and --seq-len must be positive, got {batch} and {seq_len}")
    vision_config = getattr(config, "vision_config", None)
    inputs: dict = {}
    wants_pixels = model.main_input_name == "pixel_values" or vision_config is not None
    wants_text = model.main_input_name != "pixel_values"
    if wants_text:
        vocab = getattr(text_config, "vocab_size", None) or 2
        inputs["input_ids"] = torch.randint(0, vocab, (batch, seq_len), device=device)
        if device != "meta":
            inputs["attention_mask"] = torch.ones(batch, seq_len, dtype=torch.long, device=device)
        if getattr(config, "is_encoder_decoder", False):
            inputs["decoder_input_ids"] = torch.randint(0, vocab, (batch, seq_len), device=device)
    if wants_pixels:
        vc = vision_config or config
        size = getattr(vc, "image_size", 224)
        size = size if isinstance(size, int) else size[0]
        h, w = image_shape(shape) if shape else (size, size)
        inputs["pixel_values"] = torch.randn(batch, getattr(vc, "num_channels", 3), h, w, device=device)
    description = ", ".join(f"{k} {tuple(v.shape)}" for k, v in inputs.items())
    return inputs, description


def _torchvision_factory(name: str):
    try:
        import torchvision
    except ImportError:
        raise SpecError(f"{name!r} names a torchvision model: pip install torchvision") from None

    names = torchvision.models.list_models()
    if name not in names:
        close = difflib.get_close_matches(name, names, n=3, cutoff=0.6)
        hint = f"; did you mean {', '.join(close)}?" if close else ""
        raise SpecError(
            f"unknown model {name!r}: not a torchvision model name, package.module:callable "
            f"or file.py:callable{hint}"
        )
    return lambda: torchvision.models.get_model(name, weights=None)


def load_callable(spec: str):
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


def first_line(e: BaseException) -> str:
    """The first line of an error's message (its type's name if it has none)."""
    text = str(e).strip()
    return text.splitlines()[0] if text else type(e).__name__
