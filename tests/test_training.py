"""Training steps: backward charged to the module whose backward it is, phase split,
and analytic oracles (closed forms of y, dX and dW)."""
import dataclasses
import time
from math import prod

import pytest
import torch
import torchvision
from torch.utils.checkpoint import checkpoint

from dispatchflops import FlopCounterMode

D = 8
N = 4
LIN = 2 * N * D * D  # one Linear(D, D) on (N, D): y, dX and dW each cost this


class Block(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.fc = torch.nn.Linear(D, D)

    def forward(self, x):
        return self.fc(x).relu()


def phases(fc, path):
    return fc.results.modules[path].phase_flops


def count(model, step):
    with FlopCounterMode(model) as fc:
        step()
    return fc


def test_split_and_totals():
    model = torch.nn.Sequential(Block(), Block())
    x = torch.randn(N, D, requires_grad=True)
    fc = count(model, lambda: model(x).sum().backward())
    assert phases(fc, "") == {"forward": 2 * LIN, "backward": 4 * LIN, "recompute": 0}
    assert fc.results.total.forward_flops == 2 * LIN
    assert fc.results.total.backward_flops == 4 * LIN
    assert fc.get_total_flops() == 6 * LIN
    assert phases(fc, "1.fc") == {"forward": LIN, "backward": 2 * LIN, "recompute": 0}


def test_module_called_several_times():
    block = Block()
    model = torch.nn.ModuleDict({"block": block})
    x = torch.randn(N, D, requires_grad=True)
    fc = count(model, lambda: block(block(block(x))).sum().backward())
    assert phases(fc, "block") == {"forward": 3 * LIN, "backward": 6 * LIN, "recompute": 0}
    assert fc.results.modules["block"].calls == 3


class Recursive(torch.nn.Module):
    """The same class nested: Recursive(Recursive(Recursive(None)))."""

    def __init__(self, depth):
        super().__init__()
        self.fc = torch.nn.Linear(D, D)
        self.inner = Recursive(depth - 1) if depth > 1 else None

    def forward(self, x):
        x = self.fc(x)
        return self.inner(x) if self.inner is not None else x


def test_nested_same_class():
    model = Recursive(3)
    x = torch.randn(N, D, requires_grad=True)
    fc = count(model, lambda: model(x).sum().backward())
    assert fc.results.modules[""].flops == 9 * LIN
    assert fc.results.modules["inner"].flops == 6 * LIN
    assert phases(fc, "inner.inner") == {"forward": LIN, "backward": 2 * LIN, "recompute": 0}


class Checkpointed(torch.nn.Module):
    def __init__(self, reentrant):
        super().__init__()
        self.a, self.b, self.reentrant = Block(), Block(), reentrant

    def forward(self, x):
        return self.b(checkpoint(self.a, x, use_reentrant=self.reentrant))


@pytest.mark.parametrize("reentrant", [True, False])
def test_checkpoint_recompute_charged_to_recomputing_module(reentrant):
    model = Checkpointed(reentrant)
    x = torch.randn(N, D, requires_grad=True)
    fc = count(model, lambda: model(x).sum().backward())
    assert phases(fc, "a.fc") == {"forward": LIN, "backward": 2 * LIN, "recompute": LIN}
    assert phases(fc, "b") == {"forward": LIN, "backward": 2 * LIN, "recompute": 0}
    assert phases(fc, "") == {"forward": 2 * LIN, "backward": 4 * LIN, "recompute": LIN}


def test_autograd_grad_and_retain_graph():
    model = torch.nn.Sequential(Block(), Block())
    x = torch.randn(N, D, requires_grad=True)

    def step():
        y = model(x).sum()
        torch.autograd.grad(y, [x], retain_graph=True)  # dX only: no weight gradients
        y.backward(retain_graph=True)
        y.backward()

    fc = count(model, step)
    # autograd.grad w.r.t. x: every layer's dX (2 LIN); each backward: 4 LIN
    assert phases(fc, "") == {"forward": 2 * LIN, "backward": 2 * LIN + 8 * LIN, "recompute": 0}
    assert phases(fc, "0") == {"forward": LIN, "backward": LIN + 4 * LIN, "recompute": 0}


def test_input_without_grad_and_frozen_parameters():
    model = torch.nn.Sequential(Block(), Block(), Block())
    model[1].fc.weight.requires_grad_(False)
    x = torch.randn(N, D)  # the first layer computes no input gradient
    fc = count(model, lambda: model(x).sum().backward())
    assert phases(fc, "0")["backward"] == LIN  # dW only
    assert phases(fc, "1")["backward"] == LIN  # dX only
    assert phases(fc, "2")["backward"] == 2 * LIN


@dataclasses.dataclass
class Out:
    value: torch.Tensor


class Structured(torch.nn.Module):
    def __init__(self, kind):
        super().__init__()
        self.fc, self.kind = torch.nn.Linear(D, D), kind

    def forward(self, x):
        y = self.fc(x)
        if self.kind == "tuple":
            return y, y.detach()
        if self.kind == "dict":
            return {"y": y}
        if self.kind == "dataclass":
            return Out(y)
        from transformers.modeling_outputs import BaseModelOutput

        return BaseModelOutput(last_hidden_state=y)


def _first(out):
    if isinstance(out, tuple):
        return out[0]
    if isinstance(out, dict):
        return next(iter(out.values()))
    return out.value if isinstance(out, Out) else out.last_hidden_state


@pytest.mark.parametrize("kind", ["tuple", "dict", "dataclass", "model_output"])
def test_structured_outputs(kind):
    inner = Structured(kind)
    model = torch.nn.ModuleDict({"m": inner})
    x = torch.randn(N, D, requires_grad=True)
    fc = count(model, lambda: _first(inner(x)).sum().backward())
    assert phases(fc, "m") == {"forward": LIN, "backward": 2 * LIN, "recompute": 0}


def test_in_place_no_grad_inference_mode():
    model = torch.nn.Sequential(torch.nn.Linear(D, D), torch.nn.ReLU(inplace=True),
                                torch.nn.Linear(D, D))
    x = torch.randn(N, D, requires_grad=True)

    def step():
        y = model(x)
        y.mul_(2).add_(1)  # in place on the output: the Linear's backward is unchanged
        y.sum().backward()
        with torch.no_grad():
            model(x)
        with torch.inference_mode():
            model(torch.randn(N, D))

    fc = count(model, step)
    assert phases(fc, "") == {"forward": 6 * LIN, "backward": 4 * LIN, "recompute": 0}


def test_nested_counters():
    model = torch.nn.Sequential(Block(), Block())
    x = torch.randn(N, D, requires_grad=True)
    with FlopCounterMode(model) as outer:
        model(x).sum().backward()
        with FlopCounterMode(model[1]) as inner:
            model(x).sum().backward()
    assert phases(outer, "") == {"forward": 4 * LIN, "backward": 8 * LIN, "recompute": 0}
    assert phases(inner, "") == {"forward": LIN, "backward": 2 * LIN, "recompute": 0}
    assert inner.get_total_flops() == 6 * LIN


def test_exception_in_backward_leaves_nothing():
    from torch.nn.modules import module as nn_module
    from torch.utils._python_dispatch import _get_current_dispatch_mode_stack

    model = Block()
    x = torch.randn(N, D, requires_grad=True)
    with pytest.raises(RuntimeError):
        with FlopCounterMode(model):
            model(x).backward()  # not a scalar
    assert not _get_current_dispatch_mode_stack()
    assert not nn_module._global_forward_pre_hooks and not nn_module._global_forward_hooks


# --- analytic oracles ---------------------------------------------------------------

def linear_closed_form(n, fin, fout, input_grad, weight_grad):
    one = 2 * n * fin * fout
    return one * (1 + int(input_grad) + int(weight_grad))


@pytest.mark.parametrize("bias", [True, False])
@pytest.mark.parametrize("input_grad", [True, False])
def test_linear_closed_form(bias, input_grad):
    layer = torch.nn.Linear(7, 5, bias=bias)
    x = torch.randn(3, 6, 7, requires_grad=input_grad)
    fc = count(layer, lambda: layer(x).sum().backward())
    assert fc.get_total_flops() == linear_closed_form(18, 7, 5, input_grad, True)


def conv_closed_form(conv, x_shape, y_shape, input_grad, weight_grad):
    """2 x N x (positions) x C_out x C_in/groups x prod(k), per y, dX and dW."""
    n = x_shape[0]
    k = prod(conv.kernel_size)
    if conv.transposed:  # each input position scatters to C_out/groups x k outputs
        one = 2 * n * prod(x_shape[2:]) * conv.in_channels * (conv.out_channels // conv.groups) * k
    else:
        one = 2 * n * prod(y_shape[2:]) * conv.out_channels * (conv.in_channels // conv.groups) * k
    return one * (1 + int(input_grad) + int(weight_grad))


CONVS = [
    (torch.nn.Conv1d, dict(in_channels=4, out_channels=6, kernel_size=3), (2, 4, 17)),
    (torch.nn.Conv1d, dict(in_channels=4, out_channels=8, kernel_size=3, groups=2, stride=2), (2, 4, 17)),
    (torch.nn.Conv2d, dict(in_channels=6, out_channels=6, kernel_size=3, groups=6, padding=1), (1, 6, 9, 9)),
    (torch.nn.Conv2d, dict(in_channels=4, out_channels=8, kernel_size=(3, 2), dilation=2, stride=(2, 1)), (2, 4, 11, 9)),
    (torch.nn.Conv3d, dict(in_channels=2, out_channels=4, kernel_size=3, padding=1, groups=2), (1, 2, 5, 6, 7)),
    (torch.nn.ConvTranspose1d, dict(in_channels=4, out_channels=6, kernel_size=3, stride=2), (2, 4, 9)),
    (torch.nn.ConvTranspose2d, dict(in_channels=4, out_channels=8, kernel_size=3, stride=2, groups=4, output_padding=1), (1, 4, 6, 5)),
    (torch.nn.ConvTranspose3d, dict(in_channels=2, out_channels=2, kernel_size=2, dilation=2), (1, 2, 4, 4, 3)),
]


@pytest.mark.parametrize("cls,kwargs,x_shape", CONVS)
@pytest.mark.parametrize("bias", [True, False])
@pytest.mark.parametrize("input_grad", [True, False])
def test_conv_closed_form(cls, kwargs, x_shape, bias, input_grad):
    conv = cls(bias=bias, **kwargs)
    x = torch.randn(*x_shape, requires_grad=input_grad)
    y_shape = conv(x).shape
    fc = count(conv, lambda: conv(x).sum().backward())
    assert fc.get_total_flops() == conv_closed_form(conv, x_shape, y_shape, input_grad, True)


@pytest.mark.parametrize("name", ["mobilenet_v3_small", "resnext50_32x4d"])
def test_grouped_networks_equal_sum_of_layer_closed_forms(name):
    with torch.device("meta"):
        model = torchvision.models.get_model(name)
    x = torch.empty(2, 3, 224, 224, device="meta")
    shapes = []
    handles = [m.register_forward_hook(lambda m, i, o: shapes.append((m, i[0].shape, o.shape)))
               for m in model.modules() if isinstance(m, (torch.nn.Conv2d, torch.nn.Linear))]
    model(x)
    for h in handles:
        h.remove()
    expected = 0
    for i, (m, xs, ys) in enumerate(shapes):
        input_grad = i > 0  # the image needs no gradient
        if isinstance(m, torch.nn.Linear):
            expected += linear_closed_form(prod(xs[:-1]), m.in_features, m.out_features, input_grad, True)
        else:
            expected += conv_closed_form(m, xs, ys, input_grad, True)
    fc = count(model, lambda: model(x).sum().backward())
    assert fc.get_total_flops() == expected


def test_activations_are_a_forward_quantity():
    model = torch.nn.Sequential(Block(), Block())
    x = torch.randn(N, D, requires_grad=True)
    fc = count(model, lambda: model(x).sum().backward())
    assert fc.results.modules[""].activations == 2 * N * D


def test_step_meter_counts_one_step_and_times_the_next():
    from torch.utils.flop_counter import FlopCounterMode as TorchCounter

    from dispatchflops.meter import StepMeter

    model = torch.nn.Sequential(torch.nn.Linear(D, D), torch.nn.ReLU(), torch.nn.Linear(D, D))
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    x = torch.randn(N, D)

    def train_step():
        opt.zero_grad()
        model(x).sum().backward()
        opt.step()

    with TorchCounter(display=False) as theirs:
        train_step()
    meter = StepMeter(model, every=3, peak_tflops=2.0)
    steps, walls = [], []
    for _ in range(6):
        start = time.perf_counter()
        with meter.step() as s:
            train_step()
        walls.append(time.perf_counter() - start)
        steps.append(s)
    assert [(s.counted, s.seconds is not None) for s in steps] == [
        (False, False), (True, False), (False, True), (False, False), (True, False),
        (False, True)]
    assert steps[1].flops == steps[2].flops == theirs.get_total_flops() > 0
    timed = steps[2]
    assert 0 < timed.seconds <= walls[2]  # the step itself, within what the loop saw
    assert timed.mfu == pytest.approx(timed.flops / timed.seconds / 2e12)
    assert steps[0].flops is None and steps[3].mfu is None
    with pytest.raises(ValueError, match="at least 3"):
        StepMeter(model, every=2)


class _MatMul(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x, w):
        ctx.save_for_backward(x, w)
        return x @ w

    @staticmethod
    def backward(ctx, grad):
        x, w = ctx.saved_tensors
        return grad @ w.t(), x.t() @ grad


class _Fused(torch.nn.Module):
    """A module around a custom autograd.Function (a fused kernel's shape)."""

    def __init__(self):
        super().__init__()
        self.w = torch.nn.Parameter(torch.randn(D, D))

    def forward(self, x):
        return _MatMul.apply(x, self.w)


def test_a_custom_functions_backward_is_not_charged_to_the_next_module():
    from torch.utils.flop_counter import FlopCounterMode as TorchCounter

    model = torch.nn.Sequential(_Fused(), torch.nn.Linear(D, D))
    x = torch.randn(N, D, requires_grad=True)
    with TorchCounter(display=False) as theirs:
        model(x).sum().backward()
    with FlopCounterMode(model) as fc:
        model(x).sum().backward()
    assert phases(fc, "1") == {"forward": LIN, "backward": 2 * LIN, "recompute": 0}
    assert fc.get_total_flops() == theirs.get_total_flops() == 6 * LIN
