"""Every op PyTorch registers whose name says it multiplies has a formula, or sits on the
reviewed list below with its reason: a new torch release that adds one fails here."""
import torch

from dispatchflops import ops
from dispatchflops.conventions import CONVENTIONS

NAMESPACES = ("aten", "quantized", "_quantized")
# name tokens (split at "_") that say an op multiplies; "conv..." too
TOKENS = frozenset("""mm matmul bmm addmm baddbmm addbmm dot vdot mv addmv addr ger outer inner
    kron einsum tensordot linear bilinear trilinear attention attn rnn lstm gru vecdot
    transformer""".split())

REVIEWED = {
    # sparse layouts: the work depends on the stored values' count or pattern
    "sparse": """aten::_cslt_sparse_mm aten::_cslt_sparse_mm_search aten::_sparse_addmm
        aten::_sparse_mm_reduce_impl aten::_sparse_mm_reduce_impl_backward
        aten::_sparse_semi_structured_addmm aten::_sparse_semi_structured_linear
        aten::_sparse_semi_structured_mm aten::_sparse_sparse_matmul
        aten::sparse_sampled_addmm aten::_convert_indices_from_coo_to_csr
        aten::_convert_indices_from_csr_to_coo""",
    # weights or indices rearranged for a kernel: no arithmetic
    "packing": """aten::_convert_weight_to_int4pack aten::_convert_weight_to_int4pack_for_cpu
        aten::_cudnn_rnn_flatten_weight aten::mkldnn_reorder_conv2d_weight
        aten::mkldnn_reorder_conv3d_weight quantized::conv1d_prepack quantized::conv2d_prepack
        quantized::conv3d_prepack quantized::conv_prepack quantized::conv_transpose1d_prepack
        quantized::conv_transpose2d_prepack quantized::conv_transpose3d_prepack
        quantized::linear_prepack quantized::linear_prepack_fp16
        quantized::linear_prepack_fp16_legacy quantized::linear_prepack_legacy
        quantized::linear_unpack quantized::linear_unpack_fp16
        _quantized::_wrapped_linear_prepack _quantized::conv2d_prepack
        _quantized::conv3d_prepack _quantized::conv_transpose1d_prepack
        _quantized::conv_transpose2d_prepack _quantized::conv_transpose3d_prepack
        _quantized::linear_prepack _quantized::linear_prepack_fp16
        _quantized::linear_prepack_fp16_legacy _quantized::linear_prepack_legacy""",
    # an RNN cell's gate arithmetic (elementwise; not counted in either convention, listed
    # as the unfused cell's adds and sigmoids are): its matmuls run, and are counted,
    # before it
    "elementwise cell": """aten::_thnn_fused_gru_cell aten::_thnn_fused_gru_cell_backward
        aten::_thnn_fused_lstm_cell aten::_thnn_fused_lstm_cell_backward_impl""",
    # an outer product: no contraction, elementwise multiplies (outer() decomposes to mul)
    "outer product": "aten::addr aten::addr_",
    # called only inside another kernel (counted whole), never through the dispatcher by a
    # program or by autograd
    "inside a counted kernel": """aten::mkldnn_linear_backward_input
        aten::mkldnn_linear_backward_weights""",
    # an out= form of a composite op (the functional form decomposes into counted ops)
    "out= form of a composite": "aten::linear aten::matmul_backward",
    # prototypes that no PyTorch code path calls
    "prototype": "aten::_triton_multi_head_attention aten::_triton_scaled_dot_attention",
    # known gaps: listed as not counted when they run (a test below checks it)
    "known gap": """aten::_cudnn_attention_forward aten::_cudnn_attention_backward
        aten::_foreach_mm aten::_slow_conv2d_backward""",
}
# _cudnn_attention_*: its layouts (dense or nested) could not be checked without a CUDA
# device; _foreach_mm: a list of products; _slow_conv2d_backward.grad_input: no
# output_mask (its output_mask overload is counted).


def multiplies(name: str) -> bool:
    return any(t in TOKENS or t.startswith("conv") for t in name.strip("_").split("_"))


def multiplying_overloads():
    """(qualified name, OpOverload) of every registered overload whose name multiplies."""
    registered = set(torch._C._dispatch_get_all_op_names())
    for qualified in sorted(registered):
        ns, _, rest = qualified.partition("::")
        name, _, overload = rest.partition(".")
        if ns in NAMESPACES and multiplies(name):
            yield f"{ns}::{name}", getattr(getattr(getattr(torch.ops, ns), name),
                                           overload or "default")


def reviewed() -> dict:
    return {op: why for why, names in REVIEWED.items() for op in names.split()}


def test_every_multiplying_op_has_a_formula_or_a_reviewed_reason():
    listed = reviewed()
    uncounted, seen = [], set()
    for name, func in multiplying_overloads():
        seen.add(name)
        for convention in CONVENTIONS.values():
            if ops.resolve(func, convention) in (ops.UNSUPPORTED, ops.FREE) and name not in listed:
                uncounted.append(f"{func} ({convention.name})")
    assert not uncounted, "no formula and no reviewed reason: " + ", ".join(uncounted)
    assert len(seen) > 250  # the enumeration does find torch's ops
    assert not listed.keys() - seen, "reviewed ops this torch no longer has"


def test_reviewed_ops_are_never_taken_for_free():
    """A reviewed op without a formula is listed as not counted when it runs (or decomposes
    into ops that are): none is resolved as free, which would hide it."""
    listed = reviewed()
    for name, func in multiplying_overloads():
        if name in listed:
            assert ops.resolve(func, CONVENTIONS["pytorch"]) is not ops.FREE, func


def test_known_gap_runs_listed_as_not_counted():
    from dispatchflops import FlopCounterMode

    class ForeachMM(torch.nn.Module):
        def forward(self, a, b):
            return torch._foreach_mm([a], [b])

    model = ForeachMM()
    with FlopCounterMode(model) as fc:
        model(torch.randn(3, 4), torch.randn(4, 5))
    assert fc.results.unsupported == {"aten._foreach_mm": 1}
