// The dispatch: the counter's per-op path, in C. CPython API, no torch.
//
// A Dispatch is what the counter's TorchDispatchMode calls for each op (the mode's
// instance attribute __torch_dispatch__ is the Dispatch bound to the mode): no Python
// frame runs for a counted op. Dispatch(mode, func, types, args, kwargs):
//   1. looks func up in its table, filled once per op by resolve(func), which returns
//      None (the op takes the Python path: composites run whole, fused kernels,
//      higher-order operators) or (call, handler, state): call(*args, **kwargs) runs the
//      op (an OpOverload's C entry, func._op, where calling it is all func's __call__ does);
//      handler None charges nothing, else charge(state, func, handler, args, kwargs, out);
//   2. tags the autograd nodes of the forward outputs queued by the previous op
//      (tag_pending, charge.h);
//   3. runs the op; if it raises an Exception, failed(exception, func) notes where before
//      the error propagates;
//   4. hands (func, args, kwargs or None, out) to the counter's memory note, if it has one (memory.py);
//   5. charges it.
// Tensor subclasses among types, keyword arguments to the Dispatch itself and ops resolved
// to None go, before step 2, to python_path(func, types, args, kwargs) (the mode's Python
// __torch_dispatch__), which does what the whole mode does without the Dispatch.
#pragma once
#include <Python.h>

namespace dispatchflops {

// A new Dispatch; hot is the counter's state list (charge.h: its pending outputs and
// torch.Tensor are read here). nullptr: error set.
PyObject* new_dispatch(PyObject* hot, PyObject* resolve, PyObject* python_path,
                       PyObject* failed);

}  // namespace dispatchflops
