"""Model sources: every torchvision family by name with inputs of its kind and no
download, and timm models by name; counted exactly as torch's own counter counts the
same model on the same inputs."""
import json
import re
from types import SimpleNamespace

import pytest
import timm
import torch
import torchvision
from torch.utils.flop_counter import FlopCounterMode as TorchCounter

from dispatchflops import FlopCounterMode
from dispatchflops.cli import main
from dispatchflops.sources import SpecError, example


def request(model, **kw):
    args = dict(model=model, device="cpu", batch=1, shape=None, frames=None, seq_len=None,
                task="base", config=[], cfg_options=[])
    args.update(kw)
    return SimpleNamespace(**args)


def both_counts(ex):
    """(ours, torch's) FLOPs of one eval forward of an example."""
    ex.model.eval()
    with torch.no_grad():
        with FlopCounterMode(ex.model) as ours:
            ex()
        with TorchCounter(display=False) as theirs:
            ex()
    return ours.get_total_flops(), theirs.get_total_flops()


@pytest.mark.parametrize("name,kw,inputs", [
    # detection: a list of images, resized inside the model; keypoints are detection too
    ("fasterrcnn_mobilenet_v3_large_320_fpn", dict(shape=[320], batch=2),
     lambda a: len(a[0]) == 2 and a[0][0].shape == (3, 320, 320)),
    ("keypointrcnn_resnet50_fpn", dict(shape=[96, 128], config=["min_size=96", "max_size=128"]),
     lambda a: a[0][0].shape == (3, 96, 128)),
    ("deeplabv3_mobilenet_v3_large", dict(shape=[96]), lambda a: a[0].shape == (1, 3, 96, 96)),
    ("r3d_18", dict(shape=[32], frames=4), lambda a: a[0].shape == (1, 3, 4, 32, 32)),
    ("raft_small", dict(shape=[128, 136]),
     lambda a: len(a) == 2 and all(t.shape == (1, 3, 128, 136) for t in a)),
    ("quantized_mobilenet_v2", dict(shape=[64]), lambda a: a[0].shape == (1, 3, 64, 64)),
])
def test_every_torchvision_family_counts_as_torch_counts_it(name, kw, inputs):
    torch.manual_seed(0)
    ex = example(request(name, **kw))
    assert inputs(ex.args)
    ours, theirs = both_counts(ex)
    assert ours == theirs > 0


def test_family_defaults():
    assert example(request("r3d_18")).args[0].shape == (1, 3, 16, 112, 112)  # crop size
    assert example(request("mvit_v2_s", device="meta")).args[0].shape == (1, 3, 16, 224, 224)
    det = example(request("ssdlite320_mobilenet_v3_large", device="meta"))
    assert [tuple(x.shape) for x in det.args[0]] == [(3, 224, 224)] and not det.trainable
    assert example(request("resnet18", device="meta")).words == "x: float32[1, 3, 224, 224]"


def test_no_backbone_weights_are_asked_for(monkeypatch):
    def refuse(*args, **kwargs):
        raise AssertionError("a download was attempted")

    monkeypatch.setattr(torch.hub, "load_state_dict_from_url", refuse)
    for name in ("fasterrcnn_mobilenet_v3_large_320_fpn", "deeplabv3_mobilenet_v3_large",
                 "raft_small", "r3d_18"):
        example(request(name, device="meta"))


def test_timm_input_size_from_its_pretrained_config():
    for name in ("resnet50", "vit_base_patch16_384", "efficientnet_b3"):
        model = timm.create_model(name, pretrained=False)
        _, h, w = model.pretrained_cfg["input_size"]
        ex = example(request(f"timm:{name}", device="meta"))
        assert ex.args[0].shape == (1, 3, h, w), name
    ex = example(request("timm:resnet18", shape=[64], config=["num_classes=10"]))
    assert ex.args[0].shape == (1, 3, 64, 64) and ex.model.num_classes == 10
    ours, theirs = both_counts(ex)
    assert ours == theirs > 0


@pytest.mark.parametrize("argv,message", [
    (["timm:resnet5O"], "unknown timm model 'resnet5O'; did you mean resnet50"),
    (["resnet18", "--frames", "8"], "--frames applies to video models only"),
    (["r3d_18", "--frames", "0"], "--frames must be positive"),
    (["fasterrcnn_mobilenet_v3_large_320_fpn", "--train"], "needs? targets|from targets"),
    (["resnet18", "--config", "nonsense"], "expected key=value"),
])
def test_bad_sources_are_one_line_exit_2(argv, message, capsys):
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1
    assert re.search(message, err), err


def test_cli_counts_a_video_and_a_flow_model(capsys):
    assert main(["r3d_18", "--shape", "32", "--frames", "4", "--format", "json"]) == 0
    saved = json.loads(capsys.readouterr().out)
    assert saved["input"] == "forward, x: float32[1, 3, 4, 32, 32], on cpu"
    assert main(["raft_small", "--shape", "128", "--max-depth", "0"]) == 0
    assert "Input shape: 2 x (3, 128, 128)" in capsys.readouterr().out


def test_spec_errors_name_the_source():
    with pytest.raises(SpecError, match="unknown model 'resnet5'.*did you mean resnet50"):
        example(request("resnet5"))
    assert torchvision.models.get_model  # torchvision is what names these



def _published(family):
    models = torchvision.models
    return [(n, models.get_model_weights(n).DEFAULT.meta["_ops"])
            for n in models.list_models(module=getattr(models, family))]


@pytest.mark.parametrize("name,ops", _published("video"), ids=lambda v: str(v))
def test_video_models_at_their_defaults_give_torchvision_published_ops(name, ops):
    """torchvision's weights publish GFLOPs (2 per multiply-add) of each video model: the
    default clip here (16 frames at the weights' crop size) gives exactly those."""
    ex = example(request(name, device="meta"))
    with torch.no_grad(), FlopCounterMode(ex.model.eval()) as fc:
        ex()
    assert round(fc.get_total_flops() / 2e9, 3) == ops


@pytest.mark.parametrize("name,ops", _published("segmentation"), ids=lambda v: str(v))
def test_segmentation_models_give_torchvision_published_ops(name, ops):
    """At 520 x 520 with the auxiliary head the published weights carry (--config)."""
    aux = [] if name.startswith("lraspp") else ["aux_loss=true"]
    ex = example(request(name, device="meta", shape=[520], config=aux))
    with torch.no_grad(), FlopCounterMode(ex.model.eval()) as fc:
        ex()
    assert round(fc.get_total_flops() / 2e9, 3) == ops
