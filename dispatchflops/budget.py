"""Cost budgets for CI: ``--max-flops 5G --max-params 30M --max-activations 20M
--max-memory 16GiB``."""
from __future__ import annotations

import math
import re

from .formatting import format_size, memory_size

#: 1000-based suffixes
SUFFIXES = {"": 1, "K": 10**3, "M": 10**6, "G": 10**9, "T": 10**12}
_NUMBER = r"\s*([0-9]*\.?[0-9]+(?:[eE][+-]?[0-9]+)?)\s*"
_AMOUNT = re.compile(_NUMBER + r"([kKmMgGtT]?)\s*")
_BYTES = re.compile(_NUMBER + r"(?:([kKmMgGtT])([iI]?))?B?\s*")

#: budget name -> (CLI flag, what it limits)
BUDGETS = {
    "flops": ("--max-flops", "FLOPs counted in the run (a whole training step with --train)"),
    "params": ("--max-params", "parameters of the model"),
    "activations": ("--max-activations", "activations counted in the run"),
    "memory": ("--max-memory", "bytes live at once, on the device with the highest peak "
                               "(implies --memory; 16GiB is 1024-based, 16G 1000-based)"),
}


class BudgetError(ValueError):
    """A budget that cannot be read; the message says why."""


def parse_amount(text: str, flag: str = "budget") -> float:
    """``5G``, ``30M``, ``1.5e9``, ``250k``, ``12`` -> a number (K/M/G/T are 1000-based)."""
    m = _AMOUNT.fullmatch(text)
    if m is None:
        raise BudgetError(f"bad {flag} {text!r}: expected a number with an optional "
                          "K, M, G or T suffix (1000-based), e.g. 5G, 30M, 1.5e9")
    return _finite(float(m.group(1)) * SUFFIXES[m.group(2).upper()], flag, text)


def parse_bytes(text: str, flag: str = "--max-memory") -> float:
    """``16GiB``, ``512MiB`` (1024-based), ``40G``, ``40GB`` (1000-based), ``1e9`` -> bytes."""
    m = _BYTES.fullmatch(text)
    if m is None:
        raise BudgetError(f"bad {flag} {text!r}: expected a size such as 16GiB, 512MiB "
                          "(1024-based), 40G or 40GB (1000-based)")
    number, suffix, binary = m.groups()
    scale = 1 if suffix is None else (
        1024 ** (" KMGT".index(suffix.upper())) if binary else SUFFIXES[suffix.upper()])
    return _finite(float(number) * scale, flag, text)


def _finite(value: float, flag: str, text: str) -> float:
    if not math.isfinite(value):
        raise BudgetError(f"bad {flag} {text!r}: not a finite number")
    return value


def parse(name: str, text: str) -> float:
    """A budget's limit as the user wrote it, read by its kind (a count or a size)."""
    flag = BUDGETS[name][0]
    return parse_bytes(text, flag) if name == "memory" else parse_amount(text, flag)


def actual(results, name: str) -> int:
    """What a budget limits, from a ``Results``."""
    if name == "memory":
        return results.memory.peak_bytes if results.memory is not None else 0
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
            shown = memory_size(value) if name == "memory" else format_size(value)
            over.append(f"{name} {shown} ({value}) > {text} ({BUDGETS[name][0]})")
    return "over budget: " + "; ".join(over) if over else None
