// The module tracker's hot path (see tracker.cpp): CPython API, no torch.
#pragma once
#include <Python.h>

namespace dispatchflops {

// Fills paths {module: dotted path} in named_modules() order and appends (module path,
// numel) to numels for each parameter, once, under its first module. False: error set.
bool walk_modules(PyObject* model, PyObject* paths, PyObject* numels);

// (pre_hook, post_hook): builtins bound to the tracker's state list
// [paths, key, calls, parent_key, frames, adopt]. nullptr: error set.
PyObject* tracker_hooks(PyObject* state);

}  // namespace dispatchflops
