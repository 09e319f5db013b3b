"""Budgets for CI: exit 1 and one line when the model costs more, 0 otherwise."""
from pathlib import Path

import pytest

from dispatchflops.budget import BudgetError, parse_amount
from dispatchflops.cli import main

TINY = str(Path(__file__).parent / "report_models.py") + ":tiny"
FAST = ["--shape", "8", "--device", "meta"]


@pytest.mark.parametrize("text,value", [
    ("5G", 5e9), ("30M", 30e6), ("1.5e9", 1.5e9), ("250k", 250e3), ("2T", 2e12),
    ("12", 12), (" 0.5 K ", 500), (".5M", 500e3), ("1e3K", 1e6),
])
def test_parse_amount(text, value):
    assert parse_amount(text) == value


@pytest.mark.parametrize("text", ["", "G", "5X", "5GB", "-3M", "1,5G", "inf", "1e999"])
def test_parse_amount_rejects(text):
    with pytest.raises(BudgetError, match="--max-flops"):
        parse_amount(text, "--max-flops")


def test_within_budget_exit_0(capsys):
    assert main([TINY, *FAST, "--max-flops", "3080", "--max-params", "66",
                 "--max-activations", "1K"]) == 0
    out, err = capsys.readouterr()
    assert err == "" and "Flops: 3.08K" in out


def test_over_budget_exit_1_one_line(capsys):
    # tiny: 3080 FLOPs, 66 parameters, 770 activations
    assert main([TINY, *FAST, "--max-flops", "3K", "--max-params", "30M"]) == 1
    out, err = capsys.readouterr()
    assert "Flops: 3.08K" in out  # the report still comes out
    assert err == "dispatchflops: over budget: flops 3.08K (3080) > 3K (--max-flops)\n"
    assert main([TINY, *FAST, "--max-flops", "3.1K", "--max-params", "65",
                 "--max-activations", "700", "--format", "json", "--output", "/dev/null"]) == 1
    err = capsys.readouterr().err
    assert err.splitlines() == [
        "dispatchflops: over budget: params 66 (66) > 65 (--max-params); "
        "activations 0.77K (770) > 700 (--max-activations)"]


def test_training_step_budget_counts_the_backward(capsys):
    # forward 3080 + backward 4880
    assert main([TINY, *FAST, "--train", "--max-flops", "7.9K"]) == 1
    assert "flops 7.96K (7960) > 7.9K" in capsys.readouterr().err


def test_bad_budget_exit_2_before_counting(capsys):
    assert main(["no-such-model", "--max-flops", "5X"]) == 2
    out, err = capsys.readouterr()
    assert out == ""
    assert err.splitlines() == ["dispatchflops: error: bad --max-flops '5X': expected a number "
                                "with an optional K, M, G or T suffix (1000-based), e.g. 5G, "
                                "30M, 1.5e9"]
