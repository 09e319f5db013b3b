"""--plot: an icicle (or sunburst) of FLOPs by module path, or a roofline of modules on a
device, a valid SVG or PNG."""
import struct
import sys
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest
import torch
from torch import nn

from dispatchflops import FlopCounterMode
from dispatchflops.devices import DEVICES
from dispatchflops.cli import main
from dispatchflops.plot import PlotError, layout, plot, roofline_points
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


# The roofline chart. A float32 Linear(64, 64) on a batch of B: 2*B*64*64 FLOPs (2 per
# multiply-add, whatever the convention) and 4*(B*64 + 64*64 + 64 + B*64) bytes (addmm
# reads the input, the weight and the bias and writes the output). On an H100 SXM (float32
# 67 TFLOP/s, 3.35 TB/s: ridge 20 FLOPs/byte) its 3.2 FLOPs/byte are memory-bound.
B = 8
LINEAR_FLOPS = 2 * B * 64 * 64
LINEAR_BYTES = 4 * (B * 64 + 64 * 64 + 64 + B * 64)
H100 = DEVICES["h100-sxm"]
NO_DEVICE = ("--plot-kind roofline needs a device: --device-spec NAME or --peak-tflops X "
             "--bandwidth-gbs Y")


def count(model, x, convention="pytorch", name="stack"):
    with FlopCounterMode(model, convention=convention, count_bytes=True) as fc:
        model(x)
    fc.results.model = name
    fc.results.device = H100
    return fc.results


@pytest.fixture(scope="module")
def stack():
    return count(nn.Sequential(*[nn.Linear(64, 64) for _ in range(32)]), torch.randn(B, 64))


@pytest.mark.parametrize("convention", ["pytorch", "fvcore"])
def test_roofline_repeated_layers_are_one_point(convention):
    res = count(nn.Sequential(*[nn.Linear(64, 64) for _ in range(32)]), torch.randn(B, 64),
                convention)
    points, left_out = roofline_points(res)
    assert left_out == 0
    model, layers = points
    assert (model.label, model.paths, model.depth) == ("stack", [""], 0)
    assert (layers.label, layers.paths, layers.depth) == ("0-31 (×32)",
                                                          [str(i) for i in range(32)], 1)
    for pt in points:
        assert (pt.flops, pt.bytes) == (32 * LINEAR_FLOPS, 32 * LINEAR_BYTES)
        assert not pt.measured and pt.bound_by == "memory"
        assert pt.intensity == LINEAR_FLOPS / LINEAR_BYTES
        assert pt.seconds == pytest.approx(32 * LINEAR_BYTES / 3.35e12)
        assert pt.rate == pytest.approx(3.35e12 * LINEAR_FLOPS / LINEAR_BYTES)  # on the roof


def test_roofline_measured_rate_where_every_member_was_timed(stack, monkeypatch):
    monkeypatch.setattr(stack, "measured", {"": 1e-3, **{str(i): 2e-5 for i in range(32)}})
    model, layers = roofline_points(stack)[0]
    assert model.measured and layers.measured
    assert model.seconds == 1e-3 and model.rate == pytest.approx(32 * LINEAR_FLOPS / 1e-3)
    assert layers.seconds == pytest.approx(32 * 2e-5)
    assert layers.rate == pytest.approx(LINEAR_FLOPS / 2e-5)
    del stack.measured["7"]  # one layer not timed: the group is placed at its bound
    model, layers = roofline_points(stack)[0]
    assert model.measured and not layers.measured
    assert layers.seconds == pytest.approx(32 * LINEAR_BYTES / 3.35e12)


def test_roofline_groups_by_index_and_op_mix_and_leaves_out_what_has_no_flops():
    # layers.i = Sequential(Linear(16, 16), ReLU, Linear(16, 16)), then an Identity (no ops)
    # and head = Linear(16, 2), on a batch of 2. A Linear(16, 16): 2*2*16*16 FLOPs, 4*(32 +
    # 256 + 16 + 32) bytes; ReLU: bytes only, 4*(32 + 32); head: 2*2*16*2, 4*(32 + 32 + 2 + 4).
    net = nn.Module()
    net.layers = nn.ModuleList([nn.Sequential(nn.Linear(16, 16), nn.ReLU(), nn.Linear(16, 16))
                                for _ in range(4)])
    net.drop = nn.Identity()
    net.head = nn.Linear(16, 2)

    def forward(x):
        for layer in net.layers:
            x = layer(x)
        return net.head(net.drop(x))

    net.forward = forward
    res = count(net, torch.randn(2, 16), name="net")
    lin, relu, head = (1024, 1344), (0, 256), (128, 280)

    def cost(pt):
        return (pt.label, pt.depth, pt.flops, pt.bytes)

    points, left_out = roofline_points(res, max_depth=1)
    assert left_out == 1  # drop
    assert [cost(pt) for pt in points] == [
        ("net", 0, 8 * lin[0] + head[0], 8 * lin[1] + 4 * relu[1] + head[1]),
        ("layers", 1, 8 * lin[0], 8 * lin[1] + 4 * relu[1]), ("head", 1, *head)]
    points, left_out = roofline_points(res, max_depth=2)
    assert left_out == 1
    assert [cost(pt) for pt in points][1:] == [
        ("layers.0-3 (×4)", 2, 8 * lin[0], 8 * lin[1] + 4 * relu[1]), ("head", 1, *head)]
    # the Linears of all four layers are one point; the ReLUs (no FLOPs) are left out
    points, left_out = roofline_points(res, max_depth=3)
    assert left_out == 4 + 1
    assert [cost(pt) for pt in points][1:] == [
        ("layers.0-3.0,2 (×8)", 3, 8 * lin[0], 8 * lin[1]), ("head", 1, *head)]
    assert points[1].paths == [f"layers.{i}.{j}" for i in range(4) for j in (0, 2)]
    assert [cost(pt) for pt in roofline_points(res, max_depth=0)[0]] == [cost(points[0])]


def test_roofline_names_differing_in_letters_stay_apart():
    net = nn.Module()
    for i in range(40):  # l0 ... l39, FLOPs growing with i: labels on l10 ... l39 only
        setattr(net, f"l{i}", nn.Linear(8, i + 1))
    net.forward = lambda x: [getattr(net, f"l{i}")(x) for i in range(40)]
    res = count(net, torch.randn(1, 8), name="many")
    points, left_out = roofline_points(res)
    assert left_out == 0
    assert [pt.label for pt in points] == ["many"] + [f"l{i}" for i in range(40)]
    assert [pt.flops for pt in points[1:]] == [2 * 8 * (i + 1) for i in range(40)]


def svg_texts(path):
    return [" ".join(t.itertext()) for t in svg_root(path).iter("{http://www.w3.org/2000/svg}text")]


def test_roofline_svg(tmp_path, stack, monkeypatch):
    out = tmp_path / "roofline.svg"
    plot(stack, str(out), kind="roofline")
    texts = svg_texts(out)
    assert ("Roofline: stack on NVIDIA H100 SXM 80GB, modules at depth 1; FLOP/s bound "
            "(attainable)") in texts
    assert {"0-31 (×32)", "stack", "float32 67 TFLOP/s", "3350 GB/s"} <= set(texts)
    monkeypatch.setattr(stack, "measured", {"": 1e-3, **{str(i): 2e-5 for i in range(32)}})
    plot(stack, str(out), kind="roofline", max_depth=1)
    texts = svg_texts(out)
    assert ("Roofline: stack on NVIDIA H100 SXM 80GB, modules at depth 1; FLOP/s measured "
            "forward") in texts


def test_roofline_labels_capped(tmp_path):
    net = nn.Module()
    for i in range(40):
        setattr(net, f"l{i}", nn.Linear(8, i + 1))
    net.forward = lambda x: [getattr(net, f"l{i}")(x) for i in range(40)]
    net.drop = nn.Identity()
    out = tmp_path / "many.svg"
    plot(count(net, torch.randn(1, 8), name="many"), str(out), kind="roofline")
    texts = set(svg_texts(out))
    # at most the 30 largest are labelled (those that fit beside their point); the largest
    # always is, as is the model
    labels = {t for t in texts if t in {f"l{i}" for i in range(40)}}
    assert {"l39", "many"} <= texts and labels <= {f"l{i}" for i in range(10, 40)}
    assert (f"1 module with no FLOPs or no bytes left out; labels on {len(labels)} of 40 "
            "(the largest by FLOPs that fit)") in texts


def test_roofline_png_from_the_cli(tmp_path):
    out = tmp_path / "roofline.png"
    assert main([TINY, *FAST, "--device-spec", "h100-sxm", "--plot", str(out), "--plot-kind",
                 "roofline"]) == 0
    data = out.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n" and data[12:16] == b"IHDR"
    width, height = struct.unpack(">II", data[16:24])
    assert width > 500 and height > 300


def test_roofline_needs_a_device(tmp_path, stack, monkeypatch, capsys):
    monkeypatch.setattr(stack, "device", None)
    with pytest.raises(PlotError) as e:
        plot(stack, str(tmp_path / "x.svg"), kind="roofline")
    assert str(e.value) == NO_DEVICE
    with pytest.raises(PlotError) as e:
        roofline_points(stack)
    assert str(e.value) == NO_DEVICE
    assert not (tmp_path / "x.svg").exists()
    assert main([TINY, *FAST, "--plot", str(tmp_path / "x.svg"), "--plot-kind",
                 "roofline"]) == 2
    assert capsys.readouterr().err.splitlines() == [f"dispatchflops: error: {NO_DEVICE}"]


def test_roofline_nothing_to_place():
    res = count(nn.Sequential(nn.ReLU()), torch.randn(2, 4))  # bytes, no FLOPs
    with pytest.raises(PlotError) as e:
        roofline_points(res)
    assert str(e.value) == ("nothing to place on the roofline: no module has both FLOPs and "
                            "bytes")
