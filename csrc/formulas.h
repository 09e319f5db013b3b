// Shape-based cost formulas: shapes and integers in, counts out. No Python, no torch.
// Matmul, convolution and attention formulas return multiply-adds (MACs); the caller's
// convention turns them into FLOPs. Norm/pool/upsample formulas follow fvcore's handles
// and already return fvcore flops.
#pragma once
#include <cstdint>
#include <utility>
#include <vector>

namespace dispatchflops {

using Shape = std::vector<int64_t>;
// (multiply-adds, activations): activations are the output elements, fvcore's definition.
using Cost = std::pair<int64_t, int64_t>;

int64_t numel(const Shape& s);

// a: (m, k), b: (k, n)
Cost mm(const Shape& a, const Shape& b);
// a: (b, m, k), b: (b, k, n)
Cost bmm(const Shape& a, const Shape& b);
// torch._grouped_mm (mixture-of-experts): 2d x 2d splits k among the groups; every other
// form does k multiply-adds per output element.
Cost grouped_mm(const Shape& a, const Shape& b, const Shape& out);
// Forward convolution of any rank. w is the weight as stored: (out, in/groups, k...) or,
// transposed, (in, out/groups, k...); out is the output shape.
Cost conv(const Shape& x, const Shape& w, const Shape& out, bool transposed);
// aten.convolution_backward: input gradient (mask_input) and weight gradient (mask_weight),
// each counted exactly, groups included. The bias gradient is a reduction: no MACs.
int64_t conv_backward(const Shape& grad_out, const Shape& x, const Shape& w, bool transposed,
                      bool mask_input, bool mask_weight);
// Scaled-dot-product attention over (..., s, d) tensors: q (b, h, s_q, d), k (b, h_kv, s_k, d),
// v (b, h_kv, s_k, d_v). Grouped-query attention (h_kv < h) does the work of h heads.
Cost sdpa(const Shape& q, const Shape& k, const Shape& v);
// Backward of the above: recomputed scores, dV, dP, dK, dQ.
int64_t sdpa_backward(const Shape& q, const Shape& k, const Shape& v);

// fvcore's handles (flops, one per multiply-add convention).
// batch norm: eval numel * (2 if affine else 1); training numel * (5 if affine else 4).
int64_t batch_norm(const Shape& x, bool affine, bool training);
// group / layer / instance norm: numel * (5 if affine else 4).
int64_t norm(const Shape& x, bool affine);
// input_scale * numel(in) + output_scale * numel(out): upsample, adaptive pooling, grid sample.
int64_t elementwise(const Shape& in, const Shape& out, int64_t input_scale, int64_t output_scale);

}  // namespace dispatchflops
