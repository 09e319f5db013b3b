// Handlers: the C callables h(args, kwargs, out) -> (flops, activations) that the op table
// (dispatchflops/ops.py) maps built-in aten ops to. Each reads the shapes (never the data)
// of an op's arguments and output, where its kind says, and applies a formula.
#include "handlers.h"

#include <stdexcept>
#include <string>

#include "formulas.h"

namespace dispatchflops {

namespace {

enum Kind { MM, BMM, GROUPED_MM, CONV, CONV_BACKWARD, SDPA, SDPA_BACKWARD, BATCH_NORM, NORM,
            ELEMENTWISE, MEAN_POOL };

struct KindName {
  const char* name;
  Kind kind;
};
const KindName kKinds[] = {
    {"mm", MM}, {"bmm", BMM}, {"grouped_mm", GROUPED_MM}, {"conv", CONV},
    {"conv_backward", CONV_BACKWARD}, {"sdpa", SDPA}, {"sdpa_backward", SDPA_BACKWARD},
    {"batch_norm", BATCH_NORM}, {"norm", NORM}, {"elementwise", ELEMENTWISE},
    {"mean_pool", MEAN_POOL},
};

// A handler's kind, its parameters (see handlers.h) and the FLOPs per multiply-add.
struct Spec {
  Kind kind;
  int a, b, c;
  int64_t scale;
};

const char* kCapsule = "dispatchflops.handler";
PyObject* shape_attr = nullptr;  // interned "shape"

// An argument that does not fit: the call is not countable (ValueError at the boundary).
[[noreturn]] void not_countable(const std::string& why) { throw std::invalid_argument(why); }

// A Python error to pass on as it is (already set).
struct PythonError {};

// After a failed read: an argument of the wrong kind (TypeError, ValueError, ...) makes the
// call not countable; anything else (MemoryError, KeyboardInterrupt) propagates.
[[noreturn]] void read_failed(const std::string& why) {
  if (PyErr_ExceptionMatches(PyExc_TypeError) || PyErr_ExceptionMatches(PyExc_ValueError) ||
      PyErr_ExceptionMatches(PyExc_AttributeError) || PyErr_ExceptionMatches(PyExc_OverflowError)) {
    PyErr_Clear();
    not_countable(why);
  }
  throw PythonError{};
}

PyObject* arg(PyObject* args, int i) {
  if (i < 0 || i >= PyTuple_GET_SIZE(args)) not_countable("argument " + std::to_string(i) + " missing");
  return PyTuple_GET_ITEM(args, i);
}

bool truth(PyObject* value) {
  int t = PyObject_IsTrue(value);
  if (t < 0) read_failed("a flag argument has no truth value");
  return t == 1;
}

int64_t as_int(PyObject* value) {
  long long v = PyLong_AsLongLong(value);
  if (v == -1 && PyErr_Occurred()) read_failed("a size is not an integer");
  return v;
}

Shape shape_of(PyObject* tensor) {
  PyObject* size = PyObject_GetAttr(tensor, shape_attr);
  if (!size) read_failed("expected a tensor");
  if (!PyTuple_Check(size)) {  // torch.Size is a tuple
    Py_DECREF(size);
    not_countable("a shape is not a tuple");
  }
  Py_ssize_t n = PyTuple_GET_SIZE(size);
  Shape shape(n);
  try {
    for (Py_ssize_t i = 0; i < n; ++i) shape[i] = as_int(PyTuple_GET_ITEM(size, i));
  } catch (...) {
    Py_DECREF(size);
    throw;
  }
  Py_DECREF(size);
  return shape;
}

// (batch, seq, heads, dim) -> (batch, heads, seq, dim)
Shape bhsd(const Shape& s) {
  if (s.size() != 4) not_countable("attention: expected (batch, seq, heads, dim)");
  return {s[0], s[2], s[1], s[3]};
}

void check_fixed_length(PyObject* args, int varlen_arg) {
  if (varlen_arg >= 0 && arg(args, varlen_arg) != Py_None)
    not_countable("variable-length attention needs the sequence offsets' values");
}

// mean over (-2, -1) of a 4-d tensor with keepdim: adaptive_avg_pool2d to 1x1, which fvcore
// counts as one flop per input element. Any other mean is free in fvcore.
int64_t mean_as_pool(PyObject* args, PyObject* kwargs, PyObject* out) {
  Py_ssize_t n = PyTuple_GET_SIZE(args);
  PyObject* dims = n > 1 ? PyTuple_GET_ITEM(args, 1) : Py_None;
  PyObject* keepdim = n > 2 ? PyTuple_GET_ITEM(args, 2) : nullptr;
  if (!keepdim && kwargs && PyDict_Check(kwargs)) keepdim = PyDict_GetItemString(kwargs, "keepdim");
  if (!keepdim || !truth(keepdim) || dims == Py_None) return 0;
  Shape x = shape_of(arg(args, 0));
  if (x.size() != 4) return 0;
  PyObject* seq = PySequence_Fast(dims, "dims");
  if (!seq) read_failed("dims is not a sequence");
  bool pooled = false;
  if (PySequence_Fast_GET_SIZE(seq) == 2) {
    PyObject** items = PySequence_Fast_ITEMS(seq);
    try {
      int64_t d0 = ((as_int(items[0]) % 4) + 4) % 4, d1 = ((as_int(items[1]) % 4) + 4) % 4;
      pooled = (d0 == 2 && d1 == 3) || (d0 == 3 && d1 == 2);
    } catch (...) {
      Py_DECREF(seq);
      throw;
    }
  }
  Py_DECREF(seq);
  return pooled ? elementwise(x, shape_of(out), 1, 0) : 0;
}

Cost evaluate(const Spec& s, PyObject* args, PyObject* kwargs, PyObject* out) {
  switch (s.kind) {
    case MM:
      return mm(shape_of(arg(args, s.a)), shape_of(arg(args, s.b)));
    case BMM:
      return bmm(shape_of(arg(args, s.a)), shape_of(arg(args, s.b)));
    case GROUPED_MM:
      return grouped_mm(shape_of(arg(args, 0)), shape_of(arg(args, 1)), shape_of(out));
    case CONV: {
      bool transposed = s.a >= 0 ? truth(arg(args, s.a)) : s.b != 0;
      return conv(shape_of(arg(args, 0)), shape_of(arg(args, 1)), shape_of(out), transposed);
    }
    case CONV_BACKWARD: {
      PyObject* mask = PySequence_Fast(arg(args, 10), "output_mask");
      if (!mask) read_failed("output_mask is not a sequence");
      bool ok = PySequence_Fast_GET_SIZE(mask) >= 2;
      bool mask_input = false, mask_weight = false;
      try {
        if (ok) {
          mask_input = truth(PySequence_Fast_GET_ITEM(mask, 0));
          mask_weight = truth(PySequence_Fast_GET_ITEM(mask, 1));
        }
      } catch (...) {
        Py_DECREF(mask);
        throw;
      }
      Py_DECREF(mask);
      if (!ok) not_countable("output_mask is too short");
      return {conv_backward(shape_of(arg(args, 0)), shape_of(arg(args, 1)),
                            shape_of(arg(args, 2)), truth(arg(args, 7)), mask_input, mask_weight),
              0};
    }
    case SDPA: {
      check_fixed_length(args, s.c);
      Shape q = shape_of(arg(args, s.a)), k = shape_of(arg(args, s.a + 1)),
            v = shape_of(arg(args, s.a + 2));
      return s.b ? sdpa(bhsd(q), bhsd(k), bhsd(v)) : sdpa(q, k, v);
    }
    case SDPA_BACKWARD: {
      check_fixed_length(args, s.c);
      Shape q = shape_of(arg(args, s.a)), k = shape_of(arg(args, s.a + 1)),
            v = shape_of(arg(args, s.a + 2));
      return {s.b ? sdpa_backward(bhsd(q), bhsd(k), bhsd(v)) : sdpa_backward(q, k, v), 0};
    }
    case BATCH_NORM: {
      bool training = s.a >= 0 ? truth(arg(args, s.a)) : s.b != 0;
      return {batch_norm(shape_of(arg(args, 0)), arg(args, 1) != Py_None, training), 0};
    }
    case NORM:
      return {norm(shape_of(arg(args, 0)), arg(args, s.a) != Py_None), 0};
    case ELEMENTWISE:
      return {elementwise(shape_of(arg(args, 0)), shape_of(out), s.a, s.b), 0};
    case MEAN_POOL:
      return {mean_as_pool(args, kwargs, out), 0};
  }
  not_countable("unknown handler kind");
}

// h(args, kwargs, out) -> (flops, activations); ValueError when the call is not countable.
PyObject* call_handler(PyObject* capsule, PyObject* const* argv, Py_ssize_t nargs) {
  if (nargs != 3) return PyErr_SetString(PyExc_TypeError, "handler(args, kwargs, out)"), nullptr;
  const Spec* spec = static_cast<const Spec*>(PyCapsule_GetPointer(capsule, kCapsule));
  if (!spec) return nullptr;
  PyObject* args = argv[0];
  if (!PyTuple_Check(args)) return PyErr_SetString(PyExc_TypeError, "handler: args must be a tuple"), nullptr;
  try {
    Cost cost = evaluate(*spec, args, argv[1], argv[2]);
    return Py_BuildValue("(LL)", static_cast<long long>(cost.first * spec->scale),
                         static_cast<long long>(cost.second));
  } catch (const std::invalid_argument& e) {
    PyErr_SetString(PyExc_ValueError, e.what());
  } catch (const PythonError&) {
  } catch (const std::exception& e) {
    PyErr_SetString(PyExc_RuntimeError, e.what());
  }
  return nullptr;
}

PyMethodDef handler_def = {
    "handler", reinterpret_cast<PyCFunction>(reinterpret_cast<void (*)()>(call_handler)),
    METH_FASTCALL, "h(args, kwargs, out) -> (flops, activations) of one aten call."};

void free_spec(PyObject* capsule) {
  delete static_cast<Spec*>(PyCapsule_GetPointer(capsule, kCapsule));
}

}  // namespace

PyObject* make_handler(const std::string& kind, int a, int b, int c, int64_t scale) {
  if (!shape_attr && !(shape_attr = PyUnicode_InternFromString("shape"))) return nullptr;
  for (const KindName& k : kKinds) {
    if (kind != k.name) continue;
    Spec* spec = new Spec{k.kind, a, b, c, scale};
    PyObject* capsule = PyCapsule_New(spec, kCapsule, free_spec);
    if (!capsule) {
      delete spec;
      return nullptr;
    }
    PyObject* handler = PyCFunction_New(&handler_def, capsule);
    Py_DECREF(capsule);
    return handler;
  }
  PyErr_SetString(PyExc_ValueError, ("unknown handler kind: " + kind).c_str());
  return nullptr;
}

}  // namespace dispatchflops
