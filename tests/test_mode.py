"""FlopCounterMode's API and attribution rules."""
import gc
import weakref

import pytest
import torch
from torch._subclasses.fake_tensor import FakeTensorMode
from torch.nn.modules import module as nn_module
from torch.utils._python_dispatch import _get_current_dispatch_mode_stack

import dispatchflops
from dispatchflops import FlopCounterMode

aten = torch.ops.aten


class Block(torch.nn.Module):
    def __init__(self, d=8):
        super().__init__()
        self.fc = torch.nn.Linear(d, d)

    def forward(self, x):
        return self.fc(x).relu()


class Net(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.a = Block()
        self.b = Block()
        self.shared = self.a  # registered twice: charged under its first name, "a"
        self.unused = torch.nn.Linear(8, 3)

    def forward(self, x):
        return self.b(self.shared(self.a(x)))


LINEAR = 2 * 4 * 8 * 8  # one Linear(8, 8) on (4, 8): 2 flops per multiply-add


def run(model, x, **kw):
    with FlopCounterMode(model, **kw) as fc:
        model(x)
    return fc


def test_containers_without_a_forward_are_never_uncalled():
    """An nn.ModuleList has no forward: fvcore and MMEngine do not call it uncalled."""
    class Layers(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.layers = torch.nn.ModuleList([torch.nn.Linear(2, 2), torch.nn.Linear(2, 2)])
            self.unused = torch.nn.Linear(2, 2)

        def forward(self, x):
            return self.layers[0](x)

    fc = run(Layers(), torch.randn(1, 2))
    assert fc.results.uncalled == ["layers.1", "unused"]


def test_paths_inclusive_reused_and_shared():
    model = Net()
    fc = run(model, torch.randn(4, 8))
    m = fc.results.modules
    assert m[""].flops == 3 * LINEAR
    assert m["a"].flops == 2 * LINEAR and m["a"].calls == 2  # called twice, counts twice
    assert m["a.fc"].flops == 2 * LINEAR
    assert m["b"].flops == LINEAR
    assert "shared" not in m  # second name of a shared module
    assert m["unused"].calls == 0 and m["unused"].params == 8 * 3 + 3
    assert fc.results.uncalled == ["unused"]
    assert m[""].params == 2 * (8 * 8 + 8) + 27
    assert m["a.fc"].by_op == {"aten.addmm": 2 * LINEAR}
    assert m["a.fc"].activations == 2 * 4 * 8
    assert fc.get_total_flops() == 3 * LINEAR


def test_torch_style_names_without_model():
    model = Net()
    with FlopCounterMode() as fc:
        model(torch.randn(4, 8))
    counts = fc.get_flop_counts()
    assert counts["Global"] == {aten.addmm: 3 * LINEAR}
    assert counts["Net"] == {aten.addmm: 3 * LINEAR}
    assert counts["Net.a.fc"] == {aten.addmm: 2 * LINEAR}
    assert counts["Net.b"] == {aten.addmm: LINEAR}


def test_ops_outside_modules_count_in_global_only():
    model = Block()
    with FlopCounterMode(model) as fc:
        y = model(torch.randn(4, 8))
        torch.mm(y, y.t())
    assert fc.get_total_flops() == LINEAR + 2 * 4 * 8 * 4
    assert fc.results.modules[""].flops == LINEAR


def test_table_equals_torchs():
    from torch.utils.flop_counter import FlopCounterMode as TorchCounter

    model = torch.nn.Sequential(Block(), torch.nn.Sequential(Block(), Block()))
    x = torch.randn(4, 8, requires_grad=True)
    with TorchCounter(display=False) as theirs:
        model(x).sum().backward()
    with FlopCounterMode(model) as ours:
        model(x).sum().backward()
    for depth in (1, 2, 3):
        assert ours.get_table(depth) == theirs.get_table(depth)


def test_reused_module_backward_charged_every_call_unlike_torch():
    """Net.a runs twice: torch's counter charges its backward once to Net.a (yet twice to
    Net.a.fc); we charge both calls' backward (2 mm per Linear call) to both."""
    from torch.utils.flop_counter import FlopCounterMode as TorchCounter

    model = Net()
    x = torch.randn(4, 8, requires_grad=True)
    with TorchCounter(display=False) as theirs:
        model(x).sum().backward()
    with FlopCounterMode(model) as ours:
        model(x).sum().backward()
    mine, torchs = ours.get_flop_counts(), theirs.get_flop_counts()
    assert mine["Net.a"][aten.mm] == mine["Net.a.fc"][aten.mm] == 2 * 2 * LINEAR
    assert torchs["Net.a"][aten.mm] == 2 * LINEAR and torchs["Net.a.fc"][aten.mm] == 4 * LINEAR
    assert mine["Global"] == torchs["Global"]


def _assert_clean(fc, model=None):
    assert not _get_current_dispatch_mode_stack()
    assert not nn_module._global_forward_pre_hooks and not nn_module._global_forward_hooks
    assert dispatchflops.tracker._HOLDER == [()]
    assert dispatchflops.tracker._TORCH_CALL.__code__ is dispatchflops.tracker._TORCH_CODE


def test_exception_leaves_nothing_behind():
    model = Net()
    with pytest.raises(RuntimeError, match="boom"):
        with FlopCounterMode(model) as fc:
            model(torch.randn(4, 8))
            raise RuntimeError("boom")
    _assert_clean(fc, model)
    assert fc.get_total_flops() == 3 * LINEAR  # what ran before the error is reported


def test_exception_inside_forward_leaves_nothing_behind():
    model = Net()
    with pytest.raises(RuntimeError):
        with FlopCounterMode(model) as fc:
            model(torch.randn(4, 7))  # bad shape
    _assert_clean(fc, model)


def test_no_reference_to_tensors_or_modules_after_exit():
    model = Net()
    x = torch.randn(4, 8, requires_grad=True)
    with FlopCounterMode(model) as fc:
        y = model(x)
        y.sum().backward()
    refs = [weakref.ref(t) for t in (x, y)] + [weakref.ref(model)]
    del x, y, model
    gc.collect()
    assert all(r() is None for r in refs)
    assert fc.results.modules[""].flops > 0


def test_register_flop_formula_custom_and_override():
    @dispatchflops.register_flop_formula(aten.add)
    def add_flops(a, b, *args, out=None, **kwargs):
        return out.numel()

    try:
        with FlopCounterMode() as fc:
            torch.randn(3, 4) + torch.randn(3, 4)
        assert fc.get_total_flops() == 12
    finally:
        dispatchflops.unregister_flop_formula(aten.add)

    @dispatchflops.register_flop_formula(aten.mm)
    def mm_flops(a, b, *, out=None):
        return 1

    try:
        with FlopCounterMode() as fc:
            torch.mm(torch.randn(3, 4), torch.randn(4, 5))
        assert fc.get_total_flops() == 1
    finally:
        dispatchflops.unregister_flop_formula(aten.mm)
    with FlopCounterMode() as fc:  # the built-in formula is back
        torch.mm(torch.randn(3, 4), torch.randn(4, 5))
    assert fc.get_total_flops() == 2 * 3 * 4 * 5


def test_formulas_per_counter_come_first_and_stay_with_their_counter():
    a, b = torch.randn(3, 4), torch.randn(4, 5)
    per_element = lambda *args, out=None, **kwargs: (out.numel(), 7)  # noqa: E731
    with FlopCounterMode(formulas={aten.mm: per_element, aten.add.Tensor: per_element}) as fc:
        torch.mm(a, b) + torch.mm(a, b)
    assert fc.get_flop_counts()["Global"] == {aten.mm: 2 * 15, aten.add: 15}
    assert fc.results.total.activations == 3 * 7
    with FlopCounterMode() as plain:  # another counter keeps the built-in formulas
        torch.mm(a, b) + torch.mm(a, b)
    assert plain.get_flop_counts()["Global"] == {aten.mm: 2 * 2 * 3 * 4 * 5}

    dispatchflops.register_flop_formula(aten.mm)(lambda *args, out=None: 1)
    try:
        with FlopCounterMode(formulas={aten.mm: per_element}) as fc:
            torch.mm(a, b)
        assert fc.get_total_flops() == 15  # the counter's own formula wins
    finally:
        dispatchflops.unregister_flop_formula(aten.mm)


def test_one_formula_registered_for_several_ops_with_activations():
    @dispatchflops.register_flop_formula(aten.add, [aten.mul, aten.sub])
    def elementwise(*args, out=None, **kwargs):
        return out.numel(), out.numel()

    x = torch.randn(2, 3)
    try:
        with FlopCounterMode() as fc:
            (x + x) * x - x
        assert fc.get_flop_counts()["Global"] == {aten.add: 6, aten.mul: 6, aten.sub: 6}
        assert fc.results.total.activations == 18
    finally:
        dispatchflops.unregister_flop_formula(aten.add, [aten.mul, aten.sub])
    with FlopCounterMode() as fc:
        (x + x) * x - x
    assert fc.get_total_flops() == 0
    assert fc.results.unsupported == {"aten.add": 1, "aten.mul": 1, "aten.sub": 1}


def test_custom_op_formula():
    @torch.library.custom_op("dispatchflops_test::scale", mutates_args=())
    def scale(x: torch.Tensor) -> torch.Tensor:
        return x * 2

    @scale.register_fake
    def _(x):
        return torch.empty_like(x)

    op = torch.ops.dispatchflops_test.scale
    dispatchflops.register_flop_formula(op)(lambda x, out=None: x.numel())
    try:
        with FlopCounterMode() as fc:
            op(torch.randn(5, 6))
        assert fc.get_flop_counts()["Global"] == {op: 30}
    finally:
        dispatchflops.unregister_flop_formula(op)


def test_unsupported_ops_listed_free_ops_not():
    with FlopCounterMode() as fc:
        x = torch.randn(4, 4)
        x.view(16).clone().relu().sum()
    assert fc.results.unsupported == {"aten.relu": 1, "aten.sum": 1}


@pytest.mark.parametrize("convention", ["pytorch", "fvcore"])
def test_meta_and_fake_tensors_count_exactly_as_cpu(convention):
    import torchvision

    model = torchvision.models.resnet18().eval()
    with torch.no_grad():
        cpu = run(model, torch.randn(1, 3, 64, 64), convention=convention)
        meta_model = torchvision.models.resnet18().to("meta").eval()
        meta = run(meta_model, torch.empty(1, 3, 64, 64, device="meta"), convention=convention)
        with FakeTensorMode():
            fake_model = torchvision.models.resnet18().eval()
            fake = run(fake_model, torch.empty(1, 3, 64, 64), convention=convention)
    assert cpu.get_flop_counts() == meta.get_flop_counts() == fake.get_flop_counts()
    assert cpu.results.modules[""].activations == meta.results.modules[""].activations
    assert cpu.results.modules[""].activations == fake.results.modules[""].activations


def test_bad_arguments():
    with pytest.raises(ValueError, match="convention"):
        FlopCounterMode(convention="nope")
    with pytest.raises(TypeError, match="nn.Module"):
        FlopCounterMode("resnet50")
    fc = FlopCounterMode()
    with pytest.raises(RuntimeError, match="nothing counted yet"):
        fc.get_total_flops()


def test_display_prints_table(capsys):
    with FlopCounterMode(display=True):
        torch.mm(torch.randn(4, 5), torch.randn(5, 6))
    assert "aten.mm" in capsys.readouterr().out


def test_a_failing_user_formula_names_the_op():
    @dispatchflops.register_flop_formula(aten.mm)
    def broken(a, b, *, out=None):
        raise KeyError("oops")

    try:
        with pytest.raises(dispatchflops.ops.FormulaError, match="registered for aten.mm raised KeyError"):
            with FlopCounterMode():
                torch.mm(torch.randn(2, 2), torch.randn(2, 2))
        _assert_clean(None)
    finally:
        dispatchflops.unregister_flop_formula(aten.mm)


def test_shapes_a_formula_refuses_are_listed_not_counted():
    saved = dict(dispatchflops.ops._MAC_OPS)
    dispatchflops.ops._MAC_OPS[aten.mm] = ("bmm", "self", "mat2")  # refuses rank-2 inputs
    dispatchflops.ops._resolved.clear()
    try:
        with FlopCounterMode() as fc:
            torch.mm(torch.randn(2, 2), torch.randn(2, 2))
        assert fc.get_total_flops() == 0 and fc.results.unsupported == {"aten.mm": 1}
    finally:
        dispatchflops.ops._MAC_OPS.clear()
        dispatchflops.ops._MAC_OPS.update(saved)
        dispatchflops.ops._resolved.clear()


def test_counted_op_returning_none_leaves_nothing_behind():
    @torch.library.custom_op("dispatchflops_test::fill_twos", mutates_args=("x",))
    def fill_twos(x: torch.Tensor) -> None:
        x.fill_(2)

    op = torch.ops.dispatchflops_test.fill_twos
    dispatchflops.register_flop_formula(op)(lambda x, out=None: x.numel())
    try:
        fc = FlopCounterMode()
        with fc:
            y = torch.randn(3, 3, requires_grad=True) * 1
            with torch.no_grad():
                op(torch.empty(3, 3))
            op(torch.empty(2, 2))  # the last op of the block, under grad mode
        _assert_clean(fc)
        assert fc.get_total_flops() == 9 + 4
        with fc:  # the counter can be used again
            y + 1
    finally:
        dispatchflops.unregister_flop_formula(op)


def test_failure_names_the_op_that_raised_not_an_earlier_caught_one():
    class Probe(torch.nn.Module):
        def forward(self, x):
            try:
                torch.mm(x, torch.randn(7, 7))  # fails, and the model catches it
            except RuntimeError:
                pass
            raise ValueError("later")

    model = torch.nn.Sequential(Probe())
    fc = FlopCounterMode(model)
    with pytest.raises(ValueError):
        with fc:
            model(torch.randn(2, 3))
    assert fc.failure == ("0", None)


def test_user_formula_on_an_out_overload():
    @dispatchflops.register_flop_formula(aten.mm)
    def mm_flops(a, b, *, out=None):
        return out.numel()

    try:
        with FlopCounterMode() as fc:
            torch.mm(torch.randn(2, 3), torch.randn(3, 4), out=torch.empty(2, 4))
        assert fc.get_total_flops() == 8
    finally:
        dispatchflops.unregister_flop_formula(aten.mm)


@pytest.mark.parametrize("name", ["resnet18", "mobilenet_v3_small", "swin_t", "inception_v3"])
def test_module_walk_matches_named_modules_and_parameters(name):
    import torchvision

    from dispatchflops.tracker import ModuleTracker

    with torch.device("meta"):
        model = torchvision.models.get_model(name)
    model.extra = model.get_submodule(next(n for n, _ in model.named_children()))  # shared
    tracker = ModuleTracker(model)
    assert list(tracker.paths.values()) == [n for n, _ in model.named_modules()]
    owners = {id(m): n for n, m in model.named_modules()}
    expected = {}
    for pname, p in model.named_parameters():
        module_path = pname.rpartition(".")[0]
        assert module_path in owners.values()
        expected[module_path] = expected.get(module_path, 0) + p.numel()
    assert tracker.param_numels == expected
    assert tracker.containers == {n for n, m in model.named_modules()
                                  if type(m).forward is torch.nn.Module.forward}
