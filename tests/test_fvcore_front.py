"""dispatchflops.fvcore against fvcore.nn itself: the same model and inputs through both,
every number and string of the analysis API equal (where fvcore sees every op)."""
import logging
from collections import Counter

import pytest
import timm
import torch
import torch.nn as nn
import torchvision
from fvcore import nn as fv

from dispatchflops import fvcore as df

logging.getLogger("fvcore").setLevel(logging.ERROR)


class Stage(nn.Module):
    def __init__(self):
        super().__init__()
        self.block = nn.Linear(8, 8)
        self.down = nn.Linear(8, 8)  # called by the model, not by its owner

    def forward(self, x):
        return self.block(x)


class CalledByAnother(nn.Module):
    """A module's cost charged differently by owner and by caller (Swin's downsample)."""

    def __init__(self):
        super().__init__()
        self.stages = nn.ModuleList([Stage(), Stage()])
        self.unused = nn.Linear(3, 3)
        self.shared = self.stages[0].block  # one module under two names

    def forward(self, x):
        for stage in self.stages:
            x = stage.down(stage(x))
        return torch.matmul(x, x.t()).sum() + torch.einsum("ij,jk->ik", x, x.t()).sum()


def models():
    yield "resnet18", torchvision.models.resnet18(), torch.randn(1, 3, 64, 64)
    yield "mobilenet_v3_small", torchvision.models.mobilenet_v3_small(), torch.randn(1, 3, 64, 64)
    yield "swin_t", torchvision.models.swin_t(), torch.randn(1, 3, 64, 64)
    yield "mixer_s32_224", timm.create_model("mixer_s32_224"), torch.randn(1, 3, 224, 224)
    yield "called_by_another", CalledByAnother(), torch.randn(4, 8)


@pytest.mark.parametrize("name,model,x", list(models()), ids=lambda v: v if isinstance(v, str) else "")
@pytest.mark.parametrize("mode", ["owner", "caller"])
def test_flop_count_analysis_equals_fvcore(name, model, x, mode):
    model.eval()
    with torch.no_grad():
        theirs = fv.FlopCountAnalysis(model, x).ancestor_mode(mode)
        ours = df.FlopCountAnalysis(model, x).ancestor_mode(mode)
        assert ours.total() == theirs.total() > 0
        assert ours.by_operator() == theirs.by_operator()
        assert ours.by_module() == theirs.by_module()
        assert ours.by_module_and_operator() == theirs.by_module_and_operator()
        assert ours.uncalled_modules() == theirs.uncalled_modules()
        for module in list(theirs.by_module())[:6]:
            assert ours.total(module) == theirs.total(module)
            assert ours.by_operator(module) == theirs.by_operator(module)
        their_acts = fv.ActivationCountAnalysis(model, x).ancestor_mode(mode)
        our_acts = df.ActivationCountAnalysis(model, x).ancestor_mode(mode)
        assert our_acts.by_module_and_operator() == their_acts.by_module_and_operator()
        assert df.flop_count_table(ours) == fv.flop_count_table(theirs)
        assert df.flop_count_str(ours, our_acts) == fv.flop_count_str(theirs, their_acts)
        assert df.flop_count_table(ours, max_depth=2, activations=our_acts,
                                   show_param_shapes=False) == \
            fv.flop_count_table(theirs, max_depth=2, activations=their_acts,
                                show_param_shapes=False)


def test_owner_and_caller_differ_where_fvcore_says():
    model, x = CalledByAnother(), torch.randn(4, 8)
    owner = df.FlopCountAnalysis(model, x).by_module()
    caller = df.FlopCountAnalysis(model, x).ancestor_mode("caller").by_module()
    assert owner["stages.0"] == 2 * 4 * 8 * 8 and caller["stages.0"] == 4 * 8 * 8
    assert owner[""] == caller[""]
    assert df.FlopCountAnalysis(model, x).uncalled_modules() == {"unused"}
    assert df.FlopCountAnalysis(model, x).canonical_module_name("shared") == "stages.0.block"


def test_parameter_count_and_table_equal_fvcore():
    model = torchvision.models.resnet18()
    assert df.parameter_count(model) == fv.parameter_count(model)
    for depth in (1, 3):
        assert df.parameter_count_table(model, depth) == fv.parameter_count_table(model, depth)


def test_handles_counts_and_unsupported_ops_as_fvcore():
    model, x = CalledByAnother(), torch.randn(4, 8)

    def fixed(inputs, outputs):
        return 7

    theirs = fv.FlopCountAnalysis(model, x).set_op_handle("aten::einsum", fixed)
    ours = df.FlopCountAnalysis(model, x).set_op_handle("aten::einsum", fixed)
    linear = 4 * 4 * 8 * 8
    assert ours.by_operator() == theirs.by_operator() == \
        Counter({"linear": linear, "matmul": 128, "einsum": 7})
    assert ours.unsupported_ops() == theirs.unsupported_ops()


def test_a_handle_of_none_ignores_the_op_as_fvcore_documents():
    """fvcore's set_op_handle(name, None) is documented to ignore the op ("You might want to
    ignore BN flops ... Use set_op_handle("aten::batch_norm", None)"), but it only adds
    the name to the ignored ops and keeps the default handle, which still counts. We
    ignore it, as documented (a difference on purpose, in the README)."""
    model, x = CalledByAnother(), torch.randn(4, 8)
    theirs = fv.FlopCountAnalysis(model, x).set_op_handle("aten::linear", None)
    ours = df.FlopCountAnalysis(model, x).set_op_handle("aten::linear", None)
    assert theirs.by_operator()["linear"] == 4 * 4 * 8 * 8  # fvcore's bug
    assert "linear" not in ours.by_operator()
    assert ours.total() == theirs.total() - 4 * 4 * 8 * 8
    gflops, skipped = df.flop_count(model, (x,))
    their_gflops, their_skipped = fv.flop_count(model, (x,))
    assert dict(gflops) == dict(their_gflops) and skipped == their_skipped


def test_eager_handles_receive_values():
    seen = []

    def conv(inputs, outputs):
        seen.append((tuple(inputs[0].shape), tuple(outputs[0].shape)))
        return Counter({"conv": 1})

    model = nn.Conv2d(3, 4, 3)
    analysis = df.FlopCountAnalysis(model, torch.randn(2, 3, 8, 8))
    assert analysis.set_op_handle("aten::_convolution", conv).total() == 1
    assert seen == [((2, 3, 8, 8), (2, 4, 6, 6))]


def test_lazy_and_misuse_as_fvcore():
    model, x = nn.Linear(3, 4), torch.randn(2, 3)
    for module in (fv, df):
        analysis = module.FlopCountAnalysis(model, x)
        with pytest.raises(RuntimeError):
            analysis.unsupported_ops()  # before any result
        with pytest.raises(KeyError):
            analysis.total("nope")
        with pytest.raises(ValueError):
            analysis.ancestor_mode("sideways")
        with pytest.raises(ValueError):
            analysis.tracer_warnings("loud")
        with pytest.raises(TypeError):
            analysis.set_op_handle("aten::linear")
    copied = df.FlopCountAnalysis(model, x).set_op_handle("aten::linear", None).copy(
        new_inputs=torch.randn(5, 3))
    assert copied.total() == 0 and df.FlopCountAnalysis(model, torch.randn(5, 3)).total() == 60


def test_attention_is_counted_where_fvcore_cannot_see_it():
    model = timm.create_model("vit_tiny_patch16_224").eval()
    x = torch.randn(1, 3, 224, 224)
    with torch.no_grad():
        theirs = fv.FlopCountAnalysis(model, x).by_operator()
        ours = df.FlopCountAnalysis(model, x).by_operator()
    sdpa = ours.pop("scaled_dot_product_attention")
    tokens, heads, dim, blocks = 197, 3, 64, 12
    assert sdpa == blocks * heads * tokens * tokens * (dim + dim)  # q @ k^T and p @ v
    assert ours == theirs


class Helpers(nn.Module):
    """Python helpers: F.interpolate (its upsampling counted, many calls), tensordot (a
    trace records it as one op fvcore has no handle for)."""

    def __init__(self):
        super().__init__()
        self.up = nn.Identity()

    def forward(self, x):
        y = 0
        for _ in range(200):  # every result used: a trace keeps every call
            y = y + torch.nn.functional.interpolate(x, size=(8, 8))
        return y.sum() + torch.tensordot(x.flatten(1), x.flatten(1).t(), dims=1).sum()


def test_python_helpers_as_fvcore():
    model, x = Helpers(), torch.randn(2, 3, 4, 4)
    theirs, ours = fv.FlopCountAnalysis(model, x), df.FlopCountAnalysis(model, x)
    assert ours.by_operator() == theirs.by_operator() == \
        Counter({"upsample_nearest2d": 200 * 2 * 3 * 8 * 8})
    assert ours.unsupported_ops()["aten::tensordot"] == theirs.unsupported_ops()["aten::tensordot"]

    calls = []

    def upsample(inputs, outputs):  # a handle for an op inside the helper gets its values
        calls.append((tuple(inputs[0].shape), tuple(outputs[0].shape)))
        return 1

    ours = df.FlopCountAnalysis(model, x).set_op_handle("aten::upsample_nearest2d", upsample)
    assert ours.by_operator() == Counter({"upsample_nearest2d": 200})
    assert calls == [((2, 3, 4, 4), (2, 3, 8, 8))] * 200
