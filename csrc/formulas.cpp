// The formulas of the handler kinds (see formulas.h and kinds.h): shapes in, counts out.
#include "formulas.h"

#include <algorithm>

namespace dispatchflops {

namespace {

void require_rank(const Shape& s, size_t rank, const char* what) {
  if (s.size() != rank) not_countable(std::string(what) + ": unexpected rank");
}

int64_t tail_numel(const Shape& s, size_t from) {
  int64_t n = 1;
  for (size_t i = from; i < s.size(); ++i) n *= s[i];
  return n;
}

int64_t numel(const Shape& s) { return tail_numel(s, 0); }

// Multiply-adds of a forward convolution of any rank. w is the weight as stored: (out,
// in/groups, k...) or, transposed, (in, out/groups, k...); out is the output shape.
int64_t conv_macs(const Shape& x, const Shape& w, const Shape& out, bool transposed) {
  if (x.size() < 3 || w.size() != x.size() || out.size() != x.size())
    not_countable("convolution: inconsistent ranks");
  // Each output position (of the input, when transposed) does w[0] * w[1] * prod(k) MACs
  // per batch element; w[1] is already the per-group channel count.
  const Shape& positions = transposed ? x : out;
  return x[0] * tail_numel(positions, 2) * w[0] * w[1] * tail_numel(w, 2);
}

// Leading (batch) dimensions of an attention tensor: everything before (s, d).
int64_t heads(const Shape& s) {
  if (s.size() < 2) not_countable("attention: rank below 2");
  int64_t n = 1;
  for (size_t i = 0; i + 2 < s.size(); ++i) n *= s[i];
  return n;
}

// Attention's q, k, v as (..., s, d): parameters 0-2, read in (batch, seq, heads, dim)
// layout when parameter 3 (bshd) is set. Parameter 4 is the variable-length offsets.
struct Attention {
  int64_t bh, s_q, d_q, s_k, d_v;
};

Attention attention(const Call& call) {
  if (!call.none(4)) not_countable("variable-length attention needs the sequence offsets' values");
  Shape q = call.shape(0), k = call.shape(1), v = call.shape(2);
  if (call.flag(3)) {  // (batch, seq, heads, dim) -> (batch, heads, seq, dim)
    for (Shape* s : {&q, &k, &v}) {
      if (s->size() != 4) not_countable("attention: expected (batch, seq, heads, dim)");
      *s = {(*s)[0], (*s)[2], (*s)[1], (*s)[3]};
    }
  }
  int64_t bh = heads(q);
  heads(k), heads(v);
  return {bh, q[q.size() - 2], q.back(), k[k.size() - 2], v.back()};
}

}  // namespace

// a: (m, k), b: (k, n)
Cost mm(const Call& call) {
  Shape a = call.shape(0), b = call.shape(1);
  require_rank(a, 2, "mm");
  require_rank(b, 2, "mm");
  return {a[0] * a[1] * b[1], a[0] * b[1]};
}

// a: (b, m, k), b: (b, k, n)
Cost bmm(const Call& call) {
  Shape a = call.shape(0), b = call.shape(1);
  require_rank(a, 3, "bmm");
  require_rank(b, 3, "bmm");
  return {a[0] * a[1] * a[2] * b[2], a[0] * a[1] * b[2]};
}

// torch._grouped_mm (mixture-of-experts): 2d x 2d splits k among the groups; every other
// form does k multiply-adds per output element.
Cost grouped_mm(const Call& call) {
  Shape a = call.shape(0), b = call.shape(1), out = call.out_shape();
  if (a.size() < 2 || b.size() < 2) not_countable("grouped_mm: rank below 2");
  if (a.size() == 2 && b.size() == 2) return {a[0] * a[1] * b[1], numel(out)};
  return {numel(out) * a.back(), numel(out)};
}

// A contraction over the first operand's last dimension: each output element is a dot
// product of that length (mv, dot, linear with packed or low-precision weights, ...).
Cost matmul(const Call& call) {
  Shape a = call.shape(0);
  if (a.empty()) not_countable("matmul: a scalar operand");
  int64_t out = numel(call.out_shape());
  return {out * a.back(), out};
}

// a: (b, m, k), b: (b, k, n), summed over the batch into (m, n).
Cost addbmm(const Call& call) {
  Shape a = call.shape(0), b = call.shape(1);
  require_rank(a, 3, "addbmm");
  require_rank(b, 3, "addbmm");
  return {a[0] * a[1] * a[2] * b[2], a[1] * b[2]};
}

// A linear layer's backward: the input gradient and the weight gradient (output_mask[0]
// and [1]) each do the forward's multiply-adds, numel(input) * out_features; the bias
// gradient is a reduction.
Cost linear_backward(const Call& call) {
  std::vector<int64_t> mask = call.integers(2);
  if (mask.size() < 2) not_countable("output_mask is too short");
  Shape x = call.shape(0), grad_out = call.shape(1);
  if (grad_out.empty()) not_countable("linear_backward: a scalar gradient");
  int64_t forward = numel(x) * grad_out.back();
  return {(mask[0] ? forward : 0) + (mask[1] ? forward : 0), 0};
}

// aten._trilinear (nn.Bilinear): i1 * i2 * i3 after unsqueezing each at its expand dims,
// summed over some dims: one multiply-add per point of the broadcast iteration space.
Cost trilinear(const Call& call) {
  std::vector<Shape> shapes;
  for (int p = 0; p < 3; ++p) {
    Shape s = call.shape(p);
    std::vector<int64_t> expand = call.integers(3 + p);
    std::sort(expand.begin(), expand.end());  // torch inserts them in ascending order
    for (int64_t d : expand) {
      if (d < 0 || d > static_cast<int64_t>(s.size())) not_countable("trilinear: bad expand");
      s.insert(s.begin() + d, 1);
    }
    shapes.push_back(s);
  }
  if (shapes[1].size() != shapes[0].size() || shapes[2].size() != shapes[0].size())
    not_countable("trilinear: inconsistent ranks");
  int64_t space = 1;
  for (size_t d = 0; d < shapes[0].size(); ++d)
    space *= std::max({shapes[0][d], shapes[1][d], shapes[2][d]});
  return {space, numel(call.out_shape())};
}

// A forward convolution of any rank, transposed or not.
Cost conv(const Call& call) {
  Shape x = call.shape(0), w = call.shape(1), out = call.out_shape();
  return {conv_macs(x, w, out, call.flag(2)), numel(out)};
}

// aten.convolution_backward: the input gradient and the weight gradient (output_mask[0]
// and [1]), each the forward's multiply-adds: every (input, weight, output) triple of the
// forward appears once in each. w[1] is per group, so groups are exact (torch's counter
// multiplies the weight gradient by the number of groups). The bias gradient is a
// reduction: no MACs.
Cost conv_backward(const Call& call) {
  std::vector<int64_t> mask = call.integers(4);
  if (mask.size() < 2) not_countable("output_mask is too short");
  Shape grad_out = call.shape(0), x = call.shape(1), w = call.shape(2);
  int64_t forward = conv_macs(x, w, grad_out, call.flag(3));
  return {(mask[0] ? forward : 0) + (mask[1] ? forward : 0), 0};
}

// aten.conv_tbc: input (time, batch, in), weight (k, in, out): each output element
// gathers k * in inputs.
Cost conv_tbc(const Call& call) {
  Shape w = call.shape(1), out = call.out_shape();
  require_rank(w, 3, "conv_tbc");
  return {numel(out) * w[0] * w[1], numel(out)};
}

// A quantized convolution, its weight held by packed parameters. A 1-d one runs as 2-d:
// its packed weight is (out, in/groups, 1, k) for an (n, c, l) input.
Cost packed_conv(const Call& call) {
  Shape x = call.shape(0), w = call.packed_shape(1), out = call.out_shape();
  if (x.size() == 3 && w.size() == 4 && w[2] == 1) w.erase(w.begin() + 2);
  return {conv_macs(x, w, out, call.flag(2)), numel(out)};
}

// An RNN of gates * hidden gate rows per step (LSTM 4, GRU 3, tanh/relu 1), or one cell
// (num_layers 1, not bidirectional): per layer and direction, each token multiplies its
// input (input features in the first layer, directions * hidden after) and the hidden
// state by the gate rows. hx: the hidden state, or a list whose first tensor it is.
Cost rnn(const Call& call) {
  Shape x = call.shape(0), h = call.first_shape(1);
  if (x.empty() || h.empty()) not_countable("rnn: a scalar input or state");
  int64_t features = x.back(), hidden = h.back();
  if (features == 0) return {0, 0};
  int64_t tokens = numel(x) / features, rows = call.integer(4) * hidden;
  int64_t directions = call.flag(3) ? 2 : 1, macs = 0, acts = 0;
  for (int64_t layer = 0; layer < call.integer(2); ++layer) {
    int64_t in = layer == 0 ? features : directions * hidden;
    macs += directions * tokens * rows * (in + hidden);
    acts += directions * 2 * tokens * rows;
  }
  return {macs, acts};
}

// Scaled-dot-product attention: q (b, h, s_q, d), k (b, h_kv, s_k, d), v (b, h_kv, s_k, d_v);
// grouped-query attention (h_kv < h) does the work of h heads. scores = q @ k^T, then
// out = softmax(scores) @ v.
Cost sdpa(const Call& call) {
  Attention a = attention(call);
  return {a.bh * a.s_q * a.s_k * (a.d_q + a.d_v), a.bh * a.s_q * (a.s_k + a.d_v)};
}

// Its backward: recomputed scores (d_q), dV (d_v), dP (d_v), dK (d_q), dQ (d_q).
Cost sdpa_backward(const Call& call) {
  Attention a = attention(call);
  return {a.bh * a.s_q * a.s_k * (3 * a.d_q + 2 * a.d_v), 0};
}

// fvcore's batch norm: eval numel * (2 if affine else 1); training numel * (5 if affine else 4).
Cost batch_norm(const Call& call) {
  int64_t n = numel(call.shape(0));
  bool affine = !call.none(1);
  return {n * (call.flag(2) ? (affine ? 5 : 4) : (affine ? 2 : 1)), 0};
}

// fvcore's group / layer / instance norm: numel * (5 if affine else 4).
Cost norm(const Call& call) {
  int64_t n = numel(call.shape(0));
  return {n * (call.none(1) ? 4 : 5), 0};
}

// input_scale * numel(input) + output_scale * numel(output): fvcore's upsample, adaptive
// pooling and grid sample.
Cost elementwise(const Call& call) {
  int64_t in = numel(call.shape(0)), out = numel(call.out_shape());
  return {call.integer(1) * in + call.integer(2) * out, 0};
}

// F.adaptive_avg_pool2d to 1x1 reaches aten as mean(dim=[-1, -2], keepdim=True), exactly
// so: counted as fvcore counts adaptive_avg_pool2d, one flop per input element. A mean
// the program calls itself (an SE block's x.mean((2, 3), keepdim=True)) is free in fvcore.
Cost mean_pool(const Call& call) {
  if (!call.flag(2) || call.none(1)) return {0, 0};
  Shape x = call.shape(0);
  if (x.size() != 3 && x.size() != 4) return {0, 0};
  std::vector<int64_t> dims = call.integers(1);
  bool pooled = dims.size() == 2 && dims[0] == -1 && dims[1] == -2;
  return {pooled ? numel(x) : 0, 0};
}

}  // namespace dispatchflops
