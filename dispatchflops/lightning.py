"""For Lightning: ``measure_flops``, exact where Lightning's own counts with torch's counter,
and ``FlopsMonitor``, a callback that logs a training step's FLOPs, FLOP/s and MFU
(``pip install 'dispatchflops[lightning]'``)."""
from __future__ import annotations

from collections.abc import Callable

import torch
from lightning.pytorch.callbacks import Callback

from .meter import OpenStep, StepMeter, peak_of
from .mode import FlopCounterMode


def measure_flops(model: torch.nn.Module, forward_fn: Callable[[], torch.Tensor],
                  loss_fn: Callable[[torch.Tensor], torch.Tensor] | None = None) -> int:
    """``lightning.fabric.utilities.throughput.measure_flops``, counted by dispatchflops:
    the FLOPs (2 per multiply-add) of ``forward_fn()``, and with ``loss_fn`` of the backward
    of ``loss_fn(forward_fn())`` too; every op, attention on the CPU and the meta device
    included."""
    with FlopCounterMode(model) as counter:
        if loss_fn is None:
            forward_fn()
        else:
            loss_fn(forward_fn()).backward()
    return counter.get_total_flops()


class FlopsMonitor(Callback):
    """Counts one training step in ``every`` (FLOPs, 2 per multiply-add, of this rank: its
    shards under DDP, FSDP or tensor parallelism), times the step after it, and logs
    through the trainer's loggers ``flops_per_step`` (on the counted step), then
    ``tflops_per_s`` and, with a peak, ``mfu`` (on the timed one); under several ranks also
    ``job_flops_per_step`` (summed over ranks). ``peak``: the
    device's peak TFLOP/s, or a name ``--device-spec`` knows ("h100-sxm") with ``dtype``.
    A step is what runs from ``on_train_batch_start`` to ``on_train_batch_end``: forward,
    backward and the optimizer's step (so gradient accumulation, whose batches are not
    steps, is refused). The other steps run untouched."""

    def __init__(self, every: int = 100, peak: float | str | None = None,
                 dtype: str = "bfloat16"):
        self._meter = StepMeter(None, every=every, peak_tflops=peak_of(peak, dtype))
        self._open = OpenStep()

    def setup(self, trainer, pl_module, stage):
        if trainer.accumulate_grad_batches > 1:
            raise ValueError("FlopsMonitor measures optimizer steps: with "
                             "accumulate_grad_batches > 1 a batch is not one")
        self._meter.model = pl_module

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
        self._open.start(self._meter.step())

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
        step = self._open.end()
        if step is None:
            return
        logs = step.metrics()
        if trainer.world_size > 1 and step.counted:  # the job: every rank's FLOPs
            flops = torch.tensor(step.flops, dtype=torch.int64, device=pl_module.device)
            logs["job_flops_per_step"] = int(trainer.strategy.reduce(flops, reduce_op="sum"))
        if not logs:
            return
        # straight to the loggers, at the step Lightning logs this batch's metrics at
        # (self.log would repeat the last value on every later step)
        at = getattr(trainer.fit_loop.epoch_loop, "_batches_that_stepped", trainer.global_step)
        for logger in trainer.loggers:
            logger.log_metrics(logs, step=at)

    def on_exception(self, trainer, pl_module, exception):
        self._open.abandon()

    def on_train_end(self, trainer, pl_module):
        self._open.abandon()  # (a batch whose end was skipped: on_train_batch_start -> -1)
