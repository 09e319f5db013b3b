"""Counting text generation: the prefill and each decode step of ``model.generate``."""
from __future__ import annotations

from dataclasses import dataclass

import torch

from .mode import FlopCounterMode


@dataclass
class GenerationCount:
    """FLOPs of one ``generate`` call, split by forward call of the model."""

    #: the first forward: the whole prompt, filling the KV cache
    prefill: int
    #: one entry per later forward: one new token against a growing cache
    decode_steps: list
    #: the counter, for per-module results of the whole generation
    counter: FlopCounterMode

    @property
    def total(self) -> int:
        return self.prefill + sum(self.decode_steps)


def count_generate(model: torch.nn.Module, *, convention: str = "pytorch",
                   counter: FlopCounterMode | None = None, **generate_kwargs) -> GenerationCount:
    """Run ``model.generate(**generate_kwargs)`` under a counter (``counter``, or a new one
    in ``convention``) and split its FLOPs by the model's forward calls (prefill, then one
    per generated token)."""
    steps: list = []
    starts: list = []
    fc = counter if counter is not None else FlopCounterMode(model, convention=convention)

    def before(module, args, kwargs):
        starts.append(fc.get_total_flops())

    def after(module, args, kwargs, output):
        steps.append(fc.get_total_flops() - starts.pop())

    handles = [model.register_forward_pre_hook(before, with_kwargs=True),
               model.register_forward_hook(after, with_kwargs=True, always_call=True)]
    try:
        with torch.no_grad(), fc:
            model.generate(**generate_kwargs)
    finally:
        for h in handles:
            h.remove()
    if not steps:
        raise RuntimeError("generate() never called the model's forward")
    return GenerationCount(steps[0], steps[1:], fc)
