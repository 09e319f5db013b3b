"""FLOPs of the blocks a flex_attention BlockMask runs.

flex_attention (and its backward) is counted as dense attention over its query, key and
value, as torch's formula does. Its BlockMask tells which (query block, key block) tiles
run: a tile listed in the mask's partial or full blocks runs whole, masked or not; any
other is skipped. Each element of a tile that runs costs what an element of the dense
score matrix costs, so the tiles that run cost ``dense / (B*H*Sq*Sk)`` FLOPs per element
they cover (the last block of a row or column is cut at the sequence's end; a mask
broadcast over batch or heads counts for each).

The counter keeps each call's mask and adds the tiles up when the block ends: reading the
mask's indices is a device sync, so it is never done mid-run. Masks on the meta device or
fake give no figure.
"""
from __future__ import annotations

import math

import torch
from torch.utils._python_dispatch import _disable_current_modes

from .ops import FREE, UNSUPPORTED, op_name

# where each higher-order operator takes its BlockMask (as BlockMask.as_tuple())
_MASK_AT = {"flex_attention": 4, "flex_attention_backward": 9}


class BlockMasks:
    """The masks of one counter's flex_attention calls, and the FLOPs of their tiles."""

    def __init__(self):
        self._calls: list = []  # (op name, dense FLOPs, query shape, key shape, mask tuple)

    def recording(self, func, handler):
        """``handler``, also keeping the call's mask where ``func`` takes one."""
        at = _MASK_AT.get(func.name()) if isinstance(func, torch._ops.HigherOrderOperator) else None
        if at is None or handler in (FREE, UNSUPPORTED):
            return handler
        name = op_name(func)

        def record(args, kwargs, out):
            cost = handler(args, kwargs, out)
            self._calls.append((name, cost[0], args[0].shape, args[1].shape, args[at]))
            return cost

        return record

    def blocks_run(self) -> dict:
        """{op name: FLOPs of the tiles its masks ran}, for ops whose every mask could be
        read (a mask that fails to read, e.g. after a device error, gives no figure); then
        forgets the masks."""
        calls, self._calls = self._calls, []
        if not calls:
            return {}
        totals: dict = {}
        unreadable = set()
        covered: dict = {}  # a mask used by many calls (every layer) is read once
        with _disable_current_modes(), torch.no_grad():
            for name, dense, q_shape, k_shape, mask in calls:
                try:
                    run = _tiles_flops(dense, q_shape, k_shape, mask, covered)
                except Exception:
                    run = None
                if run is None:
                    unreadable.add(name)
                else:
                    totals[name] = totals.get(name, 0) + run
        return {name: flops for name, flops in totals.items() if name not in unreadable}


def _readable(t) -> bool:
    return (isinstance(t, torch.Tensor) and t.device.type != "meta"
            and not isinstance(t, torch._subclasses.FakeTensor))


def _tiles_flops(dense: int, q_shape, k_shape, mask, covered: dict) -> int | None:
    """FLOPs of the tiles ``mask`` (a BlockMask tuple) runs, for a call whose dense cost
    is ``dense``; None if the mask cannot be read. ``covered`` caches each mask's area."""
    try:
        kv_num, kv_idx, full_num, full_idx = mask[2:6]
        q_block, kv_block = int(mask[-3]), int(mask[-2])
    except (TypeError, ValueError, IndexError):
        return None
    if not (_readable(kv_num) and _readable(kv_idx)):
        return None
    q_len, kv_len = int(q_shape[-2]), int(k_shape[-2])
    batch_heads = math.prod(q_shape[:-2])
    elements = batch_heads * q_len * kv_len
    if elements == 0:
        return 0
    # the calls' masks are alive until now: their tensors' ids are unique
    key = (id(kv_num), id(kv_idx), id(full_num), id(full_idx), q_block, kv_block, q_len, kv_len)
    if key not in covered:
        area = 0
        for num, idx in ((kv_num, kv_idx), (full_num, full_idx)):
            if num is None:
                continue
            if not (_readable(num) and _readable(idx)):
                return None
            area += _covered(num, idx, q_len, kv_len, q_block, kv_block)
        covered[key] = area
    area = covered[key]
    mask_batch_heads = math.prod(kv_idx.shape[:-2])
    return dense // elements * area * batch_heads // mask_batch_heads


def _covered(num, idx, q_len, kv_len, q_block, kv_block) -> int:
    """Elements of the score matrix in the tiles of one kind (partial or full) that run,
    summed over the mask's batch and heads."""
    device = idx.device
    n_q, n_kv = idx.shape[-2], idx.shape[-1]
    starts = torch.arange(max(n_q, n_kv), device=device, dtype=torch.int64)
    rows = (q_len - starts[:n_q] * q_block).clamp(0, q_block)
    cols = (kv_len - starts[:n_kv] * kv_block).clamp(0, kv_block)
    listed = starts[:n_kv] < num.to(torch.int64).unsqueeze(-1)  # the first num entries
    per_row = (cols[idx.to(torch.int64).clamp(0, n_kv - 1)] * listed).sum(-1)
    return int((per_row * rows).sum())
