"""The op table's C handlers: argument positions checked against torch's own schemas, and
each handler kind against the Python reference on real (meta) calls."""
import pytest
import torch

import reference as ref
from dispatchflops import _C, ops
from dispatchflops.conventions import get_convention

aten = torch.ops.aten
PYTORCH, FVCORE = get_convention("pytorch"), get_convention("fvcore")
meta = torch.device("meta")

# What each argument a table entry names must be, by kind and parameter position (CONST:
# a constant may stand there).
CONST = None
_ATTENTION = [{"query"}, {"key"}, {"value"}, {CONST}, {"cum_seq_q", "cu_seqlens_q", CONST}]
EXPECTED_NAMES = {
    "mm": [{"self", "mat1"}, {"mat2"}],
    "bmm": [{"self", "batch1"}, {"mat2", "batch2"}],
    "grouped_mm": [{"self"}, {"mat2"}],
    # the operand whose last dimension is contracted
    "matmul": [{"self", "mat", "input", "X", "qa", "inp", "coefficients"}],
    "addbmm": [{"batch1"}, {"batch2"}],
    "linear_backward": [{"self"}, {"grad_output"}, {"output_mask"}],
    "trilinear": [{"i1"}, {"i2"}, {"i3"}, {"expand1"}, {"expand2"}, {"expand3"}],
    "conv": [{"input", "self"}, {"weight"}, {"transposed", CONST}],
    "conv_backward": [{"grad_output"}, {"input", "self"}, {"weight"}, {"transposed", CONST},
                      {"output_mask"}],
    "conv_tbc": [{"self"}, {"weight"}],
    "packed_conv": [{"qx"}, {"packed_weight", "weight"}, {CONST}],
    "rnn": [{"input", "data"}, {"hx"}, {"num_layers", CONST}, {"bidirectional", CONST}, {CONST}],
    "sdpa": _ATTENTION,
    "sdpa_backward": _ATTENTION,
    "batch_norm": [{"input"}, {"weight"}, {"training", CONST}],
    "norm": [{"input"}, {"weight"}],
    "elementwise": [{"input", "self"}, {CONST}, {CONST}],
    "mean_pool": [{"self"}, {"dim"}, {"keepdim"}],
}


def _overloads(packet):
    return [getattr(packet, name) for name in packet.overloads()]


@pytest.mark.parametrize("table", ["_MAC_OPS", "_FVCORE_OPS"])
def test_every_overload_resolves_to_a_handler_reading_the_named_arguments(table):
    convention = PYTORCH if table == "_MAC_OPS" else FVCORE
    kinds = _C.kinds()
    for packet, (kind, *params) in getattr(ops, table).items():
        assert len(params) == len(kinds[kind]) == len(EXPECTED_NAMES[kind]), packet
        for func in _overloads(packet):
            handler = ops.resolve(func, convention)
            args = {a.name: a for a in func._schema.arguments}
            if handler is ops.UNSUPPORTED:  # only an overload lacking a named argument
                assert any(isinstance(p, str) and not p.endswith("?") and
                           not set(p.split("|")) & args.keys() for p in params), func
                continue
            assert callable(handler), func
            for p, expected in zip(params, EXPECTED_NAMES[kind]):
                if not isinstance(p, str):
                    assert CONST in expected, (func, p)  # a constant where one may stand
                    continue
                names = [n for n in p.rstrip("?").split("|") if n in args]
                if not names:
                    assert p.endswith("?"), (func, p)  # only optional ones may be missing
                    continue
                assert names[0] in expected, (func, p)
                assert not args[names[0]].kwarg_only, (func, p)  # it comes in args


def test_batch_norm_legit_no_stats_reads_training_where_that_overload_has_it():
    x, w = torch.empty(2, 3, 4, 4, device=meta), torch.empty(3, device=meta)
    h = ops.resolve(aten._native_batch_norm_legit.no_stats, FVCORE)
    # no_stats: (input, weight, bias, training, momentum, eps)
    assert h((x, w, None, False, 0.1, 1e-5), {}, None) == ref.batch_norm(x.shape, w.shape, False)
    assert h((x, w, None, True, 0.1, 1e-5), {}, None) == ref.batch_norm(x.shape, w.shape, True)


@pytest.mark.parametrize("op,varlen_index", [(aten._flash_attention_forward.default, 3),
                                             (aten._efficient_attention_forward.default, 4)])
def test_fused_attention_in_batch_seq_heads_dim_layout(op, varlen_index):
    b, s_q, s_k, h, h_kv, d, d_v = 2, 5, 7, 4, 2, 8, 16
    q = torch.empty(b, s_q, h, d, device=meta)
    k = torch.empty(b, s_k, h_kv, d, device=meta)
    v = torch.empty(b, s_k, h_kv, d_v, device=meta)
    args = [q, k, v] + [None] * 5
    handler = ops.resolve(op, PYTORCH)
    flops, acts = handler(tuple(args), {}, None)
    macs, expected_acts = ref.sdpa(q.shape, k.shape, v.shape, True, None)
    assert (flops, acts) == (2 * macs, expected_acts)
    args[varlen_index] = torch.empty(b + 1, dtype=torch.int32, device=meta)
    with pytest.raises(ValueError, match="variable-length"):
        handler(tuple(args), {}, None)


def test_fused_attention_backward_reads_query_key_value():
    q, k, v = (torch.empty(2, 4, 6, 8, device=meta) for _ in range(3))
    grad = torch.empty_like(q)
    h = ops.resolve(aten._scaled_dot_product_flash_attention_for_cpu_backward.default, PYTORCH)
    assert h((grad, q, k, v, grad, None, 0.0, False), {}, None) == \
        (2 * ref.sdpa_backward(q.shape, k.shape, v.shape, False, None)[0], 0)


@pytest.mark.parametrize("mask", [(True, True, False), (True, False, True), (False, True, True)])
@pytest.mark.parametrize("transposed", [False, True])
def test_convolution_backward_reads_its_masks(mask, transposed):
    x = torch.empty(2, 4, 9, 9, device=meta)
    w = torch.empty(4, 2, 3, 3, device=meta)  # groups=2
    out = aten.convolution(x, w, None, [2, 2], [1, 1], [1, 1], transposed, [0, 0], 2)
    args = (torch.empty_like(out), x, w, [4], [2, 2], [1, 1], [1, 1], transposed, [0, 0], 2,
            list(mask))
    real = aten.convolution_backward.default(*args)
    h = ops.resolve(aten.convolution_backward.default, PYTORCH)
    expected, _ = ref.conv_backward(out.shape, x.shape, w.shape, transposed, mask)
    assert h(args, {}, real) == (2 * expected, 0)


@pytest.mark.parametrize("dims,keepdim,pooled", [
    ([-1, -2], True, True),  # what F.adaptive_avg_pool2d(x, 1) dispatches
    ([2, 3], True, False), ([-2, -1], True, False),  # never what the pool dispatches
    ([2, 3], False, False), ([1], True, False), ([1, 2, 3], True, False), (None, True, False)])
def test_mean_counts_as_adaptive_pool_only_when_it_is_one(dims, keepdim, pooled):
    """The handler counts a mean of the pool's shape (inside F.adaptive_avg_pool2d:
    test_vs_mmengine's one convention); none called directly, as in fvcore."""
    x = torch.empty(2, 3, 5, 7, device=meta)
    out = x.mean(dims if dims is not None else None, keepdim=keepdim) if dims else x.mean()
    handler = ops._FVCORE_OPS[aten.mean]
    h = ops._builtin_handler(aten.mean.dim, handler)  # the shape rule alone
    args = (x, dims, keepdim) if dims is not None else (x,)
    assert h(args, {}, out) == ((x.numel() if pooled else 0), 0)
    if dims is not None:  # keepdim given by keyword
        assert h((x, dims), {"keepdim": keepdim}, out) == ((x.numel() if pooled else 0), 0)
    assert ops.resolve(aten.mean.dim, FVCORE)(args, {}, out) == (0, 0)  # called directly
    if pooled:
        from dispatchflops import FlopCounterMode

        with FlopCounterMode(convention="fvcore") as fc:
            torch.nn.functional.adaptive_avg_pool2d(x, 1)
        assert fc.get_total_flops() == x.numel()


def test_calls_that_do_not_fit_raise_value_error():
    h = ops.resolve(aten.mm.default, PYTORCH)
    a = torch.empty(2, 3, device=meta)
    with pytest.raises(ValueError):
        h((a,), {}, None)  # an argument missing
    with pytest.raises(ValueError):
        h((a, "not a tensor"), {}, None)
    with pytest.raises(ValueError):
        h((a, torch.empty(2, 3, 4, device=meta)), {}, None)  # rank
