"""A job's counts: each rank's results, gathered to one rank after the counted block.

Under torch.distributed every rank counts what it runs itself: the ops on its local
shards and the bytes its collectives move. ``gather`` collects the ranks' results (one
``gather_object`` over the group, after the block: the counter never communicates inside
it) and gives, on the destination rank, the job: per module path the sum over ranks and
the largest and smallest rank (load imbalance; MoE expert imbalance shows there).
"""
from __future__ import annotations

from dataclasses import dataclass

from . import export
from .results import Results

#: what JobResults adds up, per module: name -> what it reads of a ModuleCost
STATISTICS = {"flops": lambda c: c.flops, "comm": lambda c: c.comm,
              "activations": lambda c: c.activations}


@dataclass
class JobResults:
    """Every rank's results (``ranks[r]`` is rank r's) and their sums per module."""

    ranks: list

    @property
    def world_size(self) -> int:
        return len(self.ranks)

    def _values(self, path: str, statistic: str) -> list:
        read = STATISTICS[statistic]
        return [read(r.total if path is None else r.modules[path]) for r in self.ranks]

    def sum(self, path: str | None = None, statistic: str = "flops") -> int:
        """The job's total of ``statistic`` for module ``path`` (None: everything counted)."""
        return sum(self._values(path, statistic))

    def max(self, path: str | None = None, statistic: str = "flops") -> int:
        return max(self._values(path, statistic))

    def min(self, path: str | None = None, statistic: str = "flops") -> int:
        return min(self._values(path, statistic))

    def rows(self, statistic: str = "flops") -> list:
        """(module path, sum, max, min, max / mean) per module of the model, in order."""
        out = []
        for path in self.ranks[0].modules:
            values = self._values(path, statistic)
            mean = sum(values) / len(values)
            out.append((path, sum(values), max(values), min(values),
                        max(values) / mean if mean else 1.0))
        return out


def gather(results: Results, group=None, dst: int = 0) -> JobResults | None:
    """The job's results on rank ``dst`` of ``group`` (None: the default group); None on
    the other ranks. Every rank of the group must call it, after its counted block, with
    results of the same model."""
    import torch.distributed as dist

    if not (dist.is_available() and dist.is_initialized()):
        raise RuntimeError("gather needs an initialized process group "
                           "(torch.distributed.init_process_group) on every rank")
    mine = export.to_dict(results)
    everyone = [None] * dist.get_world_size(group) if dist.get_rank(group) == dst else None
    dist.gather_object(mine, everyone, dst=dist.get_global_rank(group, dst) if group else dst,
                       group=group)
    if everyone is None:
        return None
    ranks = [export.from_dict(d) for d in everyone]
    paths = list(ranks[0].modules)
    for r, res in enumerate(ranks):
        if list(res.modules) != paths:
            raise ValueError(f"ranks counted different models: rank {r}'s modules are not "
                             f"rank {dst}'s")
    return JobResults(ranks)
