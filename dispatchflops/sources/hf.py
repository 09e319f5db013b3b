"""Hugging Face transformers models from a config, without downloading weights:
``hf:<model_type>`` or ``hf:path/to/config.json``, a head by task, and inputs of their
kind (the ``hf`` extra: ``pip install "dispatchflops[hf]"``)."""
from __future__ import annotations

import os

import torch

from .common import (Example, SpecError, construct, first_line, image_shape, parse_overrides,
                     positive)

TASKS = {
    "base": "AutoModel",
    "causal-lm": "AutoModelForCausalLM",
    "masked-lm": "AutoModelForMaskedLM",
    "seq2seq-lm": "AutoModelForSeq2SeqLM",
    "sequence-classification": "AutoModelForSequenceClassification",
    "image-classification": "AutoModelForImageClassification",
}


def _factory(name: str, values: dict, task: str):
    """A transformers model built from a config (no download) with overrides."""
    try:
        import transformers
    except ImportError:
        raise SpecError("hf: models need transformers: pip install transformers") from None
    if task not in TASKS:
        raise SpecError(f"unknown --task {task!r}: choose one of {', '.join(TASKS)}")
    values = dict(values)
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
    auto = getattr(transformers, TASKS[task])
    kwargs = {"attn_implementation": attn} if attn else {}

    def factory():
        try:
            return auto.from_config(config, **kwargs)
        except ValueError as e:
            raise SpecError(f"hf:{name} has no {task} model: {first_line(e)}") from None

    return factory


def inputs(model, batch: int, seq_len: int | None, shape, device: str) -> tuple[dict, str]:
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
    found: dict = {}
    wants_pixels = model.main_input_name == "pixel_values" or vision_config is not None
    wants_text = model.main_input_name != "pixel_values"
    if wants_text:
        vocab = getattr(text_config, "vocab_size", None) or 2
        found["input_ids"] = torch.randint(0, vocab, (batch, seq_len), device=device)
        if device != "meta":
            found["attention_mask"] = torch.ones(batch, seq_len, dtype=torch.long, device=device)
        if getattr(config, "is_encoder_decoder", False):
            found["decoder_input_ids"] = torch.randint(0, vocab, (batch, seq_len), device=device)
    if wants_pixels:
        vc = vision_config or config
        size = getattr(vc, "image_size", 224)
        size = size if isinstance(size, int) else size[0]
        h, w = image_shape(shape, (size, size))
        positive(shape=min(h, w))
        found["pixel_values"] = torch.randn(batch, getattr(vc, "num_channels", 3), h, w,
                                            device=device)
    description = ", ".join(f"{k} {tuple(v.shape)}" for k, v in found.items())
    return found, description


def example(name: str, args) -> Example:
    factory = _factory(name, parse_overrides(args.config), args.task)
    model = construct(factory, args.device, f"hf:{name}")
    kwargs, described = inputs(model, args.batch, args.seq_len, args.shape, args.device)
    return Example(model, kwargs=kwargs, headline=f"Input: {described}", words=described)
