"""The op table: which aten ops cost what, resolved once per OpOverload.

Each counted op maps to a *handler* ``h(args, kwargs, out) -> (flops, activations)`` that
reads shapes (never data) and calls the C++ engine. Ops that are free by nature (views,
copies, creation, metadata) resolve to ``FREE``; ops with no formula to ``UNSUPPORTED``.
"""
from __future__ import annotations

import functools

import torch

from . import _C
from .conventions import Convention

aten = torch.ops.aten

FREE = "free"
UNSUPPORTED = "unsupported"
# A composite op that reached the mode undecomposed (e.g. under inference_mode): count
# what it decomposes into.
DECOMPOSE = "decompose"

# User formulas: OpOverloadPacket or OpOverload -> f(*args, out=..., **kwargs) -> flops.
_user_formulas: dict = {}
# (convention name, OpOverload) -> handler | FREE | UNSUPPORTED
_resolved: dict = {}


def register_flop_formula(op):
    """Decorator: count ``op`` (an OpOverloadPacket or OpOverload, custom ops included)
    with ``f(*args, out=out, **kwargs) -> int`` FLOPs, in every convention. Overrides a
    built-in formula. ``f`` gets the op's real arguments and output; read shapes only."""

    def register(f):
        _user_formulas[op] = f
        _resolved.clear()
        return f

    return register


# --- shape extractors -------------------------------------------------------------------

def _bshd(shape):
    """(batch, seq, heads, dim) -> (batch, heads, seq, dim)."""
    return (shape[0], shape[2], shape[1], shape[3])


def _mm(i, j):
    return lambda args, kwargs, out, scale: _C.mm(args[i].shape, args[j].shape, scale)


def _bmm(i, j):
    return lambda args, kwargs, out, scale: _C.bmm(args[i].shape, args[j].shape, scale)


def _grouped_mm(args, kwargs, out, scale):
    return _C.grouped_mm(args[0].shape, args[1].shape, out.shape, scale)


def _conv(transposed):
    """transposed: a bool, or the index of the op's ``transposed`` argument."""
    if isinstance(transposed, bool):
        return lambda args, kwargs, out, scale: _C.conv(
            args[0].shape, args[1].shape, out.shape, transposed, scale)
    return lambda args, kwargs, out, scale: _C.conv(
        args[0].shape, args[1].shape, out.shape, bool(args[transposed]), scale)


def _conv_backward(args, kwargs, out, scale):
    mask = args[10]
    flops = _C.conv_backward(args[0].shape, args[1].shape, args[2].shape, bool(args[7]),
                             bool(mask[0]), bool(mask[1]), scale)
    return flops, 0


def _sdpa(first, layout_bshd=False, varlen_arg=None):
    """q, k, v at args[first:first+3]; (b, h, s, d) or (b, s, h, d) layout."""

    def handler(args, kwargs, out, scale):
        if varlen_arg is not None and args[varlen_arg] is not None:
            raise NotCountable("variable-length attention needs the sequence offsets' values")
        q, k, v = args[first].shape, args[first + 1].shape, args[first + 2].shape
        if layout_bshd:
            q, k, v = _bshd(q), _bshd(k), _bshd(v)
        return _C.sdpa(q, k, v, scale)

    return handler


def _sdpa_backward(layout_bshd=False, varlen_arg=None):
    def handler(args, kwargs, out, scale):
        if varlen_arg is not None and args[varlen_arg] is not None:
            raise NotCountable("variable-length attention needs the sequence offsets' values")
        q, k, v = args[1].shape, args[2].shape, args[3].shape
        if layout_bshd:
            q, k, v = _bshd(q), _bshd(k), _bshd(v)
        return _C.sdpa_backward(q, k, v, scale), 0

    return handler


class NotCountable(Exception):
    """This call of a known op cannot be counted from shapes alone."""


# A built-in formula refusing a call's shapes (ValueError from the engine) is not counted,
# like NotCountable: listed with the ops that had no formula.
NOT_COUNTED = (NotCountable, ValueError)


# Multiply-add families, counted in every convention: handler(args, kwargs, out, scale)
# with scale the convention's FLOPs per multiply-add.
_MAC_OPS = {
    aten.mm: _mm(0, 1),
    aten.addmm: _mm(1, 2),
    aten._scaled_mm: _mm(0, 1),
    aten.bmm: _bmm(0, 1),
    aten.baddbmm: _bmm(1, 2),
    aten._grouped_mm: _grouped_mm,
    aten.convolution: _conv(6),
    aten._convolution: _conv(6),
    aten.convolution_overrideable: _conv(6),
    aten.cudnn_convolution: _conv(False),
    aten.cudnn_convolution_transpose: _conv(True),
    aten.mkldnn_convolution: _conv(False),
    aten.miopen_convolution: _conv(False),
    aten.miopen_depthwise_convolution: _conv(False),
    aten.miopen_convolution_transpose: _conv(True),
    aten._mps_convolution: _conv(False),
    aten._mps_convolution_transpose: _conv(True),
    aten._slow_conv2d_forward: _conv(False),
    aten.slow_conv3d_forward: _conv(False),
    aten.slow_conv_dilated2d: _conv(False),
    aten.slow_conv_dilated3d: _conv(False),
    aten._conv_depthwise2d: _conv(False),
    aten.conv_depthwise3d: _conv(False),
    aten.slow_conv_transpose2d: _conv(True),
    aten.slow_conv_transpose3d: _conv(True),
    aten.convolution_backward: _conv_backward,
    aten._scaled_dot_product_efficient_attention: _sdpa(0),
    aten._scaled_dot_product_flash_attention: _sdpa(0),
    aten._scaled_dot_product_cudnn_attention: _sdpa(0),
    aten._scaled_dot_product_flash_attention_for_cpu: _sdpa(0),
    aten._scaled_dot_product_fused_attention_overrideable: _sdpa(0),
    aten._flash_attention_forward: _sdpa(0, layout_bshd=True, varlen_arg=3),
    aten._efficient_attention_forward: _sdpa(0, layout_bshd=True, varlen_arg=4),
    aten._scaled_dot_product_efficient_attention_backward: _sdpa_backward(),
    aten._scaled_dot_product_flash_attention_backward: _sdpa_backward(),
    aten._scaled_dot_product_cudnn_attention_backward: _sdpa_backward(),
    aten._scaled_dot_product_flash_attention_for_cpu_backward: _sdpa_backward(),
    aten._scaled_dot_product_fused_attention_overrideable_backward: _sdpa_backward(),
    aten._flash_attention_backward: _sdpa_backward(layout_bshd=True, varlen_arg=6),
    aten._efficient_attention_backward: _sdpa_backward(layout_bshd=True, varlen_arg=6),
}

def _batch_norm(training):
    """training: a bool, or the index of the op's ``training`` argument."""
    if isinstance(training, bool):
        return lambda args, kwargs, out: (_C.batch_norm(args[0].shape, args[1] is not None, training), 0)
    return lambda args, kwargs, out: (
        _C.batch_norm(args[0].shape, args[1] is not None, bool(args[training])), 0
    )


def _norm(weight_index):
    return lambda args, kwargs, out: (_C.norm(args[0].shape, args[weight_index] is not None), 0)


def _elementwise(input_scale, output_scale):
    return lambda args, kwargs, out: (
        _C.elementwise(args[0].shape, out.shape, input_scale, output_scale), 0
    )


def _mean_as_adaptive_pool(args, kwargs, out):
    """adaptive_avg_pool2d to 1x1 dispatches as mean over (-2, -1) with keepdim: count it as
    fvcore counts adaptive_avg_pool2d; any other mean is free in fvcore."""
    x = args[0]
    dims = args[1] if len(args) > 1 else None
    keepdim = args[2] if len(args) > 2 else kwargs.get("keepdim", False)
    if keepdim and x.dim() == 4 and dims is not None and sorted(d % 4 for d in dims) == [2, 3]:
        return _C.elementwise(x.shape, out.shape, 1, 0), 0
    return 0, 0


# fvcore's handles (already in fvcore flops; activations 0), by aten op after dispatch.
_FVCORE_OPS = {
    aten.native_batch_norm: _batch_norm(5),
    aten._native_batch_norm_legit: _batch_norm(5),
    aten._native_batch_norm_legit_no_training: _batch_norm(False),
    aten._batch_norm_with_update: _batch_norm(True),
    aten._batch_norm_no_update: _batch_norm(False),
    aten.cudnn_batch_norm: _batch_norm(5),
    aten.miopen_batch_norm: _batch_norm(5),
    aten.native_group_norm: _norm(1),
    aten.native_layer_norm: _norm(2),
    aten.upsample_nearest2d: _elementwise(0, 1),
    aten.upsample_bilinear2d: _elementwise(0, 4),
    aten._adaptive_avg_pool2d: _elementwise(1, 0),
    aten.grid_sampler_2d: _elementwise(0, 4),
    aten.mean: _mean_as_adaptive_pool,
}

# Free by nature: creation, copies, layout and metadata. Views are detected from schemas.
_FREE_NAMES = frozenset(
    """
    empty empty_like empty_strided new_empty new_empty_strided zeros zeros_like ones ones_like
    full full_like new_zeros new_ones new_full arange linspace scalar_tensor eye
    rand rand_like randn randn_like randint randint_like randperm uniform_ normal_ bernoulli_
    random_ exponential_ fill_ zero_ copy_ clone contiguous _to_copy to _copy_from
    _copy_from_and_resize lift lift_fresh lift_fresh_copy detach_ alias_copy cat stack
    _unsafe_view index index_select gather scatter scatter_ index_put index_put_ index_copy
    index_copy_ masked_fill masked_fill_ masked_select where constant_pad_nd pad
    reflection_pad1d reflection_pad2d reflection_pad3d replication_pad1d replication_pad2d
    replication_pad3d flip roll repeat repeat_interleave tril triu tril_ triu_ embedding
    _local_scalar_dense item set_ resize_ resize_as_ _resize_output_ _pin_memory
    is_pinned sym_size sym_stride sym_numel sym_storage_offset size stride numel dim
    is_contiguous is_strides_like_format is_non_overlapping_and_dense storage_offset
    _has_compatible_shallow_copy_type record_stream split_with_sizes_copy unbind_copy
    native_dropout native_dropout_backward _assert_async _assert_scalar
    _functional_assert_async sort argsort topk max_pool2d_with_indices_backward
    """.split()
)


def _is_free(func) -> bool:
    if func.namespace == "prim":
        return True
    if func._overloadpacket.__name__ in _FREE_NAMES:
        return True
    schema = func._schema
    # A view returns an alias it does not write: no arithmetic.
    return bool(schema.returns) and all(
        r.alias_info is not None and not r.alias_info.is_write for r in schema.returns
    )


class FormulaError(RuntimeError):
    """A formula registered with register_flop_formula raised."""


def _user_handler(f, op):
    def handler(args, kwargs, out):
        try:  # an out= overload's own "out" is the output itself
            rest = {k: v for k, v in kwargs.items() if k != "out"}
            return int(f(*args, out=out, **rest)), 0
        except Exception as e:
            raise FormulaError(f"the flop formula registered for {op} raised "
                               f"{type(e).__name__}: {e}") from e

    return handler


def resolve(func, convention: Convention):
    """Handler, FREE or UNSUPPORTED for ``func`` (an OpOverload) in ``convention``; cached."""
    key = (convention.name, func)
    found = _resolved.get(key)
    if found is not None:
        return found
    packet = getattr(func, "_overloadpacket", func)
    user = _user_formulas.get(func, _user_formulas.get(packet))
    if user is not None:
        found = _user_handler(user, packet)
    elif packet in _MAC_OPS:
        found = functools.partial(_MAC_OPS[packet], scale=convention.mac_flops)
    elif convention.fvcore_handles and packet in _FVCORE_OPS:
        found = _FVCORE_OPS[packet]
    elif isinstance(func, torch._ops.OpOverload) and _is_free(func):
        found = FREE
    elif isinstance(func, torch._ops.OpOverload) and torch._C._dispatch_has_kernel_for_dispatch_key(
            func.name(), "CompositeImplicitAutograd"):
        found = DECOMPOSE
    else:
        found = UNSUPPORTED
    _resolved[key] = found
    return found
