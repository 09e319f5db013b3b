"""Module tracking: for the block, torch.nn.Module.__call__ is a ModuleCall that enters
and leaves modules (cheaper than global hooks). Nothing may show in the user's modules,
in the block or after it; copies, pickles, nested counters and replicating wrappers must
count and behave as without it."""
import copy
import inspect
import io
import pickle
import threading

import pytest
import torch
from torch.utils.flop_counter import FlopCounterMode as TorchCounter

from dispatchflops import FlopCounterMode
from dispatchflops import tracker
from dispatchflops.tracker import ModuleTracker

from test_mode import LINEAR, Block, Net


TORCH_CALL = torch.nn.Module._wrapped_call_impl
TORCH_CODE = TORCH_CALL.__code__


def clean():
    """No tracker follows modules, and Module.__call__ is torch's own again."""
    return (tracker._HOLDER == [()] and vars(torch.nn.Module)["__call__"] is TORCH_CALL
            and TORCH_CALL.__code__ is TORCH_CODE)


def snapshot(model):
    """What a user may save, copy or inspect of a model."""
    buf = io.BytesIO()
    torch.save(model, buf)
    return (pickle.dumps(model), buf.getvalue(),
            {n: dict(vars(m)) for n, m in model.named_modules()},
            {k: v.clone() for k, v in model.state_dict().items()},
            str(inspect.signature(model)), set(vars(copy.copy(model))),
            set(vars(copy.deepcopy(model))))


def same(a, b):
    return a[:3] == b[:3] and a[4:] == b[4:] and a[3].keys() == b[3].keys() and all(
        torch.equal(a[3][k], b[3][k]) for k in a[3])


def torch_flops(model, x):
    with TorchCounter(display=False) as fc:
        model(x)
    return fc.get_total_flops()


def test_nothing_in_the_users_modules():
    """Saved, copied or inspected in the block, a model is what it is outside it (a
    3-layer Sequential's pickle once grew from 2,436 to 2,563 bytes in the block)."""
    model = torch.nn.Sequential(torch.nn.Linear(8, 8), torch.nn.ReLU(), torch.nn.Linear(8, 2))
    outside = snapshot(model)
    with FlopCounterMode(model) as fc:
        assert TORCH_CALL.__code__ is not TORCH_CODE
        inside = snapshot(model)
        model(torch.randn(4, 8))
        after_a_call = snapshot(model)
    assert clean()
    assert same(inside, outside) and same(after_a_call, outside) and same(snapshot(model), outside)
    loaded = pickle.loads(inside[0])
    assert all(vars(m).keys() == vars(n).keys() for m, n in zip(loaded.modules(), model.modules()))
    assert fc.results.modules["0"].calls == 1 and fc.results.modules["2"].flops == 2 * 4 * 8 * 2


def test_nested_counters_on_one_model():
    model, x = Net(), torch.randn(4, 8)
    with FlopCounterMode(model) as outer:
        with FlopCounterMode(model) as inner:
            model(x)
        model(x)
    assert clean()
    assert inner.results.modules["a"].flops == 2 * LINEAR
    assert outer.results.modules["a"].flops == 4 * LINEAR
    assert inner.results.modules["a"].calls == 2 and outer.results.modules["a"].calls == 4


@pytest.mark.parametrize("order", ["lifo", "fifo"])
def test_trackers_on_one_model_leave_in_any_order(order):
    """(Counters nest like dispatch modes; their trackers need not.)"""
    model, x = Net(), torch.randn(4, 8)
    one, two = ModuleTracker(model), ModuleTracker(model.a)
    one.__enter__()
    two.__enter__()
    model(x)
    first, second = (two, one) if order == "lifo" else (one, two)
    first.__exit__(None, None, None)
    model(x)  # followed by the one still open
    second.__exit__(None, None, None)
    assert clean()
    assert one.calls["a.fc"] == (2 if order == "fifo" else 4) and two.calls["fc"] == (4 if order == "fifo" else 2)


def test_a_callable_already_in_the_instance_dict_keeps_running_and_comes_back():
    model, calls = Net(), []
    original = model.b.__dict__.setdefault(
        "_call_impl", lambda *a, **k: calls.append(1) or type(model.b)._call_impl(model.b, *a, **k))
    with FlopCounterMode(model) as fc:
        model(torch.randn(4, 8))
    assert calls == [1] and model.b.__dict__["_call_impl"] is original
    assert fc.results.modules["b"].flops == fc.results.modules["b.fc"].flops == LINEAR


def test_deepcopy_and_pickle_inside_the_block_behave_as_the_model():
    model, x = Net(), torch.randn(4, 8)
    with FlopCounterMode(model) as fc:
        twin = copy.deepcopy(model)
        buf = io.BytesIO()
        torch.save(model, buf)
        pickled = pickle.loads(pickle.dumps(model))
        # the copies' own parameters run, not the model's
        with torch.no_grad():
            for m in (twin, pickled):
                for p in m.parameters():
                    p.mul_(2)
        model(x)
    buf.seek(0)
    saved = torch.load(buf, weights_only=False)
    assert torch.equal(saved(x), model(x))
    assert not torch.equal(twin(x), model(x)) and torch.equal(twin(x), pickled(x))
    assert fc.results.modules[""].flops == 3 * LINEAR  # the copies' calls are not the model's
    for m in (twin, pickled, saved):
        with FlopCounterMode(m) as again:
            m(x)
        assert again.results.modules["a"].flops == 2 * LINEAR
        assert again.get_total_flops() == torch_flops(m, x)


def test_a_shallow_copy_made_in_the_block_runs_as_itself():
    """copy.copy (and DataParallel's replicas) copy the instance dict: the copy must run
    its own parameters, unfollowed, in the block and after it."""
    model, x = Net(), torch.randn(4, 8)
    with FlopCounterMode(model) as fc:
        twin = copy.copy(model.a)  # as DataParallel replicates: fresh _modules and _parameters
        twin._modules = {"fc": copy.copy(model.a.fc)}
        twin.fc._parameters = {"weight": torch.nn.Parameter(model.a.fc.weight.detach() * 2),
                               "bias": model.a.fc.bias}
        inside = twin(x)
        model(x)
    assert torch.equal(inside, twin(x)) and not torch.equal(twin(x), model.a(x))
    assert fc.results.modules["a"].calls == 2 and fc.results.modules["a.fc"].flops == 2 * LINEAR
    assert fc.get_total_flops() == 4 * LINEAR  # the copy's run counts in Global only


def test_data_parallel():
    model, x = torch.nn.DataParallel(Net()), torch.randn(4, 8)
    with FlopCounterMode(model) as fc:
        model(x)
    assert fc.results.modules["module.a"].flops == 2 * LINEAR
    assert fc.get_total_flops() == torch_flops(model, x)


def test_ops_in_a_modules_own_hooks_are_charged_to_it():
    """A module's forward pre- and post-hooks are part of calling it. (Torch's counter
    charges the post-hook's ops to the parent: its global post-hook runs before them.)"""
    model, x = Block(), torch.randn(4, 8)
    model.fc.register_forward_pre_hook(lambda m, args: (args[0] @ torch.eye(8),))
    model.fc.register_forward_hook(lambda m, args, out: out @ torch.eye(8))
    with FlopCounterMode(model) as fc:
        model(x)
    mm = 2 * 4 * 8 * 8
    assert fc.results.modules["fc"].flops == LINEAR + 2 * mm
    with TorchCounter(display=False) as theirs:
        model(x)
    torchs = theirs.get_flop_counts()
    assert sum(torchs["Block.fc"].values()) == LINEAR + mm
    assert theirs.get_total_flops() == fc.get_total_flops()


def test_a_module_added_during_the_block_is_not_followed():
    model = Block()
    with FlopCounterMode(model) as fc:
        model.extra = torch.nn.Linear(8, 8)
        model.extra(model(torch.randn(4, 8)))
    assert fc.results.modules[""].flops == LINEAR and fc.get_total_flops() == 2 * LINEAR


def test_a_shallow_copy_made_in_the_block_holds_nothing_after_it():
    import gc
    import weakref

    model, x = torch.nn.Sequential(torch.nn.Linear(8, 8), torch.nn.ReLU()), torch.randn(4, 8)
    with FlopCounterMode(model):
        twin = copy.copy(model)
        twin._modules = {k: copy.copy(m) for k, m in model._modules.items()}
    ref = weakref.ref(model)
    del model
    gc.collect()
    assert ref() is None  # the copy holds nothing of the original
    with FlopCounterMode(twin) as fc:  # counted later, the copy is followed as itself
        twin(x)
    assert fc.results.modules[""].calls == 1 and fc.get_total_flops() == LINEAR
    assert "Sequential" in fc.get_flop_counts()


def test_a_deep_copy_made_in_the_block_is_a_plain_copy():
    model, x = Net(), torch.randn(4, 8)
    with FlopCounterMode(model):
        twin = copy.deepcopy(model)
    twin(x)
    assert [vars(m).keys() for m in twin.modules()] == [vars(m).keys() for m in model.modules()]
    assert len(pickle.dumps(twin)) == len(pickle.dumps(model))
    replica = copy.copy(twin.a)  # as DataParallel replicates
    replica._modules = {"fc": copy.copy(twin.a.fc)}
    replica.fc._parameters = {"weight": torch.nn.Parameter(torch.zeros(8, 8)), "bias": None}
    assert torch.equal(replica(x), torch.zeros(4, 8))


def test_a_compiled_module_is_followed():
    model, x = Net(), torch.randn(4, 8)
    model.compile(backend="eager")
    with FlopCounterMode(model) as fc:
        model(x)
    assert fc.results.modules[""].calls == 1 and fc.results.modules["a"].flops == 2 * LINEAR
    assert fc.get_total_flops() == torch_flops(model, x)


def test_a_wrapper_put_over_module_call_in_the_block_keeps_running(monkeypatch):
    """Something that wraps Module.__call__ in the block (as torch.fx's tracer does) calls
    through to it, and can put back what it found."""
    model, x = Block(), torch.randn(4, 8)
    monkeypatch.setattr(torch.nn.Module, "__call__", TORCH_CALL)  # put back at the end
    calls = []
    with FlopCounterMode(model) as fc:
        inner = torch.nn.Module.__call__
        torch.nn.Module.__call__ = lambda self, *a, **k: calls.append(1) or inner(self, *a, **k)
        model(x)
        torch.nn.Module.__call__ = inner
    assert clean() and calls == [1, 1]
    assert fc.results.modules["fc"].calls == 1 and fc.results.modules["fc"].flops == LINEAR


def test_another_thread_calling_the_model_moves_nothing():
    """A second thread (an inference or data-loader thread) calls the same model while a
    counter runs: only the counting thread's modules and ops are followed."""
    entered, release = threading.Event(), threading.Event()

    class Gate(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.lin = torch.nn.Linear(4, 4)

        def forward(self, x):
            if threading.current_thread() is not threading.main_thread():
                entered.set()  # the other thread is inside '' and '0' now
                release.wait(10)
            return self.lin(x)

    model = torch.nn.Sequential(Gate(), torch.nn.Linear(4, 4))
    x = torch.randn(2, 4)
    with FlopCounterMode(model) as fc:
        other = threading.Thread(target=lambda: model(x))
        other.start()
        assert entered.wait(10)
        model(x)
        release.set()
        other.join(10)
    m = fc.results.modules
    linear = 2 * 2 * 4 * 4
    assert {p: m[p].flops for p in ("", "0", "1")} == {"": 2 * linear, "0": linear, "1": linear}
    assert {p: m[p].calls for p in ("", "0", "0.lin", "1")} == {"": 1, "0": 1, "0.lin": 1, "1": 1}


def test_the_hook_fallback_counts_as_the_module_call(monkeypatch):
    """On a torch whose module call a ModuleCall does not fit, trackers follow modules
    with global hooks; every result is the same."""
    import torchvision

    from dispatchflops.export import to_dict

    def count(model, shape):
        model.zero_grad(set_to_none=True)  # each run starts without gradients
        with FlopCounterMode(model) as fc:
            standing = TORCH_CALL.__code__ is not TORCH_CODE
            model(torch.randn(*shape, requires_grad=True)).sum().backward()
        return standing, to_dict(fc.results)

    models = [(torchvision.models.resnet18(), (1, 3, 64, 64)), (Net(), (4, 8))]
    fast = [count(m, x) for m, x in models]
    monkeypatch.setattr(tracker, "MODULE_CALL_FITS", False)
    slow = [count(m, x) for m, x in models]
    assert [s for s, _ in fast] == [True, True] and [s for s, _ in slow] == [False, False]
    assert [r for _, r in fast] == [r for _, r in slow]


def test_the_module_call_is_refused_where_torchs_is_not_the_one_it_stands_in_for(monkeypatch):
    assert tracker._module_call_fits()
    monkeypatch.setattr(torch.nn.Module, "__call__", lambda self, *a, **k: TORCH_CALL(self, *a, **k))
    assert not tracker._module_call_fits()
    monkeypatch.undo()
    monkeypatch.setattr(TORCH_CALL, "__code__", (lambda self, *a, **k: None).__code__)
    assert not tracker._module_call_fits()


def test_counters_in_two_threads_at_once():
    """Each thread counts its own model, entering and leaving its block while the other
    runs; afterwards Module.__call__ is torch's again."""
    models = [Net(), Net()]
    x = torch.randn(4, 8)
    start = threading.Barrier(2)
    counted = [None, None]

    def run(i):
        start.wait(10)
        for _ in range(3):
            with FlopCounterMode(models[i]) as fc:
                for _ in range(5):
                    models[i](x)
        counted[i] = fc.results

    threads = [threading.Thread(target=run, args=(i,)) for i in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert clean()
    for res in counted:
        assert res.modules["a"].calls == 10 and res.modules[""].calls == 5
        assert res.modules[""].flops == 5 * 3 * LINEAR
