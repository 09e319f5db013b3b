"""Measured time per module: the run repeated outside any counter, each module's forward
timed between a pre-hook and a post-hook of its own. On a GPU the hooks record CUDA
events (no synchronisation until the pass ends); on the CPU they read the wall clock.
Times are inclusive (a module's forward with everything it calls), summed over the
module's calls in one pass (a recomputation in backward is not a call); each module's
time is the median over passes."""
from __future__ import annotations

import statistics
import time

import torch


class _Clock:
    """Marks on the device that runs the model: CUDA events, or the CPU's wall clock."""

    def __init__(self, device: torch.device):
        self.cuda = device.type == "cuda"

    def mark(self):
        if not self.cuda:
            return time.perf_counter()
        event = torch.cuda.Event(enable_timing=True)
        event.record()
        return event

    def seconds(self, start, end) -> float:
        return start.elapsed_time(end) / 1e3 if self.cuda else end - start

    def finish(self) -> None:
        if self.cuda:
            torch.cuda.synchronize()


def time_modules(model: torch.nn.Module, step, passes: int, device) -> dict:
    """{path: seconds} of each module's forward per call of ``step`` (which runs
    ``model``), median over ``passes`` timed calls after one warm-up; "" is the model.
    Modules that never ran are left out. The hooks are removed however ``step`` ends."""
    clock = _Clock(torch.device(device))
    paths = {m: p for p, m in model.named_modules()}
    spans: list = []  # (path, start mark, end mark) of the pass running
    open_: dict = {}  # module -> start marks of its running calls

    def pre(module, args):
        if torch._C._current_autograd_node() is not None:
            return  # recomputed in backward (activation checkpointing): not its forward
        open_.setdefault(module, []).append(clock.mark())

    def post(module, args, out):
        starts = open_.get(module)
        if starts:
            spans.append((paths[module], starts.pop(), clock.mark()))

    handles = []
    try:
        for m in paths:
            handles.append(m.register_forward_pre_hook(pre))
            handles.append(m.register_forward_hook(post, always_call=True))
        per_pass = []
        for i in range(passes + 1):
            spans.clear()
            open_.clear()
            step()
            clock.finish()
            if i == 0:
                continue  # warm-up
            seconds: dict = {}
            for path, start, end in spans:
                seconds[path] = seconds.get(path, 0.0) + clock.seconds(start, end)
            per_pass.append(seconds)
    finally:
        for h in handles:
            h.remove()
    ran = dict.fromkeys(p for seconds in per_pass for p in seconds)
    return {p: statistics.median(s.get(p, 0.0) for s in per_pass) for p in ran}
