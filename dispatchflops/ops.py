"""The op table: which aten ops cost what, resolved once per OpOverload.

Each counted op maps to a *handler* ``h(args, kwargs, out) -> (flops, activations)``: a C
one of the engine (``_C.handler``) that reads shapes, never data, or a user formula. A
call a handler cannot count raises ``ValueError`` and is listed as not counted. Ops that
are free by nature (views, copies, creation, metadata) resolve to ``FREE``; ops with no
formula to ``UNSUPPORTED``.
"""
from __future__ import annotations

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


# --- built-in formulas ------------------------------------------------------------------
# op -> (kind, a, b, c) of a C handler (csrc/handlers.h), which reads the call's shapes
# (never data) and applies the formula; an argument name stands for its position in each
# overload's schema. A call that does not fit (e.g. variable-length attention, whose cost
# needs the offsets' values) raises ValueError: not counted.

# Multiply-add families, counted in every convention (scaled by its FLOPs per MAC).
_MAC_OPS = {
    aten.mm: ("mm", "self", "mat2"),
    aten.addmm: ("mm", "mat1", "mat2"),
    aten._scaled_mm: ("mm", "self", "mat2"),
    aten.bmm: ("bmm", "self", "mat2"),
    aten.baddbmm: ("bmm", "batch1", "batch2"),
    aten._grouped_mm: ("grouped_mm",),
    # conv: the `transposed` argument, or -1 and whether it is transposed
    aten.convolution: ("conv", "transposed"),
    aten._convolution: ("conv", "transposed"),
    aten.convolution_overrideable: ("conv", "transposed"),
    aten.cudnn_convolution: ("conv", -1, 0),
    aten.cudnn_convolution_transpose: ("conv", -1, 1),
    aten.mkldnn_convolution: ("conv", -1, 0),
    aten.miopen_convolution: ("conv", -1, 0),
    aten.miopen_depthwise_convolution: ("conv", -1, 0),
    aten.miopen_convolution_transpose: ("conv", -1, 1),
    aten._mps_convolution: ("conv", -1, 0),
    aten._mps_convolution_transpose: ("conv", -1, 1),
    aten._slow_conv2d_forward: ("conv", -1, 0),
    aten.slow_conv3d_forward: ("conv", -1, 0),
    aten.slow_conv_dilated2d: ("conv", -1, 0),
    aten.slow_conv_dilated3d: ("conv", -1, 0),
    aten._conv_depthwise2d: ("conv", -1, 0),
    aten.conv_depthwise3d: ("conv", -1, 0),
    aten.slow_conv_transpose2d: ("conv", -1, 1),
    aten.slow_conv_transpose3d: ("conv", -1, 1),
    aten.convolution_backward: ("conv_backward",),
    # sdpa: q (k and v follow), 1 for a (batch, seq, heads, dim) layout, the
    # variable-length offsets (or -1)
    aten._scaled_dot_product_efficient_attention: ("sdpa", "query"),
    aten._scaled_dot_product_flash_attention: ("sdpa", "query"),
    aten._scaled_dot_product_cudnn_attention: ("sdpa", "query"),
    aten._scaled_dot_product_flash_attention_for_cpu: ("sdpa", "query"),
    aten._scaled_dot_product_fused_attention_overrideable: ("sdpa", "query"),
    aten._flash_attention_forward: ("sdpa", "query", 1, "cum_seq_q"),
    aten._efficient_attention_forward: ("sdpa", "query", 1, "cu_seqlens_q"),
    aten._scaled_dot_product_efficient_attention_backward: ("sdpa_backward", "query"),
    aten._scaled_dot_product_flash_attention_backward: ("sdpa_backward", "query"),
    aten._scaled_dot_product_cudnn_attention_backward: ("sdpa_backward", "query"),
    aten._scaled_dot_product_flash_attention_for_cpu_backward: ("sdpa_backward", "query"),
    aten._scaled_dot_product_fused_attention_overrideable_backward: ("sdpa_backward", "query"),
    aten._flash_attention_backward: ("sdpa_backward", "query", 1, "cum_seq_q"),
    aten._efficient_attention_backward: ("sdpa_backward", "query", 1, "cu_seqlens_q"),
}

# fvcore's handles (already in fvcore flops; activations 0), by aten op after dispatch.
_FVCORE_OPS = {
    # batch_norm: the `training` argument, or -1 and whether it trains
    aten.native_batch_norm: ("batch_norm", "training"),
    aten._native_batch_norm_legit: ("batch_norm", "training"),
    aten._native_batch_norm_legit_no_training: ("batch_norm", -1, 0),
    aten._batch_norm_with_update: ("batch_norm", -1, 1),
    aten._batch_norm_no_update: ("batch_norm", -1, 0),
    aten.cudnn_batch_norm: ("batch_norm", "training"),
    aten.miopen_batch_norm: ("batch_norm", "training"),
    # norm: the weight (affine when given)
    aten.native_group_norm: ("norm", "weight"),
    aten.native_layer_norm: ("norm", "weight"),
    # elementwise: flops per input element, per output element
    aten.upsample_nearest2d: ("elementwise", 0, 1),
    aten.upsample_bilinear2d: ("elementwise", 0, 4),
    aten._adaptive_avg_pool2d: ("elementwise", 1, 0),
    aten.grid_sampler_2d: ("elementwise", 0, 4),
    # adaptive_avg_pool2d to 1x1 dispatches as mean over (-2, -1) with keepdim: counted as
    # fvcore counts adaptive_avg_pool2d; any other mean is free in fvcore.
    aten.mean: ("mean_pool",),
}


def _builtin_handler(func, entry, scale=1):
    """The C handler of a table entry for one overload (UNSUPPORTED if the overload lacks
    an argument the entry names)."""
    kind, *params = entry
    names = [a.name for a in func._schema.arguments]
    for i, p in enumerate(params):
        if isinstance(p, str):
            if p not in names:
                return UNSUPPORTED
            params[i] = names.index(p)
    return _C.handler(kind, *params, scale=scale)


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
        found = _builtin_handler(func, _MAC_OPS[packet], convention.mac_flops)
    elif convention.fvcore_handles and packet in _FVCORE_OPS:
        found = _builtin_handler(func, _FVCORE_OPS[packet])
    elif isinstance(func, torch._ops.OpOverload) and _is_free(func):
        found = FREE
    elif isinstance(func, torch._ops.OpOverload) and torch._C._dispatch_has_kernel_for_dispatch_key(
            func.name(), "CompositeImplicitAutograd"):
        found = DECOMPOSE
    else:
        found = UNSUPPORTED
    _resolved[key] = found
    return found
