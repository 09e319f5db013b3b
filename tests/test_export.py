"""The result object as data (versioned dict / JSON, exact round trip, a file an earlier
run wrote) and the CLI's formats: JSON, CSV, Markdown (rendered) and the table."""
import copy
import csv
import io
import json
import re
from collections import Counter
from pathlib import Path

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from markdown_it import MarkdownIt

from dispatchflops import FlopCounterMode, ModuleCost, Results
from dispatchflops.cli import main
from dispatchflops.export import (SCHEMA_VERSION, SchemaError, from_dict, from_json, load,
                                  markdown_report,
                                  to_dict, to_json)
from dispatchflops.devices import DEVICES
from dispatchflops.results import PHASES, OpCost
from dispatchflops.views import MODULE_COLUMNS
from report_models import tiny

HERE = Path(__file__).parent
TINY = str(HERE / "report_models.py") + ":tiny"
FIXTURE = HERE / "data" / "resnet18_train_v1.json"
FIXTURE_V2 = HERE / "data" / "resnet18_train_v2.json"
FAST = ["--shape", "8", "--device", "meta"]


def run(capsys, *argv):
    code = main([TINY, *FAST, *argv])
    out, err = capsys.readouterr()
    return code, out, err


@pytest.fixture(scope="module")
def trained():
    model = tiny()
    with FlopCounterMode(model, convention="fvcore", count_bytes=True) as fc:
        model(torch.randn(1, 3, 8, 8)).sum().backward()
    fc.results.input = "x: float32[1, 3, 8, 8]"
    return fc.results


# --------------------------------------------------------------------------- dict / JSON
def test_round_trip_exact(trained):
    data = to_dict(trained)
    back = from_dict(data)
    assert back == trained
    assert to_dict(back) == data
    assert from_json(to_json(trained)) == trained
    assert json.loads(to_json(trained)) == data
    assert data["schema_version"] == SCHEMA_VERSION == 5
    assert data["torch_version"] == torch.__version__ and data["input"] == "x: float32[1, 3, 8, 8]"
    assert data["modules"]["blocks.0"]["phase_flops"] == {"forward": 1024, "backward": 2048,
                                                          "recompute": 0}
    assert data["modules"]["blocks.0"]["bytes"] == trained.modules["blocks.0"].bytes > 0
    assert len(data["ops"]) == len(trained.ops) > 0 and data["device"] is None


def test_round_trip_with_memory():
    """Version 5: what count_memory measured, exactly; a device's capacity."""
    model = tiny()
    with FlopCounterMode(model, count_memory=True, count_bytes=True) as fc:
        model(torch.randn(1, 3, 8, 8)).sum().backward()
    r = fc.results
    r.device = DEVICES["l4"]
    data = to_dict(r)
    assert data["memory"]["peak"]["cpu"] == r.memory.peak["cpu"] > 0
    assert data["device"]["memory"] == 24 * 2**30
    assert from_dict(data) == r and from_json(to_json(r)) == r
    assert json.loads(to_json(r)) == data


def test_round_trip_with_a_device_and_times(trained):
    r = copy.deepcopy(trained)
    r.device = DEVICES["h100-sxm"]
    r.measured, r.measured_how = {"": 0.5, "blocks.0": 0.25}, "cpu wall time"
    data = to_dict(r)
    assert from_dict(data) == r and from_json(to_json(r)) == r
    # the roofline is written for readers: the sum of each op's bound
    assert data["roofline"]["total"]["bytes"] == r.total.bytes
    assert data["roofline"]["modules"]["blocks.0"]["flops"] == 2 * trained.modules["blocks.0"].flops


_ints = st.integers(min_value=0, max_value=2**63)
_names = st.text(min_size=0, max_size=12)
_costs = st.builds(
    ModuleCost, path=st.just("x"), params=_ints, activations=_ints, calls=_ints,
    phase_flops=st.fixed_dictionaries({p: _ints for p in PHASES}),
    by_op=st.dictionaries(_names, _ints, max_size=3).map(Counter),
    op_calls=st.dictionaries(_names, _ints, max_size=3).map(Counter),
    counted=st.booleans(), self_flops=_ints, self_activations=_ints,
    comm_bytes=st.dictionaries(_names, _ints, max_size=2).map(Counter),
    comm_calls=st.dictionaries(_names, _ints, max_size=2).map(Counter),
    comm_phase_bytes=st.fixed_dictionaries({p: _ints for p in PHASES}),
    phase_bytes=st.fixed_dictionaries({p: _ints for p in PHASES}),
    bytes_by_op=st.dictionaries(_names, _ints, max_size=3).map(Counter), self_bytes=_ints)
_op_costs = st.builds(OpCost, stack=st.lists(_names, max_size=3).map(tuple),
                      phase=st.sampled_from(PHASES), op=_names, calls=_ints,
                      flops=st.none() | _ints, bytes=_ints,
                      dtype=st.none() | st.sampled_from(["float32", "bfloat16"]))


@settings(max_examples=60, deadline=None)
@given(modules=st.dictionaries(_names, _costs, max_size=4), total=_costs,
       text=st.none() | st.text(max_size=20),
       unsupported=st.dictionaries(_names, _ints, max_size=3), uncalled=st.lists(_names, max_size=3),
       blocks_run=st.dictionaries(_names, _ints, max_size=2),
       ops=st.lists(_op_costs, max_size=4),
       measured=st.none() | st.dictionaries(_names, st.floats(0, 10), max_size=3))
def test_round_trip_any_result(modules, total, text, unsupported, uncalled, blocks_run, ops,
                               measured):
    for path, cost in modules.items():
        cost.path = path
    total.path = "Global"
    r = Results("pytorch", modules, total, unsupported, uncalled, blocks_run, ops=ops,
                input=text, model=text, measured=measured,
                measured_how=None if measured is None else "wall")
    assert from_json(to_json(r)) == r
    assert to_dict(from_dict(json.loads(json.dumps(to_dict(r))))) == to_dict(r)


def test_loads_what_an_earlier_run_wrote():
    """tests/data/resnet18_train_v1.json: `dispatchflops resnet18 --device meta --train
    --format json`, written with schema version 1 and kept as it was written."""
    raw = json.loads(FIXTURE.read_text())
    r = load(FIXTURE)
    assert raw["schema_version"] == 1
    no_comm = {"comm_bytes": {}, "comm_calls": {}, "comm_phase_bytes": dict.fromkeys(PHASES, 0),
               **_NO_BYTES}
    assert to_dict(r) == {**raw, **_NO_V3, "blocks_run": {},
                          "total": {**raw["total"], **no_comm},
                          "modules": {p: {**c, **no_comm} for p, c in raw["modules"].items()}}
    assert (r.model, r.convention) == ("resnet18", "fvcore")
    assert r.input == ("forward, x: float32[1, 3, 224, 224], on meta; training step, "
                       "loss: sum of the outputs")
    assert r.total.phase_flops == {"forward": 1826516992, "backward": 3510132736, "recompute": 0}
    assert r.total.params == r.modules[""].params == 11689512
    assert r.modules["layer1"].phase_flops["forward"] == 466436096
    assert r.modules["fc"].by_op["aten.addmm"] == 512000
    assert sum(c.self_flops for c in r.modules.values()) + r.total.self_flops == r.total.flops
    assert r.unsupported["aten.relu_"] == 17 and r.uncalled == []


_NO_BYTES = {"bytes": 0, "phase_bytes": dict.fromkeys(PHASES, 0), "self_bytes": 0,
             "bytes_by_op": {}}
_NO_V3 = {"schema_version": 5, "bytes_counted": False, "ops": [], "device": None,
          "measured": None, "roofline": None, "read_by_fused": [], "memory": None}


def test_loads_what_version_2_wrote():
    """tests/data/resnet18_train_v2.json: `dispatchflops resnet18 --device meta --train
    --format json`, written with schema version 2 (the commit before bytes) as it was."""
    raw = json.loads(FIXTURE_V2.read_text())
    r = load(FIXTURE_V2)
    assert raw["schema_version"] == 2
    assert to_dict(r) == {**raw, **_NO_V3, "total": {**raw["total"], **_NO_BYTES},
                          "modules": {p: {**c, **_NO_BYTES} for p, c in raw["modules"].items()}}
    assert r.total.phase_flops == {"forward": 1826516992, "backward": 3510132736, "recompute": 0}
    assert r.ops == [] and r.device is None and r.measured is None


@pytest.mark.parametrize("change,message", [
    (lambda d: d.update(schema_version=6), "schema version 6 is newer"),
    (lambda d: d.update(memory={"peak": {"cpu": 1.5}}), r"memory.peak\['cpu'\]: expected a number"),
    (lambda d: d["modules"]["stem"].update(bytes=1), "not the sum of 'phase_bytes'"),
    (lambda d: d["ops"].append([[], "forward", "aten.mm", 1, 1, 1]), r"ops\[\d+\]: expected"),
    (lambda d: d["ops"].append([[], "sideways", "aten.mm", 1, 1, 1, None]), "malformed"),
    (lambda d: d.pop("blocks_run"), "missing 'blocks_run'"),
    (lambda d: d.pop("schema"), "not a dispatchflops result"),
    (lambda d: d["modules"]["stem"].pop("params"), r"modules\['stem'\]: missing 'params'"),
    (lambda d: d["modules"]["stem"].update(flops=1), "not the sum of 'phase_flops'"),
    (lambda d: d["total"]["by_op"].update({"aten.mm": "12"}), "expected <class 'int'>"),
])
def test_schema_errors(trained, change, message):
    data = copy.deepcopy(to_dict(trained))
    change(data)
    with pytest.raises(SchemaError, match=message):
        from_dict(data)


def test_cli_json_output_file(tmp_path, capsys):
    out = tmp_path / "tiny.json"
    code, stdout, _ = run(capsys, "--format", "json", "--output", str(out))
    assert code == 0 and stdout == ""
    r = load(out)
    assert r.model == TINY and r.input == "forward, x: float32[1, 3, 8, 8], on meta"
    assert r.total.flops == 3080 and r.modules["head.fc"].self_flops == 8
    # one line per module
    assert sum(1 for line in out.read_text().splitlines() if line.startswith('  "')) == 8


# --------------------------------------------------------------------------- CSV
def test_csv_one_row_per_module(capsys):
    code, out, _ = run(capsys, "--format", "csv")
    assert code == 0
    rows = list(csv.DictReader(io.StringIO(out)))
    assert tuple(rows[0]) == MODULE_COLUMNS
    assert [r["module"] for r in rows] == ["", "stem", "blocks", "blocks.0", "blocks.1", "head",
                                          "head.pool", "head.fc"]
    stem = rows[1]
    assert (stem["depth"], stem["calls"], stem["params"], stem["flops"], stem["self_flops"],
            stem["activations"], stem["backward_flops"]) == ("1", "1", "16", "768", "768", "256", "0")
    assert float(stem["share"]) == pytest.approx(768 / 3080, abs=1e-6)


def test_csv_columns_are_stable_with_training(capsys):
    code, out, _ = run(capsys, "--format", "csv", "--train")
    rows = list(csv.DictReader(io.StringIO(out)))
    assert tuple(rows[0]) == MODULE_COLUMNS
    b0 = next(r for r in rows if r["module"] == "blocks.0")
    assert (b0["forward_flops"], b0["backward_flops"], b0["flops"]) == ("1024", "2048", "3072")


def test_csv_views(capsys):
    _, out, _ = run(capsys, "--format", "csv", "--by-op")
    lines = out.splitlines()
    assert lines[0] == "op,calls,flops,share,comm_bytes,bytes,intensity"
    assert [",".join(line.split(",")[:5]) for line in lines[1:4]] == [
        "aten.convolution,3,2816,0.914286,0", "aten.mean,1,256,0.0831169,0",
        "aten.addmm,1,8,0.0025974,0"]
    _, out, _ = run(capsys, "--format", "csv", "--top", "2", "--sort", "params")
    rows = list(csv.DictReader(io.StringIO(out)))
    assert tuple(rows[0]) == ("rank", *MODULE_COLUMNS)
    assert [(r["rank"], r["module"], r["params"]) for r in rows] == [("1", "blocks", "40"),
                                                                      ("2", "blocks.0", "20")]


# --------------------------------------------------------------------------- Markdown
def md_tables(text):
    """[[header cells], [row cells]...] of each table, as a GitHub-style renderer sees them."""
    tokens = MarkdownIt("commonmark").enable("table").parse(text)
    tables, cells, row = [], None, None
    for t in tokens:
        if t.type == "table_open":
            cells = []
        elif t.type == "tr_open":
            row = []
        elif t.type == "inline" and row is not None:
            row.append(t.content)
        elif t.type == "tr_close":
            cells.append(row)
            row = None
        elif t.type == "table_close":
            tables.append(cells)
    return tables


def test_markdown_renders_a_table(capsys):
    code, out, _ = run(capsys, "--format", "markdown")
    assert code == 0
    html = MarkdownIt("commonmark").enable("table").render(out)
    assert "<table>" in html and '<th style="text-align:right">flops</th>' in html
    (table,) = md_tables(out)
    assert table[0] == ["module", "params", "flops", "share", "activations"]
    assert table[1] == ["model", "66", "3.08K", "100.0%", "0.77K"]
    assert table[2] == ["`stem`", "16", "0.768K", "24.9%", "0.256K"]
    assert [r[0] for r in table[1:]] == ["model", "`stem`", "`blocks`", "`blocks.0`",
                                         "`blocks.1`", "`head`", "`head.pool`", "`head.fc`"]
    assert "- **Input**: forward, x: float32[1, 3, 8, 8], on meta" in out
    assert "Never called" not in out  # blocks is an nn.ModuleList: it has no forward to call


def test_markdown_names_modules_never_called_in_code_spans():
    model = tiny()
    model.extra = torch.nn.Linear(2, 2)  # never called
    with FlopCounterMode(model) as fc:
        model(torch.randn(1, 3, 8, 8))
    assert fc.results.uncalled == ["extra"]
    assert "- **Never called**: `extra`" in markdown_report(fc.results, [], ["module"])


def test_markdown_training_split_and_views(capsys):
    _, out, _ = run(capsys, "--format", "markdown", "--train")
    (table,) = md_tables(out)
    assert table[0] == ["module", "params", "flops", "forward", "backward", "share", "activations"]
    assert table[4][:5] == ["`blocks.0`", "20", "3.072K", "1.024K", "2.048K"]
    assert "- **Step flops**: 7.96K (forward 3.08K, backward 4.88K)" in out
    _, out, _ = run(capsys, "--format", "markdown", "--by-op")
    (table,) = md_tables(out)
    assert table == [["op", "calls", "flops", "share"],
                     ["`aten.convolution`", "3", "2.816K", "91.4%"],
                     ["`aten.mean`", "1", "0.256K", "8.3%"], ["`aten.addmm`", "1", "8", "0.3%"]]
    _, out, _ = run(capsys, "--format", "markdown", "--top", "1")
    (table,) = md_tables(out)
    assert table[1][:6] == ["1", "`blocks`", "2.048K", "0", "66.5%", "0.0%"]


# --------------------------------------------------------------------------- table
def cells(out, module):
    line = next(x for x in out.splitlines() if re.match(rf"\| +{re.escape(module)} ", x))
    return [c.strip() for c in line.strip("|").split("|")]


def test_table_share_and_training_columns(capsys):
    _, out, _ = run(capsys)
    header = out.strip().splitlines()[1]
    assert [c.strip() for c in header.strip("|").split("|")] == [
        "module", "#parameters or shape", "#flops", "#activations", "share"]
    assert cells(out, "blocks.0") == ["blocks.0", "20", "1.024K", "0.256K", "33.2%"]
    assert cells(out, "blocks.0.weight") == ["blocks.0.weight", "(4, 4, 1, 1)", "", "", ""]
    _, out, _ = run(capsys, "--train")
    assert cells(out, "blocks.0") == ["blocks.0", "20", "3.072K", "0.256K", "38.6%", "1.024K",
                                      "2.048K"]
    assert "#forward" in out and "#backward" in out and "#recompute" not in out
    assert "Forward flops: 3.08K\nBackward flops: 4.88K\n" in out


def test_table_views(capsys):
    _, out, _ = run(capsys, "--by-op")
    assert cells(out, "aten.convolution") == ["aten.convolution", "3", "2.816K", "91.4%"]
    assert "Flops: 3.08K\nParams: 66\nActivation: 0.77K\n" in out
    _, out, _ = run(capsys, "--top", "3", "--max-depth", "1")
    assert cells(out, "1") == ["1", "blocks", "2.048K", "0", "66.5%", "0.0%", "40", "0",
                               "0.512K", "0"]
    assert cells(out, "3") == ["3", "head", "0.256K", "0", "8.3%", "0.0%", "10", "0", "0", "0"]
    _, out, _ = run(capsys, "--sort", "params", "--max-depth", "1")
    assert [ln.split("|")[1].strip() for ln in out.splitlines() if ln.startswith("|")][1:] == [
        "model", "blocks", "stem", "head"]


@pytest.mark.parametrize("argv,message", [
    (["--by-op", "--top", "3"], "two views: pick one"),
    (["--format", "json", "--by-op"], "--format json writes the whole result"),
    (["--by-op", "--sort", "params"], "--by-op sorts by flops only"),
    (["--top", "0"], "--top takes a positive number"),
    (["--format", "yaml"], "invalid choice: 'yaml'"),
    (["--output", "/no/such/dir/x.json"], "no such directory /no/such/dir"),
])
def test_bad_report_flags_one_line_exit_2(argv, message, capsys):
    code, out, err = run(capsys, *argv)
    assert code == 2 and out == ""
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("dispatchflops: error: ")
    assert message in lines[0]


@pytest.mark.parametrize("width", [40, 80])
def test_extra_columns_widen_mmengines_table(width):
    from dispatchflops.table import mmengine_table

    model = tiny()
    with FlopCounterMode(model, convention="fvcore") as fc:
        model(torch.randn(1, 3, 8, 8))
    plain = mmengine_table(model, fc.results, width=width)
    extra = {"share": {"": "100.0%", "stem": "24.9%", "blocks.0": "33.2%"}}
    wide = mmengine_table(model, fc.results, width=width, extra=extra)
    assert [ln[:len(p)] for ln, p in zip(wide.splitlines(), plain.splitlines())] == \
        plain.splitlines()
    if width < 80:
        return  # names cut with "…": the prefix check above is the point
    last = {ln.split("|")[1].strip(): ln.split("|")[-2].strip()
            for ln in wide.splitlines() if ln.startswith("|")}
    assert last["module"] == "share" and last["model"] == "100.0%"
    assert last["blocks.0"] == "33.2%" and last["blocks.1"] == ""  # no value given: blank
    assert last["blocks"] == "" and last["stem.weight"] == ""
