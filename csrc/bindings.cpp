// The module dispatchflops._C: pybind11 for the cold API (handlers, kinds, layouts, the
// module walk, the module call, hooks); charge() is a raw fast-call function (charge.h).
#include <pybind11/pybind11.h>

#include "charge.h"
#include "dispatch.h"
#include "handlers.h"
#include "layouts.h"
#include "module_call.h"
#include "tracker.h"

namespace py = pybind11;
using namespace dispatchflops;

namespace {

// A new reference from the engine, or the error it set.
py::object checked(PyObject* result) {
  if (!result) throw py::error_already_set();
  return py::reinterpret_steal<py::object>(result);
}

void check(bool ok) {
  if (!ok) throw py::error_already_set();
}

}  // namespace

PYBIND11_MODULE(_C, m) {
  m.doc() = "dispatchflops engine: shapes in, counts out (no libtorch)";
  m.def(
      "handler",
      [](py::str kind, py::sequence params, int64_t scale) {
        return checked(make_handler(kind.ptr(), params.ptr(), scale));
      },
      py::arg("kind"), py::arg("params"), py::arg("scale") = 1,
      "h(args, kwargs, out) -> (flops, activations) of a kind (see kinds()) whose parameters "
      "are bound by params: (position, name) for an argument, (-1, value) for a constant; "
      "ValueError when a call is not countable");
  m.def("kinds", [] { return checked(handler_kinds()); },
        "{kind: (parameter names...)}: the handler kinds (csrc/kinds.h)");
  m.attr("layouts") = checked(layouts());
  m.def(
      "walk_modules",
      [](py::handle model, py::dict paths, py::dict numels, py::set containers,
         py::handle module_forward) {
        check(walk_modules(model.ptr(), paths.ptr(), numels.ptr(), containers.ptr(),
                           module_forward.ptr()));
      },
      py::arg("model"), py::arg("paths"), py::arg("numels"), py::arg("containers"),
      py::arg("module_forward"),
      "paths[module] = dotted path in named_modules() order; numels[module path] = numel "
      "of its parameters (each once, under its first module); the paths of modules whose "
      "type's forward is module_forward added to containers");
  m.def(
      "module_call", [](py::list holder) { return checked(new_module_call(holder.ptr())); },
      py::arg("holder"),
      "ModuleCall(module, args, kwargs): Module._wrapped_call_impl's work with the module "
      "entered in each tracker state of holder[0] (csrc/module_call.h)");
  m.def(
      "tracker_hooks", [](py::list state) { return checked(tracker_hooks(state.ptr())); },
      py::arg("state"),
      "(pre_hook, post_hook) for the global forward hooks, bound to a tracker state list");
  m.def(
      "dispatch",
      [](py::list hot, py::object resolve, py::object python_path, py::object failed) {
        return checked(new_dispatch(hot.ptr(), resolve.ptr(), python_path.ptr(), failed.ptr()));
      },
      py::arg("hot"), py::arg("resolve"), py::arg("python_path"), py::arg("failed"),
      "Dispatch(mode, func, types, args, kwargs): the counter's per-op path, for the mode's "
      "__torch_dispatch__ (csrc/dispatch.h)");
  check(add_charge(m.ptr()));
}
