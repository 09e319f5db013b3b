"""Every handler kind (csrc/kinds.h) against its independent Python reference
(tests/reference.py), on random shapes: the formulas as the op table calls them."""
import inspect

import pytest
import torch
from hypothesis import assume, given, settings, strategies as st

from dispatchflops import _C

import reference as ref

dim = st.integers(1, 64)
settings.register_profile("df", max_examples=200, deadline=None)
settings.load_profile("df")


class T:
    """A tensor as a handler sees it: a shape."""

    def __init__(self, shape):
        self.shape = tuple(shape)


class Packed:
    """Packed quantized parameters as a handler sees them: ``unpack()`` gives the weight."""

    def __init__(self, shape):
        self.weight = T(shape)

    def unpack(self):
        return self.weight, None


def _plain(v):
    """A handler's value as the reference takes it: shapes for tensors."""
    if isinstance(v, T):
        return list(v.shape)
    if isinstance(v, Packed):
        return list(v.weight.shape)
    if isinstance(v, list) and v and isinstance(v[0], T):
        return [list(t.shape) for t in v]
    return v


def engine(kind, *values, out=None, scale=1):
    """The C handler of ``kind`` with its parameters bound to ``values`` in order."""
    handler = _C.handler(kind, [(i, f"arg{i}") for i in range(len(values))], scale=scale)
    return handler(values, {}, T(out) if out is not None else None)


def check(kind, *values, out=None):
    """The engine's and the reference's count of one call agree; ``values`` are the
    kind's parameters, tensors as ``T``."""
    plain = [_plain(v) for v in values]
    expected = getattr(ref, kind)(*plain, out=out)
    assert engine(kind, *values, out=out) == expected
    macs, acts = expected
    assert engine(kind, *values, out=out, scale=2) == (2 * macs, acts)


def test_every_kind_has_a_reference_with_its_parameters():
    kinds = _C.kinds()
    assert kinds  # the table is not empty
    for kind, params in kinds.items():
        signature = inspect.signature(getattr(ref, kind))
        assert tuple(p for p in signature.parameters if p != "out") == params, kind
        assert "out" in signature.parameters, kind


def test_an_entry_must_bind_every_parameter_of_its_kind():
    with pytest.raises(ValueError, match="mm takes 2 parameters"):
        _C.handler("mm", [(0, "self")])
    with pytest.raises(ValueError, match="unknown handler kind"):
        _C.handler("nope", [])


@given(dim, dim, dim)
def test_mm(m, k, n):
    check("mm", T([m, k]), T([k, n]))


@given(dim, dim, dim, dim)
def test_bmm(b, m, k, n):
    check("bmm", T([b, m, k]), T([b, k, n]))


@st.composite
def conv_case(draw):
    """A real convolution: shapes come from torch on the meta device."""
    rank = draw(st.integers(1, 3))
    groups = draw(st.sampled_from([1, 2, 4]))
    c_in = groups * draw(st.integers(1, 3))
    c_out = groups * draw(st.integers(1, 3))
    k = [draw(st.integers(1, 3)) for _ in range(rank)]
    stride = [draw(st.integers(1, 2)) for _ in range(rank)]
    dilation = [draw(st.integers(1, 2)) for _ in range(rank)]
    padding = [draw(st.integers(0, 2)) for _ in range(rank)]
    transposed = draw(st.booleans())
    spatial = [draw(st.integers(dilation[i] * (k[i] - 1) + 1, 12)) for i in range(rank)]
    n = draw(st.integers(1, 3))
    x = torch.empty(n, c_in, *spatial, device="meta")
    if transposed:
        w = torch.empty(c_in, c_out // groups, *k, device="meta")
    else:
        w = torch.empty(c_out, c_in // groups, *k, device="meta")
    try:
        out = torch.ops.aten.convolution(x, w, None, stride, padding, dilation, transposed,
                                         [0] * rank, groups)
    except RuntimeError:  # padding larger than a transposed output allows
        assume(False)
    return list(x.shape), list(w.shape), list(out.shape), transposed


@given(conv_case())
def test_conv(case):
    x, w, out, transposed = case
    check("conv", T(x), T(w), transposed, out=out)


@given(conv_case(), st.booleans(), st.booleans())
def test_conv_backward(case, mask_input, mask_weight):
    x, w, out, transposed = case
    check("conv_backward", T(out), T(x), T(w), transposed, [mask_input, mask_weight, True])


@st.composite
def attention_case(draw):
    b, kv_heads = draw(dim), draw(st.integers(1, 4))
    heads = kv_heads * draw(st.integers(1, 4))  # grouped-query attention when > kv_heads
    s_q, s_k, d, d_v = draw(dim), draw(dim), draw(dim), draw(dim)
    return [b, heads, s_q, d], [b, kv_heads, s_k, d], [b, kv_heads, s_k, d_v]


@given(attention_case(), st.booleans())
def test_sdpa(case, bshd):
    if bshd:  # the same call in (batch, seq, heads, dim) layout
        case = [[s[0], s[2], s[1], s[3]] for s in case]
    for kind in ("sdpa", "sdpa_backward"):
        check(kind, *map(T, case), bshd, None)
        with pytest.raises(ValueError, match="variable-length"):
            engine(kind, *map(T, case), bshd, T([case[0][0] + 1]))


shape = st.lists(dim, min_size=2, max_size=5)


@given(shape, st.booleans(), st.booleans())
def test_norms(x, affine, training):
    weight = T([x[1]]) if affine else None
    check("batch_norm", T(x), weight, training)
    check("norm", T(x), weight)


@given(shape, shape, st.integers(0, 4), st.integers(0, 4))
def test_elementwise(inp, out, a, b):
    check("elementwise", T(inp), a, b, out=out)


@given(shape, st.one_of(st.none(), st.lists(st.integers(-4, 3), min_size=1, max_size=3)),
       st.booleans())
def test_mean_pool(x, dims, keepdim):
    check("mean_pool", T(x), dims, keepdim)


def test_rank_errors_are_clean():
    with pytest.raises(ValueError):
        engine("mm", T([2, 3, 4]), T([4, 5]))


@st.composite
def grouped_mm_case(draw):
    """A real torch._grouped_mm in each of its forms; shapes from the meta device."""
    dim8 = st.integers(1, 8).map(lambda v: 8 * v)  # 16-byte aligned bfloat16 strides
    g, m, k, n = draw(st.integers(1, 4)), draw(dim8), draw(dim8), draw(dim8)
    form = draw(st.sampled_from(["2d3d", "3d3d", "2d2d", "3d2d"]))
    offs = torch.arange(1, g + 1, dtype=torch.int32, device="meta") * 8
    if form == "2d3d":
        a, b = torch.empty(m, k), torch.empty(g, k, n)
    elif form == "3d3d":
        a, b, offs = torch.empty(g, m, k), torch.empty(g, k, n), None
    elif form == "2d2d":
        a, b = torch.empty(m, g * k), torch.empty(g * k, n)
    else:
        a, b = torch.empty(g, m, k), torch.empty(k, g * n)
    a, b = a.to("meta", torch.bfloat16), b.to("meta", torch.bfloat16)
    if form != "2d2d":
        b = b.transpose(-2, -1).contiguous().transpose(-2, -1)  # the layout it requires
    try:
        out = torch._grouped_mm(a, b, offs=offs)
    except RuntimeError:
        assume(False)
    return list(a.shape), list(b.shape), list(out.shape)


@given(grouped_mm_case())
def test_grouped_mm(case):
    a, b, out = case
    check("grouped_mm", T(a), T(b), out=out)


@given(st.lists(dim, min_size=1, max_size=4), dim)
def test_matmul(lead, k):
    check("matmul", T(lead[:-1] + [k]), out=lead[:-1] + [lead[-1]])  # (..., k) -> (..., n)
    check("matmul", T([k]), out=[])  # a dot product


@given(dim, dim, dim, dim)
def test_addbmm(b, m, k, n):
    check("addbmm", T([b, m, k]), T([b, k, n]))


@given(st.lists(dim, min_size=2, max_size=4), dim, st.booleans(), st.booleans())
def test_linear_backward(x, n, mask_input, mask_weight):
    check("linear_backward", T(x), T(x[:-1] + [n]), [mask_input, mask_weight, True])


@given(dim, dim, dim, dim)
def test_trilinear(b, in1, in2, out):
    """nn.Bilinear's call, as F.bilinear makes it: x1 (b, in1), x2 (b, in2), w (out, in1,
    in2), shapes and expands taken from torch's own call on the meta device."""
    seen = []

    class Spy(torch.utils._python_dispatch.TorchDispatchMode):
        def __torch_dispatch__(self, func, types, args=(), kwargs=None):
            if func is torch.ops.aten._trilinear.default:
                seen.append(args)
            return func(*args, **(kwargs or {}))

    x1, x2 = torch.empty(b, in1, device="meta"), torch.empty(b, in2, device="meta")
    w = torch.empty(out, in1, in2, device="meta")
    with Spy():
        y = torch.nn.functional.bilinear(x1, x2, w)
    (i1, i2, i3, e1, e2, e3, *_), = seen
    check("trilinear", T(i1.shape), T(i2.shape), T(i3.shape), e1, e2, e3, out=list(y.shape))
    assert engine("trilinear", T(i1.shape), T(i2.shape), T(i3.shape), e1, e2, e3,
                  out=list(y.shape))[0] == b * out * in1 * in2


@given(dim, dim, st.integers(1, 5), dim, dim)
def test_conv_tbc(time, batch, k, c_in, c_out):
    assume(time >= k)
    check("conv_tbc", T([time, batch, c_in]), T([k, c_in, c_out]),
          out=[time - k + 1, batch, c_out])


@given(conv_case())
def test_packed_conv(case):
    x, w, out, transposed = case
    check("packed_conv", T(x), Packed(w), transposed, out=out)


@given(st.integers(1, 20), st.integers(1, 8), dim, dim, st.integers(1, 3), st.booleans(),
       st.sampled_from([1, 3, 4]), st.booleans())
def test_rnn(time, batch, features, hidden, layers, bidirectional, gates, listed):
    directions = 2 if bidirectional else 1
    h = T([layers * directions, batch, hidden])
    check("rnn", T([time, batch, features]), [h, h] if listed else h, layers, bidirectional,
          gates)
