"""Counting neither synchronises nor leaks."""
import gc
import tracemalloc

import pytest
import torch

from torch.utils._python_dispatch import TorchDispatchMode

from dispatchflops import FlopCounterMode


def small_model():
    return torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3), torch.nn.ReLU(), torch.nn.Flatten(),
                               torch.nn.Linear(4 * 2 * 2, 2))


def traced_growth(run, warmup, steps):
    run(warmup)
    gc.collect()
    tracemalloc.start()
    try:
        run(steps // 10)
        gc.collect()
        early = tracemalloc.get_traced_memory()[0]
        run(steps - steps // 10)
        gc.collect()
        late = tracemalloc.get_traced_memory()[0]
    finally:
        tracemalloc.stop()
    return late - early


class Floor(TorchDispatchMode):
    """A mode that only re-dispatches: what torch itself retains while a mode runs."""

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        return func(*args, **(kwargs or {}))


def test_one_counter_over_1000_training_steps_keeps_memory_flat():
    """Counting 1000 steps in one counter retains no more than torch does under a mode
    that only re-dispatches (its own caches grow a few KiB)."""
    model = small_model()
    x = torch.randn(1, 3, 4, 4)

    def steps(n):
        for _ in range(n):
            model(x).sum().backward()

    # the least of three measurements: a leak grows in each, while what else is alive
    # at a measuring point (an allocator's or torch's cache refilled) moves single ones
    # by tens of KiB, with or without the counter
    with FlopCounterMode(model) as fc:
        ours = min(traced_growth(steps, 10, 1000) for _ in range(3))
    with Floor():
        torchs = traced_growth(steps, 10, 1000)
    assert ours < max(2 * torchs, 4096) + 16 * 1024, (ours, torchs)
    per_step = fc.results.modules[""].flops // 3030
    assert fc.results.modules[""].flops == per_step * 3030


def test_300_counters_grow_no_more_than_torchs_own_mode_machinery():
    """torch itself keeps ~50 bytes per TorchDispatchMode entered (measured with Floor).
    A counter that leaked its results, accumulators or hooks would keep kilobytes each;
    we allow under 512 bytes per counter on top of torch's own."""
    model = small_model()
    x = torch.randn(1, 3, 4, 4)

    def counted(n):
        for _ in range(n):
            with FlopCounterMode(model) as fc:
                model(x).sum().backward()
            fc.results  # built and dropped with the counter

    def floor(n):
        for _ in range(n):
            with Floor():
                model(x).sum().backward()

    ours, torchs = traced_growth(counted, 10, 300), traced_growth(floor, 10, 300)
    assert ours < torchs + 300 * 512, (ours, torchs)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_cuda_counting_never_synchronises():
    import torchvision

    model = torchvision.models.resnet18().cuda()
    x = torch.randn(2, 3, 64, 64, device="cuda")
    torch.cuda.synchronize()
    torch.cuda.set_sync_debug_mode("error")
    try:
        with FlopCounterMode(model) as fc:
            model(x).sum().backward()
        with torch.no_grad(), FlopCounterMode(model, convention="fvcore") as fv:
            model.eval()(x)
    finally:
        torch.cuda.set_sync_debug_mode("default")
    assert fc.get_total_flops() > 0 and fv.get_total_flops() > 0
