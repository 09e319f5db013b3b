"""--plot: an icicle (or sunburst) of FLOPs by module path, a valid SVG or PNG."""
import struct
import sys
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest
import torch

from dispatchflops import FlopCounterMode
from dispatchflops.cli import main
from dispatchflops.plot import PlotError, layout, plot
from report_models import tiny

TINY = str(Path(__file__).parent / "report_models.py") + ":tiny"
FAST = ["--shape", "8", "--device", "meta"]


@pytest.fixture(scope="module")
def results():
    model = tiny()
    with FlopCounterMode(model, convention="fvcore") as fc:
        model(torch.randn(1, 3, 8, 8))
    fc.results.model = "tiny"
    return fc.results


def test_layout_sized_by_inclusive_flops(results):
    boxes = {b.path: b for b in layout(results)}
    assert list(boxes) == ["", "stem", "blocks", "blocks.0", "blocks.1", "head", "head.pool",
                           "head.fc"]
    assert (boxes[""].start, boxes[""].width, boxes[""].depth, boxes[""].label) == (0, 1, 0, "tiny")
    assert boxes["stem"].width == 768 / 3080 and boxes["stem"].start == 0
    assert boxes["blocks"].start == 768 / 3080 and boxes["blocks"].width == 2048 / 3080
    assert boxes["blocks.1"].start == pytest.approx((768 + 1024) / 3080)
    assert boxes["blocks.1"].label == "1" and boxes["blocks.1"].depth == 2
    # head.fc runs outside head (256 FLOPs): its children (256 + 8) are squeezed into it
    assert boxes["head"].width == 256 / 3080
    assert boxes["head.pool"].width + boxes["head.fc"].width == pytest.approx(boxes["head"].width)
    assert boxes["head.fc"].width == pytest.approx(256 / 3080 * 8 / 264)
    assert [b.path for b in layout(results, max_depth=1)] == ["", "stem", "blocks", "head"]


def svg_root(path):
    root = ET.parse(path).getroot()
    assert root.tag == "{http://www.w3.org/2000/svg}svg"
    return root


@pytest.mark.parametrize("kind", ["icicle", "sunburst"])
def test_svg(tmp_path, results, kind):
    out = tmp_path / "chart.svg"
    plot(results, str(out), kind=kind)
    root = svg_root(out)
    text = " ".join("".join(t.itertext()) for t in root.iter("{http://www.w3.org/2000/svg}text"))
    assert "FLOPs by module: tiny, 3.08K (fvcore convention)" in text
    assert "blocks" in text and "2.048K" in text


def test_png_from_the_cli(tmp_path, capsys):
    out = tmp_path / "chart.png"
    assert main([TINY, *FAST, "--plot", str(out)]) == 0
    data = out.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n" and data[12:16] == b"IHDR"
    width, height = struct.unpack(">II", data[16:24])
    assert width > 1000 and height > 100
    import matplotlib.image

    assert matplotlib.image.imread(str(out)).shape[:2] == (height, width)
    assert "Flops: 3.08K" in capsys.readouterr().out


def test_bad_extension_refused_before_counting(capsys):
    assert main(["no-such-model", "--plot", "chart.jpg"]) == 2
    assert capsys.readouterr().err.splitlines() == [
        "dispatchflops: error: --plot chart.jpg: name the file .svg or .png (the extension "
        "picks the format)"]


def test_matplotlib_missing_is_one_line(tmp_path, results, monkeypatch, capsys):
    for name in [m for m in sys.modules if m == "matplotlib" or m.startswith("matplotlib.")]:
        monkeypatch.delitem(sys.modules, name)
    monkeypatch.setitem(sys.modules, "matplotlib", None)  # import matplotlib -> ImportError
    with pytest.raises(PlotError, match=r"--plot needs matplotlib: pip install 'dispatchflops\[plot\]'"):
        plot(results, str(tmp_path / "x.svg"))
    assert main([TINY, *FAST, "--plot", str(tmp_path / "x.svg")]) == 2
    err = capsys.readouterr().err
    assert err.splitlines() == ["dispatchflops: error: --plot needs matplotlib: pip install "
                                "'dispatchflops[plot]'"]
