"""fvcore's own analysis on timm models: the fvcore convention gives its numbers."""
import logging

import pytest
import timm
import torch
from fvcore.nn import ActivationCountAnalysis, FlopCountAnalysis

from dispatchflops import FlopCounterMode
from dispatchflops.views import module_costs


@pytest.mark.parametrize("name", ["semnasnet_075", "rexnetr_100", "regnety_008_tv",
                                  "mobilenetv3_small_050", "convnext_atto", "mixer_s32_224"])
def test_timm_counts_equal_fvcore_own(name):
    """fvcore's FlopCountAnalysis and ActivationCountAnalysis on the same model and
    input: totals and every module's FLOPs. The SE nets compute x.mean((2, 3)), which
    fvcore leaves free; their classifier's adaptive pooling counts."""
    model = timm.create_model(name, pretrained=False).eval()
    x = torch.randn(1, *model.pretrained_cfg["input_size"])
    logging.getLogger("fvcore").setLevel(logging.ERROR)
    with torch.no_grad():
        flops = FlopCountAnalysis(model, x).unsupported_ops_warnings(False)
        acts = ActivationCountAnalysis(model, x).unsupported_ops_warnings(False)
        with FlopCounterMode(model, convention="fvcore") as fc:
            model(x)
    assert fc.get_total_flops() == flops.total() > 0
    assert fc.results.total.activations == acts.total()
    costs = module_costs(fc.results)
    assert {p: costs[p].flops for p in flops.by_module()} == dict(flops.by_module())


# Small timm models across families (SE and GC nets, RegNets, NFNets, ConvNeXt,
# EfficientNets, MobileNets, RepVGG, CSP/DarkNet, FocalNet, MLP-Mixers, ViT-likes), each at
# its pretrained config's input size. fvcore cannot see scaled-dot-product attention: where
# a model runs it, we equal fvcore plus that operator.
ZOO = ["seresnet18", "gcresnet33ts", "regnetx_002", "regnety_002", "nf_resnet26",
       "convnextv2_atto", "efficientnet_b0", "tinynet_b", "mobilenetv3_rw", "lcnet_050",
       "repvgg_a0", "cspresnet50", "darknet17", "focalnet_tiny_srf", "gmixer_12_224",
       "resmlp_12_224", "ghostnet_050", "hardcorenas_a", "dla34", "levit_128",
       "vit_tiny_patch16_224", "deit_tiny_patch16_224", "efficientformerv2_s0"]


@pytest.mark.parametrize("name", ZOO)
def test_fvcore_front_on_timm_zoo(name):
    from dispatchflops import fvcore as df

    model = timm.create_model(name, pretrained=False).eval()
    x = torch.randn(1, *model.pretrained_cfg["input_size"])
    logging.getLogger("fvcore").setLevel(logging.ERROR)
    with torch.no_grad():
        theirs = FlopCountAnalysis(model, x)
        ours = df.FlopCountAnalysis(model, x)
        ops = ours.by_operator()
        attention = ops.pop("scaled_dot_product_attention", 0)
        assert ops == theirs.by_operator()
        assert ours.total() == theirs.total() + attention
        if not attention:
            assert ours.by_module() == theirs.by_module()
            assert ActivationCountAnalysis(model, x).total() == \
                df.ActivationCountAnalysis(model, x).total()


def test_padding_same_convolution_fvcore_leaves_at_zero():
    """A padding="same" convolution is traced as aten::_convolution_mode, which fvcore has
    no handle for (timm's convmixer: +1,233,125,376 on convmixer_768_32); we count it."""
    from dispatchflops import fvcore as df

    model, x = torch.nn.Conv2d(3, 8, 3, padding="same"), torch.randn(1, 3, 10, 10)
    assert FlopCountAnalysis(model, x).total() == 0
    assert df.FlopCountAnalysis(model, x).by_operator() == {"conv": 10 * 10 * 8 * 3 * 3 * 3}
