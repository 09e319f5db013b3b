"""Ops on DTensors: counted as the ops each rank runs on its local shards.

An op on DTensors has global shapes; DTensor's dispatch (below the counter) turns it into
local ops on each rank's shards, with the collectives of any redistribution its sharding
strategy chooses. The counter runs such an op with itself active again, defers the
DTensor op when it comes back (``NotImplemented``: DTensor's dispatch takes it), and so
counts the local ops and collectives, not the global op. DTensor's sharding propagation
runs ops on fake tensors of the global shapes to learn the output's: those are not
counted (unless the local shards are fake themselves).
"""
from __future__ import annotations

import sys

from torch.utils._pytree import tree_flatten

#: what the counter's subclass check answers for an op it counts as usual
COUNT = object()


def dtensor_type():
    """DTensor's class, if the program has imported it (else there are no DTensors)."""
    return getattr(sys.modules.get("torch.distributed.tensor"), "DTensor", None)


def is_dtensor_op(types) -> bool:
    dtensor = dtensor_type()
    return dtensor is not None and any(issubclass(t, dtensor) for t in types)


def _fake_type():
    """FakeTensor's class, if imported (else there are no fake tensors)."""
    return getattr(sys.modules.get("torch._subclasses.fake_tensor"), "FakeTensor", None)


def is_fake(types) -> bool:
    fake = _fake_type()
    return fake is not None and any(issubclass(t, fake) for t in types)


def local_shards_fake(args, kwargs) -> bool:
    """Whether the DTensors among an op's arguments hold fake local shards."""
    dtensor, fake = dtensor_type(), _fake_type()
    return fake is not None and any(
        isinstance(a, dtensor) and isinstance(a._local_tensor, fake)
        for a in tree_flatten((args, kwargs))[0])
