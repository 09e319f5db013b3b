"""OpenMMLab config files as get_flops.py takes them: _base_ inheritance, custom imports,
--cfg-options, the scope's registry, extract_feat counted; bad configs are one line."""
import json
from pathlib import Path

import pytest

from dispatchflops.cli import main

CONFIGS = Path(__file__).parent / "configs"


def conv_macs(c_in, c_out, size, k=3):
    return size * size * c_out * c_in * k * k


def run(capsys, *argv):
    assert main([*map(str, argv), "--format", "json"]) == 0
    return json.loads(capsys.readouterr().out)


def test_base_inheritance_and_extract_feat(capsys):
    saved = run(capsys, CONFIGS / "toy_wide.py", "--shape", "32")
    # width 16 from the child, depth 2 from the base; extract_feat: no head
    assert saved["total"]["flops"] == conv_macs(3, 16, 32) + conv_macs(16, 16, 32)
    assert saved["input"] == "extract_feat, x: float32[1, 3, 32, 32], on cpu"
    assert "head" in saved["uncalled"]


def test_cfg_options_override_the_config(capsys):
    saved = run(capsys, CONFIGS / "toy_base.py", "--shape", "16",
                "--cfg-options", "model.depth=3", "model.width=4")
    assert saved["total"]["flops"] == conv_macs(3, 4, 16) + 2 * conv_macs(4, 4, 16)


def test_same_numbers_as_mmengine_on_the_built_model(capsys):
    """get_flops.py's own steps (build through the registry, forward = extract_feat,
    get_model_complexity_info) give the same FLOPs."""
    from mmengine.analysis import get_model_complexity_info
    from mmengine.config import Config
    from mmengine.registry import MODELS, init_default_scope

    cfg = Config.fromfile(str(CONFIGS / "toy_wide.py"))
    init_default_scope(cfg.default_scope)
    model = MODELS.build(cfg.model).eval()
    model.forward = model.extract_feat
    expected = get_model_complexity_info(model, input_shape=(3, 40, 24))
    saved = run(capsys, CONFIGS / "toy_wide.py", "--shape", "40", "24")
    assert saved["total"]["flops"] == expected["flops"]
    assert saved["total"]["activations"] == expected["activations"]


@pytest.mark.parametrize("argv,message", [
    ([CONFIGS / "no_model.py"], "has no model dict"),
    ([CONFIGS / "other_scope.py"], "is for mmnotinstalled, which is not installed: "
                                   "pip install mmnotinstalled"),
    ([CONFIGS / "missing.py"], "no such file"),
    ([CONFIGS / "toy_base.py", "--cfg-options", "depth"], "expected key=value"),
    (["resnet18", "--cfg-options", "a=1"], "--cfg-options applies to OpenMMLab config files"),
])
def test_bad_configs_are_one_line_exit_2(argv, message, capsys):
    assert main([str(a) for a in argv]) == 2
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1 and message in err, err
