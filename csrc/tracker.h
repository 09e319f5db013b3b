// The module tracker's hot path (see tracker.cpp): CPython API, no torch.
#pragma once
#include <Python.h>

namespace dispatchflops {

// Fills paths {module: dotted path} in named_modules() order and appends (module path,
// numel) to numels for each parameter, once, under its first module. False: error set.
bool walk_modules(PyObject* model, PyObject* paths, PyObject* numels);

// Whether state is a tracker state list (no error set).
bool tracker_state_ok(PyObject* state);
// The running module stack of a tracker state (a new reference).
PyObject* tracker_key(PyObject* state);
// The stack that path's first call ran under, () if none (a new reference; nullptr: error).
PyObject* tracker_parent_key(PyObject* state, PyObject* path);

// (pre_hook, post_hook): builtins bound to the tracker's state list
// [paths, key, calls, parent_key, frames, adopt]. nullptr: error set.
PyObject* tracker_hooks(PyObject* state);

// Shadows _call_impl in the instance dict of each module of paths (once: a module already
// shadowed keeps its shadow) with a callable that enters and leaves the module in each
// tracker state of holder[0], a tuple the trackers replace as they come and go; holder[1]
// is the code of Module._wrapped_call_impl, whose `self` is the module called. Cheaper
// than global hooks, which send every module call down torch's slow path.
bool shadow_modules(PyObject* holder, PyObject* paths);
// Undoes shadow_modules for the modules of paths that no state in holder[0] follows.
bool unshadow_modules(PyObject* holder, PyObject* paths);

}  // namespace dispatchflops
