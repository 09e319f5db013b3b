"""For Hugging Face's ``Trainer``: ``FlopsCallback``, which logs a training step's exact
FLOPs, FLOP/s and MFU beside the loss, and ``exact_floating_point_ops``, which makes the
Trainer's ``total_flos`` exact (``pip install 'dispatchflops[hf]'``)."""
from __future__ import annotations

import copy

import torch
from torch._subclasses.fake_tensor import FakeTensorMode
from torch.utils._python_dispatch import _disable_current_modes
from transformers import TrainerCallback

from .meter import OpenStep, StepMeter, peak_of
from .mode import FlopCounterMode


class FlopsCallback(TrainerCallback):
    """Counts one training step in ``every`` (FLOPs, 2 per multiply-add, of this process:
    forward, backward and the optimizer's step), times the step after it, and adds
    ``flops_per_step``, then ``tflops_per_s`` and, with a peak, ``mfu`` to the next
    logs the Trainer writes: ``state.log_history``, its printed logs and the callbacks
    after this one (the ``report_to`` integrations come before the callbacks a Trainer
    is given: add this one first, ``trainer.callback_handler.callbacks.insert(0, cb)``,
    for them to see it). ``peak``: the
    device's peak TFLOP/s, or a name ``--device-spec`` knows ("h100-sxm") with ``dtype``.
    The other steps run untouched."""

    def __init__(self, model: torch.nn.Module, every: int = 100,
                 peak: float | str | None = None, dtype: str = "bfloat16"):
        self._meter = StepMeter(model, every=every, peak_tflops=peak_of(peak, dtype))
        self._open = OpenStep()
        self._pending: dict = {}

    def on_step_begin(self, args, state, control, **kwargs):
        self._open.start(self._meter.step())

    def on_step_end(self, args, state, control, **kwargs):
        step = self._open.end()
        if step is None:
            return
        self._pending.update(step.metrics())

    def on_log(self, args, state, control, logs=None, **kwargs):
        if logs is not None and "loss" in logs and self._pending:  # training logs only
            logs.update(self._pending)  # (what the callbacks after this one receive)
            if state.log_history:  # the record the Trainer just made of these logs
                state.log_history[-1].update(self._pending)
            self._pending = {}

    def on_train_begin(self, args, state, control, **kwargs):
        self._open.abandon()  # (a step a previous train() left open when it raised)

    def on_train_end(self, args, state, control, **kwargs):
        self._open.abandon()


def exact_floating_point_ops(model: torch.nn.Module):
    """A ``Trainer.floating_point_ops`` that counts: bound to a trainer
    (``trainer.floating_point_ops = exact_floating_point_ops(model)``), its ``total_flos``
    sums the exact FLOPs of each step's forward and backward (2 per multiply-add) instead
    of 6 x tokens x parameters. Each batch shape is counted once, on a copy of the model
    made of FakeTensors (no memory, no time on the device; transformers skips its checks
    of a mask's values for them, which the meta device would fail)."""
    fake = FakeTensorMode(allow_non_fake_inputs=True)
    dtype = torch.get_default_dtype()
    torch.set_default_dtype(next(model.parameters()).dtype)  # (FakeTensors keep their dtype)
    try:
        with fake:  # (its own config: building a model writes into it)
            twin = type(model)(copy.deepcopy(model.config))
    except Exception as e:
        raise TypeError(f"exact_floating_point_ops rebuilds the model from its config, "
                        f"which {type(model).__name__} cannot: {e}") from None
    finally:
        torch.set_default_dtype(dtype)
    counted: dict = {}

    def floating_point_ops(inputs: dict) -> int:
        key = (model.training, *((k, tuple(v.shape), v.dtype) if isinstance(v, torch.Tensor)
                                 else (k, repr(v)) for k, v in sorted(inputs.items())))
        if key not in counted:
            shaped = {k: fake.from_tensor(v) if isinstance(v, torch.Tensor) else v
                      for k, v in inputs.items()}
            # apart from any counter running (a counted step's): the twin is not the step
            with _disable_current_modes(), fake, FlopCounterMode(twin) as counter:
                out = twin.train(model.training)(**shaped)
                loss = out.get("loss") if isinstance(out, dict) else None
                if loss is None:
                    raise ValueError("exact_floating_point_ops counts forward and backward "
                                     "of the model's loss: its inputs need labels")
                loss.backward()
            counted[key] = counter.get_total_flops()
        return counted[key]

    return floating_point_ops
