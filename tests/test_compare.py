"""dispatchflops compare A.json B.json: per-module differences between two saved runs."""
import csv
import io
from pathlib import Path

import pytest

from dispatchflops.cli import main

HERE = Path(__file__).parent
TINY = str(HERE / "report_models.py") + ":tiny"
FIXTURE = str(HERE / "data" / "resnet18_train_v1.json")


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    d = tmp_path_factory.mktemp("runs")
    a, b = d / "a.json", d / "b.json"
    assert main([TINY, "--shape", "8", "--device", "meta", "--format", "json", "--output", str(a)]) == 0
    assert main([TINY, "--shape", "16", "--device", "meta", "--format", "json", "--output", str(b)]) == 0
    return str(a), str(b)


def test_compare_table(runs, capsys):
    a, b = runs
    assert main(["compare", a, b]) == 0
    out = capsys.readouterr().out
    lines = out.splitlines()
    assert lines[0].startswith("A: " + TINY + ", fvcore convention, torch ")
    assert lines[0].endswith("forward, x: float32[1, 3, 8, 8], on meta (" + a + ")")
    assert "x: float32[1, 3, 16, 16]" in lines[1]
    rows = {ln.split("|")[1].strip(): [c.strip() for c in ln.split("|")[2:-1]]
            for ln in lines if ln.startswith("|")}
    # 4x the pixels: 4x the FLOPs except head.fc (its input is pooled); parameters unchanged
    assert rows["total"] == ["3.08K", "12.296K", "+9.216K", "+299.2%", "66", "66", "0", "+2.304K"]
    assert rows["stem"] == ["0.768K", "3.072K", "+2.304K", "+300.0%", "16", "16", "0", "+0.768K"]
    assert "head.fc" not in rows  # unchanged
    assert list(rows)[2:] == ["model", "stem", "blocks", "blocks.0", "blocks.1", "head",
                              "head.pool"]


def test_compare_csv_all_and_depth(runs, capsys):
    a, b = runs
    assert main(["compare", a, b, "--format", "csv", "--all", "--max-depth", "1"]) == 0
    rows = list(csv.DictReader(io.StringIO(capsys.readouterr().out)))
    assert [r["module"] for r in rows] == ["Global", "", "stem", "blocks", "head"]
    assert rows[3] == {"module": "blocks", "flops_a": "2048", "flops_b": "8192",
                       "flops_delta": "6144", "params_a": "40", "params_b": "40",
                       "params_delta": "0", "activations_a": "512", "activations_b": "2048",
                       "activations_delta": "1536"}


def test_compare_different_models(runs, capsys):
    a, _ = runs
    assert main(["compare", a, FIXTURE, "--format", "markdown", "--max-depth", "1"]) == 0
    out = capsys.readouterr().out
    assert "| `stem` | 0.768K | — | -0.768K | removed | 16 | — | -16 | -0.256K |" in out
    assert "| `layer1` | — | 1.391G | +1.391G | new |" in out


def test_compare_identical(runs, capsys):
    a, _ = runs
    assert main(["compare", a, a]) == 0
    assert "No module differs." in capsys.readouterr().out


@pytest.mark.parametrize("argv,message", [
    (["compare", "missing.json", FIXTURE], "cannot read missing.json"),
    (["compare", TINY.split(":")[0], FIXTURE], "not JSON"),
    (["compare", FIXTURE], "the following arguments are required: B.json"),
])
def test_compare_bad_input(argv, message, capsys):
    assert main(argv) == 2
    out, err = capsys.readouterr()
    assert out == ""
    lines = err.splitlines()
    assert len(lines) == 1 and lines[0].startswith("dispatchflops compare: error: ")
    assert message in lines[0]


def test_model_named_like_a_file_still_counts(capsys):
    # only a first argument of exactly "compare" is the subcommand
    assert main(["compare.py:build"]) == 2
    assert "no such file: compare.py" in capsys.readouterr().err
