"""The layouts shared with the C engine, by name: the slots of the counter's and the
tracker's state lists, the fields of the per-op records and the roles of an op's
arguments in its traffic plan. ``csrc/layouts.h`` defines
them once; ``_C.layouts`` gives their names in order."""
from __future__ import annotations

import enum
from collections import namedtuple

from . import _C


def _slots(name: str, layout: str) -> type[enum.IntEnum]:
    return enum.IntEnum(name, [(n.upper(), i) for i, n in enumerate(_C.layouts[layout])])


#: Slots of the counter's state list (what ``_C.charge`` works on).
CounterSlot = _slots("CounterSlot", "counter")
#: Slots of a module tracker's state list.
TrackerSlot = _slots("TrackerSlot", "tracker")
#: What was counted of one op under one (phase, module stack).
OpRecord = namedtuple("OpRecord", _C.layouts["op_record"])
#: The role of an argument in an op's traffic plan (csrc/traffic.h).
TrafficRole = _slots("TrafficRole", "traffic_role")
#: An op listed as not counted, with its calls.
UncountedRecord = namedtuple("UncountedRecord", _C.layouts["uncounted_record"])


_NAMES = {CounterSlot: _C.layouts["counter"], TrackerSlot: _C.layouts["tracker"]}


def state_list(slots: type[enum.IntEnum], **values) -> list:
    """A state list of ``slots``, each slot's value given by its lower-case name."""
    names = _NAMES[slots]
    if values.keys() != set(names):
        raise TypeError(f"state needs exactly {sorted(names)}, got {sorted(values)}")
    return [values[n] for n in names]
