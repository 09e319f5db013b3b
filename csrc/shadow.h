// Shadows: how a tracker follows a model's modules without global hooks. CPython API, no
// torch.
//
// Why: torch's global forward hooks send *every* module call in the process down
// Module._call_impl's slow path (about 4 us a call). Instead, for the length of a counting
// block, each module of the model gets a Shadow in its instance dict under `_call_impl`;
// Module._wrapped_call_impl finds it there before the class's method. The shadow enters
// the module in every active tracker state, calls the class's _call_impl (which takes its
// fast path) or the callable the instance held before, and leaves the module, also when
// the call raised.
//
// What a user may do with the module meanwhile, and what the shadow does about it:
//   - copy.copy or a DataParallel replica shares the dict: the shadow reads the module the
//     call is for from Module._wrapped_call_impl's frame and runs a copy as itself,
//     unfollowed, taking itself out of the copy's dict;
//   - deepcopy gets a stale shadow for the copy, which removes itself on first call;
//   - pickle gets functools.partial(class _call_impl, module), which behaves the same;
//   - something that wrapped _call_impl after the shadow keeps it: once the block ends,
//     the stale shadow passes calls through.
// Shadows are kept in a registry of live shadows ({module: shadow}), so a module already
// shadowed (by a nested counter) is entered by the one shadow, and the last tracker to
// leave takes it out.
#pragma once
#include <Python.h>

namespace dispatchflops {

// Shadows _call_impl of each module of paths that has no live shadow. holder is
// [tuple of tracker states, the code of Module._wrapped_call_impl]: the trackers replace
// holder[0] as they come and go; every shadow enters and leaves its module in each.
bool shadow_modules(PyObject* holder, PyObject* paths);
// Takes the shadows out of the modules of paths that no state in holder[0] follows.
bool unshadow_modules(PyObject* holder, PyObject* paths);

}  // namespace dispatchflops
