"""How numbers read in reports: MMEngine's sizes, shares and signed differences. Imports
nothing from the package."""
from __future__ import annotations

_UNITS = ((1e14, 1e15, "P"), (1e11, 1e12, "T"), (1e8, 1e9, "G"), (1e5, 1e6, "M"), (1e2, 1e3, "K"))


def format_size(x: int, sig_figs: int = 3, hide_zero: bool = False) -> str:
    """MMEngine's number format: a K/M/G/T/P suffix from just above 100, 1e5, 1e8, 1e11
    and 1e14 on, ``sig_figs`` decimals with trailing zeros (and a bare point) dropped;
    100 and below as the plain integer. ``hide_zero`` writes 0 as an empty string."""
    if hide_zero and x == 0:
        return ""
    for above, scale, suffix in _UNITS:
        if abs(x) > above:
            digits = f"{x / scale:.{sig_figs}f}"
            return digits.rstrip("0").rstrip(".") + suffix
    return str(x)


def percent(fraction: float) -> str:
    """A share as a percentage with one decimal ("<0.1%" for a small nonzero one)."""
    if fraction and abs(fraction) < 0.0005:
        return "<0.1%"
    return f"{fraction * 100:.1f}%"


def signed(x: int) -> str:
    """A difference in ``format_size``, with its sign ("+" for a positive one)."""
    return ("+" if x > 0 else "") + format_size(x)


def short_size(x: int) -> str:
    """fvcore's and MMEngine's parameter-table format: one decimal, K/M/G from just above
    100, 1e5 and 1e8 on."""
    for above, scale, suffix in ((1e8, 1e9, "G"), (1e5, 1e6, "M"), (1e2, 1e3, "K")):
        if x > above:
            return f"{x / scale:.1f}{suffix}"
    return str(x)


def memory_size(x: int) -> str:
    """Bytes in binary units, three significant digits: "512 B", "1.5 KiB", "44.6 MiB"."""
    for scale, unit in ((2**40, "TiB"), (2**30, "GiB"), (2**20, "MiB"), (2**10, "KiB")):
        if abs(x) >= scale:
            return f"{x / scale:.3g} {unit}"
    return f"{x} B"


def seconds(x: float | None) -> str:
    """A duration with a unit (ns, us, ms, s), three significant digits; "-" for None."""
    if x is None:
        return "-"
    for scale, unit in ((1, "s"), (1e-3, "ms"), (1e-6, "us")):
        if abs(x) >= scale:
            return f"{x / scale:.3g} {unit}"
    return f"{x * 1e9:.3g} ns"


def ratio(x: float | None) -> str:
    """A FLOPs-per-byte or similar ratio, one decimal ("-" for None)."""
    return "-" if x is None else f"{x:.1f}"


def rate(x: float | None) -> str:
    """FLOP/s in ``format_size`` ("-" for None)."""
    return "-" if x is None else format_size(x)
