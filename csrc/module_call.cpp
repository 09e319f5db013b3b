// The ModuleCall type (see module_call.h): Module._wrapped_call_impl's work, with the
// module entered in every tracker state, while trackers follow modules.
#include "module_call.h"

#include <structmember.h>

#include <cstddef>

#include "tracker.h"

namespace dispatchflops {

namespace {

struct ModuleCall {
  PyObject_HEAD
  vectorcallfunc vectorcall;
  PyObject* holder;  // [tuple of tracker states]
};

PyTypeObject* module_call_type = nullptr;
PyObject* compiled_name = nullptr;  // interned "_compiled_call_impl"
PyObject* call_impl_name = nullptr;  // interned "_call_impl"

// What torch's Module._wrapped_call_impl does: the compiled _call_impl if the module has
// one, else its _call_impl, called with args and kwargs.
PyObject* wrapped_call_impl(PyObject* mod, PyObject* args, PyObject* kwargs) {
  PyObject* impl = PyObject_GetAttr(mod, compiled_name);
  if (!impl) return nullptr;
  if (impl == Py_None) {
    Py_DECREF(impl);
    impl = PyObject_GetAttr(mod, call_impl_name);
    if (!impl) return nullptr;
  }
  PyObject* result = PyObject_Call(impl, args, kwargs);
  Py_DECREF(impl);
  return result;
}

// ModuleCall(module, args, kwargs): wrapped_call_impl, the module entered in each state.
PyObject* call(PyObject* self, PyObject* const* argv, size_t nargsf, PyObject* kwnames) {
  if (PyVectorcall_NARGS(nargsf) != 3 || kwnames || !PyTuple_Check(argv[1]) ||
      (argv[2] != Py_None && !PyDict_Check(argv[2]))) {
    PyErr_SetString(PyExc_TypeError, "ModuleCall(module, args, kwargs)");
    return nullptr;
  }
  PyObject *mod = argv[0], *args = argv[1], *kwargs = argv[2] == Py_None ? nullptr : argv[2];
  PyObject* states = PyList_GET_ITEM(reinterpret_cast<ModuleCall*>(self)->holder, 0);
  if (!PyTuple_CheckExact(states) || PyTuple_GET_SIZE(states) == 0)
    return wrapped_call_impl(mod, args, kwargs);
  Py_INCREF(states);  // trackers coming and going replace the tuple, never change it
  Py_ssize_t n = PyTuple_GET_SIZE(states), entered = 0;
  PyObject* result = nullptr;
  for (; entered < n; ++entered) {
    PyObject* r = enter_module(PyTuple_GET_ITEM(states, entered), mod);
    if (!r) break;
    Py_DECREF(r);
  }
  if (entered == n) result = wrapped_call_impl(mod, args, kwargs);
  PyObject *type, *value, *tb;
  PyErr_Fetch(&type, &value, &tb);  // the call's error, kept while the module is left
  for (Py_ssize_t i = entered - 1; i >= 0; --i) {
    PyObject* r = leave_module(PyTuple_GET_ITEM(states, i), mod);
    Py_XDECREF(r);
    if (!r) PyErr_Clear();  // leaving fails only without memory; the frames stay
  }
  PyErr_Restore(type, value, tb);
  Py_DECREF(states);
  return result;
}

int traverse(PyObject* self, visitproc visit, void* arg) {
  Py_VISIT(Py_TYPE(self));
  Py_VISIT(reinterpret_cast<ModuleCall*>(self)->holder);
  return 0;
}

int clear(PyObject* self) {
  Py_CLEAR(reinterpret_cast<ModuleCall*>(self)->holder);
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
    {"__vectorcalloffset__", T_PYSSIZET, offsetof(ModuleCall, vectorcall), READONLY, nullptr},
    {nullptr, 0, 0, 0, nullptr},
};

bool init_type() {
  if (module_call_type) return true;
  compiled_name = PyUnicode_InternFromString("_compiled_call_impl");
  call_impl_name = PyUnicode_InternFromString("_call_impl");
  if (!compiled_name || !call_impl_name) return false;
  PyType_Slot slots[] = {
      {Py_tp_dealloc, reinterpret_cast<void*>(dealloc)},
      {Py_tp_traverse, reinterpret_cast<void*>(traverse)},
      {Py_tp_clear, reinterpret_cast<void*>(clear)},
      {Py_tp_call, reinterpret_cast<void*>(PyVectorcall_Call)},
      {Py_tp_members, members},
      {Py_tp_doc, const_cast<char*>("ModuleCall(module, args, kwargs): Module._wrapped_call_impl, "
                                    "followed by dispatchflops' trackers")},
      {0, nullptr},
  };
  PyType_Spec spec = {"dispatchflops._C.ModuleCall", sizeof(ModuleCall), 0,
                      Py_TPFLAGS_DEFAULT | Py_TPFLAGS_HAVE_GC | Py_TPFLAGS_HAVE_VECTORCALL |
                          Py_TPFLAGS_DISALLOW_INSTANTIATION,
                      slots};
  module_call_type = reinterpret_cast<PyTypeObject*>(PyType_FromSpec(&spec));
  return module_call_type != nullptr;
}

}  // namespace

PyObject* new_module_call(PyObject* holder) {
  if (!PyList_CheckExact(holder) || PyList_GET_SIZE(holder) != 1 ||
      !PyTuple_CheckExact(PyList_GET_ITEM(holder, 0))) {
    PyErr_SetString(PyExc_TypeError, "holder must be [tuple of tracker states]");
    return nullptr;
  }
  PyObject* states = PyList_GET_ITEM(holder, 0);
  for (Py_ssize_t i = 0; i < PyTuple_GET_SIZE(states); ++i)
    if (!check_tracker_state(PyTuple_GET_ITEM(states, i))) return nullptr;
  if (!init_type()) return nullptr;
  ModuleCall* mc = PyObject_GC_New(ModuleCall, module_call_type);
  if (!mc) return nullptr;
  mc->vectorcall = call;
  mc->holder = Py_NewRef(holder);
  PyObject_GC_Track(mc);
  return reinterpret_cast<PyObject*>(mc);
}

}  // namespace dispatchflops
