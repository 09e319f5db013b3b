// The counter's per-op bookkeeping: charge(), the one C call a counted op costs. CPython
// API, no torch.
//
// charge(state, op, handler, args, kwargs, out) -> None, a raw fast-call function (no
// pybind11 on the hot path). state is the counter's state list (layouts.h). The handler
// (handlers.h) gives the call's (flops, activations); a handler that is the no-formula
// marker, or raises ValueError, lists the call as not counted instead. The cost is added
// to the op's record in the accumulator of (phase, module stack), the phase being:
//   forward    no autograd node is running: the stack the tracker holds now; the output
//              is queued to have its autograd node tagged with that stack
//   recompute  a module runs inside backward (activation checkpointing): the running
//              stack, under the stack its first call ran in
//   backward   an autograd node is running: the stack its forward op was tagged with;
//              an untagged node of torch.distributed's own (DTensor's redistributions,
//              from_local, FSDP2's hooks) is charged where the last tagged node charged
//              in backward was (cleared when forward moves to another module stack);
//              any other untagged node to no module
// Activations are a forward quantity (fvcore's): backward ops add none.
#pragma once
#include <Python.h>

namespace dispatchflops {

// Adds charge() to module.
bool add_charge(PyObject* module);

}  // namespace dispatchflops
