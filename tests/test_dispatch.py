"""The per-op path in C (csrc/dispatch.h) against the mode's Python path, which the rest
of the suite checked against outside oracles before the C path existed: the same
``Results``, bit for bit, and nothing left behind."""
import gc
import weakref

import pytest
import torch
import torch.distributed as dist
import torchvision
import transformers
from fvcore.nn import FlopCountAnalysis
from torch.testing._internal.distributed.fake_pg import FakeStore
from torch.utils.flop_counter import FlopCounterMode as TorchFlopCounterMode

from dispatchflops import FlopCounterMode, mode
from test_distributed import B, D, mlp, tp

pytestmark = pytest.mark.usefixtures("dispatch_paths")  # fc._mode_kind: the path taken


@pytest.fixture
def python_path(monkeypatch):
    """Counters built inside take the Python path (call it), else the C path (whatever
    DISPATCHFLOPS_DISPATCH says: the suite also runs with it set to "python")."""
    monkeypatch.setattr(mode, "C_DISPATCH", True)

    def force():
        monkeypatch.setattr(mode, "C_DISPATCH", False)
    return force


def test_this_torch_takes_the_c_path(python_path):
    assert mode.C_DISPATCH_FITS and mode._PLAIN_OP_CALL
    x = torch.randn(4, 4)
    with FlopCounterMode() as fc:
        bound = fc._mode.__dict__["__torch_dispatch__"]
        torch.mm(x, x)
    assert type(bound.__func__).__name__ == "Dispatch" and bound.__self__ is not None
    assert fc.get_total_flops() == 2 * 4 * 4 * 4


def both_paths(run, python_path, **counter_kwargs):
    """Results of ``run(counter)`` on the C path, then on the Python path."""
    got = []
    for force in (None, python_path):
        if force:
            force()
        fc = run(lambda model=None: FlopCounterMode(model, **counter_kwargs))
        assert isinstance(fc._mode_kind, str)
        got.append((fc._mode_kind, fc.results))
    (c_kind, c), (py_kind, py) = got
    assert (c_kind, py_kind) == ("c", "python")
    return c, py


@pytest.mark.parametrize("convention", ["pytorch", "fvcore"])
def test_resnet50_the_same_on_both_paths(python_path, convention):
    model = torchvision.models.resnet50().eval()
    x = torch.randn(1, 3, 224, 224)

    def run(counter):
        with torch.no_grad(), counter(model) as fc:
            model(x)
        return fc

    c, py = both_paths(run, python_path, convention=convention, count_bytes=True)
    assert c == py
    if convention == "pytorch":
        with torch.no_grad(), TorchFlopCounterMode(display=False) as theirs:
            model(x)
        assert c.total.flops == theirs.get_total_flops()
    else:
        theirs = FlopCountAnalysis(model, x).unsupported_ops_warnings(False)
        assert c.total.flops == theirs.total()


def test_gpt2_training_step_the_same_on_both_paths(python_path):
    cfg = transformers.GPT2Config(n_layer=2, n_embd=64, n_head=4, vocab_size=128, n_positions=32)
    model = transformers.GPT2LMHeadModel(cfg).train()
    ids = torch.randint(0, 128, (2, 16))

    def run(counter):
        model.zero_grad(set_to_none=True)
        with counter(model) as fc:
            model(ids, labels=ids).loss.backward()
        return fc

    c, py = both_paths(run, python_path, count_bytes=True)
    assert c == py
    assert c.total.backward_flops > c.total.forward_flops > 0


def test_tensor_parallel_step_the_same_on_both_paths(python_path):
    dist.init_process_group("fake", store=FakeStore(), rank=0, world_size=4)
    try:
        model = tp(mlp(), 4)
        x = torch.randn(B, D, requires_grad=True)

        def run(counter):
            model.zero_grad(set_to_none=True)
            x.grad = None
            with counter(model) as fc:
                model(x).sum().backward()
            return fc

        c, py = both_paths(run, python_path, count_bytes=True)
    finally:
        dist.destroy_process_group()
    assert c == py
    assert c.total.comm > 0


def test_a_failing_op_is_located_on_the_c_path(python_path):
    model = torch.nn.Sequential(torch.nn.Linear(4, 4), torch.nn.Linear(5, 4))
    with pytest.raises(RuntimeError, match="shapes cannot be multiplied") as raised:
        with FlopCounterMode(model) as fc:
            model(torch.randn(2, 4))
    assert fc._mode_kind == "c"
    assert fc.failure == ("1", "aten.addmm")
    assert raised.value.__traceback__ is not None


def test_nothing_is_left_behind(python_path):
    x = torch.randn(4, 4)
    gc.disable()  # freed by reference counting: no cycle is left to the collector
    try:
        with FlopCounterMode() as fc:
            torch.mm(x, x)
            held = weakref.ref(fc._mode)
        assert held() is None
    finally:
        gc.enable()
    assert fc._mode_kind == "c"


def test_an_op_handed_to_the_python_path_is_tagged_once(python_path):
    """A forward output waiting for its autograd node (a HOP's) waits one op less per op,
    whichever path the op takes: a tensor subclass's op goes to the Python path."""
    from torch.testing._internal.two_tensor import TwoTensor

    x = torch.randn(3)
    kinds, left = [], []
    for force in (None, python_path):
        if force:
            force()
        with FlopCounterMode() as fc:
            fc._pending.append((torch.randn(3), (), 10))
            torch.add(x, x)  # a plain op
            torch.neg(TwoTensor(x, x))  # the subclass's op (its local ops run outside the mode)
            left.append(fc._pending[0][2])
        kinds.append(fc._mode_kind)
    assert kinds == ["c", "python"] and left == [10 - 2, 10 - 2]


def test_user_formulas_and_custom_ops_the_same_on_both_paths(python_path):
    """A counter's own formula (a Python handler the C path calls) and a torch.library
    custom op (an OpOverload with a Python dispatcher: the C path calls the op itself)."""
    @torch.library.custom_op("dispatchflops_test::scale", mutates_args=())
    def scale(x: torch.Tensor, k: float) -> torch.Tensor:
        return x * k

    @scale.register_fake
    def _(x, k):
        return torch.empty_like(x)

    model = torch.nn.Sequential(torch.nn.Linear(8, 8), torch.nn.ReLU())
    formulas = {torch.ops.aten.relu: lambda x, out=None: x.numel() * 3,
                torch.ops.dispatchflops_test.scale: lambda x, k, out=None: x.numel()}

    def run(counter):
        model.zero_grad(set_to_none=True)  # each run assigns gradients, none accumulates
        with counter(model) as fc:
            out = model(torch.randn(4, 8))
            torch.ops.dispatchflops_test.scale(out.detach(), 2.0)
            out.sum().backward()
        return fc

    c, py = both_paths(run, python_path, formulas=formulas, count_bytes=True)
    assert c == py
    assert c.total.by_op["aten.relu"] == 4 * 8 * 3
    assert c.total.by_op["dispatchflops_test.scale"] == 4 * 8
