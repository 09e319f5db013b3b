// The Dispatch type (see dispatch.h): the counter's per-op path.
#include "dispatch.h"

#include <structmember.h>

#include <cstddef>
#include <new>
#include <unordered_map>

#include "charge.h"
#include "layouts.h"

namespace dispatchflops {

namespace {

using namespace counter_slot;

// How one op is run and charged (owned references; call nullptr: the Python path).
struct Entry {
  PyObject* call;
  PyObject* handler;  // nullptr: nothing to charge
  PyObject* state;

  void release() { Py_XDECREF(call), Py_XDECREF(handler), Py_XDECREF(state); }
};

struct Dispatch {
  PyObject_HEAD
  vectorcallfunc vectorcall;
  PyObject *hot, *resolve, *python_path, *failed;
  std::unordered_map<PyObject*, Entry>* table;  // keyed by the op, which an entry holds
};

PyTypeObject* dispatch_type = nullptr;

Dispatch* as_dispatch(PyObject* self) { return reinterpret_cast<Dispatch*>(self); }

// func's entry (borrowed), resolved on its first call; nullptr: error set.
const Entry* entry_of(Dispatch* d, PyObject* func) {
  auto found = d->table->find(func);
  if (found != d->table->end()) return &found->second;
  PyObject* resolved = PyObject_CallOneArg(d->resolve, func);
  if (!resolved) return nullptr;
  Entry e{nullptr, nullptr, nullptr};
  if (resolved != Py_None) {
    if (!PyTuple_Check(resolved) || PyTuple_GET_SIZE(resolved) != 3 ||
        (PyTuple_GET_ITEM(resolved, 1) != Py_None &&
         !PyList_CheckExact(PyTuple_GET_ITEM(resolved, 2)))) {
      Py_DECREF(resolved);
      PyErr_SetString(PyExc_TypeError, "resolve(func) must give None or (call, handler, state)");
      return nullptr;
    }
    e.call = Py_NewRef(PyTuple_GET_ITEM(resolved, 0));
    if (PyTuple_GET_ITEM(resolved, 1) != Py_None) {
      e.handler = Py_NewRef(PyTuple_GET_ITEM(resolved, 1));
      e.state = Py_NewRef(PyTuple_GET_ITEM(resolved, 2));
    }
  }
  Py_DECREF(resolved);
  if (!d->table) {  // cleared while resolve ran
    e.release();
    return PyErr_SetString(PyExc_RuntimeError, "this Dispatch was cleared"), nullptr;
  }
  try {
    auto [at, added] = d->table->emplace(func, e);
    if (added) {
      Py_INCREF(func);  // the key lives as long as its entry
    } else {  // resolve ran this op itself, and it was entered then
      e.release();
    }
    return &at->second;
  } catch (const std::bad_alloc&) {
    e.release();
    return PyErr_NoMemory(), nullptr;
  }
}

// Whether every type in types (a tuple or list) is exactly torch.Tensor.
bool plain_tensors(PyObject* types, PyObject* tensor_type) {
  if (!PyTuple_Check(types) && !PyList_Check(types)) return false;
  for (Py_ssize_t i = 0; i < PySequence_Fast_GET_SIZE(types); ++i)
    if (PySequence_Fast_GET_ITEM(types, i) != tensor_type) return false;
  return true;
}

// failed(exception, func), with the op's error kept (and restored) around it.
void note_failure(Dispatch* d, PyObject* func) {
  PyObject *type, *value, *tb;
  PyErr_Fetch(&type, &value, &tb);
  PyErr_NormalizeException(&type, &value, &tb);
  if (tb && value) PyException_SetTraceback(value, tb);
  PyObject* r = PyObject_CallFunctionObjArgs(d->failed, value ? value : Py_None, func, nullptr);
  if (r) {
    Py_DECREF(r);
  } else {
    PyErr_WriteUnraisable(d->failed);  // the op's own error matters more
  }
  PyErr_Restore(type, value, tb);
}

// Dispatch(mode, func, types, args=(), kwargs=None): see dispatch.h.
PyObject* call(PyObject* self, PyObject* const* argv, size_t nargsf, PyObject* kwnames) {
  Dispatch* d = as_dispatch(self);
  Py_ssize_t nargs = PyVectorcall_NARGS(nargsf);
  if (!d->table)  // cleared by the garbage collector
    return PyErr_SetString(PyExc_RuntimeError, "this Dispatch was cleared"), nullptr;
  if (nargs < 1)
    return PyErr_SetString(PyExc_TypeError, "Dispatch(mode, func, types, args, kwargs)"), nullptr;
  if (kwnames || nargs < 3 || nargs > 5)  // not how torch calls a mode: as Python would
    return PyObject_Vectorcall(d->python_path, argv + 1, nargs - 1, kwnames);
  PyObject *hot = d->hot, *func = argv[1], *types = argv[2];
  PyObject* args = nargs > 3 ? argv[3] : nullptr;
  PyObject* kwargs = nargs > 4 && argv[4] != Py_None ? argv[4] : nullptr;
  const Entry* e = nullptr;
  if (plain_tensors(types, PyList_GET_ITEM(hot, TENSOR)) && args && PyTuple_Check(args) &&
      (!kwargs || PyDict_Check(kwargs))) {
    e = entry_of(d, func);
    if (!e) return nullptr;
  }
  // the Python path does all of it itself, tagging included
  if (!e || !e->call) return PyObject_Vectorcall(d->python_path, argv + 1, nargs - 1, nullptr);
  if (PyList_GET_SIZE(PyList_GET_ITEM(hot, PENDING)) > 0) {
    PyObject* r = tag_pending(nullptr, hot);
    if (!r) return nullptr;
    Py_DECREF(r);
  }
  PyObject* out = PyObject_Call(e->call, args,
                                kwargs && PyDict_GET_SIZE(kwargs) > 0 ? kwargs : nullptr);
  if (!out) {
    if (PyErr_ExceptionMatches(PyExc_Exception)) note_failure(d, func);  // as the Python path
    return nullptr;
  }
  PyObject* memory = PyList_GET_ITEM(hot, MEMORY);
  if (memory != Py_None) {
    PyObject* noted_argv[] = {func, args, kwargs ? kwargs : Py_None, out};
    PyObject* r = PyObject_Vectorcall(memory, noted_argv, 4, nullptr);
    if (!r) return Py_DECREF(out), nullptr;
    Py_DECREF(r);
  }
  if (!e->handler) return out;
  PyObject* fresh = kwargs ? nullptr : PyDict_New();  // formulas read kwargs as a dict
  if (!kwargs && !fresh) return Py_DECREF(out), nullptr;
  PyObject* charge_argv[] = {e->state, func, e->handler, args, kwargs ? kwargs : fresh, out};
  PyObject* r = charge(nullptr, charge_argv, 6);
  Py_XDECREF(fresh);
  if (!r) return Py_DECREF(out), nullptr;
  Py_DECREF(r);
  return out;
}

int traverse(PyObject* self, visitproc visit, void* arg) {
  Dispatch* d = as_dispatch(self);
  Py_VISIT(Py_TYPE(self));
  Py_VISIT(d->hot); Py_VISIT(d->resolve); Py_VISIT(d->python_path); Py_VISIT(d->failed);
  if (d->table) {
    for (auto& [func, e] : *d->table) {
      Py_VISIT(func); Py_VISIT(e.call); Py_VISIT(e.handler); Py_VISIT(e.state);
    }
  }
  return 0;
}

int clear(PyObject* self) {
  Dispatch* d = as_dispatch(self);
  auto* table = d->table;
  d->table = nullptr;  // what the decrefs below may run must not see it (nor a call)
  Py_CLEAR(d->hot); Py_CLEAR(d->resolve); Py_CLEAR(d->python_path); Py_CLEAR(d->failed);
  if (table) {
    for (auto& [func, e] : *table) {
      Py_DECREF(func);
      e.release();
    }
    delete table;
  }
  return 0;
}

void dealloc(PyObject* self) {
  PyTypeObject* type = Py_TYPE(self);
  PyObject_GC_UnTrack(self);
  clear(self);
  type->tp_free(self);
  Py_DECREF(type);
}

PyMemberDef members[] = {
    {"__vectorcalloffset__", T_PYSSIZET, offsetof(Dispatch, vectorcall), READONLY, nullptr},
    {nullptr, 0, 0, 0, nullptr},
};

bool init_type() {
  if (dispatch_type) return true;
  PyType_Slot slots[] = {
      {Py_tp_dealloc, reinterpret_cast<void*>(dealloc)},
      {Py_tp_traverse, reinterpret_cast<void*>(traverse)},
      {Py_tp_clear, reinterpret_cast<void*>(clear)},
      {Py_tp_call, reinterpret_cast<void*>(PyVectorcall_Call)},
      {Py_tp_members, members},
      {Py_tp_doc, const_cast<char*>("Dispatch(mode, func, types, args, kwargs): the counter's "
                                    "per-op path (csrc/dispatch.h)")},
      {0, nullptr},
  };
  PyType_Spec spec = {"dispatchflops._C.Dispatch", sizeof(Dispatch), 0,
                      Py_TPFLAGS_DEFAULT | Py_TPFLAGS_HAVE_GC | Py_TPFLAGS_HAVE_VECTORCALL |
                          Py_TPFLAGS_DISALLOW_INSTANTIATION | Py_TPFLAGS_IMMUTABLETYPE,
                      slots};
  dispatch_type = reinterpret_cast<PyTypeObject*>(PyType_FromSpec(&spec));
  return dispatch_type != nullptr;
}

}  // namespace

PyObject* new_dispatch(PyObject* hot, PyObject* resolve, PyObject* python_path,
                       PyObject* failed) {
  if (!PyList_CheckExact(hot) || PyList_GET_SIZE(hot) != counter_slot::SIZE ||
      !PyList_CheckExact(PyList_GET_ITEM(hot, PENDING))) {
    PyErr_SetString(PyExc_TypeError, "hot must be a counter state list");
    return nullptr;
  }
  if (!init_type()) return nullptr;
  Dispatch* d = PyObject_GC_New(Dispatch, dispatch_type);
  if (!d) return nullptr;
  d->vectorcall = call;
  d->hot = Py_NewRef(hot), d->resolve = Py_NewRef(resolve);
  d->python_path = Py_NewRef(python_path), d->failed = Py_NewRef(failed);
  d->table = new (std::nothrow) std::unordered_map<PyObject*, Entry>();
  if (!d->table) {
    Py_DECREF(d);
    return PyErr_NoMemory();
  }
  PyObject_GC_Track(d);
  return reinterpret_cast<PyObject*>(d);
}

}  // namespace dispatchflops
