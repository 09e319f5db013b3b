"""torchvision's weight metadata: every classification model whose default weights carry
``_ops`` (GFLOPs, 2 per multiply-add), built with random weights, counted at the weights'
crop size: round(flops / 2e9, 3) == _ops."""
import pytest
import torch
import torchvision.models as tvm
from torchvision.models import get_model, get_model_weights, list_models

from dispatchflops import FlopCounterMode


def _cases():
    cases = []
    for name in list_models(module=tvm):
        weights = get_model_weights(name).DEFAULT
        if "_ops" in weights.meta:
            crop = list(weights.transforms().crop_size)
            cases.append((name, crop * 2 if len(crop) == 1 else crop, weights.meta["_ops"]))
    return cases


CASES = _cases()


def test_every_model_with_ops_is_checked():
    assert len(CASES) >= 80


@pytest.mark.parametrize("name,crop,expected", CASES, ids=[c[0] for c in CASES])
def test_ops_metadata(name, crop, expected):
    kwargs = {"image_size": crop[0]} if name.startswith("vit_") else {}
    try:  # the meta device: no memory, no compute
        with torch.device("meta"):
            model = get_model(name, **kwargs)
    except NotImplementedError:  # a constructor that reads data: build on the CPU
        model = get_model(name, **kwargs).to("meta")
    model.eval()
    x = torch.empty(1, 3, *crop, device="meta")
    with torch.no_grad(), FlopCounterMode(model) as fc:
        model(x)
    assert round(fc.get_total_flops() / 2e9, 3) == expected
