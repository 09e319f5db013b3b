"""The cases of fvcore's own tests (test_flop_count.py, test_activation_count.py,
test_param_count.py, test_print_model_statistics.py), with their expected numbers, against dispatchflops.fvcore (cases on
jit internals left out: scripted functions, the traced graph, handles reading
torch._C.Values)."""
from collections import Counter

import pytest
import torch
import torch.nn as nn

from dispatchflops.fvcore import (ActivationCountAnalysis, FlopCountAnalysis, flop_count,
                                  flop_count_str, flop_count_table, parameter_count,
                                  parameter_count_table)
from dispatchflops.mmengine import activation_count


class Custom(nn.Module):
    def __init__(self, input_dim, output_dim):
        super().__init__()
        self.conv = nn.Linear(input_dim, output_dim)
        self.sigmoid = nn.Sigmoid()

    def forward(self, x):
        return self.sigmoid(self.conv(x))


class Fn(nn.Module):
    def __init__(self, fn):
        super().__init__()
        self.fn = fn

    def forward(self, *args):
        return self.fn(*args)


def test_customized_ops():
    x = torch.rand(10, 5)
    sigmoid = {"aten::sigmoid": lambda inputs, outputs: Counter({"sigmoid": 10000})}
    gflops, _ = flop_count(Custom(5, 4), (x,), supported_ops=sigmoid)
    assert gflops["sigmoid"] == 10000 / 1e9
    gflops, _ = flop_count(Custom(5, 4), (x,),
                           supported_ops={"aten::linear": lambda i, o: Counter({"linear": 400000})})
    assert gflops["linear"] == 400000 / 1e9


def test_nn_linear_and_skipped_ops():
    gflops, _ = flop_count(nn.Linear(8, 4), (torch.randn(5, 8),))
    assert dict(gflops) == {"linear": 5 * 8 * 4 / 1e9}
    _, skipped = flop_count(Custom(5, 4), (torch.rand(10, 5),))
    assert skipped == Counter({"aten::sigmoid": 1})
    gflops, _ = flop_count(nn.Linear(10, 20), (torch.randn(5, 5, 10),))  # more than 2 dims
    assert dict(gflops) == {"linear": 5 * 10 * 5 * 20 / 1e9}


@pytest.mark.parametrize("dim,batch,c_in,c_out,spatial,k,pad,stride,groups,transpose,out_pad", [
    (2, 5, 10, 3, 15, 3, 1, 1, 1, False, 0),
    (2, 2, 10, 6, 20, 3, 1, 2, 1, False, 0),
    (2, 5, 16, 8, 15, 5, 2, 1, 4, False, 0),
    (2, 5, 16, 8, 15, 3, 1, 1, 8, False, 0),  # depthwise
    (1, 5, 10, 3, 15, 3, 1, 1, 1, False, 0),
    (3, 5, 10, 3, 15, 3, 1, 1, 1, False, 0),
    (2, 5, 10, 3, 15, 3, 1, 1, 1, True, 0),
    (2, 5, 10, 3, 15, 3, 1, 2, 1, True, 0),
    (2, 5, 10, 3, 15, 3, 1, 3, 1, True, 2),
])
def test_conv(dim, batch, c_in, c_out, spatial, k, pad, stride, groups, transpose, out_pad):
    cls = [[nn.Conv1d, nn.Conv2d, nn.Conv3d], [nn.ConvTranspose1d, nn.ConvTranspose2d,
                                              nn.ConvTranspose3d]][transpose][dim - 1]
    extra = {"output_padding": out_pad} if transpose else {}
    conv = cls(c_in, c_out, k, stride, pad, groups=groups, **extra)
    x = torch.randn(batch, c_in, *[spatial] * dim)
    size = spatial if transpose else (spatial + 2 * pad - k) // stride + 1
    expected = batch * c_in * c_out * k ** dim * size ** dim / groups / 1e9
    gflops, _ = flop_count(conv, (x,))
    assert dict(gflops) == {"conv": expected}


@pytest.mark.parametrize("a,b,batch", [((20, 10), (10, 100), 1), ((1, 20, 10), (1, 10, 100), 1),
                                       ((2, 2, 20, 10), (2, 2, 10, 100), 4),
                                       ((1, 20, 10), (10, 100), 1), ((2, 20, 10), (10, 100), 2)])
def test_matmul(a, b, batch):
    gflops, _ = flop_count(Fn(torch.matmul), (torch.randn(*a), torch.randn(*b)))
    assert dict(gflops) == {"matmul": batch * 20 * 10 * 100 / 1e9}


def test_bmm_and_einsum():
    n, c, t, p = 2, 5, 2, 12
    gflops, _ = flop_count(Fn(torch.bmm), (torch.randn(n, c, t), torch.randn(n, t, p)))
    assert dict(gflops) == {"bmm": n * t * p * c / 1e9}
    gflops, _ = flop_count(Fn(lambda x, y: torch.einsum("nct,ncp->ntp", x, y)),
                           (torch.randn(n, c, t), torch.randn(n, c, p)))
    assert dict(gflops) == {"einsum": n * t * p * c / 1e9}
    g = 10
    gflops, _ = flop_count(Fn(lambda x, y: torch.einsum("ntg,ncg->nct", x, y)),
                           (torch.randn(n, t, g), torch.randn(n, c, g)))
    assert dict(gflops) == {"einsum": n * t * g * c / 1e9}


def test_batchnorm_and_norms():
    x = torch.randn(2, 3, 8, 8)
    assert FlopCountAnalysis(nn.BatchNorm2d(3).eval(), x).total() == x.numel() * 2
    assert FlopCountAnalysis(nn.BatchNorm2d(3, affine=False).eval(), x).total() == x.numel()
    assert FlopCountAnalysis(nn.BatchNorm2d(3).train(), x).total() == x.numel() * 5
    assert FlopCountAnalysis(nn.GroupNorm(3, 3), x).by_operator() == {"group_norm": x.numel() * 5}
    assert FlopCountAnalysis(nn.LayerNorm(8), x).by_operator() == {"layer_norm": x.numel() * 5}
    assert FlopCountAnalysis(nn.InstanceNorm2d(3), x).by_operator() == \
        {"instance_norm": x.numel() * 4}


def test_upsample_and_pool():
    x = torch.randn(2, 3, 8, 8)
    up = FlopCountAnalysis(nn.Upsample(scale_factor=2, mode="nearest"), x).by_operator()
    assert up == {"upsample_nearest2d": 2 * 3 * 16 * 16}
    up = FlopCountAnalysis(nn.Upsample(scale_factor=2, mode="bilinear"), x).by_operator()
    assert up == {"upsample_bilinear2d": 2 * 3 * 16 * 16 * 4}
    pool = FlopCountAnalysis(nn.AdaptiveAvgPool2d(1), x).by_operator()
    assert pool == {"adaptive_avg_pool2d": x.numel()}


class SmallConvNet(nn.Module):
    def __init__(self, c_in):
        super().__init__()
        self.conv1 = nn.Conv2d(c_in, 8, 1, 1)
        self.conv2 = nn.Conv2d(8, 4, 1, 2)
        self.conv3 = nn.Conv2d(4, 2, 1, 2)

    def forward(self, x):
        return self.conv3(self.conv2(self.conv1(x)))


def test_activation_counts():
    net, x = SmallConvNet(3), torch.randn(1, 3, 32, 32)
    outputs = (8 * 32 * 32, 4 * 16 * 16, 2 * 8 * 8)
    acts, _ = activation_count(net, (x,))
    assert dict(acts) == {"conv": sum(outputs) / 1e6}
    acts, _ = activation_count(nn.Linear(10, 20), (torch.randn(1, 10),))
    assert dict(acts) == {"linear": 20 / 1e6}
    handle = {"aten::_convolution": lambda inputs, outputs: Counter({"conv": 100})}
    acts, _ = activation_count(net, (x,), handle)
    assert dict(acts) == {"conv": 300 / 1e6}
    assert ActivationCountAnalysis(nn.Linear(10, 20), (torch.randn(1, 10),)).by_module() == \
        Counter({"": 20})
    assert ActivationCountAnalysis(net, (x,)).by_module() == \
        Counter({"": sum(outputs), "conv1": outputs[0], "conv2": outputs[1], "conv3": outputs[2]})


class NetWithReuse(nn.Module):
    def __init__(self, reuse=False):
        super().__init__()
        self.conv1 = nn.Conv2d(100, 100, 3)
        self.conv2 = nn.Conv2d(100, 100, 3)
        if reuse:
            self.conv2.weight = self.conv1.weight


class NetWithDupPrefix(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv1 = nn.Conv2d(100, 100, 3)
        self.conv111 = nn.Conv2d(100, 100, 3)


def test_parameter_counts():
    # fvcore's own test asserts these with assertTrue, which cannot fail; here they are equal
    count = parameter_count(NetWithReuse())
    assert (count[""], count["conv2"]) == (180200, 90100)
    count = parameter_count(NetWithReuse(reuse=True))
    assert (count[""], count["conv2"]) == (90200, 100)
    table = parameter_count_table(NetWithDupPrefix())
    assert sum("conv111.weight" in line for line in table.split("\n")) == 1


# fvcore's tests/test_print_model_statistics.py: the public tables on its TestNet, where
# a1.b1 calls c1.forward directly (so c1 is "uncalled"). Its private helpers are left out.
class A2B1(nn.Module):
    def __init__(self):
        super().__init__()
        self.c1, self.c2 = nn.Linear(10, 10), nn.Linear(10, 10)

    def forward(self, x):
        return self.c1(self.c2(x))


class A2(nn.Module):
    def __init__(self):
        super().__init__()
        self.b1 = A2B1()

    def forward(self, x):
        return self.b1(x)


class A1B1C1(nn.Module):
    def __init__(self):
        super().__init__()
        self.d1, self.d2 = nn.Linear(10, 10), nn.ReLU()

    def forward(self, x):
        return self.d1(self.d2(x))


class A1B1(nn.Module):
    def __init__(self):
        super().__init__()
        self.c1 = A1B1C1()

    def forward(self, x):
        return self.c1.forward(x)


class A1(nn.Module):
    def __init__(self):
        super().__init__()
        self.b1 = A1B1()

    def forward(self, x):
        return self.b1(x)


class PrintNet(nn.Module):
    def __init__(self):
        super().__init__()
        self.a1, self.a2 = A1(), A2()

    def forward(self, x):
        return self.a1(self.a2(x))


def test_flop_count_table_on_fvcores_test_net():
    model, inputs = PrintNet(), (torch.randn((1, 10)),)
    table = flop_count_table(FlopCountAnalysis(model, inputs))
    assert " a1 " not in table  # a chain of single children shares one row
    assert "a1.b1.c1.d1.bias" in table and "a2.b1.c1.weight" in table and "(10, 10)" in table
    assert " a2.b1 " in table  # a module with two children keeps its row
    assert "#activations" not in table and "#parameters or shape" in table
    assert " 0.33K" in table
    table = flop_count_table(FlopCountAnalysis(model, inputs),
                             activations=ActivationCountAnalysis(model, inputs),
                             show_param_shapes=False)
    assert "#activations" in table and "#parameters or shape" not in table
    assert "a2.b1.c1.weight" not in table and "(10, 10)" not in table
    assert "a2.b1.c1.d2" not in table


def test_flop_count_str_on_fvcores_test_net():
    model, inputs = PrintNet(), (torch.randn((1, 10)),)
    text = flop_count_str(FlopCountAnalysis(model, inputs).ancestor_mode("caller"))
    assert "N/A indicates a possibly missing statistic" in text
    assert "#params: 0.11K, #flops: 100" in text
    assert "ReLU()" in text  # trivial statistics left out
    assert "#params: 0.11K, #flops: N/A" in text  # c1, called through forward()
