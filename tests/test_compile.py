"""Models wrapped by torch.compile: named as the original, counted as the eager model, and
compiled code running as before after the block (issue 23, part 3)."""
import torch
import torchvision

from dispatchflops import FlopCounterMode


class _Backend:
    """A torch.compile backend that runs the captured graph and counts compilations and
    runs of compiled code."""

    def __init__(self):
        self.compiled = self.runs = 0

    def __call__(self, gm, example_inputs):
        self.compiled += 1

        def run(*args):
            self.runs += 1
            return gm.forward(*args)
        return run


def _eager_and_compiled():
    torch.manual_seed(0)
    model = torchvision.models.resnet18(num_classes=10)
    backend = _Backend()
    return model, torch.compile(model, backend=backend), backend


def _counted(model, step):
    with FlopCounterMode(model, convention="pytorch") as fc:
        step()
    return fc


def test_named_and_counted_as_the_eager_model():
    """Paths are the original's (conv1, not _orig_mod.conv1), and every module's FLOPs by
    phase are the eager model's, forward and training step."""
    model, compiled, _ = _eager_and_compiled()
    x = torch.randn(2, 3, 64, 64)
    compiled(x)
    for step in (lambda m: m(x), lambda m: m(x).sum().backward()):
        eager = _counted(model, lambda: step(model)).results
        got = _counted(compiled, lambda: step(compiled)).results
        assert list(got.modules) == [p for p, _ in model.named_modules()]
        assert {p: dict(c.phase_flops) for p, c in got.modules.items()} == {
            p: dict(c.phase_flops) for p, c in eager.modules.items()}
        assert got.total.flops == eager.total.flops > 0
    assert _counted(compiled, lambda: compiled(x)).table(1) == \
        _counted(model, lambda: model(x)).table(1)


def test_compiled_code_runs_as_before_after_the_block():
    """Dynamo's own counters: the block compiles nothing and traces none of the counter's
    functions (dynamo runs a model eagerly under a dispatch mode: the counts are the
    eager model's); after it, the compiled graph runs again, without a recompilation."""
    import torch._dynamo.utils as dynamo_utils
    model, compiled, backend = _eager_and_compiled()
    x = torch.randn(2, 3, 64, 64)
    compiled(x)
    assert (backend.compiled, backend.runs) == (1, 1)
    frames = dict(dynamo_utils.counters["frames"])
    breaks = sum(dynamo_utils.counters["graph_break"].values())
    _counted(compiled, lambda: compiled(x))
    assert dict(dynamo_utils.counters["frames"]) == frames
    assert sum(dynamo_utils.counters["graph_break"].values()) == breaks
    assert (backend.compiled, backend.runs) == (1, 1)  # the block ran the model eagerly
    compiled(x)
    assert (backend.compiled, backend.runs) == (1, 2)
    # the other Python callbacks of the per-op path: a memory note, module watches, a
    # Python formula
    with FlopCounterMode(compiled, count_memory=True,
                         formulas={torch.ops.aten.addmm: lambda *a, out=None, **k: 1}) as fc:
        compiled(x)
    assert dict(dynamo_utils.counters["frames"]) == frames
    assert sum(dynamo_utils.counters["graph_break"].values()) == breaks
    assert fc.results.total.by_op["aten.addmm"] == 1 and fc.results.memory.peak["cpu"] > 0
