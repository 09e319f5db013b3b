// The counter's per-op bookkeeping: charge(), the one C call a counted op costs. CPython
// API, no torch.
//
// charge(state, op, handler, args, kwargs, out[, bytes_of]) -> None, a raw fast-call
// function (no pybind11 on the hot path). state is the counter's state list (layouts.h). The handler
// (handlers.h) gives the call's (flops, activations); a handler that is the no-formula
// marker, or raises ValueError, lists the call as not counted instead; the moves marker
// means no FLOPs. Where the op has a traffic plan (state's plans; traffic.h), the call is
// also charged the bytes it reads and writes, and an op with no FLOPs is charged those
// alone (FLOPs None). With bytes_of, the bytes are those of op bytes_of's plan (a
// composite op run whole, whose FLOPs one op of its decomposition carries). The cost is added to the op's record in the accumulator of (phase,
// module stack), the phase being:
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
//
// tag_pending(state) -> None: the forward outputs queued in state's pending list get their
// autograd node's metadata[tag] set to the module stack they were queued with (autograd
// attaches the node after the op returns through the mode, hence the queue; the counter
// calls this before the next op runs). An entry (output, key, n) whose output has no node
// yet (a HOP's, which gets it when the autograd.Function around it returns) stays queued
// for n - 1 more calls; any other entry leaves the queue.
#pragma once
#include <Python.h>

namespace dispatchflops {

// charge() and tag_pending(), for C callers (the first argument, the module, is unused).
PyObject* charge(PyObject*, PyObject* const* argv, Py_ssize_t nargs);
PyObject* tag_pending(PyObject*, PyObject* state);

// Adds charge() and tag_pending() to module.
bool add_charge(PyObject* module);

}  // namespace dispatchflops
