"""The dispatchflops command: the seed's golden numbers and table, and bad input."""
import re
import subprocess
import sys
from pathlib import Path

import pytest

from dispatchflops.cli import main

HERE = Path(__file__).parent
SEED = str(HERE / "seed_model.py") + ":build"
BAD = str(HERE / "bad_models.py")

# get_flops.py's output for resnet50_8xb32_in1k, from the seed document (its copy there has
# its runs of spaces collapsed; we compare with spaces collapsed too).
SEED_SUMMARY = """==============================
Input shape: (3, 224, 224)
Flops: 4.109G
Params: 25.557M
Activation: 11.114M
=============================="""
SEED_TABLE = """+--------------------------+----------------------+-----------+--------------+ | module | #parameters or shape | #flops | #activations | +--------------------------+----------------------+-----------+--------------+ | model | 25.557M | 4.109G | 11.114M | | backbone | 23.508M | 4.109G | 11.114M | | backbone.conv1 | 9.408K | 0.118G | 0.803M | | backbone.conv1.weight | (64, 3, 7, 7) | | | | backbone.bn1 | 0.128K | 1.606M | 0 | | backbone.bn1.weight | (64,) | | | | backbone.bn1.bias | (64,) | | | | backbone.layer1 | 0.216M | 0.677G | 4.415M | | backbone.layer1.0 | 75.008K | 0.235G | 2.007M | | backbone.layer1.1 | 70.4K | 0.221G | 1.204M | | backbone.layer1.2 | 70.4K | 0.221G | 1.204M | | backbone.layer2 | 1.22M | 1.034G | 3.111M | | backbone.layer2.0 | 0.379M | 0.375G | 1.305M | | backbone.layer2.1 | 0.28M | 0.22G | 0.602M | | backbone.layer2.2 | 0.28M | 0.22G | 0.602M | | backbone.layer2.3 | 0.28M | 0.22G | 0.602M | | backbone.layer3 | 7.098M | 1.469G | 2.158M | | backbone.layer3.0 | 1.512M | 0.374G | 0.652M | | backbone.layer3.1 | 1.117M | 0.219G | 0.301M | | backbone.layer3.2 | 1.117M | 0.219G | 0.301M | | backbone.layer3.3 | 1.117M | 0.219G | 0.301M | | backbone.layer3.4 | 1.117M | 0.219G | 0.301M | | backbone.layer3.5 | 1.117M | 0.219G | 0.301M | | backbone.layer4 | 14.965M | 0.81G | 0.627M | | backbone.layer4.0 | 6.04M | 0.373G | 0.326M | | backbone.layer4.1 | 4.463M | 0.219G | 0.151M | | backbone.layer4.2 | 4.463M | 0.219G | 0.151M | | head.fc | 2.049M | | | | head.fc.weight | (1000, 2048) | | | | head.fc.bias | (1000,) | | | | neck.gap | | 0.1M | 0 | +--------------------------+----------------------+-----------+--------------+"""


def collapse(text):
    return re.sub(r"\s+", " ", text).strip()


def drop_last_column(table):
    """The table without its rightmost column (the CLI's share of the total)."""
    lines = []
    for line in table.splitlines():
        edge = line[-1:]
        if edge in ("|", "+"):
            line = line[:-1].rpartition(edge)[0] + edge
        lines.append(line)
    return "\n".join(lines)


def test_seed_golden(capsys):
    assert main([SEED, "--method", "extract_feat"]) == 0
    out = capsys.readouterr().out
    assert SEED_SUMMARY in out
    table = out[: out.index("=====")]
    assert collapse(drop_last_column(table)) == SEED_TABLE
    # the share column: the model is all of it, the backbone's layer3 1.469G of 4.109G
    header, model_row = table.strip().splitlines()[1], table.strip().splitlines()[3]
    assert header.split("|")[-2].strip() == "share"
    assert model_row.split("|")[-2].strip() == "100.0%"
    assert re.search(r"\| +backbone\.layer3 .*\| +35\.7% +\|", table)


def test_full_resnet50(capsys):
    assert main(["resnet50", "--shape", "224"]) == 0
    out = capsys.readouterr().out
    assert "Flops: 4.112G\nParams: 25.557M\nActivation: 11.115M\n" in out
    assert "Not counted (no formula): aten.relu_ x49, aten.add_ x16, " \
           "aten.max_pool2d_with_indices x1" in out


def test_shape_and_batch_and_convention(capsys):
    assert main(["resnet18", "--shape", "64", "96", "--batch", "2", "--convention", "pytorch",
                 "--max-depth", "1", "--device", "meta"]) == 0
    out = capsys.readouterr().out
    assert "Input shape: (3, 64, 96)" in out
    assert "layer1.0" not in out


@pytest.mark.parametrize("argv,message", [
    (["resnet5"], "unknown model 'resnet5'.*did you mean resnet50"),
    (["no/such/file.py:build"], "no such file: no/such/file.py"),
    ([BAD + ":missing"], "has no attribute 'missing'"),
    ([BAD + ":not_a_module"], "returned int, not a torch.nn.Module"),
    (["no_such_package_xyz:build"], "cannot import 'no_such_package_xyz'"),
    (["resnet18", "--shape", "1", "2", "3"], "--shape takes one or two values"),
    (["resnet18", "--shape", "0"], "must be positive"),
    (["resnet18", "--method", "nope"], "ResNet has no method 'nope'"),
    ([BAD + ":op_fails"], "raised in module 'inner.proj' at aten.addmm: RuntimeError"),
    ([BAD + ":python_fails"], "raised in module 'block.1': ValueError: expected 32x32 images"),
])
def test_bad_input_one_line_exit_2(argv, message, capsys):
    assert main(argv) == 2
    captured = capsys.readouterr()
    assert captured.out == ""
    lines = captured.err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("dispatchflops: error: ")
    assert re.search(message, lines[0])


def test_modules_that_fail_to_import_are_one_line(tmp_path, monkeypatch, capsys):
    (tmp_path / "broken_pkg_xyz.py").write_text("raise NameError('boom at import')\n")
    (tmp_path / "plainfile").write_text("x\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    assert main(["broken_pkg_xyz:build"]) == 2
    assert "importing 'broken_pkg_xyz' failed: NameError: boom at import" in capsys.readouterr().err
    assert main([str(tmp_path / "plainfile") + ":build"]) == 2
    assert "is not a Python file" in capsys.readouterr().err


def test_entry_points_no_traceback():
    for cmd in (["dispatchflops", "resnet5"], [sys.executable, "-m", "dispatchflops", "resnet5"]):
        proc = subprocess.run(cmd, capture_output=True, text=True)
        assert proc.returncode == 2
        assert "Traceback" not in proc.stderr
        assert proc.stderr.startswith("dispatchflops: error: unknown model 'resnet5'")


def test_a_reader_that_stops_early_gets_no_traceback():
    """`dispatchflops resnet18 | head -1`: the pipe closes before the report is written;
    the command ends quietly, status 0."""
    import subprocess
    import sys
    p = subprocess.Popen([sys.executable, "-m", "dispatchflops", "resnet18", "--shape", "32"],
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    p.stdout.close()
    err = p.stderr.read().decode()
    assert p.wait() == 0 and "Traceback" not in err and "BrokenPipe" not in err, err
