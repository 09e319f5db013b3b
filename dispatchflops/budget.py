"""Cost budgets for CI: ``--max-flops 5G --max-params 30M --max-activations 20M``."""
from __future__ import annotations

import math
import re

from .formatting import format_size

#: 1000-based suffixes
SUFFIXES = {"": 1, "K": 10**3, "M": 10**6, "G": 10**9, "T": 10**12}
_AMOUNT = re.compile(r"\s*([0-9]*\.?[0-9]+(?:[eE][+-]?[0-9]+)?)\s*([kKmMgGtT]?)\s*")

#: budget name -> (CLI flag, what it limits)
BUDGETS = {
    "flops": ("--max-flops", "FLOPs counted in the run (a whole training step with --train)"),
    "params": ("--max-params", "parameters of the model"),
    "activations": ("--max-activations", "activations counted in the run"),
}


class BudgetError(ValueError):
    """A budget that cannot be read; the message says why."""


def parse_amount(text: str, flag: str = "budget") -> float:
    """``5G``, ``30M``, ``1.5e9``, ``250k``, ``12`` -> a number (K/M/G/T are 1000-based)."""
    m = _AMOUNT.fullmatch(text)
    if m is None:
        raise BudgetError(f"bad {flag} {text!r}: expected a number with an optional "
                          "K, M, G or T suffix (1000-based), e.g. 5G, 30M, 1.5e9")
    value = float(m.group(1)) * SUFFIXES[m.group(2).upper()]
    if not math.isfinite(value):
        raise BudgetError(f"bad {flag} {text!r}: not a finite number")
    return value


def actual(results, name: str) -> int:
    """What a budget limits, from a ``Results``."""
    if name == "params":
        return results.total.params
    if name == "activations":
        return results.total.activations
    return results.total.flops


def over_budget(results, limits: dict) -> str | None:
    """One line naming every budget exceeded, or None. ``limits``: {name: (text as the
    user wrote it, value)} for names of ``BUDGETS``."""
    over = []
    for name, (text, limit) in limits.items():
        value = actual(results, name)
        if value > limit:
            over.append(f"{name} {format_size(value)} ({value}) > {text} ({BUDGETS[name][0]})")
    return "over budget: " + "; ".join(over) if over else None
