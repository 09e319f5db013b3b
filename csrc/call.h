// Call: what a formula sees of one aten call. Its parameters (bound by the op table to the
// call's arguments or to constants) and its output, read as shapes, flags and integers:
// never as data. Implemented in handlers.cpp on the CPython API; formulas need no Python.
#pragma once
#include <cstdint>
#include <string>
#include <utility>
#include <vector>

typedef struct _object PyObject;

namespace dispatchflops {

using Shape = std::vector<int64_t>;
// (multiply-adds or flops, activations): activations are output elements, fvcore's definition.
using Cost = std::pair<int64_t, int64_t>;

// The call does not fit its formula: it is listed as not counted (ValueError in Python).
[[noreturn]] void not_countable(const std::string& why);

struct Binding;

class Call {
 public:
  Call(const std::vector<Binding>& params, PyObject* args, PyObject* kwargs, PyObject* out)
      : params_(params), args_(args), kwargs_(kwargs), out_(out) {}
  // Parameter p (its index in the kind's line of kinds.h) as a tensor's shape.
  Shape shape(int p) const;
  // The shape of a list's first tensor, or of a tensor.
  Shape first_shape(int p) const;
  // The shape of the weight a packed-parameters object (a quantized op's TorchBind
  // argument) holds: its unpack()'s first tensor.
  Shape packed_shape(int p) const;
  // The output's shape.
  Shape out_shape() const;
  // Its truth value; an absent or None parameter is false.
  bool flag(int p) const;
  // Whether it is None or absent.
  bool none(int p) const;
  int64_t integer(int p) const;
  // An integer list (a single integer as a list of one).
  std::vector<int64_t> integers(int p) const;

 private:
  PyObject* get(int p) const;  // borrowed; nullptr when absent
  const std::vector<Binding>& params_;
  PyObject *args_, *kwargs_, *out_;
};

}  // namespace dispatchflops
