"""The roofline (roofline.py, devices.py) against closed forms and the datasheets' figures,
measured time per module (timing.py), and the CLI's roofline and timing reports."""
import csv
import io
import json
import time
from pathlib import Path

import pytest
import torch
import torch.nn as nn

from dispatchflops import FlopCounterMode
from dispatchflops.cli import main
from dispatchflops.devices import DEVICES, DeviceError, custom, device_spec
from dispatchflops.roofline import RooflineError, roofline
from dispatchflops.timing import time_modules
from dispatchflops.views import MEASURED_COLUMNS, MODULE_COLUMNS, ROOFLINE_COLUMNS

TINY = str(Path(__file__).parent / "report_models.py") + ":tiny"
DOUBLE = str(Path(__file__).parent / "report_models.py") + ":double"
B, D = 2048, 2048


def _mlp(convention="pytorch"):
    """A bfloat16 Linear (compute-bound at this size on an H100) and a GELU (memory), on
    the meta device."""
    m = nn.Sequential(nn.Linear(D, D), nn.GELU()).to("meta", torch.bfloat16)
    x = torch.randn(B, D, dtype=torch.bfloat16, device="meta")
    with torch.no_grad(), FlopCounterMode(m, convention=convention, count_bytes=True) as fc:
        m(x)
    return fc.results


def test_datasheet_figures():
    """Dense peaks: H100/H200/L4 datasheets list tensor rates with sparsity (halved here),
    A100's and MI300X's list dense ones."""
    h100, h200 = DEVICES["h100-sxm"], DEVICES["h200"]
    assert h100.peak("bfloat16") == pytest.approx(1979e12 / 2)
    assert h100.peak("float8_e4m3fn") == pytest.approx(3958e12 / 2)
    assert h100.peak("float32") == pytest.approx(67e12)
    assert (h100.bandwidth, h200.bandwidth) == (pytest.approx(3.35e12), pytest.approx(4.8e12))
    assert h200.peaks == h100.peaks
    a100 = DEVICES["a100-80gb"]
    assert (a100.peak("float16"), a100.peak("float32"), a100.bandwidth) == \
        (pytest.approx(312e12), pytest.approx(19.5e12), pytest.approx(2.039e12))
    l4 = DEVICES["l4"]
    assert (l4.peak("bfloat16"), l4.bandwidth) == (pytest.approx(242e12 / 2), pytest.approx(300e9))
    mi = DEVICES["mi300x"]
    assert (mi.peak("bfloat16"), mi.peak("float8_e4m3fnuz"), mi.bandwidth) == \
        (pytest.approx(1307.4e12), pytest.approx(2614.9e12), pytest.approx(5.3e12))
    assert h100.ridge("bfloat16") == pytest.approx(989.5e12 / 3.35e12)


def test_bounds_per_op_and_module_in_closed_form():
    r = _mlp()
    h100 = DEVICES["h100-sxm"]
    line = roofline(r, h100)
    flops = 2 * B * D * D
    linear_bytes = 2 * (B * D + D * D + D + B * D)
    gelu_bytes = 2 * (B * D + B * D)
    compute, memory = flops / 989.5e12, linear_bytes / 3.35e12
    assert compute > memory  # compute-bound
    lin = line.modules["0"]
    assert (lin.flops, lin.bytes, lin.bound_by) == (flops, linear_bytes, "compute")
    assert lin.seconds == pytest.approx(compute) and lin.compute_s == lin.seconds
    assert lin.intensity == flops / linear_bytes
    act = line.modules["1"]
    assert (act.flops, act.bytes, act.bound_by, act.compute_s) == (0, gelu_bytes, "memory", 0.0)
    assert act.seconds == pytest.approx(gelu_bytes / 3.35e12) == act.memory_s
    whole = line.modules[""]
    assert whole.seconds == pytest.approx(compute + gelu_bytes / 3.35e12)
    assert (whole.flops, whole.bytes) == (flops, linear_bytes + gelu_bytes)
    assert line.ops["aten.addmm"].seconds == lin.seconds


def test_fvcore_convention_gives_the_same_roofline():
    """fvcore counts a multiply-add once; the roofline counts FLOPs (2 per multiply-add)."""
    h100 = DEVICES["h100-sxm"]
    a, b = roofline(_mlp("pytorch"), h100).total, roofline(_mlp("fvcore"), h100).total
    assert (a.flops, a.bytes) == (b.flops, b.bytes) == (2 * B * D * D, a.bytes)
    assert a.seconds == pytest.approx(b.seconds)


def test_a_small_linear_is_memory_bound():
    m = nn.Linear(64, 64)
    x = torch.randn(4, 64)
    with FlopCounterMode(m, count_bytes=True) as fc:
        m(x)
    b = roofline(fc.results, custom(100, 1000)).modules[""]
    flops, moved = 2 * 4 * 64 * 64, 4 * (4 * 64 + 64 * 64 + 64 + 4 * 64)
    assert flops / 100e12 < moved / 1000e9
    assert (b.bound_by, b.seconds) == ("memory", pytest.approx(moved / 1000e9))


def test_device_errors():
    with pytest.raises(DeviceError, match="known devices are h100-sxm, h200, a100-80gb, l4, mi300x"):
        device_spec("b200")
    m = nn.Linear(8, 8).double()
    x = torch.randn(2, 8, dtype=torch.float64)
    with FlopCounterMode(m, count_bytes=True) as fc:
        m(x)
    with pytest.raises(DeviceError, match="NVIDIA L4 has no peak FLOP/s for float64"):
        roofline(fc.results, DEVICES["l4"])
    with pytest.raises(DeviceError, match="positive"):
        custom(0, 10)
    with FlopCounterMode(m) as fc:  # bytes not counted: no roofline
        m(x)
    with pytest.raises(RooflineError, match="count_bytes=True"):
        roofline(fc.results, DEVICES["h100-sxm"])


# --------------------------------------------------------------------------- timing
class Sleep(nn.Module):
    def __init__(self, seconds):
        super().__init__()
        self.seconds = seconds

    def forward(self, x):
        time.sleep(self.seconds)
        return x


def test_module_times_on_the_cpu_are_wall_times():
    m = nn.Sequential(Sleep(0.02), nn.Linear(4, 4), Sleep(0.01))
    x = torch.randn(2, 4)
    times = time_modules(m, lambda: m(x), passes=2, device="cpu")
    assert set(times) == {"", "0", "1", "2"}
    assert times["0"] >= 0.02 and times["2"] >= 0.01
    assert times[""] >= times["0"] + times["1"] + times["2"]
    assert not any(mod._forward_hooks or mod._forward_pre_hooks for mod in m.modules())


def test_timing_leaves_no_hook_when_the_run_raises():
    m = nn.Sequential(nn.Linear(4, 4))

    def step():
        m(torch.randn(2, 5))

    with pytest.raises(RuntimeError):
        time_modules(m, step, passes=1, device="cpu")
    assert not any(mod._forward_hooks or mod._forward_pre_hooks for mod in m.modules())


# --------------------------------------------------------------------------- CLI
FAST = ["--shape", "8"]


def test_cli_roofline_columns_csv_and_json(capsys, tmp_path):
    assert main([TINY, *FAST, "--device-spec", "h100-sxm", "--format", "csv"]) == 0
    rows = list(csv.DictReader(io.StringIO(capsys.readouterr().out)))
    assert tuple(rows[0]) == MODULE_COLUMNS + ROOFLINE_COLUMNS
    assert {r["bound_by"] for r in rows if int(r["bytes"])} == {"memory"}
    out = tmp_path / "r.json"
    assert main([TINY, *FAST, "--device-spec", "H100-SXM", "--format", "json",
                 "--output", str(out)]) == 0
    data = json.loads(out.read_text())
    assert data["device"]["name"] == "NVIDIA H100 SXM 80GB"
    assert data["roofline"]["total"]["bytes"] == data["total"]["bytes"] > 0


def test_cli_custom_device_and_measured_times(capsys):
    assert main([TINY, *FAST, "--peak-tflops", "100", "--bandwidth-gbs", "1000", "--time", "2",
                 "--format", "csv"]) == 0
    rows = list(csv.DictReader(io.StringIO(capsys.readouterr().out)))
    assert tuple(rows[0]) == MODULE_COLUMNS + ROOFLINE_COLUMNS + MEASURED_COLUMNS
    model = next(r for r in rows if r["module"] == "")
    assert float(model["time_s"]) > 0 and 0 < float(model["of_bound"]) < 1
    assert main([TINY, *FAST, "--device-spec", "l4", "--time", "1"]) == 0
    out = capsys.readouterr().out
    assert "Roofline on NVIDIA L4: bound" in out
    assert "Measured forward:" in out and "wall time, median of 1 forward passes" in out
    assert "#bound by" in out and "#of bound" in out


@pytest.mark.parametrize("argv,message", [
    (["--device-spec", "b200"], "unknown device 'b200': known devices are h100-sxm"),
    (["--device-spec", "l4", "--device", "meta", "--time", "1"], "cannot time the meta device"),
])
def test_cli_bad_device(argv, message, capsys):
    assert main([TINY, *FAST, *argv]) == 2
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err and err.count("\n") == 1


def test_cli_dtype_without_a_peak(capsys):
    assert main([DOUBLE, *FAST, "--device-spec", "l4"]) == 2
    err = capsys.readouterr().err
    assert "NVIDIA L4 has no peak FLOP/s for float64" in err and err.count("\n") == 1
    assert main([DOUBLE, *FAST, "--device-spec", "a100-80gb", "--format", "csv"]) == 0


def test_cli_dtype_halves_the_bytes_of_a_float_model(capsys, tmp_path):
    """Every tensor tiny moves is floating: in bfloat16 each is half its float32 size."""
    moved = {}
    for dtype in ("float32", "bfloat16"):
        out = tmp_path / f"{dtype}.json"
        assert main([TINY, *FAST, "--dtype", dtype, "--format", "json", "--output", str(out)]) == 0
        data = json.loads(out.read_text())
        moved[dtype] = data["total"]["bytes"]
        assert f"x: {dtype}[1, 3, 8, 8]" in data["input"]
        assert {o[6] for o in data["ops"] if o[4] is not None} == {dtype}
    assert moved["float32"] == 2 * moved["bfloat16"] > 0


def test_markdown_summary_has_the_roofline(capsys):
    assert main([TINY, *FAST, "--device-spec", "h200", "--time", "1", "--format", "markdown"]) == 0
    out = capsys.readouterr().out
    assert "- **Roofline on NVIDIA H200 SXM 141GB**: bound " in out
    assert "- **Measured forward**: " in out and "| bound by |" in out


def test_a_container_never_called_gets_its_childrens_time():
    class Net(nn.Module):
        def __init__(self):
            super().__init__()
            self.blocks = nn.ModuleList([Sleep(0.01), Sleep(0.02)])

        def forward(self, x):
            for b in self.blocks:
                x = b(x)
            return x

    from dispatchflops import views

    m, x = Net(), torch.randn(2, 4)
    with FlopCounterMode(m, count_bytes=True) as fc:
        m(x)
    r = fc.results
    r.measured = time_modules(m, lambda: m(x), passes=1, device="cpu")
    assert "blocks" not in r.measured  # never called itself
    rows = {row["module"]: row for row in views.module_rows(r)}
    assert rows["blocks"]["time_s"] == r.measured["blocks.0"] + r.measured["blocks.1"] >= 0.03
