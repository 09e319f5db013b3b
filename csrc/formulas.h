// The formulas: one per handler kind of kinds.h, `Cost name(const Call&)`, declared from
// that table. Each reads the shapes (never the data) of its parameters and output.
// Matmul, convolution and attention formulas return multiply-adds (MACs), which the
// handler scales by the convention's FLOPs per multiply-add; batch_norm, norm,
// elementwise and mean_pool follow fvcore's handles and return fvcore flops. A call that
// does not fit calls not_countable.
#pragma once
#include "call.h"
#include "kinds.h"

namespace dispatchflops {

#define DISPATCHFLOPS_DECLARE_FORMULA(name, params) Cost name(const Call& call);
DISPATCHFLOPS_KINDS(DISPATCHFLOPS_DECLARE_FORMULA)
#undef DISPATCHFLOPS_DECLARE_FORMULA

}  // namespace dispatchflops
