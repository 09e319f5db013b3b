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
