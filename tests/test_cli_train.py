"""dispatchflops MODEL --train: the forward/backward split, user losses, timing."""
import re
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import torchvision
from torch.utils.flop_counter import FlopCounterMode as TorchCounter

from dispatchflops import FlopCounterMode
from dispatchflops.cli import main
from dispatchflops.formatting import format_size

LOSS = str(Path(__file__).parent / "losses.py") + ":mean_square"


def test_train_split_equals_the_api(capsys):
    assert main(["resnet18", "--train", "--convention", "pytorch", "--device", "meta",
                 "--max-depth", "1"]) == 0
    out = capsys.readouterr().out
    model = torchvision.models.resnet18().to("meta")
    with FlopCounterMode(model) as fc:
        model(torch.empty(1, 3, 224, 224, device="meta")).sum().backward()
    t = fc.results.total
    assert (t.forward_flops, t.backward_flops) == (3_628_146_688, 7_020_265_472)
    assert "Forward flops: 3.628G\nBackward flops: 7.02G\nStep flops: 10.648G (pytorch convention)" in out


def test_train_with_user_loss_and_timing(capsys):
    assert main(["mobilenet_v3_small", "--shape", "64", "--batch", "2", "--train", "--loss", LOSS,
                 "--time", "2", "--peak-tflops", "1", "--max-depth", "1"]) == 0
    out = capsys.readouterr().out
    step = re.search(r"Step time: ([\d.]+) ms over 2 steps, ([\d.]+) TFLOP/s", out)
    assert step and float(step.group(1)) > 0
    mfu = re.search(r"MFU: ([\d.]+)% of 1 TFLOP/s", out)
    # at 1 TFLOP/s peak, MFU is the achieved TFLOP/s (printed to 3 decimals) as a percentage
    assert mfu and abs(float(mfu.group(1)) / 100 - float(step.group(2))) <= 0.0006


@pytest.mark.parametrize("argv,message", [
    (["resnet18", "--loss", "m:f"], "--loss needs --train"),
    (["resnet18", "--train", "--time", "2", "--device", "meta"], "cannot time the meta device"),
    (["resnet18", "--train", "--peak-tflops", "5"], "--peak-tflops needs --bandwidth-gbs"),
    (["resnet18", "--bandwidth-gbs", "5"], "--bandwidth-gbs goes with --peak-tflops"),
    (["resnet18", "--device-spec", "h100-sxm", "--peak-tflops", "1", "--bandwidth-gbs", "5"],
     "--bandwidth-gbs goes with --peak-tflops (instead of --device-spec)"),
    (["resnet18", "--train", "--loss", "nosuchmod_xyz:f"], "cannot import 'nosuchmod_xyz'"),
])
def test_train_bad_flags(argv, message, capsys):
    assert main(argv) == 2
    assert message in capsys.readouterr().err


def test_missing_extension_is_one_clear_line():
    code = "import sys; sys.modules['dispatchflops._C'] = None; import dispatchflops"
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert proc.returncode != 0
    last = proc.stderr.strip().splitlines()[-1]
    assert last.startswith("ImportError: dispatchflops: the C++ extension dispatchflops._C is missing")
    assert "pip install -e ." in last


def test_flops_per_second_count_two_flops_per_multiply_add(capsys):
    """FLOP/s and MFU are defined on FLOPs (2 per multiply-add) whatever convention the
    table shows: the default fvcore table, the step's FLOPs in torch's convention."""
    assert main(["resnet18", "--shape", "112", "--train", "--time", "2", "--peak-tflops", "1",
                 "--max-depth", "0"]) == 0
    out = capsys.readouterr().out
    counts = {}
    for convention in ("fvcore", "pytorch"):
        model = torchvision.models.resnet18().to("meta")
        with FlopCounterMode(model, convention=convention) as fc:
            model(torch.empty(1, 3, 112, 112, device="meta")).sum().backward()
        counts[convention] = fc.get_total_flops()
    model = torchvision.models.resnet18().to("meta")
    with TorchCounter(display=False) as theirs:  # the outside oracle for the pytorch count
        model(torch.empty(1, 3, 112, 112, device="meta")).sum().backward()
    assert counts["pytorch"] == theirs.get_total_flops()
    assert f"Step flops: {format_size(counts['fvcore'])} (fvcore convention)" in out
    step = re.search(r"Step time: ([\d.]+) ms over 2 steps, ([\d.]+) TFLOP/s \(2 FLOPs per "
                     r"multiply-add, " + re.escape(format_size(counts["pytorch"])) +
                     r" a step\)", out)
    assert step, out
    achieved = counts["pytorch"] / (float(step.group(1)) / 1e3) / 1e12
    assert abs(achieved - float(step.group(2))) <= 0.0006 + achieved * 0.001
    mfu = re.search(r"MFU: ([\d.]+)% of 1 TFLOP/s", out)
    assert abs(float(mfu.group(1)) / 100 - float(step.group(2))) <= 0.0006
