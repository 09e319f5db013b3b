// The module tracker's hot path on the CPython API, no torch. dispatchflops/tracker.py owns
// the semantics; a tracker's state is a list (layouts.h: paths, key, calls, parent_key,
// frames, adopt, thread) that these functions read and change in place. Only the thread
// the tracker follows enters and leaves modules: a call from another thread is transparent.
//
// The key is the running module stack, a tuple of paths, outermost first. Entering a
// module pushes its path (a module outside paths is transparent, unless adopt names it),
// counts its call and keeps, on its first call, the key it ran under (parent_key:
// recomputation in backward is charged under it). Leaving it restores the key from
// before, also for modules above it that an exception left without leaving. After either,
// the state's watch() runs, if it has one.
#pragma once
#include <Python.h>

namespace dispatchflops {

// Fills paths {module: dotted path} in named_modules() order, numels {module path: numel
// of its parameters} (each parameter once, under its first module) and containers {paths
// of modules whose type's forward is module_forward, torch.nn.Module's: no forward of
// their own}. False: error set.
bool walk_modules(PyObject* model, PyObject* paths, PyObject* numels, PyObject* containers,
                  PyObject* module_forward);

// Whether state is a tracker state list (TypeError set if not).
bool check_tracker_state(PyObject* state);
// Whether state is a tracker state list whose key is a tuple (no error set).
bool tracker_state_ok(PyObject* state);
// The running module stack of a tracker state (a new reference).
PyObject* tracker_key(PyObject* state);
// The stack that path's first call ran under, () if none (a new reference; nullptr: error).
PyObject* tracker_parent_key(PyObject* state, PyObject* path);

// Enter / leave module on a tracker state: None, or nullptr with an error set.
PyObject* enter_module(PyObject* state, PyObject* module);
PyObject* leave_module(PyObject* state, PyObject* module);

// (pre_hook, post_hook): builtins bound to a tracker state, for the global forward hooks
// (which follow every module call, through torch's slow path). nullptr: error set.
PyObject* tracker_hooks(PyObject* state);

}  // namespace dispatchflops
