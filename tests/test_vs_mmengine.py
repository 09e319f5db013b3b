"""dispatchflops' MMEngine views against MMEngine itself, character for character.

Each torchvision model is built, counted by MMEngine and counted by dispatchflops once
(module-scoped fixtures); every test of that model reads the same numbers.
"""
from __future__ import annotations

import contextlib
import difflib
import io

import pytest
import torch
from torch import nn

torchvision = pytest.importorskip("torchvision")
pytest.importorskip("mmengine")
from hypothesis import given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402
from mmengine.analysis import ActivationAnalyzer, FlopAnalyzer  # noqa: E402
from mmengine.analysis import get_model_complexity_info as mm_info  # noqa: E402
from mmengine.analysis.print_helper import _format_size as mm_format_size  # noqa: E402
from mmengine.analysis.print_helper import complexity_stats_table  # noqa: E402

from dispatchflops import FlopCounterMode  # noqa: E402
from dispatchflops import mmengine as dm  # noqa: E402
from dispatchflops import get_model_complexity_info as df_info  # noqa: E402
from dispatchflops.formatting import format_size  # noqa: E402
from dispatchflops.table import mmengine_arch, mmengine_table  # noqa: E402

MODELS = ["resnet50", "mobilenet_v3_large", "densenet121", "convnext_tiny",
          "efficientnet_b0", "regnet_y_400mf"]
SHAPE = (3, 224, 224)


@contextlib.contextmanager
def plain_console(columns: int = 80):
    """What MMEngine's rich console sees when it does not print to a terminal, at a fixed
    width: no colour codes, ``columns`` wide. Our tables read the same environment."""
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("COLUMNS", str(columns))
        for var in ("FORCE_COLOR", "TTY_COMPATIBLE", "TTY_INTERACTIVE", "JUPYTER_COLUMNS"):
            mp.delenv(var, raising=False)
        with contextlib.redirect_stdout(io.StringIO()):
            yield


def _diff(expected: str, got: str) -> str:
    return "".join(difflib.unified_diff(expected.splitlines(True), got.splitlines(True),
                                        "mmengine", "dispatchflops", n=1))


@pytest.fixture(scope="module", params=MODELS)
def case(request):
    torch.manual_seed(0)
    model = getattr(torchvision.models, request.param)(weights=None).eval()
    with plain_console():
        ref = mm_info(model, input_shape=SHAPE)
        ours = df_info(model, input_shape=SHAPE)
        with torch.no_grad(), FlopCounterMode(model, convention="fvcore") as fc:
            model(torch.randn(1, *SHAPE))
        results = fc.results
        table = mmengine_table(model, results)
    return request.param, model, ref, ours, results, table


# --------------------------------------------------------------------------- per model
def test_totals_exact(case):
    _, _, ref, _, results, _ = case
    assert results.total.flops == ref["flops"]
    assert results.total.activations == ref["activations"]
    assert results.modules[""].params == ref["params"]


def test_table_matches(case):
    _, _, ref, _, _, table = case
    assert table == ref["out_table"], _diff(ref["out_table"], table)


def test_get_model_complexity_info_matches(case):
    _, _, ref, ours, _, _ = case
    assert list(ours) == list(ref)
    for key in ref:
        if isinstance(ref[key], str) and "\n" in ref[key]:
            assert ours[key] == ref[key], _diff(ref[key], ours[key])
        else:
            assert ours[key] == ref[key], key
            assert type(ours[key]) is type(ref[key]), key


def test_arch_from_results(case):
    """From a counter's results alone, without the analyzers' watch for ops, a module
    whose forward ran but did nothing counts as called: only the lines of such modules
    (StochasticDepth in eval) may differ."""
    name, model, ref, _, results, _ = case
    arch = mmengine_arch(model, results)
    if name not in ("convnext_tiny", "efficientnet_b0"):
        assert arch == ref["out_arch"], _diff(ref["out_arch"], arch)
        return
    def normal(text):
        return [line.replace("StochasticDepth(#params: 0, #flops: N/A, #acts: N/A)",
                             "StochasticDepth()")
                for line in text.split("\n") if not line.startswith("N/A indicates")]

    assert arch != ref["out_arch"]
    assert normal(arch) == normal(ref["out_arch"])


# --------------------------------------------------------------------------- layout
@pytest.fixture(scope="module")
def mobilenet():
    torch.manual_seed(0)
    model = torchvision.models.mobilenet_v3_large(weights=None).eval()
    x = torch.randn(1, *SHAPE)
    flops, acts = FlopAnalyzer(model, (x,)), ActivationAnalyzer(model, (x,))
    for a in (flops, acts):
        a.unsupported_ops_warnings(False).uncalled_modules_warnings(False)
    with torch.no_grad(), FlopCounterMode(model, convention="fvcore") as fc:
        model(x)
    return model, flops, acts, fc.results


@pytest.mark.parametrize("columns,depth", [(30, 3), (47, 3), (60, 1), (71, 5), (120, 3),
                                           (200, 6)])
def test_table_width_and_depth(mobilenet, columns, depth):
    """Narrow consoles make rich shrink columns, wrap cells and cut words with "…"."""
    model, flops, acts, results = mobilenet
    with plain_console(columns):
        want = complexity_stats_table(flops, max_depth=depth, activations=acts)
        got = mmengine_table(model, results, max_depth=depth)
    assert got == "\n" + want, _diff(want, got[1:])
    assert mmengine_table(model, results, max_depth=depth, width=columns) == got


# --------------------------------------------------------------------------- rules
class Tiny(nn.Module):
    """A module list (never called, charged by ownership), a module never called (blank
    FLOPs), a no-op module (N/A in the arch), a module run but counted 0 ("0"), a chain of
    single children (one row), a parameter of the model itself, a module used twice."""

    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(3, 8, 3)
        self.bn = nn.BatchNorm2d(8)
        self.blocks = nn.ModuleList([nn.Sequential(nn.Conv2d(8, 8, 1), nn.ReLU()) for _ in range(2)])
        self.unused = nn.Linear(4, 4)
        self.skip = nn.Identity()
        self.drop = nn.Dropout(0.1)
        self.head = nn.Sequential(nn.Sequential(nn.Linear(8, 10)))
        self.scale = nn.Parameter(torch.ones(1))
        self.emb = nn.Embedding(10, 8)
        self.again = self.blocks[0]

    def forward(self, x, idx):
        x = self.bn(self.conv(x))
        for block in self.blocks:
            x = block(x)
        x = self.drop(self.skip(self.again(x)))
        return self.head(x.mean((2, 3)) * self.scale + self.emb(idx).sum(1))


class TwoInputs(nn.Module):
    def __init__(self):
        super().__init__()
        self.a = nn.Linear(6, 4)
        self.b = nn.Conv2d(2, 4, 3)

    def forward(self, x, y):
        return self.a(x).sum() + self.b(y).sum()


def _both(model, **kwargs):
    torch.manual_seed(0)
    with plain_console():
        return mm_info(model, **kwargs), df_info(model, **kwargs)


@pytest.mark.parametrize("kwargs", [
    dict(inputs=(torch.randn(1, 3, 12, 12), torch.tensor([[1, 2]]))),
    dict(inputs=(torch.randn(1, 3, 12, 12), torch.tensor([[3]])), show_table=False),
    dict(inputs=(torch.randn(1, 3, 12, 12), torch.tensor([[3]])), show_arch=False),
])
def test_rules_on_small_model(kwargs):
    ref, ours = _both(Tiny().eval(), **kwargs)
    assert list(ours) == list(ref)
    for key in ref:
        assert ours[key] == ref[key], _diff(ref[key], ours[key]) if isinstance(ref[key], str) else key


@pytest.mark.parametrize("kwargs", [
    dict(input_shape=((6,), (2, 5, 5))),
    dict(inputs=(torch.randn(1, 6), torch.randn(1, 2, 5, 5))),
])
def test_several_inputs(kwargs):
    ref, ours = _both(TwoInputs(), **kwargs)
    assert ours == ref


def test_single_tensor_input():
    ref, ours = _both(nn.Linear(6, 4), inputs=torch.randn(2, 6))
    assert ours == ref


@pytest.mark.parametrize("model,kwargs,error", [
    (nn.Linear(3, 3), dict(), ValueError),
    (nn.Linear(3, 3), dict(input_shape=(3,), inputs=torch.randn(1, 3)), ValueError),
    (nn.Linear(3, 3), dict(input_shape=[3]), ValueError),
    (nn.Linear(3, 3), dict(input_shape=(3, (3,))), ValueError),
    (nn.Linear(3, 3), dict(input_shape=((3,), [3])), ValueError),
    (nn.ReLU(), dict(input_shape=(3,)), StopIteration),
])
def test_argument_errors(model, kwargs, error):
    with pytest.raises(error):
        mm_info(model, **kwargs)
    with pytest.raises(error):
        df_info(model, **kwargs)


# --------------------------------------------------------------------------- numbers
EDGES = [0, 1, 99, 100, 101, 999, 1000, 9408, 99_999, 100_000, 100_001, 117_964_800,
         25_557_032, 4_109_000_000, 99_999_999, 100_000_000, 100_000_001, 10**11 + 1,
         10**14 + 1, 3 * 10**17, -101, -4_109_000_000]


@pytest.mark.parametrize("x", EDGES)
@pytest.mark.parametrize("sig_figs", [2, 3])
def test_format_size_edges(x, sig_figs):
    assert format_size(x, sig_figs) == mm_format_size(x, sig_figs)
    assert format_size(x, sig_figs, hide_zero=True) == mm_format_size(x, sig_figs, hide_zero=True)


def test_format_size_known():
    assert [format_size(x) for x in (4_109_000_000, 25_557_032, 9408, 117_964_800, 100_352, 100)] \
        == ["4.109G", "25.557M", "9.408K", "0.118G", "0.1M", "100"]


@settings(max_examples=300, deadline=None)
@given(st.integers(min_value=-10**18, max_value=10**18), st.integers(min_value=0, max_value=4))
def test_format_size_any(x, sig_figs):
    assert format_size(x, sig_figs) == mm_format_size(x, sig_figs)


# --------------------------------------------------------------------------- the analysis API
@pytest.mark.parametrize("mode", ["owner", "caller"])
def test_analyzers_and_their_strings_match(mode):
    import mmengine.analysis as mma
    from mmengine.analysis.print_helper import complexity_stats_str

    torch.manual_seed(0)
    model = torchvision.models.swin_t(weights=None).eval()
    x = torch.randn(1, 3, 64, 64)
    with plain_console(100):
        flops, acts = FlopAnalyzer(model, (x,)), ActivationAnalyzer(model, (x,))
        ours, our_acts = dm.FlopAnalyzer(model, (x,)), dm.ActivationAnalyzer(model, (x,))
        for a in (flops, acts, ours, our_acts):
            a.ancestor_mode(mode).unsupported_ops_warnings(False).uncalled_modules_warnings(False)
        assert ours.by_module_and_operator() == flops.by_module_and_operator()
        assert our_acts.by_module_and_operator() == acts.by_module_and_operator()
        assert ours.uncalled_modules() == flops.uncalled_modules()
        for depth in (1, 3):
            want = complexity_stats_table(flops, max_depth=depth, activations=acts)
            got = dm.complexity_stats_table(ours, max_depth=depth, activations=our_acts)
            assert got == want, _diff(want, got)
        want = complexity_stats_table(flops, show_param_shapes=False)
        assert dm.complexity_stats_table(ours, show_param_shapes=False) == want
        want = complexity_stats_str(flops, activations=acts)
        assert dm.complexity_stats_str(ours, activations=our_acts) == want
        assert dm.complexity_stats_str(ours) == complexity_stats_str(flops)
        for depth in (2, 3):
            want, got = mma.parameter_count_table(model, depth), dm.parameter_count_table(model, depth)
            assert got == want, _diff(want, got)
        assert dm.parameter_count(model) == mma.parameter_count(model)
        assert dict(dm.flop_count(model, (x,))[0]) == dict(mma.flop_count(model, (x,))[0])
        assert dict(dm.activation_count(model, (x,))[0]) == \
            dict(mma.activation_count(model, (x,))[0])


def test_swin_downsample_charged_to_its_owner_as_mmengine():
    """A stage's downsample called from the backbone (mmpretrain's Swin): MMEngine's table
    charges it to the stage that owns it; so does get_model_complexity_info here."""

    class Stage(nn.Module):
        def __init__(self):
            super().__init__()
            self.blocks = nn.Sequential(nn.Conv2d(4, 4, 3, padding=1))
            self.downsample = nn.Conv2d(4, 4, 2, stride=2)

        def forward(self, x):
            return self.blocks(x)

    class Backbone(nn.Module):
        def __init__(self):
            super().__init__()
            self.stages = nn.ModuleList([Stage(), Stage()])

        def forward(self, x):
            for stage in self.stages:
                x = stage.downsample(stage(x))
            return x

    ref, ours = _both(Backbone(), input_shape=(4, 16, 16))
    assert ours == ref
    assert "downsample" in ours["out_table"]


class _Means(nn.Module):
    """Four global averages: nn.AdaptiveAvgPool2d and F.adaptive_avg_pool2d (fvcore's
    handle), a direct mean and nn.AdaptiveAvgPool1d (no handle in fvcore or MMEngine)."""

    def __init__(self):
        super().__init__()
        self.conv, self.fc = nn.Conv2d(3, 8, 3), nn.Linear(8, 4)
        self.pool, self.pool1d = nn.AdaptiveAvgPool2d(1), nn.AdaptiveAvgPool1d(1)

    def forward(self, x):
        y = self.conv(x)
        pooled = self.pool(y).flatten(1) + nn.functional.adaptive_avg_pool2d(y, 1).flatten(1)
        direct = y.mean((-1, -2), keepdim=True).flatten(1) + self.pool1d(y.flatten(2)).flatten(1)
        return self.fc(pooled + direct)


@pytest.mark.parametrize("grad_mode", [torch.no_grad, torch.inference_mode])
def test_one_fvcore_convention_for_means(grad_mode):
    """The counter's fvcore convention (the CLI's) equals get_model_complexity_info and
    MMEngine: only the adaptive_avg_pool2d calls count (2 x 8 x 14 x 14), a direct mean and
    adaptive_avg_pool1d do not."""
    model, x = _Means().eval(), torch.randn(1, 3, 16, 16)
    expected = 8 * 14 * 14 * 3 * 9 + 2 * 8 * 14 * 14 + 8 * 4
    with grad_mode(), FlopCounterMode(model, convention="fvcore") as fc:
        model(x)
    assert fc.get_total_flops() == expected == 45_504
    with contextlib.redirect_stdout(io.StringIO()):
        ours = df_info(model, inputs=(x,), show_table=False, show_arch=False)["flops"]
        theirs = mm_info(model, inputs=(x,), show_table=False, show_arch=False)["flops"]
    assert ours == theirs == expected
