// pybind11 module dispatchflops._C: the formula engine, shapes and integers in, counts out.
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include "formulas.h"

namespace py = pybind11;
using namespace dispatchflops;

PYBIND11_MODULE(_C, m) {
  m.doc() = "dispatchflops formula engine: shapes in, counts out (no libtorch)";
  m.def("mm", &mm, py::arg("a"), py::arg("b"), "(macs, activations) of (m,k)@(k,n)");
  m.def("bmm", &bmm, py::arg("a"), py::arg("b"), "(macs, activations) of (b,m,k)@(b,k,n)");
  m.def("grouped_mm", &grouped_mm, py::arg("a"), py::arg("b"), py::arg("out"),
        "(macs, activations) of torch._grouped_mm");
  m.def("conv", &conv, py::arg("x"), py::arg("w"), py::arg("out"), py::arg("transposed"),
        "(macs, activations) of a forward convolution");
  m.def("conv_backward", &conv_backward, py::arg("grad_out"), py::arg("x"), py::arg("w"),
        py::arg("transposed"), py::arg("mask_input"), py::arg("mask_weight"),
        "macs of aten.convolution_backward for the requested gradients");
  m.def("sdpa", &sdpa, py::arg("q"), py::arg("k"), py::arg("v"),
        "(macs, activations) of scaled-dot-product attention");
  m.def("sdpa_backward", &sdpa_backward, py::arg("q"), py::arg("k"), py::arg("v"),
        "macs of scaled-dot-product attention backward");
  m.def("batch_norm", &batch_norm, py::arg("x"), py::arg("affine"), py::arg("training"));
  m.def("norm", &norm, py::arg("x"), py::arg("affine"));
  m.def("elementwise", &elementwise, py::arg("input"), py::arg("output"),
        py::arg("input_scale"), py::arg("output_scale"));
  m.def("numel", &numel, py::arg("shape"));
}
