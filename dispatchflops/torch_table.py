"""Text views of a count: torch's flop-counter table."""
from __future__ import annotations

from tabulate import tabulate

_SUFFIXES = ["", "K", "M", "B", "T"]


def _suffix(number: int) -> str:
    return _SUFFIXES[max(0, min(len(_SUFFIXES) - 1, (len(str(number)) - 2) // 3))]


def _with_suffix(number: int, suffix: str) -> str:
    return f"{number / 1000 ** _SUFFIXES.index(suffix):.3f}{suffix}"


def _percent(num: int, denom: int) -> str:
    return f"{num / denom:.2%}" if denom else "0%"


def torch_table(counts: dict, depth: int) -> str:
    """The table of ``torch.utils.flop_counter.FlopCounterMode.get_table`` for ``counts``
    ({"Global" | module name: {op: flops}}): modules to ``depth``, their ops, % of total."""
    total = sum(counts.get("Global", {}).values())
    suffix = _suffix(total)
    rows: list = []
    subsumed = False

    def module_rows(name, indent):
        nonlocal subsumed
        ops = counts[name]
        flops = sum(ops.values())
        subsumed |= flops >= total
        pad = " " * indent
        out = [[pad + name, _with_suffix(flops, suffix), _percent(flops, total)]]
        out += [[pad + " - " + str(op), _with_suffix(v, suffix), _percent(v, total)]
                for op, v in ops.items()]
        return out

    for name in sorted(counts):
        if name == "Global" or name.count(".") + 1 > depth:
            continue
        rows += module_rows(name, name.count("."))
    if "Global" in counts and not subsumed:
        rows = module_rows("Global", 0) + [[" " + r[0]] + r[1:] for r in rows]
    if not rows:
        rows = [["Global", "0", "0%"]]
    return tabulate(rows, headers=["Module", "FLOP", "% Total"], colalign=("left", "right", "right"))
