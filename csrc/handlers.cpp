// Handlers (see handlers.h): the Call that formulas read, on the CPython API, and the
// handler type that binds a kind's parameters and runs its formula.
#include "handlers.h"

#include <stdexcept>
#include <string>
#include <vector>

#include "call.h"
#include "formulas.h"

namespace dispatchflops {

// One parameter of a handler: an argument of the op (pos >= 0, name for kwargs) or a
// constant (pos < 0, value).
struct Binding {
  Py_ssize_t pos;
  PyObject* name;   // owned
  PyObject* value;  // owned
};

void not_countable(const std::string& why) { throw std::invalid_argument(why); }

namespace {

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

PyObject* shape_attr = nullptr;  // interned "shape"

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

// The kinds of kinds.h: their formulas and parameter names, in the table's order.
struct Kind {
  const char* name;
  const char* params;
  Cost (*formula)(const Call&);
};

#define DISPATCHFLOPS_KIND_ENTRY(name, params) {#name, params, &name},
const Kind kKinds[] = {DISPATCHFLOPS_KINDS(DISPATCHFLOPS_KIND_ENTRY)};
#undef DISPATCHFLOPS_KIND_ENTRY

// The parameter names of a kind's line (a new reference to a tuple of str).
PyObject* param_names(const Kind& k) {
  PyObject* text = PyUnicode_FromString(k.params);
  PyObject* list = text ? PyUnicode_Split(text, nullptr, -1) : nullptr;
  Py_XDECREF(text);
  PyObject* names = list ? PyList_AsTuple(list) : nullptr;
  Py_XDECREF(list);
  return names;
}

// A handler: its kind's formula, the bindings of its parameters and the FLOPs per
// multiply-add.
struct Spec {
  const Kind* kind;
  std::vector<Binding> params;
  int64_t scale;
};

const char* kCapsule = "dispatchflops.handler";

// h(args, kwargs, out) -> (flops, activations); ValueError when the call is not countable.
PyObject* call_handler(PyObject* capsule, PyObject* const* argv, Py_ssize_t nargs) {
  if (nargs != 3) return PyErr_SetString(PyExc_TypeError, "handler(args, kwargs, out)"), nullptr;
  const Spec* spec = static_cast<const Spec*>(PyCapsule_GetPointer(capsule, kCapsule));
  if (!spec) return nullptr;
  if (!PyTuple_Check(argv[0])) return PyErr_SetString(PyExc_TypeError, "handler: args must be a tuple"), nullptr;
  try {
    Cost cost = spec->kind->formula(Call(spec->params, argv[0], argv[1], argv[2]));
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
  Spec* spec = static_cast<Spec*>(PyCapsule_GetPointer(capsule, kCapsule));
  for (Binding& b : spec->params) Py_XDECREF(b.name), Py_XDECREF(b.value);
  delete spec;
}

// The binding of one parameter from a (position, name or value) pair.
bool bind(PyObject* item, Binding* out) {
  if (!PyTuple_Check(item) || PyTuple_GET_SIZE(item) != 2) {
    PyErr_SetString(PyExc_TypeError, "a binding is (position, name) or (-1, value)");
    return false;
  }
  Py_ssize_t pos = PyLong_AsSsize_t(PyTuple_GET_ITEM(item, 0));
  if (pos == -1 && PyErr_Occurred()) return false;
  PyObject* second = PyTuple_GET_ITEM(item, 1);
  if (pos >= 0 && !PyUnicode_Check(second)) {
    PyErr_SetString(PyExc_TypeError, "an argument binding names the argument");
    return false;
  }
  *out = {pos < 0 ? -1 : pos, pos >= 0 ? Py_NewRef(second) : nullptr,
          pos < 0 ? Py_NewRef(second) : nullptr};
  return true;
}

}  // namespace

PyObject* Call::get(int p) const {
  const Binding& b = params_[p];
  if (b.pos < 0) return b.value;
  if (b.pos < PyTuple_GET_SIZE(args_)) return PyTuple_GET_ITEM(args_, b.pos);
  if (kwargs_ && PyDict_Check(kwargs_)) {
    PyObject* v = PyDict_GetItemWithError(kwargs_, b.name);
    if (v) return v;
    if (PyErr_Occurred()) throw PythonError{};
  }
  return nullptr;
}

Shape Call::shape(int p) const {
  PyObject* v = get(p);
  if (!v) not_countable("argument " + std::to_string(p) + " missing");
  return shape_of(v);
}

Shape Call::first_shape(int p) const {
  PyObject* v = get(p);
  if (!v) not_countable("argument " + std::to_string(p) + " missing");
  if (!PyList_Check(v) && !PyTuple_Check(v)) return shape_of(v);
  if (PySequence_Fast_GET_SIZE(v) == 0) not_countable("an empty list of tensors");
  return shape_of(PySequence_Fast_GET_ITEM(v, 0));
}

Shape Call::packed_shape(int p) const {
  PyObject* v = get(p);
  if (!v) not_countable("argument " + std::to_string(p) + " missing");
  PyObject* unpacked = PyObject_CallMethod(v, "unpack", nullptr);
  if (!unpacked) read_failed("packed parameters without unpack()");
  PyObject* seq = PySequence_Fast(unpacked, "unpack() did not return a sequence");
  Py_DECREF(unpacked);
  if (!seq) read_failed("unpack() did not return a sequence");
  if (PySequence_Fast_GET_SIZE(seq) == 0) {
    Py_DECREF(seq);
    not_countable("unpack() returned nothing");
  }
  try {
    Shape shape = shape_of(PySequence_Fast_GET_ITEM(seq, 0));
    Py_DECREF(seq);
    return shape;
  } catch (...) {
    Py_DECREF(seq);
    throw;
  }
}

Shape Call::out_shape() const { return shape_of(out_); }

bool Call::flag(int p) const {
  PyObject* v = get(p);
  if (!v) return false;
  int t = PyObject_IsTrue(v);
  if (t < 0) read_failed("a flag argument has no truth value");
  return t == 1;
}

bool Call::none(int p) const {
  PyObject* v = get(p);
  return !v || v == Py_None;
}

int64_t Call::integer(int p) const {
  PyObject* v = get(p);
  if (!v) not_countable("argument " + std::to_string(p) + " missing");
  return as_int(v);
}

std::vector<int64_t> Call::integers(int p) const {
  PyObject* v = get(p);
  if (!v) not_countable("argument " + std::to_string(p) + " missing");
  if (PyLong_Check(v)) return {as_int(v)};
  PyObject* seq = PySequence_Fast(v, "not a sequence");
  if (!seq) read_failed("expected a list of integers");
  std::vector<int64_t> out(PySequence_Fast_GET_SIZE(seq));
  try {
    for (size_t i = 0; i < out.size(); ++i) out[i] = as_int(PySequence_Fast_GET_ITEM(seq, i));
  } catch (...) {
    Py_DECREF(seq);
    throw;
  }
  Py_DECREF(seq);
  return out;
}

PyObject* make_handler(PyObject* kind, PyObject* params, int64_t scale) {
  if (!shape_attr && !(shape_attr = PyUnicode_InternFromString("shape"))) return nullptr;
  const Kind* found = nullptr;
  for (const Kind& k : kKinds)
    if (PyUnicode_Check(kind) && PyUnicode_CompareWithASCIIString(kind, k.name) == 0) found = &k;
  if (!found) return PyErr_Format(PyExc_ValueError, "unknown handler kind: %R", kind), nullptr;
  PyObject* names = param_names(*found);
  if (!names) return nullptr;
  Py_ssize_t arity = PyTuple_GET_SIZE(names);
  Py_DECREF(names);
  PyObject* seq = PySequence_Fast(params, "params must be a sequence of bindings");
  if (!seq) return nullptr;
  if (PySequence_Fast_GET_SIZE(seq) != arity) {
    Py_DECREF(seq);
    return PyErr_Format(PyExc_ValueError, "kind %s takes %zd parameters (%s)", found->name,
                        arity, found->params), nullptr;
  }
  Spec* spec = new Spec{found, {}, scale};
  spec->params.reserve(arity);
  for (Py_ssize_t i = 0; i < arity; ++i) {
    Binding b;
    if (!bind(PySequence_Fast_GET_ITEM(seq, i), &b)) break;
    spec->params.push_back(b);
  }
  Py_DECREF(seq);
  PyObject* capsule = nullptr;
  if (static_cast<Py_ssize_t>(spec->params.size()) == arity) {
    capsule = PyCapsule_New(spec, kCapsule, free_spec);
  }
  if (!capsule) {
    for (Binding& b : spec->params) Py_XDECREF(b.name), Py_XDECREF(b.value);
    delete spec;
    return nullptr;
  }
  PyObject* handler = PyCFunction_New(&handler_def, capsule);
  Py_DECREF(capsule);
  return handler;
}

PyObject* handler_kinds() {
  PyObject* kinds = PyDict_New();
  if (!kinds) return nullptr;
  for (const Kind& k : kKinds) {
    PyObject* names = param_names(k);
    if (!names || PyDict_SetItemString(kinds, k.name, names) < 0) {
      Py_XDECREF(names);
      Py_DECREF(kinds);
      return nullptr;
    }
    Py_DECREF(names);
  }
  return kinds;
}

}  // namespace dispatchflops
