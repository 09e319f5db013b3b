"""The counter never changes what a program computes: every op of PyTorch's OpInfo
database, on its float32 CPU samples, forward and backward where the op supports
autograd, gives bit for bit what it gives under an empty TorchDispatchMode, and raises
only where that run raises. The counter's two per-op paths (C, and the Python fallback)
count each sample the same, bytes included."""
import warnings

import pytest
import torch
from torch.testing._internal.common_methods_invocations import op_db
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils._pytree import tree_flatten, tree_map

from dispatchflops import FlopCounterMode, mode

# Ops whose output is uninitialised memory: only their shapes and dtypes can agree.
UNINITIALISED = {"empty", "empty_like", "empty_strided", "empty_permuted", "new_empty",
                 "new_empty_strided"}


class Empty(TorchDispatchMode):
    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        return func(*args, **(kwargs or {}))


def _fresh(x):
    if not isinstance(x, torch.Tensor):
        return x
    copy = x.detach().clone()
    return copy.requires_grad_() if x.requires_grad else copy


def _run(op, sample, mode, backward):
    """The op's outputs and the gradients of their sum, run in ``mode`` on a fresh copy
    of the sample (in-place ops change their inputs)."""
    inp, args, kwargs = tree_map(_fresh, (sample.input, sample.args, sample.kwargs))
    torch.manual_seed(0)
    with mode:
        outs = [o for o in tree_flatten(op(inp, *args, **kwargs))[0]
                if isinstance(o, torch.Tensor)]
        diff = [o for o in outs if o.requires_grad]
        leaves = [t for t in tree_flatten((inp, args, kwargs))[0]
                  if isinstance(t, torch.Tensor) and t.requires_grad]
        if backward and diff and leaves:
            grads = torch.autograd.grad(diff, leaves, [torch.ones_like(o) for o in diff],
                                        allow_unused=True)
            outs += [g for g in grads if g is not None]
    return outs


def _bytes(t: torch.Tensor) -> torch.Tensor:
    flat = t.detach().resolve_conj().resolve_neg().reshape(-1)
    dense = torch.empty(flat.numel(), dtype=flat.dtype)
    dense.copy_(flat)
    return dense.view(torch.uint8)


def _same_bits(a: torch.Tensor, b: torch.Tensor) -> bool:
    if a.layout != torch.strided or b.layout != torch.strided:
        return a.layout == b.layout and torch.equal(a.to_dense(), b.to_dense())
    return torch.equal(_bytes(a), _bytes(b))


def _float32_ops():
    return [pytest.param(op, id=f"{op.name}.{op.variant_test_name}".rstrip("."))
            for op in op_db if torch.float32 in op.supported_dtypes("cpu")]


def _counter(monkeypatch, c_path: bool) -> FlopCounterMode:
    """A counter (bytes counted) whose ops take the C path or the Python path."""
    monkeypatch.setattr(mode, "C_DISPATCH", c_path)
    return FlopCounterMode(count_bytes=True)


@pytest.mark.parametrize("op", _float32_ops())
def test_bitwise_as_without_counter(op, monkeypatch, dispatch_paths):
    backward = op.supports_autograd
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        samples = list(op.sample_inputs("cpu", torch.float32, requires_grad=backward))
        for sample in samples:
            try:
                want = _run(op, sample, Empty(), backward)
            except Exception as e:  # then the counter raises the same, on either path
                for c_path, kind in ((True, "c"), (False, "python")):
                    counter = _counter(monkeypatch, c_path)
                    with pytest.raises(type(e)):
                        _run(op, sample, counter, backward)
                    assert counter._mode_kind == kind
                continue
            on_c, on_python = _counter(monkeypatch, True), _counter(monkeypatch, False)
            got = _run(op, sample, on_c, backward)
            assert [(t.shape, t.dtype) for t in got] == [(t.shape, t.dtype) for t in want]
            if op.name not in UNINITIALISED:
                assert all(map(_same_bits, got, want)), sample
            _run(op, sample, on_python, backward)
            assert (on_c._mode_kind, on_python._mode_kind) == ("c", "python")
            assert on_c.results == on_python.results, sample
