// Shadows (see shadow.h): the type that stands in a module's instance dict for
// _call_impl, and putting shadows in and taking them out.
#include "shadow.h"

#include <structmember.h>

#include <cstddef>

#include "tracker.h"

namespace dispatchflops {

namespace {

// A module's _call_impl while trackers follow it: enters the module in each tracker state
// of holder[0] (holder[1]: the code of Module._wrapped_call_impl, its caller), calls next
// (the class's _call_impl, given the module, or the callable the instance dict held
// before), and leaves the module in reverse order, also when the call raised.
struct Shadow {
  PyObject_HEAD
  vectorcallfunc vectorcall;
  PyObject* holder;
  PyObject* owner;  // a weak reference to the module whose dict it was put in
  PyObject* next;
  bool needs_module;
  bool stale;  // taken out of its module, or a deep copy's: it removes itself when called
};

PyTypeObject* shadow_type = nullptr;
PyObject* live = nullptr;  // {module: its live shadow}, also when something wrapped it since
PyObject* call_impl_name = nullptr;  // interned "_call_impl"
PyObject* self_name = nullptr;       // interned "self"
PyObject* partial = nullptr;         // functools.partial

// callable(first, *args, **kwnames) from a vectorcall's arguments.
PyObject* call_with_first(PyObject* callable, PyObject* first, PyObject* const* args,
                          size_t nargsf, PyObject* kwnames) {
  Py_ssize_t nargs = PyVectorcall_NARGS(nargsf);
  Py_ssize_t total = nargs + (kwnames ? PyTuple_GET_SIZE(kwnames) : 0);
  PyObject* small[16];
  PyObject** stack = total < 16 ? small : PyMem_New(PyObject*, total + 1);
  if (!stack) return PyErr_NoMemory();
  stack[0] = first;
  for (Py_ssize_t i = 0; i < total; ++i) stack[i + 1] = args[i];
  PyObject* result = PyObject_Vectorcall(callable, stack, nargs + 1, kwnames);
  if (stack != small) PyMem_Free(stack);
  return result;
}

// The shadow's module (borrowed; None once it is gone).
PyObject* owner_of(Shadow* sh) { return PyWeakref_GetObject(sh->owner); }

// The module a call is for (a new reference): the `self` of the Module._wrapped_call_impl
// frame (holder[1] is its code) that calls the shadow, or the shadow's own module when
// called from elsewhere. They differ when the instance dict holding the shadow was copied
// (copy.copy of the module, a DataParallel replica): the call is then the copy's.
PyObject* receiver(Shadow* sh) {
  PyFrameObject* frame = PyEval_GetFrame();
  if (frame) {
    PyCodeObject* code = PyFrame_GetCode(frame);
    bool from_call = reinterpret_cast<PyObject*>(code) == PyList_GET_ITEM(sh->holder, 1);
    Py_DECREF(code);
    if (from_call) {
      PyObject* locals = PyFrame_GetLocals(frame);
      if (!locals) return nullptr;
      PyObject* self = PyObject_GetItem(locals, self_name);
      Py_DECREF(locals);
      if (self) return self;
      PyErr_Clear();
    }
  }
  PyObject* owner = owner_of(sh);
  if (owner == Py_None)
    return PyErr_SetString(PyExc_RuntimeError, "the module of this _call_impl no longer exists"), nullptr;
  return Py_NewRef(owner);
}

// A call of a stale shadow, or one for another module than the shadow's (a copy's): drop
// the shadow from that module's dict if it is there, and run the class's _call_impl.
PyObject* call_as_class(PyObject* self, PyObject* mod, PyObject* const* args, size_t nargsf,
                        PyObject* kwnames) {
  PyObject* d = PyObject_GenericGetDict(mod, nullptr);
  if (!d) return nullptr;
  PyObject* current = PyDict_Check(d) ? PyDict_GetItemWithError(d, call_impl_name) : nullptr;
  int bad = PyErr_Occurred() ? -1 : (current == self ? PyDict_DelItem(d, call_impl_name) : 0);
  Py_DECREF(d);
  if (bad < 0) return nullptr;
  PyObject* impl = PyObject_GetAttr(reinterpret_cast<PyObject*>(Py_TYPE(mod)), call_impl_name);
  PyObject* result = impl ? call_with_first(impl, mod, args, nargsf, kwnames) : nullptr;
  Py_XDECREF(impl);
  return result;
}

PyObject* shadow_call(PyObject* self, PyObject* const* args, size_t nargsf, PyObject* kwnames) {
  Shadow* sh = reinterpret_cast<Shadow*>(self);
  PyObject* mod = receiver(sh);
  if (!mod) return nullptr;
  if (sh->stale || mod != owner_of(sh)) {
    Py_INCREF(self);
    // Left in a chain (something wrapped it): what the instance held before; otherwise the
    // class's _call_impl, and the shadow leaves the module's dict.
    PyObject* result = !sh->needs_module && mod == owner_of(sh)
                           ? PyObject_Vectorcall(sh->next, args, nargsf, kwnames)
                           : call_as_class(self, mod, args, nargsf, kwnames);
    Py_DECREF(self);
    Py_DECREF(mod);
    return result;
  }
  PyObject* states = PyList_GET_ITEM(sh->holder, 0);
  Py_INCREF(self);    // a hook may drop the shadow from the dict while it runs
  Py_INCREF(states);  // trackers entering or leaving replace the tuple, never change it
  Py_ssize_t n = PyTuple_GET_SIZE(states);
  PyObject* result = nullptr;
  Py_ssize_t entered = 0;
  for (; entered < n; ++entered) {
    PyObject* r = enter_module(PyTuple_GET_ITEM(states, entered), mod);
    if (!r) break;
    Py_DECREF(r);
  }
  if (entered == n) {
    result = sh->needs_module ? call_with_first(sh->next, mod, args, nargsf, kwnames)
                              : PyObject_Vectorcall(sh->next, args, nargsf, kwnames);
  }
  PyObject *type, *value, *tb;
  PyErr_Fetch(&type, &value, &tb);  // the call's error, kept while the frames are left
  for (Py_ssize_t i = entered - 1; i >= 0; --i) {
    PyObject* r = leave_module(PyTuple_GET_ITEM(states, i), mod);
    Py_XDECREF(r);
    if (!r) PyErr_Clear();  // leaving fails only without memory; the frames stay
  }
  PyErr_Restore(type, value, tb);
  Py_DECREF(states);
  Py_DECREF(self);
  Py_DECREF(mod);
  return result;
}

PyObject* new_shadow(PyObject* holder, PyObject* module, PyObject* next, bool needs_module,
                     bool stale);

// Pickled (with its module), a shadow becomes a plain stand-in for what the instance would
// call without it: partial(class _call_impl, module), or partial(the callable the instance
// held before).
PyObject* shadow_reduce(PyObject* self, PyObject*) {
  Shadow* sh = reinterpret_cast<Shadow*>(self);
  if (!sh->needs_module) return Py_BuildValue("(O(O))", partial, sh->next);
  return Py_BuildValue("(O(OO))", partial, sh->next, owner_of(sh));
}

// Deep-copied (with its module, in memo), a shadow becomes a stale one of the copy, which
// removes itself when the copy is first called.
PyObject* shadow_deepcopy(PyObject* self, PyObject* memo) {
  Shadow* sh = reinterpret_cast<Shadow*>(self);
  PyObject* copy = nullptr;
  if (PyDict_Check(memo)) {
    PyObject* id = PyLong_FromVoidPtr(owner_of(sh));
    if (!id) return nullptr;
    copy = PyDict_GetItemWithError(memo, id);
    Py_DECREF(id);
    if (!copy && PyErr_Occurred()) return nullptr;
  }
  PyObject* impl = PyObject_GetAttr(reinterpret_cast<PyObject*>(Py_TYPE(copy ? copy : owner_of(sh))),
                                    call_impl_name);
  PyObject* stale = impl ? new_shadow(sh->holder, copy ? copy : owner_of(sh), impl, true, true) : nullptr;
  Py_XDECREF(impl);
  return stale;
}

int shadow_traverse(PyObject* self, visitproc visit, void* arg) {
  Shadow* sh = reinterpret_cast<Shadow*>(self);
  Py_VISIT(Py_TYPE(self));
  Py_VISIT(sh->holder);
  Py_VISIT(sh->owner);
  Py_VISIT(sh->next);
  return 0;
}

int shadow_clear(PyObject* self) {
  Shadow* sh = reinterpret_cast<Shadow*>(self);
  Py_CLEAR(sh->holder);
  Py_CLEAR(sh->owner);
  Py_CLEAR(sh->next);
  return 0;
}

void shadow_dealloc(PyObject* self) {
  PyTypeObject* type = Py_TYPE(self);
  PyObject_GC_UnTrack(self);
  shadow_clear(self);
  type->tp_free(self);
  Py_DECREF(type);
}

PyMethodDef shadow_methods[] = {
    {"__reduce__", shadow_reduce, METH_NOARGS, nullptr},
    {"__deepcopy__", shadow_deepcopy, METH_O, nullptr},
    {nullptr, nullptr, 0, nullptr},
};

PyMemberDef shadow_members[] = {
    {"__vectorcalloffset__", T_PYSSIZET, offsetof(Shadow, vectorcall), READONLY, nullptr},
    {nullptr, 0, 0, 0, nullptr},
};

bool init_shadows() {
  if (shadow_type) return true;
  if (!(call_impl_name = PyUnicode_InternFromString("_call_impl"))) return false;
  if (!(self_name = PyUnicode_InternFromString("self"))) return false;
  if (!(live = PyDict_New())) return false;
  PyObject* functools = PyImport_ImportModule("functools");
  if (!functools) return false;
  partial = PyObject_GetAttrString(functools, "partial");
  Py_DECREF(functools);
  if (!partial) return false;
  PyType_Slot slots[] = {
      {Py_tp_dealloc, reinterpret_cast<void*>(shadow_dealloc)},
      {Py_tp_traverse, reinterpret_cast<void*>(shadow_traverse)},
      {Py_tp_clear, reinterpret_cast<void*>(shadow_clear)},
      {Py_tp_call, reinterpret_cast<void*>(PyVectorcall_Call)},
      {Py_tp_methods, shadow_methods},
      {Py_tp_members, shadow_members},
      {Py_tp_doc, const_cast<char*>("Module._call_impl, followed by dispatchflops")},
      {0, nullptr},
  };
  PyType_Spec spec = {"dispatchflops._C.Shadow", sizeof(Shadow), 0,
                      Py_TPFLAGS_DEFAULT | Py_TPFLAGS_HAVE_GC | Py_TPFLAGS_HAVE_VECTORCALL |
                          Py_TPFLAGS_DISALLOW_INSTANTIATION,
                      slots};
  shadow_type = reinterpret_cast<PyTypeObject*>(PyType_FromSpec(&spec));
  return shadow_type != nullptr;
}

PyObject* new_shadow(PyObject* holder, PyObject* module, PyObject* next, bool needs_module,
                     bool stale) {
  PyObject* owner = PyWeakref_NewRef(module, nullptr);
  if (!owner) return nullptr;
  Shadow* sh = PyObject_GC_New(Shadow, shadow_type);
  if (!sh) return Py_DECREF(owner), nullptr;
  sh->vectorcall = shadow_call;
  sh->holder = Py_NewRef(holder), sh->owner = owner, sh->next = Py_NewRef(next);
  sh->needs_module = needs_module, sh->stale = stale;
  PyObject_GC_Track(sh);
  return reinterpret_cast<PyObject*>(sh);
}

bool is_shadow(PyObject* value) { return value && shadow_type && Py_TYPE(value) == shadow_type; }

bool check_holder(PyObject* holder) {
  if (!PyList_CheckExact(holder) || PyList_GET_SIZE(holder) != 2 ||
      !PyTuple_CheckExact(PyList_GET_ITEM(holder, 0)) || !PyCode_Check(PyList_GET_ITEM(holder, 1))) {
    PyErr_SetString(PyExc_TypeError, "holder must be [tuple of states, caller code]");
    return false;
  }
  PyObject* states = PyList_GET_ITEM(holder, 0);
  for (Py_ssize_t i = 0; i < PyTuple_GET_SIZE(states); ++i)
    if (!check_tracker_state(PyTuple_GET_ITEM(states, i))) return false;
  return true;
}

// The instance dict of a module (a new reference), or nullptr with an error set.
PyObject* dict_of(PyObject* mod) {
  PyObject* d = PyObject_GenericGetDict(mod, nullptr);
  if (d && !PyDict_Check(d)) {
    Py_DECREF(d);
    PyErr_SetString(PyExc_TypeError, "a module's __dict__ is not a dict");
    return nullptr;
  }
  return d;
}

}  // namespace

bool shadow_modules(PyObject* holder, PyObject* paths) {
  if (!check_holder(holder) || !init_shadows()) return false;
  Py_ssize_t pos = 0;
  PyObject *mod, *path;
  while (PyDict_Next(paths, &pos, &mod, &path)) {
    int followed = PyDict_Contains(live, mod);  // by another tracker's shadow already
    if (followed != 0) {
      if (followed < 0) return false;
      continue;
    }
    PyObject* d = dict_of(mod);
    if (!d) return false;
    PyObject* current = PyDict_GetItemWithError(d, call_impl_name);  // borrowed
    bool ok = !PyErr_Occurred();
    if (ok) {
      // A callable already there runs inside the shadow; another module's shadow (a copy's)
      // or a stale one is replaced.
      bool chain = current && !is_shadow(current);
      PyObject* next = chain ? Py_NewRef(current)
                             : PyObject_GetAttr(reinterpret_cast<PyObject*>(Py_TYPE(mod)), call_impl_name);
      PyObject* shadow = next ? new_shadow(holder, mod, next, !chain, false) : nullptr;
      ok = shadow && PyDict_SetItem(d, call_impl_name, shadow) == 0 &&
           PyDict_SetItem(live, mod, shadow) == 0;
      Py_XDECREF(shadow);
      Py_XDECREF(next);
    }
    Py_DECREF(d);
    if (!ok) return false;
  }
  return true;
}

bool unshadow_modules(PyObject* holder, PyObject* paths) {
  if (!check_holder(holder)) return false;
  if (!shadow_type) return true;  // nothing was ever shadowed
  PyObject* states = PyList_GET_ITEM(holder, 0);
  Py_ssize_t pos = 0;
  PyObject *mod, *path;
  while (PyDict_Next(paths, &pos, &mod, &path)) {
    bool followed = false;  // by a tracker still active
    for (Py_ssize_t i = 0; i < PyTuple_GET_SIZE(states) && !followed; ++i) {
      if (!tracker_follows(PyTuple_GET_ITEM(states, i), mod, &followed)) return false;
    }
    if (followed) continue;
    PyObject* found = PyDict_GetItemWithError(live, mod);
    if (!found) {
      if (PyErr_Occurred()) return false;
      continue;
    }
    PyObject* shadow = Py_NewRef(found);
    Shadow* sh = reinterpret_cast<Shadow*>(shadow);
    // Stale, it passes calls on where it stays: in a chain (something wrapped it since)
    // or in copies of the module's dict, from which it removes itself when called.
    sh->stale = true;
    PyObject* d = dict_of(mod);
    PyObject* current = d ? PyDict_GetItemWithError(d, call_impl_name) : nullptr;
    bool ok = d && !PyErr_Occurred() && PyDict_DelItem(live, mod) == 0;
    if (ok && current == shadow)
      ok = sh->needs_module ? PyDict_DelItem(d, call_impl_name) == 0
                            : PyDict_SetItem(d, call_impl_name, sh->next) == 0;
    Py_XDECREF(d);
    Py_DECREF(shadow);
    if (!ok) return false;
  }
  return true;
}

}  // namespace dispatchflops
