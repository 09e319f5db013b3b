"""Every C++ formula against the independent Python reference, on random shapes."""
import torch
from hypothesis import assume, given, settings, strategies as st

from dispatchflops import _C

import reference as ref

dim = st.integers(1, 64)
settings.register_profile("df", max_examples=200, deadline=None)
settings.load_profile("df")


@given(dim, dim, dim)
def test_mm(m, k, n):
    assert _C.mm([m, k], [k, n]) == ref.mm([m, k], [k, n])


@given(dim, dim, dim, dim)
def test_bmm(b, m, k, n):
    assert _C.bmm([b, m, k], [b, k, n]) == ref.bmm([b, m, k], [b, k, n])


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
    assert _C.conv(x, w, out, transposed) == ref.conv(x, w, out, transposed)


@given(conv_case(), st.booleans(), st.booleans())
def test_conv_backward(case, mask_input, mask_weight):
    x, w, out, transposed = case
    assert _C.conv_backward(out, x, w, transposed, mask_input, mask_weight) == \
        ref.conv_backward(out, x, w, transposed, mask_input, mask_weight)


@st.composite
def attention_case(draw):
    b, kv_heads = draw(dim), draw(st.integers(1, 4))
    heads = kv_heads * draw(st.integers(1, 4))  # grouped-query attention when > kv_heads
    s_q, s_k, d, d_v = draw(dim), draw(dim), draw(dim), draw(dim)
    return [b, heads, s_q, d], [b, kv_heads, s_k, d], [b, kv_heads, s_k, d_v]


@given(attention_case())
def test_sdpa(case):
    assert _C.sdpa(*case) == ref.sdpa(*case)
    assert _C.sdpa_backward(*case) == ref.sdpa_backward(*case)


shape = st.lists(dim, min_size=2, max_size=5)


@given(shape, st.booleans(), st.booleans())
def test_norms(x, affine, training):
    assert _C.batch_norm(x, affine, training) == ref.batch_norm(x, affine, training)
    assert _C.norm(x, affine) == ref.norm(x, affine)


@given(shape, shape, st.integers(0, 4), st.integers(0, 4))
def test_elementwise(inp, out, a, b):
    assert _C.elementwise(inp, out, a, b) == ref.elementwise(inp, out, a, b)


def test_rank_errors_are_clean():
    import pytest

    with pytest.raises(ValueError):
        _C.mm([2, 3, 4], [4, 5])


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
    assert _C.grouped_mm(*case) == ref.grouped_mm(*case)
