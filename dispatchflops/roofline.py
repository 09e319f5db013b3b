"""A count on a device's roofline: each op's lower-bound time, max(FLOPs / the device's
peak for its dtype, bytes / its bandwidth), summed per module path and in total, with the
time of the ops that compute bounds and of those that memory bounds.

An op's FLOPs here are 2 per multiply-add whatever the convention counted (fvcore's
counts a multiply-add once: those ops are doubled); its bytes are what it read and wrote
(traffic.py). The bound is taken per op record (an op's calls under one module stack and
phase), so calls of one op that differ in shape within one module call share a bound.
"""
from __future__ import annotations

from dataclasses import dataclass

from .conventions import get_convention
from .devices import DeviceSpec
from .ops import counts_multiply_adds
from .results import PHASES, Results


class RooflineError(ValueError):
    """A roofline of a count without bytes; one line."""


@dataclass
class Bound:
    """What a module (or the total, or an op) costs on the roofline."""

    flops: int = 0  #: 2 per multiply-add
    bytes: int = 0
    seconds: float = 0.0  #: the lower bound: the sum of each op's max(compute, memory)
    compute_s: float = 0.0  #: of which in ops whose FLOPs bound them
    memory_s: float = 0.0  #: of which in ops whose bytes bound them

    @property
    def bound_by(self) -> str:
        """"compute" or "memory": where most of the bound time is ("" if none)."""
        if not self.seconds:
            return ""
        return "compute" if self.compute_s >= self.memory_s else "memory"

    @property
    def intensity(self) -> float | None:
        """FLOPs per byte (None when no bytes moved)."""
        return self.flops / self.bytes if self.bytes else None

    def __bool__(self) -> bool:
        """Whether any FLOPs or bytes are in it."""
        return bool(self.flops or self.bytes)

    def __add__(self, other: Bound) -> Bound:
        total = Bound()
        total.add(self)
        total.add(other)
        return total

    def add(self, other: Bound) -> None:
        self.flops += other.flops
        self.bytes += other.bytes
        self.seconds += other.seconds
        self.compute_s += other.compute_s
        self.memory_s += other.memory_s


@dataclass
class Roofline:
    """Bounds of one count on one device: per module path (inclusive), per op, in total."""

    device: DeviceSpec | None
    modules: dict
    ops: dict
    total: Bound


def roofline(results: Results, device: DeviceSpec | None, phases=PHASES) -> Roofline:
    """The bounds of ``results``' ops in ``phases`` on ``device`` (``DeviceError`` names a
    dtype with FLOPs that the device has no peak for); with no device, only their FLOPs
    (2 per multiply-add) and bytes."""
    if device is not None and not results.bytes_counted:
        raise RooflineError("a roofline needs the bytes each op moves: count with "
                            "FlopCounterMode(..., count_bytes=True) (the command line does)")
    macs = 2 // get_convention(results.convention).mac_flops
    modules = {p: Bound() for p in results.modules}
    by_op: dict = {}
    total = Bound()
    for rec in results.ops:
        if rec.phase not in phases:
            continue
        flops = (rec.flops or 0) * (macs if counts_multiply_adds(rec.op) else 1)
        if device is None:
            compute = memory = 0.0
        else:
            compute = flops / device.peak(rec.dtype) if flops else 0.0
            memory = rec.bytes / device.bandwidth
        one = Bound(flops, rec.bytes, max(compute, memory),
                    compute if compute >= memory and flops else 0.0,
                    memory if memory > compute or not flops else 0.0)
        for owner in [total, by_op.setdefault(rec.op, Bound())] + [
                modules.setdefault(p, Bound()) for p in dict.fromkeys(rec.stack)]:
            owner.add(one)
    return Roofline(device, modules, by_op, total)
