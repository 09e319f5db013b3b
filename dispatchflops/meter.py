"""For training loops: the FLOPs, FLOP/s and MFU of a step, measured one step in every N.

``StepMeter(model, every=N)`` counts step 1, N+1, 2N+1, ... (FLOPs, 2 per multiply-add,
of this rank's run: its local shards under DTensor/FSDP) and times the step right after
each counted one, uncounted (synchronising a CUDA device before and after that step
only). Step 0 (warm-up: allocations, autotuning, optimizer state) and the other steps
run untouched.
"""
from __future__ import annotations

import contextlib
import time
from dataclasses import dataclass

import torch

from .devices import device_spec
from .mode import FlopCounterMode


@dataclass
class Step:
    """One step as the meter saw it; ``flops`` is the last counted step's."""

    index: int
    counted: bool = False
    flops: int | None = None
    #: wall time of this step, when it was the one timed
    seconds: float | None = None
    peak_tflops: float | None = None

    @property
    def flops_per_s(self) -> float | None:
        if self.seconds is None or self.flops is None:
            return None
        return self.flops / self.seconds

    @property
    def mfu(self) -> float | None:
        """Achieved over peak FLOP/s (model FLOPs utilisation), where both are known."""
        rate = self.flops_per_s
        return rate / (self.peak_tflops * 1e12) if rate is not None and self.peak_tflops else None

    def metrics(self) -> dict:
        """What a training loop logs of this step: ``flops_per_step`` on a counted step,
        ``tflops_per_s`` and (with a peak) ``mfu`` on a timed one; {} on the others."""
        out = {}
        if self.counted:
            out["flops_per_step"] = float(self.flops)
        if self.seconds is not None:
            out["tflops_per_s"] = self.flops_per_s / 1e12
            if self.mfu is not None:
                out["mfu"] = self.mfu
        return out


class StepMeter:
    """``with meter.step() as s: ...`` around each training step; after the block, ``s``
    says what was measured (``s.mfu`` on each timed step)."""

    def __init__(self, model: torch.nn.Module | None = None, every: int = 100,
                 peak_tflops: float | None = None):
        if every < 3:
            raise ValueError("every must be at least 3: one step counted, one timed, "
                             "one untouched")
        self.model, self.every, self.peak_tflops = model, every, peak_tflops
        self.flops: int | None = None  # of the last counted step
        self._index = 0

    @contextlib.contextmanager
    def step(self):
        index, self._index = self._index, self._index + 1
        s = Step(index, peak_tflops=self.peak_tflops)
        phase = index % self.every
        if phase == 1:
            with FlopCounterMode(self.model) as fc:
                yield s
            s.counted = True
            self.flops = fc.get_total_flops()
            s.flops = self.flops
        elif phase == 2 and self.flops is not None:
            _sync()
            start = time.perf_counter()
            yield s
            _sync()
            s.seconds, s.flops = time.perf_counter() - start, self.flops
        else:
            yield s


def _sync():
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        torch.cuda.synchronize()


def peak_of(peak: float | str | None, dtype: str = "bfloat16") -> float | None:
    """Peak TFLOP/s: a number as given, or the peak for ``dtype`` of a device devices.py
    knows by name ("h100-sxm"); None: none."""
    if isinstance(peak, str):
        return device_spec(peak).peak(dtype) / 1e12
    if peak is not None and (isinstance(peak, bool) or not isinstance(peak, (int, float))
                             or not peak > 0):
        raise ValueError(f"peak must be a positive number of TFLOP/s or a device name, "
                         f"got {peak!r}")
    return peak


class OpenStep:
    """A ``StepMeter.step()`` opened in one callback of a training loop and closed in
    another (a batch's start and end)."""

    def __init__(self):
        self._stack: contextlib.ExitStack | None = None
        self._step: Step | None = None

    def start(self, step_context) -> None:
        self.abandon()
        self._stack = contextlib.ExitStack()
        self._step = self._stack.enter_context(step_context)

    def end(self) -> Step | None:
        """The step, measured (None if none was open)."""
        step, stack = self._step, self._stack
        self._stack = self._step = None
        if stack is not None:
            stack.close()
        return step

    def abandon(self) -> None:
        """Close an open step (a loop that raised), whatever it measured."""
        self.end()
