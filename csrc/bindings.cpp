// pybind11 module dispatchflops._C: the formula engine, shapes and integers in, counts out.
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include "charge.h"
#include "formulas.h"
#include "handlers.h"
#include "tracker.h"

namespace py = pybind11;
using namespace dispatchflops;

namespace {

// The convention's FLOPs per multiply-add, applied at the boundary (formulas stay in MACs).
template <typename... Args>
auto scaled(Cost (*f)(Args...)) {
  return [f](Args... args, int64_t scale) {
    Cost c = f(args...);
    return Cost{c.first * scale, c.second};
  };
}

template <typename... Args>
auto scaled(int64_t (*f)(Args...)) {
  return [f](Args... args, int64_t scale) { return f(args...) * scale; };
}

}  // namespace

PYBIND11_MODULE(_C, m) {
  m.doc() = "dispatchflops formula engine: shapes in, counts out (no libtorch). Multiply-add "
          "formulas take scale, the FLOPs per multiply-add (1 gives MACs).";
  m.def("mm", scaled(&mm), py::arg("a"), py::arg("b"), py::arg("scale") = 1, "(macs, activations) of (m,k)@(k,n)");
  m.def("bmm", scaled(&bmm), py::arg("a"), py::arg("b"), py::arg("scale") = 1, "(macs, activations) of (b,m,k)@(b,k,n)");
  m.def("grouped_mm", scaled(&grouped_mm), py::arg("a"), py::arg("b"), py::arg("out"),
        py::arg("scale") = 1,
        "(macs, activations) of torch._grouped_mm");
  m.def("conv", scaled(&conv), py::arg("x"), py::arg("w"), py::arg("out"), py::arg("transposed"),
        py::arg("scale") = 1,
        "(macs, activations) of a forward convolution");
  m.def("conv_backward", scaled(&conv_backward), py::arg("grad_out"), py::arg("x"), py::arg("w"),
        py::arg("transposed"), py::arg("mask_input"), py::arg("mask_weight"), py::arg("scale") = 1,
        "macs of aten.convolution_backward for the requested gradients");
  m.def("sdpa", scaled(&sdpa), py::arg("q"), py::arg("k"), py::arg("v"), py::arg("scale") = 1,
        "(macs, activations) of scaled-dot-product attention");
  m.def("sdpa_backward", scaled(&sdpa_backward), py::arg("q"), py::arg("k"), py::arg("v"),
        py::arg("scale") = 1,
        "macs of scaled-dot-product attention backward");
  m.def("batch_norm", &batch_norm, py::arg("x"), py::arg("affine"), py::arg("training"));
  m.def("norm", &norm, py::arg("x"), py::arg("affine"));
  m.def("elementwise", &elementwise, py::arg("input"), py::arg("output"),
        py::arg("input_scale"), py::arg("output_scale"));
  m.def("numel", &numel, py::arg("shape"));
  m.def(
      "handler",
      [](const std::string& kind, int a, int b, int c, int64_t scale) {
        PyObject* h = make_handler(kind, a, b, c, scale);
        if (!h) throw py::error_already_set();
        return py::reinterpret_steal<py::object>(h);
      },
      py::arg("kind"), py::arg("a") = -1, py::arg("b") = 0, py::arg("c") = -1,
      py::arg("scale") = 1,
      "h(args, kwargs, out) -> (flops, activations) for an aten op's arguments (see "
      "csrc/handlers.h for the kinds); ValueError when a call is not countable");
  m.def(
      "walk_modules",
      [](py::handle model, py::dict paths, py::list numels) {
        if (!walk_modules(model.ptr(), paths.ptr(), numels.ptr())) throw py::error_already_set();
      },
      py::arg("model"), py::arg("paths"), py::arg("numels"),
      "paths[module] = dotted path in named_modules() order; (module path, numel) of each "
      "parameter once, appended to numels");
  m.def(
      "shadow_modules",
      [](py::list holder, py::dict paths) {
        if (!shadow_modules(holder.ptr(), paths.ptr())) throw py::error_already_set();
      },
      py::arg("holder"), py::arg("paths"),
      "shadow each module's _call_impl to enter/leave it in the tracker states of holder[0]");
  m.def(
      "unshadow_modules",
      [](py::list holder, py::dict paths) {
        if (!unshadow_modules(holder.ptr(), paths.ptr())) throw py::error_already_set();
      },
      py::arg("holder"), py::arg("paths"),
      "undo shadow_modules for the modules no state in holder[0] follows");
  m.def(
      "tracker_hooks",
      [](py::list state) {
        PyObject* hooks = tracker_hooks(state.ptr());
        if (!hooks) throw py::error_already_set();
        return py::reinterpret_steal<py::tuple>(hooks);
      },
      py::arg("state"),
      "(pre_hook, post_hook) for the global forward hooks, bound to the tracker's state list "
      "[paths, key, calls, parent_key, frames, adopt]");
  if (!add_charge(m.ptr())) throw py::error_already_set();
}
