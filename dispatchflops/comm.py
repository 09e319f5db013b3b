"""Communication: the collectives that reach dispatch, and the bytes each moves per rank.

Every c10d op (the process-group collectives behind DDP, FSDP2 and ``dist.*``) and every
functional collective (``_c10d_functional``: DTensor's redistributions, TP) is charged
like an op, to the module path and phase it ran in, under its collective's name. Its
bytes are those of the larger side of the collective on this rank: the tensors it reads
(its input) or the tensors it fills (its output): an all-gather's gathered output, a
reduce-scatter's full input, an all-reduce's or broadcast's tensor, what a send sends and
a recv receives. From shapes and dtypes, never data; asynchronous collectives are counted
when issued, never waited on.
"""
from __future__ import annotations

import torch
from torch.utils._pytree import tree_flatten

NAMESPACES = frozenset({"c10d", "_c10d_functional", "_c10d_functional_autograd"})

# op name (in its namespace) -> collective; names not here (wait_tensor, barrier, ...)
# move no data of their own
_COLLECTIVES = {
    "all_reduce": """allreduce_ allreduce_coalesced_ all_reduce all_reduce_ all_reduce_coalesced
        all_reduce_coalesced_""",
    "all_gather": """allgather_ _allgather_base_ allgather_coalesced_
        allgather_into_tensor_coalesced_ all_gather_into_tensor all_gather_into_tensor_out
        all_gather_into_tensor_coalesced""",
    "reduce_scatter": """reduce_scatter_ _reduce_scatter_base_ reduce_scatter_tensor_coalesced_
        reduce_scatter_tensor reduce_scatter_tensor_out reduce_scatter_tensor_coalesced""",
    "all_to_all": "alltoall_ alltoall_base_ all_to_all_single",
    "broadcast": "broadcast_ broadcast",
    "send": "send isend",
    "recv": "recv_ recv_any_source_ irecv",
    "p2p": "batch_p2p_ops",
    "reduce": "reduce_",
    "gather": "gather_ gather_into_tensor_",
    "scatter": "scatter_",
}
COLLECTIVE = {name: kind for kind, names in _COLLECTIVES.items() for name in names.split()}
# arguments a collective fills (the others it reads)
_OUTPUTS = frozenset({"output", "output_tensor", "output_tensors", "out"})


def collective(func) -> str | None:
    """The collective ``func`` (an OpOverload) is, "" for a communication op that moves
    nothing itself (wait_tensor, barrier), None for any other op."""
    if getattr(func, "namespace", None) not in NAMESPACES:
        return None
    return COLLECTIVE.get(func._overloadpacket.__name__, "")


def _nbytes(values) -> int:
    return sum(t.numel() * t.element_size() for t in tree_flatten(values)[0]
               if isinstance(t, torch.Tensor))


class Bytes:
    """The handler of a collective: (bytes moved on this rank, 0)."""

    def __init__(self, func):
        names = [a.name for a in func._schema.arguments]
        self._outputs = [i for i, n in enumerate(names) if n in _OUTPUTS]
        self._output_names = [names[i] for i in self._outputs]

    def __call__(self, args, kwargs, out):
        filled = [args[i] for i in self._outputs if i < len(args)]
        filled += [kwargs[n] for n in self._output_names if n in kwargs]
        read = [a for i, a in enumerate(args) if i not in self._outputs]
        read += [v for k, v in kwargs.items() if k not in self._output_names]
        written = _nbytes(filled) if filled else _nbytes(out)
        return max(_nbytes(read), written), 0
