// The handler kinds, one line each: X(name, "its parameters"). A kind is the formula
// `Cost name(const Call&)` of formulas.cpp; it reads the parameters named here, each bound
// by the op table (dispatchflops/ops.py) to an argument of the aten op or to a constant,
// and the call's output. Everything else (the handler type, the Python list of kinds, the
// check of a table entry's arity) is generated from this table.
//
// Adding a kind: its formula in formulas.cpp, its line here, and its reference in
// tests/reference.py (same name, same parameters, the output's shape as `out=`).
#pragma once

#define DISPATCHFLOPS_KINDS(X)                                                   \
  X(mm, "a b")                                                                   \
  X(bmm, "a b")                                                                  \
  X(grouped_mm, "a b")                                                           \
  X(matmul, "a")                                                                 \
  X(addbmm, "a b")                                                               \
  X(linear_backward, "input grad_output output_mask")                            \
  X(trilinear, "i1 i2 i3 expand1 expand2 expand3")                               \
  X(conv, "input weight transposed")                                             \
  X(conv_backward, "grad_output input weight transposed output_mask")            \
  X(conv_tbc, "input weight")                                                    \
  X(packed_conv, "input packed transposed")                                      \
  X(rnn, "input hx num_layers bidirectional gates")                              \
  X(sdpa, "query key value bshd offsets")                                        \
  X(sdpa_backward, "query key value bshd offsets")                               \
  X(batch_norm, "input weight training")                                         \
  X(norm, "input weight")                                                        \
  X(elementwise, "input input_scale output_scale")                               \
  X(mean_pool, "input dim keepdim")
