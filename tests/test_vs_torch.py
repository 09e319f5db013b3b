"""dispatchflops against torch.utils.flop_counter.FlopCounterMode, key by key."""
import pytest
import torch
import torchvision
from torch.utils.flop_counter import FlopCounterMode as TorchCounter

from dispatchflops import FlopCounterMode

aten = torch.ops.aten

# Small ones run for real on the CPU, larger ones on the meta device (same shapes, no data).
CPU_MODELS = ["resnet18", "mobilenet_v2", "mobilenet_v3_small", "shufflenet_v2_x1_0",
              "squeezenet1_0", "mnasnet0_5", "regnet_x_400mf", "efficientnet_b0", "alexnet"]
META_MODELS = ["resnet50", "resnext50_32x4d", "wide_resnet50_2", "vgg11_bn", "densenet121",
               "googlenet", "inception_v3", "mobilenet_v3_large", "regnet_y_400mf",
               "efficientnet_v2_s", "convnext_tiny", "swin_t", "swin_v2_t", "maxvit_t", "vit_b_16"]
SIZES = {"inception_v3": 299, "swin_v2_t": 256, "efficientnet_v2_s": 384}
KWARGS = {"googlenet": {"aux_logits": False, "init_weights": False},
          "inception_v3": {"aux_logits": False, "init_weights": False}}


def build(name, device):
    try:
        with torch.device(device):
            model = torchvision.models.get_model(name, **KWARGS.get(name, {}))
    except NotImplementedError:  # the constructor reads data (regnet): build on the CPU
        model = torchvision.models.get_model(name, **KWARGS.get(name, {})).to(device)
    size = SIZES.get(name, 224)
    return model, torch.randn(1, 3, size, size, device=device)


def both(model, step):
    with TorchCounter(display=False) as theirs:
        step()
    with FlopCounterMode(model) as ours:
        step()
    return theirs, ours


@pytest.mark.parametrize("name,device", [(n, "cpu") for n in CPU_MODELS]
                         + [(n, "meta") for n in META_MODELS])
def test_forward_eval_equal_key_by_key(name, device):
    model, x = build(name, device)
    model.eval()
    with torch.no_grad():
        theirs, ours = both(model, lambda: model(x))
    assert ours.get_total_flops() == theirs.get_total_flops() > 0
    assert ours.get_flop_counts() == theirs.get_flop_counts()


def test_cpu_fused_attention_counted_where_torch_counts_zero():
    """On the CPU, F.scaled_dot_product_attention runs
    _scaled_dot_product_flash_attention_for_cpu, which torch's counter counts as 0
    (deliberate difference: we count it, as its math and CUDA variants are counted)."""
    b, h, s, d = 2, 4, 16, 8

    class Attention(torch.nn.Module):
        def forward(self, q, k, v):
            return torch.nn.functional.scaled_dot_product_attention(q, k, v)

    model = Attention()
    q, k, v = (torch.randn(b, h, s, d) for _ in range(3))
    theirs, ours = both(model, lambda: model(q, k, v))
    assert theirs.get_total_flops() == 0
    assert ours.get_flop_counts()["Attention"] == {
        aten._scaled_dot_product_flash_attention_for_cpu: 2 * 2 * b * h * s * s * d}


# Training step, models without grouped convolutions (torch's counter overcounts grouped
# weight gradients by the number of groups).
CHAIN_MODELS = ["alexnet", "vgg11"]
BRANCH_MODELS = ["resnet18", "resnet50", "densenet121", "googlenet", "inception_v3", "squeezenet1_0"]


def train_step(model, x):
    return lambda: model(x).sum().backward()


@pytest.mark.parametrize("name", CHAIN_MODELS)
def test_forward_backward_equal_key_by_key(name):
    model, x = build(name, "meta")
    theirs, ours = both(model, train_step(model, x))
    assert ours.get_total_flops() == theirs.get_total_flops() > 0
    assert ours.get_flop_counts() == theirs.get_flop_counts()


@pytest.mark.parametrize("name", BRANCH_MODELS)
def test_forward_backward_branching_models(name):
    """Totals and per-op totals equal torch's. Per module, torch's ModuleTracker keeps a
    branch module (e.g. a ResNet downsample) "entered" until the gradient of its *input*
    is complete, so it also charges it the sibling branch's backward (a torch bug, see
    README). We check every module against an oracle independent of our attribution:
    torch's own forward-only count of that module, times 3 (y, dX, dW of each conv and
    linear), less one forward of the first convolution (its input needs no gradient)."""
    model, x = build(name, "meta")
    theirs, ours = both(model, train_step(model, x))
    assert ours.get_total_flops() == theirs.get_total_flops() > 0
    assert ours.get_flop_counts()["Global"] == theirs.get_flop_counts()["Global"]

    with TorchCounter(display=False) as fwd:
        model(x)
    forward = {k: sum(v.values()) for k, v in fwd.get_flop_counts().items()}
    first_conv = next(n for n, m in model.named_modules() if isinstance(m, torch.nn.Conv2d))
    first_conv_flops = forward[f"{type(model).__name__}.{first_conv}"]
    counts = ours.get_flop_counts()
    assert counts.keys() == forward.keys()
    root = type(model).__name__
    for key, fwd_flops in forward.items():
        holds_first = key in ("Global", root) or f"{root}.{first_conv}".startswith(key + ".") \
            or key == f"{root}.{first_conv}"
        expected = 3 * fwd_flops - (first_conv_flops if holds_first else 0)
        assert sum(counts[key].values()) == expected, key
    differ = [k for k in counts if counts[k] != theirs.get_flop_counts().get(k)]
    assert differ, "torch's attribution bug no longer shows: revisit README and this test"


def test_grouped_weight_gradient_differs_from_torch_by_groups():
    """Depthwise conv weight gradient: torch multiplies it by the number of groups."""
    conv = torch.nn.Conv2d(8, 8, 3, groups=8, bias=False)
    x = torch.randn(1, 8, 10, 10)
    theirs, ours = both(conv, lambda: conv(x).sum().backward())
    forward = 2 * 1 * 8 * 8 * 8 * 1 * 9  # 2 * N * out positions * C_out * C_in/g * k
    assert ours.get_flop_counts()["Global"][aten.convolution_backward] == forward
    assert theirs.get_flop_counts()["Global"][aten.convolution_backward] == 8 * forward
