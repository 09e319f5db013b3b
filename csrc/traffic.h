// Memory traffic: the bytes one op call reads and writes, from its tensors' shapes, strides
// and dtypes (never their data). CPython API, no torch.
//
// A plan (dispatchflops/traffic.py makes one per op) is a tuple of (position, name, role)
// entries for the op's arguments that are not simply read; the empty tuple reads every
// tensor argument and writes every tensor output. A tensor argument (or each tensor of a
// list or tuple argument) is read once however often it is passed, as many bytes as it has
// distinct elements (a broadcast dimension, stride 0, is read once); each output is written
// whole, once. Roles (traffic_role in layouts.h):
//   SKIP        not read: a target the op only writes (copy_, fill_, out=)
//   GATHER      read only as many elements as the output has (embedding, index_select)
//   SOURCE      the op writes these bytes into its target (an in-place scatter: index_put_,
//               index_copy_), instead of writing its outputs whole
//   ACCUMULATE  SOURCE that also reads the target elements it updates (index_add_)
//   READ_WRITE  read and written: the target of an in-place op that returns nothing
//               (_foreach_add_)
// A tensor whose metadata cannot be read as integers (symbolic sizes) moves 0 bytes.
#pragma once
#include <Python.h>

#include <cstdint>

#include "layouts.h"

namespace dispatchflops {

// Bytes read plus written by one call; -1 with a Python error set on failure.
int64_t bytes_moved(PyObject* plan, PyObject* tensor_type, PyObject* args, PyObject* kwargs,
                    PyObject* out);

}  // namespace dispatchflops
