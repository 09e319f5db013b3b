"""Bytes per op (traffic.py, csrc/traffic.cpp) against closed forms: what each op reads
and writes, from the shapes, strides and dtypes torch gives its tensors. Element sizes
are torch's own (``dtype.itemsize``); shapes and dtypes of outputs that a kernel chooses
(logsumexp, layer norm's statistics) are read from torch running that kernel directly."""
from collections import Counter

import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F

from dispatchflops import FlopCounterMode

aten = torch.ops.aten


def by_op(fn, *args, **kwargs) -> Counter:
    """{op name: bytes} of running fn(*args) under a counter (no module)."""
    with FlopCounterMode(count_bytes=True) as fc:
        fn(*args, **kwargs)
    return +Counter(fc.results.total.bytes_by_op)


def nbytes(*tensors) -> int:
    return sum(t.numel() * t.dtype.itemsize for t in tensors)


# --------------------------------------------------------------------------- layers
@pytest.mark.parametrize("bias", [True, False])
def test_linear_reads_input_weight_bias_and_writes_output(bias):
    b, i, o = 8, 64, 32
    m = nn.Linear(i, o, bias=bias)
    x = torch.randn(b, i)
    with FlopCounterMode(m, count_bytes=True) as fc:
        m(x)
    expected = 4 * (b * i + o * i + (o if bias else 0) + b * o)
    assert fc.results.modules[""].bytes == fc.results.total.bytes == expected
    assert fc.results.modules[""].self_bytes == expected


def test_linear_on_a_3d_input_in_bfloat16():
    b, t, i, o = 2, 16, 64, 48
    m = nn.Linear(i, o).bfloat16()
    x = torch.randn(b, t, i, dtype=torch.bfloat16)
    with torch.no_grad(), FlopCounterMode(m, count_bytes=True) as fc:
        m(x)
    assert fc.results.total.bytes == 2 * (b * t * i + o * i + o + b * t * o)


def test_conv2d():
    n, c, h, w, k, f = 2, 3, 16, 16, 3, 8
    m = nn.Conv2d(c, f, k, padding=1)
    x = torch.randn(n, c, h, w)
    with torch.no_grad(), FlopCounterMode(m, count_bytes=True) as fc:
        m(x)
    assert fc.results.total.bytes == 4 * (n * c * h * w + f * c * k * k + f + n * f * h * w)


def test_embedding_reads_only_the_rows_it_gathers():
    vocab, dim, b, t = 1000, 32, 2, 5
    m = nn.Embedding(vocab, dim)
    ids = torch.randint(0, vocab, (b, t))
    with torch.no_grad(), FlopCounterMode(m, count_bytes=True) as fc:
        m(ids)
    # the indices (int64), b*t rows of the table read, and as many written
    assert fc.results.total.bytes == 8 * b * t + 4 * b * t * dim + 4 * b * t * dim


def test_layer_norm():
    n, d = 6, 32
    m = nn.LayerNorm(d)
    x = torch.randn(n, d)
    with torch.no_grad(), FlopCounterMode(m, count_bytes=True) as fc:
        m(x)
    out, mean, rstd = aten.native_layer_norm(x, [d], m.weight, m.bias, 1e-5)
    assert (mean.shape, rstd.shape) == ((n, 1), (n, 1))
    assert fc.results.total.bytes == nbytes(x, m.weight, m.bias, out, mean, rstd) == \
        4 * (n * d + 2 * d + n * d + 2 * n)


# --------------------------------------------------------------------------- attention
def test_fused_attention_reads_q_k_v_and_writes_output_and_logsumexp():
    b, h, s, d = 2, 4, 32, 16
    q, k, v = (torch.randn(b, h, s, d) for _ in range(3))
    got = by_op(F.scaled_dot_product_attention, q, k, v)
    out, lse = aten._scaled_dot_product_flash_attention_for_cpu(q, k, v)[:2]
    assert lse.shape == (b, h, s) and lse.dtype == torch.float32
    assert got == {"aten._scaled_dot_product_flash_attention_for_cpu":
                   4 * (3 * b * h * s * d + b * h * s * d + b * h * s)}


def test_grouped_query_attention_reads_shared_heads_once():
    """k and v expanded over 4 query heads (stride 0): their distinct elements are read."""
    b, h, s, d = 2, 4, 32, 16
    q = torch.randn(b, h, s, d)
    k, v = (torch.randn(b, 1, s, d).expand(b, h, s, d) for _ in range(2))
    got = by_op(F.scaled_dot_product_attention, q, k, v)
    assert got == {"aten._scaled_dot_product_flash_attention_for_cpu":
                   4 * (b * h * s * d + 2 * b * s * d + b * h * s * d + b * h * s)}


def test_eager_attention_moves_the_score_matrix():
    bh, s, d = 8, 32, 16
    q, k, v = (torch.randn(bh, s, d) for _ in range(3))

    def attention(q, k, v):
        scores = torch.bmm(q, k.transpose(1, 2)) * d ** -0.5
        return torch.bmm(scores.softmax(-1), v)

    qkv, ss, sd = bh * s * d, bh * s * s, bh * s * d
    assert by_op(attention, q, k, v) == {
        "aten.bmm": 4 * ((qkv + qkv + ss) + (ss + qkv + sd)),  # q k^T, then scores v
        "aten.mul": 4 * (ss + ss),  # the scale is a Python number: no tensor read
        "aten._softmax": 4 * (ss + ss),
    }


# --------------------------------------------------------------------------- op rules
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64, torch.bfloat16, torch.float16,
                                   torch.int8, torch.uint8, torch.int32, torch.int64])
def test_each_dtype_has_its_size(dtype):
    a, b = torch.ones(5, 7, dtype=dtype), torch.ones(5, 7, dtype=dtype)
    assert by_op(torch.add, a, b) == {"aten.add": 3 * 35 * dtype.itemsize}


@pytest.mark.parametrize("dtype", [torch.float8_e4m3fn, torch.float8_e5m2])
def test_float8_conversion_reads_four_bytes_and_writes_one(dtype):
    x = torch.randn(6, 10)
    assert by_op(lambda: x.to(dtype)) == {"aten._to_copy": 60 * 4 + 60 * 1}


def test_in_place_ops_read_and_write_their_target_and_copies_only_write_it():
    x, y = torch.randn(10, 10), torch.randn(10, 10)
    n = 100 * 4
    assert by_op(lambda: x.add_(y)) == {"aten.add_": 3 * n}
    assert by_op(lambda: x.copy_(y)) == {"aten.copy_": 2 * n}
    assert by_op(lambda: x.fill_(1.0)) == {"aten.fill_": n}
    assert by_op(lambda: torch.add(x, y, out=x)) == {"aten.add": 3 * n}  # out= only written


def test_views_and_metadata_move_nothing():
    x = torch.randn(4, 6)
    assert by_op(lambda: (x.view(6, 4), x.t(), x[1], x.expand(3, 4, 6), x.transpose(0, 1),
                          x.unsqueeze(0), torch.empty(100), torch.empty_like(x))) == {}


def test_a_broadcast_input_is_read_once():
    """Also where the expanded tensor is not a view: detached, or made in inference mode."""
    y = torch.randn(64, 128)
    expected = {"aten.mul": 4 * (64 + 64 * 128 + 64 * 128)}
    x = torch.randn(64, 1).expand(64, 128)  # 64 distinct elements
    assert by_op(torch.mul, x, y) == by_op(torch.mul, x.detach(), y) == expected
    with torch.inference_mode():
        x = torch.randn(64, 1).expand(64, 128)
        assert x._base is None and by_op(torch.mul, x, y) == expected


def test_a_tensor_passed_twice_is_read_once():
    x = torch.randn(8, 8)
    assert by_op(torch.mul, x, x) == {"aten.mul": 4 * (64 + 64)}


def test_gathers_and_scatters():
    src = torch.randn(100, 16)
    idx = torch.tensor([3, 5, 7])
    # index_select: the indices, the 3 rows read, the 3 rows written
    assert by_op(torch.index_select, src, 0, idx) == {"aten.index_select": 3 * 8 + 2 * 3 * 16 * 4}
    # index_put_ in place: indices and values read, as many elements written into the target
    values = torch.randn(3, 16)
    assert by_op(lambda: src.index_put_((idx,), values)) == {
        "aten.index_put_": 3 * 8 + 2 * 3 * 16 * 4}
    # index_add_ also reads the target rows it adds to
    assert by_op(lambda: src.index_add_(0, idx, values)) == {
        "aten.index_add_": 3 * 8 + 3 * 3 * 16 * 4}


def test_foreach_in_place_reads_and_writes_each_target():
    xs = [torch.randn(10), torch.randn(20)]
    ys = [torch.randn(10), torch.randn(20)]
    assert by_op(torch._foreach_add_, xs, ys) == {"aten._foreach_add_": 3 * 30 * 4}


def test_ops_with_no_formula_count_bytes_but_stay_not_counted():
    x = torch.randn(10, 10)
    with FlopCounterMode(count_bytes=True) as fc:
        torch.relu(x)
    r = fc.results
    assert r.unsupported == {"aten.relu": 1}  # no FLOP formula, as before
    assert r.total.flops == 0 and r.total.by_op == {} and r.total.bytes == 2 * 400


def test_bytes_are_counted_on_request_only():
    m = nn.Sequential(nn.Linear(8, 8), nn.ReLU())
    with FlopCounterMode(m) as fc:
        m(torch.randn(2, 8))
    assert fc.results.total.bytes == 0 and fc.results.total.flops == 2 * 2 * 8 * 8


# --------------------------------------------------------------------------- a block
class Block(nn.Module):
    """A pre-norm transformer block: causal attention (fused, or eager: matmuls and a
    softmax) and a GELU MLP."""

    def __init__(self, d, heads, eager=False):
        super().__init__()
        self.heads, self.eager = heads, eager
        self.ln1, self.ln2 = nn.LayerNorm(d), nn.LayerNorm(d)
        self.qkv, self.proj = nn.Linear(d, 3 * d), nn.Linear(d, d)
        self.up, self.down = nn.Linear(d, 4 * d), nn.Linear(4 * d, d)

    def forward(self, x):
        b, t, d = x.shape
        q, k, v = self.qkv(self.ln1(x)).view(b, t, 3, self.heads, d // self.heads) \
            .permute(2, 0, 3, 1, 4)
        if self.eager:
            mask = torch.ones(t, t, dtype=torch.bool, device=x.device).tril()
            scores = (q @ k.transpose(-2, -1)).masked_fill(~mask, float("-inf"))
            a = scores.softmax(-1) @ v
        else:
            a = F.scaled_dot_product_attention(q, k, v, is_causal=True)
        x = x + self.proj(a.transpose(1, 2).reshape(b, t, d))
        return x + self.down(F.gelu(self.up(self.ln2(x))))


def test_a_bfloat16_transformer_block():
    b, t, d, h = 2, 16, 64, 4
    m = Block(d, h).bfloat16()
    x = torch.randn(b, t, d, dtype=torch.bfloat16)
    with torch.no_grad(), FlopCounterMode(m, count_bytes=True) as fc:
        m(x)
    e, n = 2, b * t  # bfloat16's size, tokens
    q = torch.randn(b, h, t, d // h, dtype=torch.bfloat16)
    lse = aten._scaled_dot_product_flash_attention_for_cpu(q, q, q, is_causal=True)[1]
    _, mean, rstd = aten.native_layer_norm(x, [d], m.ln1.weight, m.ln1.bias, 1e-5)
    assert lse.dtype == torch.float32 and mean.dtype == rstd.dtype == torch.bfloat16

    def linear(i, o):
        return e * (n * i + o * i + o + n * o)

    layer_norm = e * (n * d + 2 * d + n * d) + nbytes(mean, rstd)
    r = fc.results
    assert r.modules["ln1"].bytes == r.modules["ln2"].bytes == layer_norm
    assert r.modules["qkv"].bytes == linear(d, 3 * d)
    assert r.modules["proj"].bytes == linear(d, d)
    assert r.modules["up"].bytes == linear(d, 4 * d)
    assert r.modules["down"].bytes == linear(4 * d, d)
    attention = e * 4 * n * d + nbytes(lse)  # q, k, v strided views read, output written
    residuals = 2 * e * 3 * n * d
    gelu = e * 2 * n * 4 * d
    assert r.modules[""].self_bytes == attention + residuals + gelu
    assert r.total.bytes == r.modules[""].bytes == (
        2 * layer_norm + linear(d, 3 * d) + linear(d, d) + linear(d, 4 * d) + linear(4 * d, d)
        + attention + residuals + gelu)


def _step(device, dtype):
    """A training step; eager attention, since SDPA picks another kernel on meta."""
    torch.manual_seed(0)
    m = Block(64, 4, eager=True).to(device, dtype)
    x = torch.randn(2, 16, 64, dtype=dtype, device=device, requires_grad=True)
    with FlopCounterMode(m, count_bytes=True) as fc:
        m(x).float().sum().backward()
    return fc.results


def test_meta_device_moves_what_the_cpu_moves():
    cpu, meta = _step("cpu", torch.float32), _step("meta", torch.float32)
    assert cpu.total.phase_bytes == meta.total.phase_bytes
    assert {p: c.phase_bytes for p, c in cpu.modules.items()} == \
        {p: c.phase_bytes for p, c in meta.modules.items()}
    assert cpu.total.bytes_by_op == meta.total.bytes_by_op
    assert cpu.total.phase_bytes["backward"] > cpu.total.phase_bytes["forward"] > 0
    # backward bytes are charged to the modules that ran the forward
    assert cpu.modules["up"].phase_bytes["backward"] > 0


def test_meta_device_in_bfloat16_differs_only_by_layer_norm_statistics():
    """torch's meta kernel of native_layer_norm returns float32 mean and rstd for a
    bfloat16 input where the CPU kernel returns bfloat16 ones: 2 layer norms x 2
    statistics x 32 rows x 2 more bytes, written in forward and read in backward."""
    cpu, meta = _step("cpu", torch.bfloat16), _step("meta", torch.bfloat16)
    x = torch.randn(32, 64, dtype=torch.bfloat16)
    w = torch.ones(64, dtype=torch.bfloat16)
    on = {d: aten.native_layer_norm(x.to(d), [64], w.to(d), w.to(d), 1e-5)[1].dtype
          for d in ("cpu", "meta")}
    assert on == {"cpu": torch.bfloat16, "meta": torch.float32}
    extra = 2 * 2 * 32 * 2
    assert meta.total.bytes_by_op - cpu.total.bytes_by_op == {
        "aten.native_layer_norm": extra, "aten.native_layer_norm_backward": extra}
    assert cpu.total.bytes_by_op - meta.total.bytes_by_op == {}


def test_in_place_view_ops_move_nothing():
    x = torch.randn(4, 6)
    assert by_op(lambda: (x.unsqueeze_(0), x.squeeze_(0), x.t_(), x.transpose_(0, 1))) == {}


def test_bytes_change_no_flop_result():
    """FLOPs per module, per phase and per op, activations, what is not counted, and
    torch's view of them, are the same with and without byte accounting."""
    torch.manual_seed(0)
    m = Block(32, 4, eager=True)
    x = torch.randn(2, 8, 32, requires_grad=True)
    seen = []
    for count_bytes in (True, False):
        for convention in ("pytorch", "fvcore"):
            m.zero_grad(set_to_none=True)
            x.grad = None
            with FlopCounterMode(m, convention=convention, count_bytes=count_bytes) as fc:
                m(x).sum().backward()
            r = fc.results
            seen.append((convention, fc.get_flop_counts(), r.unsupported, r.total.phase_flops,
                         {p: (c.phase_flops, dict(c.by_op), c.activations, c.self_flops)
                          for p, c in r.modules.items()}))
    assert seen[:2] == seen[2:]


def test_symbolic_sizes_are_not_specialised():
    """Under a FakeTensorMode with a ShapeEnv, reading bytes adds no guard: a tensor of
    symbolic size or strides moves 0 bytes rather than have them read as integers (reading
    a slice's contiguity, for one, would guard on its width)."""
    from torch._dynamo.source import ConstantSource
    from torch._subclasses.fake_tensor import FakeTensorMode
    from torch.fx.experimental.symbolic_shapes import (DimDynamic, ShapeEnv,
                                                       StatelessSymbolicContext)

    def run(count_bytes, read=None):
        env = ShapeEnv()
        mode = FakeTensorMode(shape_env=env)
        x = mode.from_tensor(torch.randn(6, 8), source=ConstantSource("x"),
                             symbolic_context=StatelessSymbolicContext(
                                 dynamic_sizes=[DimDynamic.DYNAMIC] * 2))
        with mode, FlopCounterMode(count_bytes=count_bytes) as fc:
            y = x[:, :2]
            y.sum(), torch.cat([y, y]), y.relu_()
            if read:
                read(y)
        return [str(g.expr) for g in env.guards], fc.results.total

    (guards, total), (without, _) = run(True), run(False)
    assert guards == without == []
    assert total.phase_bytes["forward"] == 4  # only sum's 0-d float32 output is static
    assert run(False, lambda y: y.is_contiguous())[0]  # the setup sees a specialising read


def test_a_fused_adam_step_reads_gradients_and_updates_the_rest():
    """Parameters and both moments read and written, gradients read, the step counts read
    (float32 scalars): 4·n·(2 + 1 + 2 + 2) + 4 per parameter, n elements in all."""
    ps, gs = [torch.randn(10), torch.randn(20)], [torch.randn(10), torch.randn(20)]
    m1, m2 = [torch.zeros(10), torch.zeros(20)], [torch.zeros(10), torch.zeros(20)]
    steps = [torch.tensor(1.0), torch.tensor(1.0)]
    got = by_op(torch._fused_adam_, ps, gs, m1, m2, [], steps, lr=1e-3, beta1=0.9,
                beta2=0.999, weight_decay=0.0, eps=1e-8, amsgrad=False, maximize=False)
    assert got == {"aten._fused_adam_": 4 * 30 * 7 + 4 * 2}


def test_a_composite_run_whole_is_one_record_with_its_flops_and_bytes():
    """Under inference_mode linear reaches the counter whole: its decomposition's addmm
    carries its FLOPs and the linear's own bytes, so its roofline bound is one max."""
    m = nn.Linear(64, 32)
    x = torch.randn(8, 64)
    with torch.inference_mode(), FlopCounterMode(m, count_bytes=True) as fc:
        m(x)
    [rec] = fc.results.ops
    assert (rec.op, rec.flops, rec.bytes) == ("aten.addmm", 2 * 8 * 64 * 32,
                                              4 * (8 * 64 + 32 * 64 + 32 + 8 * 32))
