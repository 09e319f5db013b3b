// Memory traffic of one op call (see traffic.h).
#include "traffic.h"

namespace dispatchflops {

namespace {

using namespace traffic_role;

PyObject *stride_name, *nbytes_name, *shape_name, *itemsize_name, *numel_name;

// torch's C getter of a tensor attribute, called directly (no attribute lookup) on a
// tensor of the exact type it was looked up on (torch.Tensor), which overrides none.
struct Getter {
  PyObject* name = nullptr;
  PyTypeObject* type = nullptr;
  PyGetSetDef* def = nullptr;

  // Look it up on tensor_type once; false (error set) on failure.
  bool ready(PyObject* tensor_type) {
    if (type == reinterpret_cast<PyTypeObject*>(tensor_type)) return true;
    PyObject* descr = PyObject_GetAttr(tensor_type, name);
    if (!descr) return false;
    type = reinterpret_cast<PyTypeObject*>(tensor_type);
    def = Py_IS_TYPE(descr, &PyGetSetDescr_Type)
              ? reinterpret_cast<PyGetSetDescrObject*>(descr)->d_getset
              : nullptr;  // not torch's getter: looked up as an attribute each time
    Py_DECREF(descr);  // the type keeps it (and def) alive
    return true;
  }

  PyObject* get(PyObject* t) const {
    if (def && Py_TYPE(t) == type) return def->get(t, def->closure);
    return PyObject_GetAttr(t, name);
  }
};

Getter nbytes_getter;

bool init_names() {
  if (numel_name) return true;
  stride_name = PyUnicode_InternFromString("stride");
  nbytes_name = PyUnicode_InternFromString("nbytes");
  shape_name = PyUnicode_InternFromString("shape");
  itemsize_name = PyUnicode_InternFromString("itemsize");
  numel_name = PyUnicode_InternFromString("numel");
  nbytes_getter.name = nbytes_name;
  return stride_name && nbytes_name && shape_name && itemsize_name && numel_name;
}

// After a failed read of a tensor's metadata: an ordinary exception (a symbolic size, a
// layout without strides) means 0 bytes; MemoryError and non-Exceptions propagate.
bool unreadable() {
  if (PyErr_ExceptionMatches(PyExc_Exception) && !PyErr_ExceptionMatches(PyExc_MemoryError)) {
    PyErr_Clear();
    return true;
  }
  return false;
}

// An integer attribute or no-argument method result; -2 when unreadable, -1 with an error.
int64_t integer(PyObject* t, PyObject* name, bool call) {
  PyObject* v = call ? PyObject_VectorcallMethod(name, &t, 1, nullptr)
                : name == nbytes_name ? nbytes_getter.get(t)
                                      : PyObject_GetAttr(t, name);
  if (!v) return unreadable() ? -2 : -1;
  // a symbolic size (SymInt) is not read as an integer: that would specialise it
  long long n = PyLong_CheckExact(v) ? PyLong_AsLongLong(v) : -2;
  Py_DECREF(v);
  if (n == -1 && PyErr_Occurred()) return unreadable() ? -2 : -1;
  return n;
}

// The bytes of t's distinct elements (a dimension of stride 0 is read once); -2 when
// unreadable, -1 with an error. Strides come first: a symbolic one (a SymInt) means
// unreadable, before anything could specialise it.
int64_t distinct_bytes(PyObject* t) {
  PyObject* strides = PyObject_VectorcallMethod(stride_name, &t, 1,
                                                nullptr);
  if (!strides) return unreadable() ? -2 : -1;
  bool broadcast = false, symbolic = !PyTuple_Check(strides);
  for (Py_ssize_t i = 0; !symbolic && i < PyTuple_GET_SIZE(strides); ++i) {
    PyObject* s = PyTuple_GET_ITEM(strides, i);
    if (!PyLong_CheckExact(s)) symbolic = true;
    else if (PyLong_AsLongLong(s) == 0) broadcast = true;
  }
  if (symbolic || !broadcast) {
    Py_DECREF(strides);
    return symbolic ? -2 : integer(t, nbytes_name, false);  // (nbytes: symbolic sizes too)
  }
  PyObject* shape = PyObject_GetAttr(t, shape_name);
  int64_t size = shape ? integer(t, itemsize_name, false) : (unreadable() ? -2 : -1);
  if (size >= 0 && (!PyTuple_Check(shape) || PyTuple_GET_SIZE(shape) != PyTuple_GET_SIZE(strides)))
    size = -2;
  for (Py_ssize_t i = 0; size > 0 && i < PyTuple_GET_SIZE(shape); ++i) {
    PyObject* n = PyTuple_GET_ITEM(shape, i);
    if (!PyLong_CheckExact(n)) {
      size = -2;  // symbolic
      break;
    }
    long long count = PyLong_AsLongLong(n);
    if (count == 0) size = 0;
    else if (PyLong_AsLongLong(PyTuple_GET_ITEM(strides, i)) != 0) size *= count;
  }
  Py_XDECREF(shape);
  Py_DECREF(strides);
  return size;
}

// One call's traffic, as its tensors are visited.
struct Traffic {
  Traffic(PyObject* tensor_type, PyObject* out) : tensor_type(tensor_type), out(out) {}
  PyObject* tensor_type;
  PyObject* out;
  int64_t read = 0, written = 0, into_target = 0;
  bool scatter = false;
  PyObject* seen[16];
  int64_t seen_bytes[16];
  int n_seen = 0;

  bool tensor(PyObject* v) const { return PyObject_TypeCheck(v, (PyTypeObject*)tensor_type); }

  // Where t's bytes are kept: -2 if it was seen already, -1 if there is no room left.
  int slot(PyObject* t) {
    for (int i = 0; i < n_seen; ++i)
      if (seen[i] == t) return -2;
    if (n_seen == 16) return -1;
    seen[n_seen] = t, seen_bytes[n_seen] = -2;
    return n_seen++;
  }

  // The elements of the output (its first tensor), times itemsize: what a gather reads.
  int64_t gathered(PyObject* source, int64_t all) {
    PyObject* o = out;
    if (!tensor(o) && (PyTuple_Check(o) || PyList_Check(o)) && PySequence_Size(o) > 0)
      o = PySequence_Fast_GET_ITEM(o, 0);
    if (!tensor(o)) return all;
    int64_t n = integer(o, numel_name, true);
    int64_t size = n >= 0 ? integer(source, itemsize_name, false) : n;
    if (size < 0) return size;
    return n * size < all ? n * size : all;
  }

  bool input(PyObject* t, long role) {
    int at = role == SKIP ? -2 : slot(t);
    if (at == -2) return true;
    int64_t b = distinct_bytes(t);
    if (at >= 0) seen_bytes[at] = b;  // (an in-place op returns it: its bytes are known)
    if (b >= 0 && role == GATHER) b = gathered(t, b);
    if (b == -1) return false;
    if (b < 0) return true;  // unreadable: 0 bytes
    read += b;
    if (role == SOURCE || role == ACCUMULATE) into_target += b, scatter = true;
    if (role == ACCUMULATE) read += b;
    if (role == READ_WRITE) written += b;
    return true;
  }

  bool value(PyObject* v, long role) {
    if (tensor(v)) return input(v, role);
    if (PyTuple_Check(v) || PyList_Check(v)) {
      for (Py_ssize_t i = 0; i < PySequence_Fast_GET_SIZE(v); ++i) {
        PyObject* item = PySequence_Fast_GET_ITEM(v, i);
        if (tensor(item) && !input(item, role)) return false;
      }
    }
    return true;
  }

  bool output(PyObject* t, PyObject** done, int* n_done) {
    for (int i = 0; i < *n_done; ++i)
      if (done[i] == t) return true;
    if (*n_done < 16) done[(*n_done)++] = t;
    for (int i = 0; i < n_seen; ++i) {
      if (seen[i] == t && seen_bytes[i] >= 0) {  // an input written in place, whole
        written += seen_bytes[i];
        return true;
      }
    }
    int64_t b = integer(t, nbytes_name, false);
    if (b == -1) return false;
    if (b > 0) written += b;
    return true;
  }

  bool outputs() {
    if (scatter) {
      written += into_target;
      return true;
    }
    PyObject* done[16];
    int n_done = 0;
    if (tensor(out)) return output(out, done, &n_done);
    if (PyTuple_Check(out) || PyList_Check(out)) {
      for (Py_ssize_t i = 0; i < PySequence_Fast_GET_SIZE(out); ++i) {
        PyObject* item = PySequence_Fast_GET_ITEM(out, i);
        if (tensor(item) && !output(item, done, &n_done)) return false;
      }
    }
    return true;
  }
};

// The role the plan gives argument (position, name): PLAIN if none; -1 with an error.
long role_of(PyObject* plan, Py_ssize_t position, PyObject* name) {
  for (Py_ssize_t i = 0; i < PyTuple_GET_SIZE(plan); ++i) {
    PyObject* entry = PyTuple_GET_ITEM(plan, i);
    if (name) {
      int same = PyObject_RichCompareBool(PyTuple_GET_ITEM(entry, 1), name, Py_EQ);
      if (same < 0) return -1;
      if (!same) continue;
    } else if (PyLong_AsSsize_t(PyTuple_GET_ITEM(entry, 0)) != position) {
      continue;
    }
    return PyLong_AsLong(PyTuple_GET_ITEM(entry, 2));
  }
  return PLAIN;
}

}  // namespace

int64_t bytes_moved(PyObject* plan, PyObject* tensor_type, PyObject* args, PyObject* kwargs,
                    PyObject* out) {
  if (!PyTuple_Check(plan) || !PyTuple_Check(args) || !PyType_Check(tensor_type)) {
    PyErr_SetString(PyExc_TypeError, "bytes_moved(plan, tensor type, args tuple, kwargs, out)");
    return -1;
  }
  if (!init_names() || !nbytes_getter.ready(tensor_type)) return -1;
  Traffic traffic(tensor_type, out);
  bool plain = PyTuple_GET_SIZE(plan) == 0;
  for (Py_ssize_t i = 0; i < PyTuple_GET_SIZE(args); ++i) {
    long role = plain ? PLAIN : role_of(plan, i, nullptr);
    if (role < 0 || !traffic.value(PyTuple_GET_ITEM(args, i), role)) return -1;
  }
  if (kwargs && PyDict_Check(kwargs)) {
    PyObject *name, *v;
    Py_ssize_t pos = 0;
    while (PyDict_Next(kwargs, &pos, &name, &v)) {
      long role = plain ? PLAIN : role_of(plan, -1, name);
      if (role < 0 || !traffic.value(v, role)) return -1;
    }
  }
  if (!traffic.outputs()) return -1;
  return traffic.read + traffic.written;
}

}  // namespace dispatchflops
