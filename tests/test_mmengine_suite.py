"""The cases of MMEngine's tests/test_analysis/test_jit_analysis.py (a fork of fvcore's
test_jit_model_analysis.py), with their expected numbers, against
dispatchflops.mmengine.FlopAnalyzer (cases on the tracer's warnings and on jit handles'
internals left out). The model's linear layers are the "linear" operator."""
from collections import Counter

import torch
import torch.nn as nn

from dispatchflops.mmengine import FlopAnalyzer


class NestedInner(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = nn.Conv1d(2, 2, kernel_size=1)
        self.fc = nn.Linear(10, 10)

    def forward(self, x):
        x = self.conv(x.reshape(-1, 2, 5))
        return 3 * self.fc(torch.flatten(x, 1)) + 1


class Nested(nn.Module):
    def __init__(self):
        super().__init__()
        self.submod = NestedInner()
        self.fc = nn.Linear(20, 10)
        self.conv = nn.Conv1d(4, 4, kernel_size=3, padding=1)

    def forward(self, x):
        x = self.fc(torch.flatten(self.conv(x), 1))
        return self.submod(x) ** 2


# fc_in * fc_out and spatial positions * kernel * c_in * c_out, as MMEngine's test works out
INNER = {"": Counter(conv=5 * 1 * 2 * 2, linear=10 * 10), "fc": Counter(linear=100),
         "conv": Counter(conv=20)}
NESTED = {"": Counter(conv=5 * 3 * 4 * 4 + 20, linear=20 * 10 + 100),
          "fc": Counter(linear=200), "conv": Counter(conv=240),
          "submod": INNER[""], "submod.fc": INNER["fc"], "submod.conv": INNER["conv"]}


def nested():
    return FlopAnalyzer(Nested(), (torch.randn(1, 4, 5),)).unsupported_ops_warnings(False)


def test_total_by_module_and_by_operator():
    analyzer = nested()
    for name, counts in NESTED.items():
        assert analyzer.total(name) == sum(counts.values())
        assert analyzer.by_operator(name) == counts
    assert analyzer.by_module() == {n: sum(c.values()) for n, c in NESTED.items()}
    assert analyzer.by_module_and_operator() == NESTED


class Unused(nn.Module):
    def __init__(self):
        super().__init__()
        self.fc1, self.fc2, self.unused = nn.Linear(10, 10), nn.Linear(10, 1), nn.Linear(20, 20)
        self.act = nn.ReLU()

    def forward(self, x):
        return self.fc2(self.act(self.fc1(x)))


def test_unused_module():
    analyzer = FlopAnalyzer(Unused(), (torch.randn(1, 10),))
    assert analyzer.total("unused") == 0 and analyzer.by_operator("unused") == Counter()
    assert analyzer.total("") == 100 + 10
    assert analyzer.uncalled_modules() == {"unused"}  # not act: ReLU has zero FLOPs but ran


class Repeated(nn.Module):
    def __init__(self):
        super().__init__()
        self.fc1, self.fc2 = nn.Linear(10, 10), nn.Linear(10, 10)

    def forward(self, x):
        for _ in range(3):
            x = self.fc1(x)
        for _ in range(2):
            x = self.fc2(x)
        return x


def test_repeated_module():
    analyzer = FlopAnalyzer(Repeated(), (torch.randn(1, 10),))
    assert (analyzer.total("fc1"), analyzer.total("fc2"), analyzer.total("")) == (300, 200, 500)
    assert analyzer.by_operator("fc1") == Counter(linear=300)
    assert analyzer.uncalled_modules() == set()


class NonForwardInner(nn.Module):
    def __init__(self):
        super().__init__()
        self.fc = nn.Linear(10, 1)

    def forward(self, x):
        return x

    def other_func(self, x):
        return self.fc(x)


class NonForward(nn.Module):
    def __init__(self):
        super().__init__()
        self.submod, self.fc = NonForwardInner(), nn.Linear(10, 10)

    def forward(self, x):
        return self.submod.other_func(self.fc(x))


def test_non_forward_call_in_both_modes():
    x = (torch.randn(1, 10),)
    caller = FlopAnalyzer(NonForward(), x).ancestor_mode("caller")
    assert (caller.total("submod"), caller.total("submod.fc"), caller.total("")) == (0, 10, 110)
    assert caller.uncalled_modules() == {"submod"}
    owner = FlopAnalyzer(NonForward(), x).ancestor_mode("owner")
    assert (owner.total("submod"), owner.total("submod.fc"), owner.total("")) == (10, 10, 110)
    assert owner.uncalled_modules() == set()


class SharedInner(nn.Module):
    def __init__(self, submod):
        super().__init__()
        self.submod = submod

    def forward(self, x):
        return self.submod(x)


class Shared(nn.Module):
    def __init__(self):
        super().__init__()
        inner = nn.Linear(10, 10)
        self.submod1, self.submod2 = SharedInner(inner), SharedInner(inner)
        multiname = nn.Linear(10, 1)
        self.multiname1, self.multiname2 = multiname, multiname

    def forward(self, x):
        x = self.submod1(x) + self.submod2(x)
        return self.multiname1(x) + self.multiname2(x)


def test_shared_module():
    analyzer = FlopAnalyzer(Shared(), (torch.randn(1, 10),)).unsupported_ops_warnings(False)
    analyzer.ancestor_mode("caller")
    assert analyzer.by_module() == {"": 2 * 10 + 2 * 100, "submod1": 100, "submod1.submod": 200,
                                    "submod2": 100, "multiname1": 20}
    assert analyzer.total("submod2.submod") == 200 and analyzer.total("multiname2") == 20
    assert analyzer.canonical_module_name("multiname2") == "multiname1"
    assert analyzer.canonical_module_name("submod2.submod") == "submod1.submod"
    assert analyzer.uncalled_modules() == set()


class Recursive(nn.Module):
    def __init__(self):
        super().__init__()
        self.fc = nn.Linear(10, 1)

    def forward(self, x, count=3):
        return self(x, count - 1) if count > 0 else self.fc(x)


def test_recursive_scope_counts_once_per_module():
    analyzer = FlopAnalyzer(Recursive(), (torch.randn(1, 10),))
    assert analyzer.total() == analyzer.total("fc") == 10
    assert analyzer.uncalled_modules() == set()


def test_data_parallel_root_scope():
    model = nn.DataParallel(nn.Linear(10, 10)).cpu()
    for mode in ("caller", "owner"):
        assert FlopAnalyzer(model, (torch.randn(10, 10),)).ancestor_mode(mode).total() == 1000


def test_changing_handles():
    analyzer = nested()
    assert analyzer.total("") == 560  # cached before the handles change
    analyzer.set_op_handle("aten::linear", lambda inputs, outputs: Counter(dummy_op=1000))
    dummy = {n: Counter({op: v for op, v in c.items() if op != "linear"})
             for n, c in NESTED.items()}
    for name, calls in (("", 2), ("fc", 1), ("submod", 1), ("submod.fc", 1)):
        dummy[name]["dummy_op"] = 1000 * calls
    assert analyzer.by_module_and_operator() == dummy
    analyzer.clear_op_handles()
    assert analyzer.by_module_and_operator() == {n: Counter() for n in NESTED}


def test_copy_with_a_new_model_and_inputs():
    analyzer = FlopAnalyzer(Repeated(), (torch.randn(1, 10),)).unsupported_ops_warnings(False)
    copied = analyzer.copy()
    assert copied.by_module_and_operator() == analyzer.by_module_and_operator()
    copied.unsupported_ops_warnings(True)
    assert analyzer._warn_unsupported is False  # the copy's settings are its own
    new = analyzer.copy(new_model=NonForward(), new_inputs=(torch.randn(5, 10),))
    assert new.total() == (100 + 10) * 5 and analyzer.total() == 500
