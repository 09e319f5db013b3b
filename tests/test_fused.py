"""Fused kernels (dispatchflops/fused.py, the fused and low-precision entries of ops.py):
each counted as its unfused path, in closed form, and one figure wherever the model runs:
the CPU under no_grad (the fast paths), with grad, under inference_mode, on the meta
device and under FakeTensor."""
import pytest
import torch
from torch.utils._python_dispatch import TorchDispatchMode

from dispatchflops import FlopCounterMode, ops
from dispatchflops.composite import Composites, Cost
from dispatchflops.conventions import get_convention
from test_one_figure import assert_one_figure, counts

aten = torch.ops.aten


def count(make, inputs, where):
    """(FLOPs, activations) of ``make()(*inputs)`` run ``where`` (pytorch convention)."""
    model = make()
    grad = {"no_grad": torch.no_grad(), "grad": torch.enable_grad()}[where]
    with grad, FlopCounterMode(model) as fc:
        model(*inputs)
    return fc.get_total_flops(), fc.results.total.activations


class Seen(TorchDispatchMode):
    """The ops a run dispatches."""

    def __init__(self):
        super().__init__()
        self.ops = set()

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        self.ops.add(func._overloadpacket)
        return func(*args, **(kwargs or {}))


def fast_path_ops(make, inputs):
    seen = Seen()
    with torch.no_grad(), seen:
        make()(*inputs)
    return seen.ops


def attention_macs(b, heads, s_q, s_k, d):
    return b * heads * s_q * s_k * 2 * d  # q @ k^T and p @ v


x = torch.randn(2, 10, 64)
E, HEADS, FF, B, L = 64, 4, 128, 2, 10
MHA_MACS = 3 * B * L * E * E + attention_macs(B, HEADS, L, L, E // HEADS) + B * L * E * E
FFN_MACS = 2 * B * L * E * FF


def lstm_macs(features, hidden, layers, tokens, directions=1, gates=4):
    """Closed form of an unfused RNN: per layer and direction, every token multiplies its
    input and the hidden state by gates * hidden rows."""
    total = 0
    for layer in range(layers):
        width = features if layer == 0 else directions * hidden
        total += directions * tokens * gates * hidden * (width + hidden)
    return total


def mha(**kw):
    return lambda: torch.nn.MultiheadAttention(E, HEADS, batch_first=True, **kw).eval()


class MaskedAttention(torch.nn.Module):
    def __init__(self, need_weights, mask):
        super().__init__()
        self.attn = torch.nn.MultiheadAttention(E, HEADS, batch_first=True).eval()
        self.need_weights, self.mask = need_weights, mask

    def forward(self, q):
        masks = {"none": {}, "padding": {"key_padding_mask": torch.zeros(B, L, dtype=torch.bool,
                                                                         device=q.device)},
                 "causal": {"attn_mask": torch.ones(L, L, dtype=torch.bool,
                                                    device=q.device).triu(1)}}[self.mask]
        return self.attn(q, q, q, need_weights=self.need_weights, **masks)[0]


CASES = {  # name: (model factory, inputs, fused op the CPU runs under no_grad, MACs)
    "multi_head_attention": (mha(), [x, x, x], aten._native_multi_head_attention, MHA_MACS),
    "encoder_layer": (lambda: torch.nn.TransformerEncoderLayer(E, HEADS, FF, batch_first=True)
                      .eval(), [x], aten._transformer_encoder_layer_fwd, MHA_MACS + FFN_MACS),
    "encoder_layer_norm_first_gelu": (
        lambda: torch.nn.TransformerEncoderLayer(E, HEADS, FF, batch_first=True,
                                                 norm_first=True, activation="gelu").eval(),
        [x], aten._transformer_encoder_layer_fwd, MHA_MACS + FFN_MACS),
    "lstm": (lambda: torch.nn.LSTM(64, 32, 2, batch_first=True), [x], aten.mkldnn_rnn_layer,
             lstm_macs(64, 32, 2, B * L)),
    "lstm_bidirectional": (lambda: torch.nn.LSTM(64, 32, 2, bidirectional=True), [x],
                           aten.mkldnn_rnn_layer, lstm_macs(64, 32, 2, B * L, 2)),
    "lstm_no_bias": (lambda: torch.nn.LSTM(64, 32, 1, bias=False), [x], aten.mkldnn_rnn_layer,
                     lstm_macs(64, 32, 1, B * L)),
}


@pytest.mark.parametrize("name", CASES)
def test_fused_kernel_counts_its_unfused_path_everywhere(name):
    make, inputs, fused, macs = CASES[name]
    assert fused in fast_path_ops(make, inputs)  # the CPU does take the fast path
    found = counts(make, lambda: inputs)
    assert_one_figure(found)
    assert found["meta", "pytorch"][0] == 2 * macs  # matmuls only: the closed form


@pytest.mark.parametrize("need_weights", [True, False])
@pytest.mark.parametrize("mask", ["none", "padding", "causal"])
def test_attention_fast_path_flags(need_weights, mask):
    def make():
        return MaskedAttention(need_weights, mask)

    assert aten._native_multi_head_attention in fast_path_ops(make, [x])
    found = counts(make, lambda: [x], ("pytorch",))
    assert_one_figure(found)
    assert found["meta", "pytorch"][0] == 2 * MHA_MACS


def test_figures_of_the_issue():
    """The fast paths counted 0 on the CPU under no_grad (issue 20's table)."""
    assert count(*CASES["multi_head_attention"][:2], "no_grad") == (706_560, 7_200)
    assert count(*CASES["encoder_layer"][:2], "no_grad")[0] == 1_361_920
    assert count(*CASES["lstm"][:2], "no_grad") == (819_200, 10_240)
    assert count(*CASES["lstm"][:2], "grad")[0] == 819_200


@pytest.mark.parametrize("name", ["lstm", "lstm_bidirectional", "lstm_no_bias"])
def test_onednn_lstm_backward_computes_every_gradient(name):
    """oneDNN's backward computes the input's, the initial states' and the weights'
    gradients whatever is needed: twice the forward's multiply-adds. The unfused path (on
    meta) skips the gradients nobody needs: the initial states' (per layer and direction,
    batch * 4H * H), and the input's when it does not require grad."""
    make, inputs, _, macs = CASES[name]
    directions = 2 if name == "lstm_bidirectional" else 1
    layers = 1 if name == "lstm_no_bias" else 2
    batch = B if name == "lstm" else L  # batch first, else (time, batch) = (2, 10)
    for device, fused in (("cpu", True), ("meta", False)):
        model = make().to(device)
        for input_grad in (True, False):
            inp = inputs[0].to(device).requires_grad_(input_grad)
            with FlopCounterMode(model) as fc:
                model(inp)[0].sum().backward()
            total = fc.results.total
            assert total.forward_flops == 2 * macs
            if fused:
                assert total.backward_flops == 2 * 2 * macs
                continue
            skipped = layers * directions * batch * 4 * 32 * 32
            if not input_grad:  # the first layer's input gradient
                skipped += directions * B * L * 4 * 32 * 64
            assert total.backward_flops == 2 * (2 * macs - skipped)


def reference_cost(func, *args, **kwargs):
    """What the counter charges one call of a fused kernel (pytorch convention), from
    its reference on meta tensors: runs where no such device is."""
    composites = Composites(lambda f: ops.resolve(f, get_convention("pytorch")))
    flops = acts = 0
    for _, cost in composites.charges(func, args, kwargs):
        if isinstance(cost, Cost):
            flops, acts = flops + cost.cost[0], acts + cost.cost[1]
    return flops, acts


def rnn_weights(mode, features, hidden, layers, directions, bias=True, proj=0):
    gates = {0: 1, 1: 1, 2: 4, 3: 3}[mode]
    out = []
    for layer in range(layers):
        width = features if layer == 0 else directions * (proj or hidden)
        for _ in range(directions):
            out += [torch.empty(gates * hidden, width, device="meta"),
                    torch.empty(gates * hidden, proj or hidden, device="meta")]
            if bias:
                out += [torch.empty(gates * hidden, device="meta")] * 2
            if proj:
                out.append(torch.empty(proj, hidden, device="meta"))
    return out


@pytest.mark.parametrize("mode,gates", [(0, 1), (1, 1), (2, 4), (3, 3)])
@pytest.mark.parametrize("directions", [1, 2])
@pytest.mark.parametrize("packed", [False, True])
def test_cudnn_and_miopen_rnns(mode, gates, directions, packed):
    """cuDNN's and MIOpen's RNNs (relu, tanh, LSTM, GRU), packed or not, forward and
    backward under each output_mask, against the closed form."""
    T, N, I, H, layers = 5, 3, 8, 6, 2
    weights = rnn_weights(mode, I, H, layers, directions)
    batch_sizes = [3, 3, 2, 2, 1] if packed else []
    tokens = sum(batch_sizes) or T * N
    inp = torch.empty(tokens, I, device="meta") if packed else torch.empty(T, N, I, device="meta")
    hx = torch.empty(layers * directions, N, H, device="meta")
    cx = hx if mode == 2 else None
    macs = lstm_macs(I, H, layers, tokens, directions, gates)
    acts = 2 * layers * directions * tokens * gates * H
    out = torch.empty(*inp.shape[:-1], directions * H, device="meta")
    assert reference_cost(aten._cudnn_rnn.default, inp, weights, 4, None, hx, cx, mode, H, 0,
                          layers, False, 0.0, False, directions == 2, batch_sizes,
                          None) == (2 * macs, acts)
    assert reference_cost(aten.miopen_rnn.default, inp, weights, 4, hx, cx, mode, H, layers,
                          False, 0.0, False, directions == 2, batch_sizes, None) == (2 * macs, acts)
    # backward, in closed form: cuDNN and MIOpen compute the data gradients (the input's
    # and the initial states' included) whatever output_mask says, one pass over every
    # product of the forward, and the weights' (another pass) where mask[3] asks
    for mask in ([True, True, True, True], [False, False, False, True],
                 [True, False, False, False], [False, True, True, False]):
        expected = macs + (macs if mask[3] else 0)
        for func, extra in ((aten._cudnn_rnn_backward.default, [0]),  # proj_size
                            (aten.miopen_rnn_backward.default, [])):
            args = [inp, weights, 4, None, hx, cx, out, out, hx, cx, mode, H, *extra, layers,
                    False, 0.0, False, directions == 2, batch_sizes, None, None, mask]
            assert reference_cost(func, *args)[0] == 2 * expected, (func, mask)
    # no gradient in: the kernel returns at once
    assert reference_cost(aten._cudnn_rnn_backward.default, inp, weights, 4, None, hx, cx, out,
                          None, None, None, mode, H, 0, layers, False, 0.0, False,
                          directions == 2, batch_sizes, None, None, [True] * 4) == (0, 0)


def test_mps_lstm_reference():
    T, N, I, H = 5, 3, 8, 6
    weights = rnn_weights(2, I, H, 2, 1)
    inp = torch.empty(N, T, I, device="meta")
    h = torch.empty(2, N, H, device="meta")
    macs = lstm_macs(I, H, 2, T * N)
    assert reference_cost(aten._lstm_mps.default, inp, [h, h], weights, True, 2, 0.0, False,
                          False, True) == (2 * macs, 2 * 2 * T * N * 4 * H)
    out = torch.empty(N, T, H, device="meta")
    got = reference_cost(aten.lstm_mps_backward.default, out, h, h, None, None, inp, None,
                         [h, h], weights, True, 2, 0.0, False, False, True)
    assert got[0] == 2 * 2 * macs  # every gradient, as MPS computes them


def test_vit_b_16_through_the_cli_and_the_mmengine_front(capsys):
    """Issue 20's main job: 17,582,740,224 = mmpretrain's deit-base metafile
    17,581,972,224 + the 1000-class head's 768,000, attention included."""
    import torchvision
    from dispatchflops.cli import main
    from dispatchflops.mmengine import get_model_complexity_info

    assert main(["vit_b_16"]) == 0
    printed = capsys.readouterr().out
    assert "Flops: 17.583G" in printed
    assert "_native_multi_head_attention" not in printed
    model = torchvision.models.vit_b_16().eval()
    info = get_model_complexity_info(model, input_shape=(3, 224, 224), show_table=False,
                                     show_arch=False)
    assert info["flops"] == 17_582_740_224 == 17_581_972_224 + 768_000


def no_grad_count(model, *inputs):
    with torch.no_grad(), FlopCounterMode(model) as fc:
        model(*inputs)
    elementwise = {"aten.add", "aten.add_", "aten.mul", "aten.sigmoid_", "aten.tanh",
                   "aten.tanh_", "aten.unsafe_split"}  # an LSTM cell's gates
    assert not fc.results.unsupported.keys() - elementwise, fc.results.unsupported
    return fc.get_total_flops(), fc.results.total.activations


def test_quantized_and_low_precision_matmuls():
    """Dynamically quantized Linear and LSTM, a statically quantized convolution,
    nn.Bilinear and a matrix-vector product, in closed form."""
    import torch.ao.nn.quantized as nnq
    from torch.ao.quantization import quantize_dynamic

    linear = quantize_dynamic(torch.nn.Sequential(torch.nn.Linear(64, 48)), {torch.nn.Linear})
    assert no_grad_count(linear, torch.randn(8, 64)) == (2 * 8 * 64 * 48, 8 * 48)
    lstm = quantize_dynamic(torch.nn.LSTM(64, 32, 2), {torch.nn.LSTM})
    assert no_grad_count(lstm, x)[0] == 2 * lstm_macs(64, 32, 2, B * L)
    conv = nnq.Conv2d(3, 8, 3, padding=1, groups=1)
    qx = torch.quantize_per_tensor(torch.randn(2, 3, 16, 16), 0.1, 0, torch.quint8)
    assert no_grad_count(conv, qx) == (2 * 2 * 8 * 16 * 16 * 3 * 9, 2 * 8 * 16 * 16)
    bilinear = torch.nn.Bilinear(5, 7, 3)
    assert no_grad_count(bilinear, torch.randn(4, 5), torch.randn(4, 7)) == (2 * 4 * 3 * 5 * 7,
                                                                           4 * 3)

    class MatVec(torch.nn.Module):
        def forward(self, a, v):
            return a @ v

    assert no_grad_count(MatVec(), torch.randn(6, 5), torch.randn(5)) == (2 * 6 * 5, 6)


def test_modules_a_fused_kernel_reads_are_reported_as_such():
    """Under the fast path a TransformerEncoderLayer calls none of its children: those
    whose weights the fused kernel reads are noted so (dropouts stay 'never called'),
    in the notes and through JSON."""
    from dispatchflops import export

    model = torch.nn.TransformerEncoderLayer(E, HEADS, FF, batch_first=True).eval()
    with torch.no_grad(), FlopCounterMode(model) as fc:
        model(x)
    r = fc.results
    read = ["self_attn", "self_attn.out_proj", "linear1", "linear2", "norm1", "norm2"]
    assert r.read_by_fused == read
    assert r.uncalled == read[:3] + ["dropout"] + read[3:] + ["dropout1", "dropout2"]
    assert dict(export.notes(r)) == {
        "Not counted (no formula)": ", ".join(f"{op} x{n}" for op, n in r.unsupported.items()),
        "Never called": "dropout, dropout1, dropout2",
        "Never called, parameters read by a fused kernel of its caller": ", ".join(read)}
    assert export.from_json(export.to_json(r)).read_by_fused == read
    with FlopCounterMode(model) as fc:  # the slow path calls them
        model(x)
    assert fc.results.read_by_fused == [] and fc.results.uncalled == ["self_attn.out_proj"]


@pytest.mark.parametrize("kind", ["Conv1d", "Conv2d", "Conv3d", "ConvTranspose1d",
                                  "ConvTranspose2d"])
def test_quantized_convolutions_count_as_their_float_modules(kind):
    """Each quantized convolution against torch's own counter on the float module of the
    same configuration (groups, stride, padding)."""
    import torch.ao.nn.quantized as nnq
    from torch.utils.flop_counter import FlopCounterMode as TorchCounter

    rank = int(kind[-2])
    config = dict(in_channels=8, out_channels=12, kernel_size=3, groups=2, stride=2, padding=1)
    x = torch.randn(2, 8, *[9] * rank)
    with torch.no_grad(), TorchCounter(display=False) as theirs:
        getattr(torch.nn, kind)(**config)(x)
    qx = torch.quantize_per_tensor(x, 0.1, 0, torch.quint8)
    quantized = getattr(nnq, kind)(**config)
    assert no_grad_count(quantized, qx)[0] == theirs.get_total_flops() > 0


def test_fused_backward_whatever_the_mode_dispatchflops_was_imported_under():
    """Imported first under inference_mode (autograd's keys excluded there), then counting
    a training step: the oneDNN LSTM's backward is still charged (2 x 2 x forward MACs)."""
    import subprocess
    import sys

    code = """if True:
        import torch
        with torch.inference_mode():
            import dispatchflops
        model, x = torch.nn.LSTM(64, 32, 2), torch.randn(10, 2, 64)
        with dispatchflops.FlopCounterMode(model) as fc:
            model(x)[0].sum().backward()
        print(fc.results.total.backward_flops, sorted(fc.results.unsupported))"""
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True).stdout.split()
    assert int(out[0]) == 2 * 2 * lstm_macs(64, 32, 2, 20)
    assert "'aten.mkldnn_rnn_layer_backward'," not in out
