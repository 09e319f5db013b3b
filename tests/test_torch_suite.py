"""The expected numbers of PyTorch's own flop-counter test suite (test/test_flop_counter.py),
asserted against dispatchflops."""
import pytest
import torch
import torch.nn.functional as F
import torchvision
from torch.nn.attention import SDPBackend, sdpa_kernel

from dispatchflops import FlopCounterMode


def T(*shape, requires_grad=False):
    return torch.randn(*shape, requires_grad=requires_grad)


def total(fn):
    with FlopCounterMode() as fc:
        fn()
    return fc.get_total_flops()


def test_variety():
    mod = torch.nn.Linear(9, 10)

    def run():
        torch.mm(T(4, 5), T(5, 6))
        torch.addmm(T(4, 6), T(4, 5), T(5, 6), beta=0.5, alpha=0.5)
        torch.matmul(T(5, 6), T(6, 7))
        torch.einsum("ab,bc->ac", T(6, 7), T(7, 8))
        mod(T(8, 9))

    assert total(run) == 3012


def test_ops():
    assert total(lambda: torch.mm(T(4, 5), T(5, 6))) == 240
    assert total(lambda: torch.bmm(T(3, 4, 5), T(3, 5, 6))) == 720
    assert total(lambda: (torch.addmm(T(4, 6), T(4, 5), T(5, 6)),
                          torch.addmm(T(4, 1), T(4, 5), T(5, 6)),
                          torch.addmm(T(6), T(4, 5), T(5, 6)))) == 720
    assert total(lambda: torch.baddbmm(T(3, 4, 6), T(3, 4, 5), T(3, 5, 6))) == 720
    assert total(lambda: torch.conv2d(T(2, 3, 6, 6), T(6, 3, 4, 4), padding=1)) == 28800
    assert total(lambda: torch.conv1d(T(2, 3, 6), T(6, 3, 4), padding=1)) == 1440


def test_backward():
    def run():
        a = T(4, 5, requires_grad=True)
        a = torch.mm(a, T(5, 6))
        a = a.unsqueeze(0).expand(7, 4, 6)
        a = torch.bmm(a, T(7, 6, 7))
        a.sum().backward()

    assert total(run) == 5184


def test_custom_autograd_function():
    class Custom(torch.autograd.Function):
        @staticmethod
        def forward(ctx, x):
            return torch.mm(x, x)

        @staticmethod
        def backward(ctx, g):
            return torch.mm(g, g) + torch.mm(g, g)

    def run():
        Custom.apply(T(5, 5, requires_grad=True)).sum().backward()

    assert total(run) == 750


def test_noop():
    assert total(lambda: T(4, 5).cos()) == 0


def test_resnet18_module():
    model = torchvision.models.resnet18()
    with FlopCounterMode(model) as fc:
        model(T(1, 3, 224, 224, requires_grad=True)).sum().backward()
    assert fc.get_total_flops() == 10884440064
    layer1 = fc.get_flop_counts()["ResNet.layer1"]
    assert layer1[torch.ops.aten.convolution] == 924844032
    assert layer1[torch.ops.aten.convolution_backward] == 1849688064
    # the attribute torch's suite reads, a defaultdict as torch's
    assert fc.flop_counts["ResNet.layer1"][torch.ops.aten.convolution] == 924844032
    assert fc.flop_counts["ResNet.layer1"][torch.ops.aten.mm] == 0
    assert fc.flop_counts["Global"] == fc.get_flop_counts()["Global"]


def test_custom():
    mode = FlopCounterMode(custom_mapping={torch.ops.aten.add: lambda *args, out_shape: 5})
    with mode:
        a = T(4, 5)
        a + a
    assert mode.get_total_flops() == 5

    def count(*args, out_val):
        return out_val.numel()

    count._get_raw = True
    mode = FlopCounterMode(custom_mapping={torch.ops.aten.add: count})
    with mode:
        a = T(4, 5)
        a + a
    assert mode.get_total_flops() == 20


def test_custom_mapping_gets_shapes_and_overrides_built_ins():
    seen = []

    def mm(a_shape, b_shape, *args, out_shape=None, **kwargs):
        seen.append((a_shape, b_shape, out_shape))
        return 1

    with FlopCounterMode(custom_mapping={torch.ops.aten.mm: mm}) as mode:
        torch.mm(T(4, 5), T(5, 6))
    assert mode.get_total_flops() == 1
    assert seen == [(torch.Size([4, 5]), torch.Size([5, 6]), torch.Size([4, 6]))]


def test_mods_is_accepted_with_torch_warning():
    model = torch.nn.Linear(3, 4)
    for make in (lambda: FlopCounterMode(mods=model), lambda: FlopCounterMode([model])):
        with pytest.warns(UserWarning, match="mods argument is not needed anymore"):
            mode = make()
        with mode:
            model(T(2, 3))
        assert mode.get_total_flops() == 2 * 2 * 3 * 4
        assert mode.get_flop_counts()["Linear"] == {torch.ops.aten.addmm: 48}


def test_positional_arguments_as_torch_orders_them():
    model = torch.nn.Linear(3, 4)
    mode = FlopCounterMode(model, 1, False, {torch.ops.aten.addmm: lambda *a, out_shape: 7})
    assert mode.depth == 1 and mode.display is False
    with mode:
        model(T(2, 3))
    assert mode.get_total_flops() == 7


def _sdpa_flops(backend, s_q, s_k, d, d_v, backward):
    q = T(4, 8, s_q, d, requires_grad=True)
    k = T(4, 8, s_k, d, requires_grad=True)
    v = T(4, 8, s_k, d_v, requires_grad=True)
    with sdpa_kernel(backend), FlopCounterMode() as fc:
        out = F.scaled_dot_product_attention(q, k, v, dropout_p=0, is_causal=True)
        if backward:
            out.sum().backward()
    return fc.get_total_flops()


# torch's suite runs these on CUDA (math, flash, mem-efficient); on the CPU the fused
# kernel is _scaled_dot_product_flash_attention_for_cpu, whose backward is flash's.
@pytest.mark.parametrize("backend", [SDPBackend.MATH, SDPBackend.FLASH_ATTENTION])
def test_sdpa(backend):
    uniform = _sdpa_flops(backend, 128, 128, 64, 64, False)
    assert uniform == 134217728
    fused = backend == SDPBackend.FLASH_ATTENTION
    expected_fw_bw = uniform * 7 // 2 if fused else uniform * 3
    assert _sdpa_flops(backend, 128, 128, 64, 64, True) == expected_fw_bw
    assert _sdpa_flops(backend, 128, 256, 64, 64, False) == 268435456
    assert _sdpa_flops(backend, 128, 256, 64, 64, True) == (939524096 if fused else 805306368)
