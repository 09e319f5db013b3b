"""The op table: which aten ops cost what, resolved once per OpOverload.

Each counted op maps to a *handler* ``h(args, kwargs, out) -> (flops, activations)``: a C
one of the engine (``_C.handler``) that reads shapes, never data, or a user formula (a
counter's own ``formulas``, or one registered for every counter). A
call a handler cannot count raises ``ValueError`` and is listed as not counted. Ops that
are free by nature (views, copies, creation, metadata) resolve to ``FREE``; ops with no
formula to ``UNSUPPORTED``.
"""
from __future__ import annotations

import sys

import torch
from torch.utils._pytree import tree_map

from . import _C, fused
from .conventions import Convention

aten = torch.ops.aten

FREE = "free"
UNSUPPORTED = "unsupported"
# A composite op that reached the mode undecomposed (e.g. under inference_mode), or a
# fused kernel (fused.py): it runs whole and is charged what it decomposes into, or what
# its unfused path runs (composite.py).
DECOMPOSE = "decompose"

# Formulas registered for every counter: OpOverloadPacket or OpOverload -> formula.
_user_formulas: dict = {}
# (convention name, OpOverload) -> built-in handler | FREE | UNSUPPORTED | DECOMPOSE
_resolved: dict = {}


def _targets(ops) -> list:
    """The ops of ``register_flop_formula(*ops)``: each an op or a list/tuple of ops."""
    out = []
    for op in ops:
        out.extend(op if isinstance(op, (list, tuple)) else [op])
    if not out:
        raise TypeError("name at least one op")
    return out


def register_flop_formula(*ops):
    """Decorator: count each of ``ops`` (OpOverloadPackets or OpOverloads, custom ops
    included; lists of them too) with ``f(*args, out=out, **kwargs)``, returning FLOPs or
    (FLOPs, activations), in every convention and every counter (a counter's own
    ``formulas`` come first). Overrides a built-in formula; ``unregister_flop_formula``
    undoes it. ``f`` gets the op's real arguments and output; read shapes only."""
    targets = _targets(ops)

    def register(f):
        for op in targets:
            _user_formulas[op] = f
        _resolved.clear()
        return f

    return register


def unregister_flop_formula(*ops) -> None:
    """Undo ``register_flop_formula`` for ``ops`` (the same ops it was given)."""
    for op in _targets(ops):
        _user_formulas.pop(op, None)
    _resolved.clear()


# --- built-in formulas ------------------------------------------------------------------
# op -> (kind, bindings...): a C handler (csrc/kinds.h lists the kinds and their
# parameters) that reads the call's shapes (never data) and applies the kind's formula.
# Each binding is an argument name ("a|b": the first the overload has; "name?": absent
# where the overload lacks it), resolved to its position in each overload's schema, or a
# constant. A call that does not fit (e.g. variable-length attention, whose cost needs the
# offsets' values) raises ValueError: not counted.

_CONV = ("conv", "input|self", "weight")
_QCONV = ("packed_conv", "qx", "packed_weight|weight")
_QLINEAR = ("matmul", "X")


def _present(namespace: str, entries: dict) -> dict:
    """{op packet: entry} for the ops of ``namespace`` named in ``entries`` that this
    torch has."""
    ops_ = getattr(torch.ops, namespace)
    return {getattr(ops_, name): entry for name, entry in entries.items()
            if hasattr(ops_, name)}


# Multiply-add families, counted in every convention (scaled by its FLOPs per MAC).
_MAC_OPS = {
    aten.mm: ("mm", "self", "mat2"),
    aten.addmm: ("mm", "mat1", "mat2"),
    aten.addmm_: ("mm", "mat1", "mat2"),
    aten._scaled_mm: ("mm", "self", "mat2"),
    aten.bmm: ("bmm", "self", "mat2"),
    aten.baddbmm: ("bmm", "batch1", "batch2"),
    aten.baddbmm_: ("bmm", "batch1", "batch2"),
    aten._grouped_mm: ("grouped_mm", "self", "mat2"),
    aten.convolution: (*_CONV, "transposed"),
    aten._convolution: (*_CONV, "transposed"),
    aten.convolution_overrideable: (*_CONV, "transposed"),
    aten.cudnn_convolution: (*_CONV, False),
    aten.cudnn_convolution_transpose: (*_CONV, True),
    aten.mkldnn_convolution: (*_CONV, False),
    aten.miopen_convolution: (*_CONV, False),
    aten.miopen_depthwise_convolution: (*_CONV, False),
    aten.miopen_convolution_transpose: (*_CONV, True),
    aten._mps_convolution: (*_CONV, False),
    aten._mps_convolution_transpose: (*_CONV, True),
    aten._slow_conv2d_forward: (*_CONV, False),
    aten.slow_conv3d_forward: (*_CONV, False),
    aten.slow_conv_dilated2d: (*_CONV, False),
    aten.slow_conv_dilated3d: (*_CONV, False),
    aten._conv_depthwise2d: (*_CONV, False),
    aten.conv_depthwise3d: (*_CONV, False),
    aten.slow_conv_transpose2d: (*_CONV, True),
    aten.slow_conv_transpose3d: (*_CONV, True),
    aten.convolution_backward: ("conv_backward", "grad_output", "input", "weight", "transposed",
                                "output_mask"),
    # sdpa: query, key, value, whether they are (batch, seq, heads, dim), and the
    # variable-length offsets (None: fixed length)
    aten._scaled_dot_product_efficient_attention: ("sdpa", "query", "key", "value", False, None),
    aten._scaled_dot_product_flash_attention: ("sdpa", "query", "key", "value", False, None),
    aten._scaled_dot_product_cudnn_attention: ("sdpa", "query", "key", "value", False, None),
    aten._scaled_dot_product_flash_attention_for_cpu: ("sdpa", "query", "key", "value", False,
                                                       None),
    aten._scaled_dot_product_fused_attention_overrideable: ("sdpa", "query", "key", "value",
                                                            False, None),
    aten._flash_attention_forward: ("sdpa", "query", "key", "value", True, "cum_seq_q"),
    aten._efficient_attention_forward: ("sdpa", "query", "key", "value", True, "cu_seqlens_q"),
    aten._scaled_dot_product_efficient_attention_backward: ("sdpa_backward", "query", "key",
                                                            "value", False, None),
    aten._scaled_dot_product_flash_attention_backward: ("sdpa_backward", "query", "key",
                                                        "value", False, None),
    aten._scaled_dot_product_cudnn_attention_backward: ("sdpa_backward", "query", "key",
                                                        "value", False, None),
    aten._scaled_dot_product_flash_attention_for_cpu_backward: ("sdpa_backward", "query",
                                                                "key", "value", False, None),
    aten._scaled_dot_product_fused_attention_overrideable_backward: (
        "sdpa_backward", "query", "key", "value", False, None),
    aten._flash_attention_backward: ("sdpa_backward", "query", "key", "value", True,
                                     "cum_seq_q"),
    aten._efficient_attention_backward: ("sdpa_backward", "query", "key", "value", True,
                                         "cu_seqlens_q"),
}


# Kernels counted by name (_present): a torch release or build without one still imports.
_MAC_OPS.update(_present("aten", {
    "_scaled_mm_v2": ("mm", "self", "mat2"),
    "_int_mm": ("mm", "self", "mat2"),
    "_addmm_activation": ("mm", "mat1", "mat2"),
    "mv": ("matmul", "self"),
    "addmv": ("matmul", "mat"),
    "addmv_": ("matmul", "mat"),
    "dot": ("matmul", "self"),
    "vdot": ("matmul", "self"),
    "mkldnn_linear": ("matmul", "self"),
    "_mixed_dtypes_linear": ("matmul", "input"),
    "_weight_int4pack_mm": ("matmul", "self"),
    "_weight_int4pack_mm_for_cpu": ("matmul", "self"),
    "_weight_int4pack_mm_with_scales_and_zeros": ("matmul", "self"),
    "_weight_int8pack_mm": ("matmul", "self"),
    "_dyn_quant_matmul_4bit": ("matmul", "inp"),
    "_compute_linear_combination": ("matmul", "coefficients"),
    "fbgemm_linear_int8_weight_fp32_activation": ("matmul", "input"),
    "fbgemm_linear_fp16_weight_fp32_activation": ("matmul", "input"),
    "addbmm": ("addbmm", "batch1", "batch2"),
    "addbmm_": ("addbmm", "batch1", "batch2"),
    "_trilinear": ("trilinear", "i1", "i2", "i3", "expand1", "expand2", "expand3"),
    "linear_backward": ("linear_backward", "self", "grad_output", "output_mask"),
    "mkldnn_linear_backward": ("linear_backward", "self", "grad_output", "output_mask"),
    "_scaled_grouped_mm": ("grouped_mm", "self", "mat2"),
    "_scaled_grouped_mm_v2": ("grouped_mm", "self", "mat2"),
    "cudnn_convolution_relu": (*_CONV, False),
    "cudnn_convolution_add_relu": (*_CONV, False),
    "miopen_convolution_relu": (*_CONV, False),
    "miopen_convolution_add_relu": (*_CONV, False),
    "_nnpack_spatial_convolution": (*_CONV, False),
    "conv_tbc": ("conv_tbc", "self", "weight"),
    "quantized_lstm": ("rnn", "input|data", "hx", "num_layers", "bidirectional", 4),
    "quantized_gru": ("rnn", "input|data", "hx", "num_layers", "bidirectional", 3),
    "convolution_backward_overrideable": ("conv_backward", "grad_output", "input",
                                          "weight", "transposed", "output_mask"),
    "_slow_conv2d_backward": ("conv_backward", "grad_output", "self",
                              "weight", False, "output_mask"),
    "mps_convolution_transpose_backward": ("conv_backward", "grad_output", "self", "weight",
                                           True, "output_mask"),
    "mps_convolution_backward": ("conv_backward", "grad_output", "self",
                                 "weight", False, "output_mask"),
    "_flash_attention_forward_no_dropout_inplace": ("sdpa", "query", "key",
                                                    "value", True, "cum_seq_q"),
    "_scaled_dot_product_attention_math_for_mps": ("sdpa", "query", "key", "value", False, None),
}))
_MAC_OPS.update(_present("quantized", {
    "linear": _QLINEAR,
    "linear_relu": _QLINEAR,
    "linear_leaky_relu": _QLINEAR,
    "linear_tanh": _QLINEAR,
    "linear_dynamic": _QLINEAR,
    "linear_relu_dynamic": _QLINEAR,
    "linear_dynamic_fp16": _QLINEAR,
    "linear_relu_dynamic_fp16": _QLINEAR,
    "linear_dynamic_fp16_unpacked_weight": _QLINEAR,
    "linear_with_input_q_dq_qweight_dq_output_fp32": _QLINEAR,
    "linear_with_input_q_dq_qweight_dq_relu_output_fp32": _QLINEAR,
    "int4mm_packed_weight_cpu": ("matmul", "self"),
    "matmul": ("matmul", "qa"),
    "conv1d": (*_QCONV, False),
    "conv1d_relu": (*_QCONV, False),
    "conv1d_dynamic": (*_QCONV, False),
    "conv2d": (*_QCONV, False),
    "conv2d_relu": (*_QCONV, False),
    "conv2d_add": (*_QCONV, False),
    "conv2d_add_relu": (*_QCONV, False),
    "conv2d_dynamic": (*_QCONV, False),
    "conv3d": (*_QCONV, False),
    "conv3d_relu": (*_QCONV, False),
    "conv3d_dynamic": (*_QCONV, False),
    "conv_transpose1d": (*_QCONV, True),
    "conv_transpose1d_dynamic": (*_QCONV, True),
    "conv_transpose2d": (*_QCONV, True),
    "conv_transpose2d_dynamic": (*_QCONV, True),
    "conv_transpose3d": (*_QCONV, True),
    "conv_transpose3d_dynamic": (*_QCONV, True),
    "quantized_lstm_cell_dynamic": ("rnn", "input", "hx", 1, False, 4),
    "quantized_gru_cell_dynamic": ("rnn", "input", "hx", 1, False, 3),
    "quantized_rnn_tanh_cell_dynamic": ("rnn", "input", "hx", 1, False, 1),
    "quantized_rnn_relu_cell_dynamic": ("rnn", "input", "hx", 1, False, 1),
}))
_MAC_OPS.update(_present("_quantized", {
    "linear": _QLINEAR,
    "linear_dynamic": _QLINEAR,
    "wrapped_quantized_linear": _QLINEAR,
    "_wrapped_quantized_linear_prepacked": _QLINEAR,
    "wrapped_fbgemm_linear_fp16_weight": _QLINEAR,
    "conv2d": (*_QCONV, False),
    "conv2d_relu": (*_QCONV, False),
    "conv3d": (*_QCONV, False),
    "conv3d_relu": (*_QCONV, False),
    "conv_transpose1d": (*_QCONV, True),
    "conv_transpose2d": (*_QCONV, True),
}))

# fvcore's handles (already in fvcore flops; activations 0), by aten op after dispatch.
_FVCORE_OPS = {
    aten.native_batch_norm: ("batch_norm", "input", "weight", "training"),
    aten._native_batch_norm_legit: ("batch_norm", "input", "weight", "training"),
    aten._native_batch_norm_legit_no_training: ("batch_norm", "input", "weight", False),
    aten._batch_norm_with_update: ("batch_norm", "input", "weight", True),
    aten._batch_norm_no_update: ("batch_norm", "input", "weight", False),
    aten.cudnn_batch_norm: ("batch_norm", "input", "weight", "training"),
    aten.miopen_batch_norm: ("batch_norm", "input", "weight", "training"),
    aten.native_group_norm: ("norm", "input", "weight"),
    aten.native_layer_norm: ("norm", "input", "weight"),
    # elementwise: the input, flops per input element, per output element
    aten.upsample_nearest2d: ("elementwise", "input|self", 0, 1),
    aten.upsample_bilinear2d: ("elementwise", "input|self", 0, 4),
    aten._adaptive_avg_pool2d: ("elementwise", "self", 1, 0),
    aten.adaptive_avg_pool2d: ("elementwise", "self", 1, 0),  # reaching the counter whole
    aten.grid_sampler_2d: ("elementwise", "input", 0, 4),
    # adaptive_avg_pool2d to 1x1 dispatches as mean over (-2, -1) with keepdim: counted as
    # fvcore counts adaptive_avg_pool2d (only inside it: _inside_pool); any other mean is
    # free in fvcore.
    aten.mean: ("mean_pool", "self", "dim?", "keepdim?"),
}

_POOL_CODE = torch.nn.functional.adaptive_avg_pool2d.__code__


def _inside_pool(handler):
    """fvcore counts ``adaptive_avg_pool2d`` calls, which reach aten as a mean (or whole,
    under inference_mode): they count only while ``F.adaptive_avg_pool2d`` runs (a mean
    the program calls itself, or adaptive_avg_pool1d's, is free there, as in fvcore and
    MMEngine). Looked up on the Python stack, after the shape rule: such calls are few,
    and no mode is added."""
    def counted(args, kwargs, out):
        cost = handler(args, kwargs, out)  # the pool's shape first: most means are not
        frame = sys._getframe(1) if cost[0] else None
        while frame is not None:
            if frame.f_code is _POOL_CODE:
                return cost
            frame = frame.f_back
        return 0, 0

    return counted

# Higher-order operators (torch.ops.higher_order.*), by name -> (kind, positions of
# query, key, value): flex_attention is attention over its dense (B, H, S, D) query, key
# and value, whatever its BlockMask skips (blockmask.py adds the blocks that run). Any
# other HOP runs and is listed as not counted.
_HOP_OPS = {
    "flex_attention": ("sdpa", 0, 1, 2),
    "flex_attention_backward": ("sdpa_backward", 0, 1, 2),
}


def packet(func):
    """What an op's counts are kept under: its OpOverloadPacket (a higher-order operator
    is its own)."""
    return getattr(func, "_overloadpacket", func)


def op_name(func) -> str:
    """An op's name in results: "aten.mm", "higher_order.flex_attention"."""
    p = packet(func)
    if isinstance(p, torch._ops.HigherOrderOperator):
        return f"higher_order.{p.name()}"
    return str(p)


def counts_multiply_adds(name: str) -> bool:
    """Whether the op named ``name`` (as ``op_name`` gives it) is counted in multiply-adds,
    scaled by the convention's FLOPs per multiply-add (matmuls, convolutions, attention)."""
    return name in _MAC_NAMES


#: the names (as ``op_name`` gives them) of the fused attention kernels' forwards
ATTENTION_NAMES = frozenset(str(op) for op, entry in _MAC_OPS.items() if entry[0] == "sdpa")

_MAC_NAMES = frozenset([str(op) for op in _MAC_OPS] + [f"higher_order.{n}" for n in _HOP_OPS])


def _binding(names: list, param):
    """(position, name) of the argument ``param`` names in an overload's ``names``, (-1,
    None) for an optional one it lacks, (-1, param) for a constant; None if it lacks it."""
    if not isinstance(param, str):
        return (-1, param)
    optional = param.endswith("?")
    for name in param.rstrip("?").split("|"):
        if name in names:
            return (names.index(name), name)
    return (-1, None) if optional else None


def _builtin_handler(func, entry, scale=1):
    """The C handler of a table entry for one overload (UNSUPPORTED if the overload lacks
    an argument the entry names)."""
    kind, *params = entry
    names = [a.name for a in func._schema.arguments]
    bindings = [_binding(names, p) for p in params]
    if None in bindings:
        return UNSUPPORTED
    return _C.handler(kind, bindings, scale=scale)


def _hop_handler(func, convention: Convention):
    entry = _HOP_OPS.get(func.name())
    if entry is None:
        return UNSUPPORTED
    kind, q, k, v = entry  # dense attention: no (batch, seq, heads, dim) layout, no offsets
    bindings = [(q, "query"), (k, "key"), (v, "value"), (-1, False), (-1, None)]
    return _C.handler(kind, bindings, scale=convention.mac_flops)


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


# Namespaces of ops that only move or mark data: prims, profiler ranges, FSDP2's copies.
_FREE_NAMESPACES = frozenset({"prim", "profiler", "fsdp"})


def _is_free(func) -> bool:
    if func.namespace in _FREE_NAMESPACES:
        return True
    if func._overloadpacket.__name__ in _FREE_NAMES:
        return True
    schema = func._schema
    # A view returns an alias it does not write: no arithmetic.
    return bool(schema.returns) and all(
        r.alias_info is not None and not r.alias_info.is_write for r in schema.returns
    )


class FormulaError(RuntimeError):
    """A registered formula (``register_flop_formula`` or a counter's ``formulas``) raised."""


def user_handler(f, op):
    """The handler of a formula ``f(*args, out=out, **kwargs) -> flops | (flops,
    activations)`` registered for ``op``."""
    def handler(args, kwargs, out):
        try:  # an out= overload's own "out" is the output itself
            rest = {k: v for k, v in kwargs.items() if k != "out"}
            cost = f(*args, out=out, **rest)
            if isinstance(cost, tuple):
                flops, acts = cost
                return int(flops), int(acts)
            return int(cost), 0
        except Exception as e:
            raise FormulaError(f"the flop formula registered for {op} raised "
                               f"{type(e).__name__}: {e}") from e

    return handler


def from_torch_convention(f):
    """A formula in torch's ``custom_mapping`` convention as one of ours: ``f(*args,
    out_val=out, **kwargs)`` when ``f._get_raw`` is set, else ``f`` of the shapes
    (tensors replaced by their shapes in args and kwargs) with ``out_shape``."""
    if getattr(f, "_get_raw", False):
        return lambda *args, out=None, **kwargs: f(*args, out_val=out, **kwargs)

    def shapes(*args, out=None, **kwargs):
        args, kwargs, out_shape = tree_map(_shape, (args, kwargs, out))
        return f(*args, out_shape=out_shape, **kwargs)

    return shapes


def _shape(x):
    return x.shape if isinstance(x, torch.Tensor) else x


def formula_for(func, formulas: dict):
    """The formula ``formulas`` holds for ``func`` (an OpOverload) or its packet, or None."""
    if not formulas:
        return None
    found = formulas.get(func)
    return found if found is not None else formulas.get(getattr(func, "_overloadpacket", func))


def resolve(func, convention: Convention, formulas: dict | None = None):
    """Handler, FREE, UNSUPPORTED or DECOMPOSE for ``func`` (an OpOverload) in
    ``convention``: a formula of ``formulas`` (a counter's own), a registered one, or the
    built-in table. Cached, except for ``formulas``."""
    own = formula_for(func, formulas)
    if own is not None:
        return user_handler(own, packet(func))
    key = (convention.name, func)
    found = _resolved.get(key)
    if found is not None:
        return found
    user = formula_for(func, _user_formulas)
    op = packet(func)
    if user is not None:
        found = user_handler(user, op)
    elif isinstance(func, torch._ops.HigherOrderOperator):
        found = _hop_handler(func, convention)
    elif op in _MAC_OPS:
        found = _builtin_handler(func, _MAC_OPS[op], convention.mac_flops)
    elif convention.fvcore_handles and op in _FVCORE_OPS:
        found = _builtin_handler(func, _FVCORE_OPS[op])
        if op in (aten.mean, aten.adaptive_avg_pool2d) and callable(found):
            found = _inside_pool(found)
    elif op in fused.REFERENCES:
        found = DECOMPOSE
    elif isinstance(func, torch._ops.OpOverload) and _is_free(func):
        found = FREE
    elif isinstance(func, torch._ops.OpOverload) and torch._C._dispatch_has_kernel_for_dispatch_key(
            func.name(), "CompositeImplicitAutograd"):
        found = DECOMPOSE
    else:
        found = UNSUPPORTED
    _resolved[key] = found
    return found
