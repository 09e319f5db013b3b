// The module call: how trackers follow modules without global hooks, without putting
// anything in the user's modules and without touching a class. CPython API, no torch.
//
// Why: torch's global forward hooks send *every* module call in the process down
// Module._call_impl's slow path (about 4 us a call). Instead, for the length of a counting
// block, the code of torch's Module._wrapped_call_impl (what Module.__call__ is) is
// swapped for one that calls a ModuleCall: ModuleCall(module, args, kwargs) enters the
// module in every tracker state of its holder, does what torch's _wrapped_call_impl does
// (module._compiled_call_impl(*args, **kwargs) if the module was compiled, else
// module._call_impl(*args, **kwargs), which takes its fast path), and leaves the module,
// also when the call raised. A state passes over modules it does not follow and calls
// from other threads.
//
// No module, instance dict or class changes: pickles, copies, vars() and state_dict() in
// the block are what they are outside it, a copy of a module is a module the trackers do
// not follow, and no type's attribute caches are invalidated (assigning Module.__call__
// would make every module's attribute lookups slower for a while, at each block).
// dispatchflops/tracker.py checks at import that torch's code is the one this stands in
// for, swaps the code in and out, and falls back to global hooks otherwise.
#pragma once
#include <Python.h>

namespace dispatchflops {

// A new ModuleCall entering each module in the tracker states of holder[0] (holder: a
// list [tuple of tracker states]). nullptr: error set.
PyObject* new_module_call(PyObject* holder);

}  // namespace dispatchflops
