// Handlers for the op table: C callables h(args, kwargs, out) -> (flops, activations) that
// read an aten call's shapes (never its data) and apply a formula. CPython API, no torch.
#pragma once
#include <Python.h>

#include <cstdint>
#include <string>

namespace dispatchflops {

// A new handler, or nullptr with an error set. kind and its parameters a, b, c (indices
// are positions in the call's args):
//   mm, bmm          a, b: indices of the two matrices
//   grouped_mm       args 0, 1 and the output
//   conv             a: index of the `transposed` flag, or -1 and b: transposed (0/1)
//   conv_backward    aten.convolution_backward's own layout
//   sdpa             a: index of q (k, v follow); b: 1 if (batch, seq, heads, dim);
//                    c: index of the variable-length offsets argument, or -1
//   sdpa_backward    as sdpa
//   batch_norm       a: index of the `training` flag, or -1 and b: training (0/1)
//   norm             a: index of the weight (affine when not None)
//   elementwise      a * numel(input) + b * numel(output)
//   mean_pool        aten.mean as fvcore's adaptive_avg_pool2d when it is one
// scale multiplies the flops (the convention's FLOPs per multiply-add). A call whose
// arguments do not fit raises ValueError: "not counted".
PyObject* make_handler(const std::string& kind, int a, int b, int c, int64_t scale);

}  // namespace dispatchflops
