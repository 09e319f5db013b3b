#include "formulas.h"

#include <stdexcept>

namespace dispatchflops {

namespace {

void require_rank(const Shape& s, size_t rank, const char* what) {
  if (s.size() != rank) throw std::invalid_argument(std::string(what) + ": unexpected rank");
}

int64_t tail_numel(const Shape& s, size_t from) {
  int64_t n = 1;
  for (size_t i = from; i < s.size(); ++i) n *= s[i];
  return n;
}

// Leading (batch) dimensions of an attention tensor: everything before (s, d).
int64_t heads(const Shape& s) {
  if (s.size() < 2) throw std::invalid_argument("attention: rank below 2");
  int64_t n = 1;
  for (size_t i = 0; i + 2 < s.size(); ++i) n *= s[i];
  return n;
}

}  // namespace

int64_t numel(const Shape& s) { return tail_numel(s, 0); }

Cost mm(const Shape& a, const Shape& b) {
  require_rank(a, 2, "mm");
  require_rank(b, 2, "mm");
  return {a[0] * a[1] * b[1], a[0] * b[1]};
}

Cost bmm(const Shape& a, const Shape& b) {
  require_rank(a, 3, "bmm");
  require_rank(b, 3, "bmm");
  return {a[0] * a[1] * a[2] * b[2], a[0] * a[1] * b[2]};
}

Cost grouped_mm(const Shape& a, const Shape& b, const Shape& out) {
  if (a.size() < 2 || b.size() < 2) throw std::invalid_argument("grouped_mm: rank below 2");
  if (a.size() == 2 && b.size() == 2) return {a[0] * a[1] * b[1], numel(out)};
  return {numel(out) * a.back(), numel(out)};
}

Cost conv(const Shape& x, const Shape& w, const Shape& out, bool transposed) {
  if (x.size() < 3 || w.size() != x.size() || out.size() != x.size())
    throw std::invalid_argument("convolution: inconsistent ranks");
  // Each output position (of the input, when transposed) does w[0] * w[1] * prod(k) MACs
  // per batch element; w[1] is already the per-group channel count.
  const Shape& positions = transposed ? x : out;
  int64_t macs = x[0] * tail_numel(positions, 2) * w[0] * w[1] * tail_numel(w, 2);
  return {macs, numel(out)};
}

int64_t conv_backward(const Shape& grad_out, const Shape& x, const Shape& w, bool transposed,
                      bool mask_input, bool mask_weight) {
  // Each gradient does the forward's multiply-adds: every (input, weight, output) triple of
  // the forward appears once in each. w[1] is per group, so groups are exact (torch's
  // counter multiplies the weight gradient by the number of groups).
  int64_t forward = conv(x, w, grad_out, transposed).first;
  return (mask_input ? forward : 0) + (mask_weight ? forward : 0);
}

Cost sdpa(const Shape& q, const Shape& k, const Shape& v) {
  int64_t bh = heads(q);
  int64_t s_q = q[q.size() - 2], d_q = q[q.size() - 1];
  int64_t s_k = k[k.size() - 2], d_v = v[v.size() - 1];
  // scores = q @ k^T, then out = softmax(scores) @ v
  return {bh * s_q * s_k * (d_q + d_v), bh * s_q * (s_k + d_v)};
}

int64_t sdpa_backward(const Shape& q, const Shape& k, const Shape& v) {
  int64_t bh = heads(q);
  int64_t s_q = q[q.size() - 2], d_q = q[q.size() - 1];
  int64_t s_k = k[k.size() - 2], d_v = v[v.size() - 1];
  // recompute scores (d_q), dV (d_v), dP (d_v), dK (d_q), dQ (d_q)
  return bh * s_q * s_k * (3 * d_q + 2 * d_v);
}

int64_t batch_norm(const Shape& x, bool affine, bool training) {
  return numel(x) * (training ? (affine ? 5 : 4) : (affine ? 2 : 1));
}

int64_t norm(const Shape& x, bool affine) { return numel(x) * (affine ? 5 : 4); }

int64_t elementwise(const Shape& in, const Shape& out, int64_t input_scale, int64_t output_scale) {
  return input_scale * numel(in) + output_scale * numel(out);
}

}  // namespace dispatchflops
