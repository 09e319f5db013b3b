// Handlers: the C callables h(args, kwargs, out) -> (flops, activations) that the op table
// (dispatchflops/ops.py) maps built-in aten ops to. A handler is a kind of kinds.h (its
// formula), the binding of each of the kind's parameters, and a scale. CPython API.
#pragma once
#include <Python.h>

#include <cstdint>

namespace dispatchflops {

// A handler, or nullptr with an error set. params holds one binding per parameter of the
// kind (as kinds.h lists them): (position, name) for an argument of the op, read from
// args[position] or else kwargs[name] (absent when in neither), or (-1, value) for a
// constant. scale multiplies the flops (the convention's FLOPs per multiply-add). A call
// that does not fit its formula raises ValueError: "not counted".
PyObject* make_handler(PyObject* kind, PyObject* params, int64_t scale);

// {kind: (parameter names...)}, from kinds.h (a new reference).
PyObject* handler_kinds();

}  // namespace dispatchflops
