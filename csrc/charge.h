// The counter's per-op bookkeeping (see charge.cpp): CPython API, no torch.
#pragma once
#include <Python.h>

namespace dispatchflops {

// Adds to module a raw fast-call function (no pybind11 on the hot path):
//   charge(state, op, handler, args, kwargs, out) -> None
// state is the counter's list [acc, tracker state, pending, forward key, forward acc, tag,
// unsupported, no-formula marker, current_autograd_node, is_grad_enabled]. A handler that
// is the marker, or raises ValueError, lists the call as not counted; otherwise its
// (flops, activations) go to acc[(phase, module stack)][id(op)] = [flops, activations,
// calls, op], the phase being forward, recompute (a module running inside backward) or
// backward (the stack the op's autograd node was tagged with).
bool add_charge(PyObject* module);

}  // namespace dispatchflops
