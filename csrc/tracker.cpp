// The module tracker's hot path on the CPython API: the walk of a model's modules and the
// global forward hooks that run on every module call. dispatchflops/tracker.py owns the
// state (a list, see the State indices) and the semantics; this file only makes them cheap.
#include "tracker.h"

#include <structmember.h>

#include <cstddef>

namespace dispatchflops {

namespace {

// Indices into the tracker's state list.
enum State : Py_ssize_t { PATHS, KEY, CALLS, PARENT_KEY, FRAMES, ADOPT, STATE_SIZE };

bool check_state(PyObject* state) {
  if (!PyList_CheckExact(state) || PyList_GET_SIZE(state) != STATE_SIZE) {
    PyErr_SetString(PyExc_TypeError, "tracker state must be a list of 6 items");
    return false;
  }
  return true;
}

// Interned attribute names of the walk.
struct {
  PyObject *parameters, *modules, *numel;
} names = {nullptr, nullptr, nullptr};

bool init_names() {
  if (names.numel) return true;
  names.parameters = PyUnicode_InternFromString("_parameters");
  names.modules = PyUnicode_InternFromString("_modules");
  names.numel = PyUnicode_InternFromString("numel");
  return names.parameters && names.modules && names.numel;
}

// paths[module] = name for module and its submodules, in named_modules() order (a module
// reached twice keeps its first name); (name, numel) per parameter, once, under its
// first module.
bool visit(PyObject* module, PyObject* name, PyObject* paths, PyObject* numels,
           PyObject* seen) {
  if (PyDict_SetItem(paths, module, name) < 0) return false;
  PyObject* params = PyObject_GetAttr(module, names.parameters);
  if (!params) return false;
  if (PyDict_Check(params)) {
    Py_ssize_t pos = 0;
    PyObject *k, *p;
    while (PyDict_Next(params, &pos, &k, &p)) {
      if (p == Py_None) continue;
      PyObject* id = PyLong_FromVoidPtr(p);
      int found = id ? PySet_Contains(seen, id) : -1;
      if (found == 0) found = PySet_Add(seen, id);
      Py_XDECREF(id);
      if (found < 0) return Py_DECREF(params), false;
      if (found == 1) continue;
      PyObject* n = PyObject_CallMethodNoArgs(p, names.numel);
      PyObject* entry = n ? PyTuple_Pack(2, name, n) : nullptr;
      Py_XDECREF(n);
      int bad = entry ? PyList_Append(numels, entry) : -1;
      Py_XDECREF(entry);
      if (bad < 0) return Py_DECREF(params), false;
    }
  }
  Py_DECREF(params);
  PyObject* children = PyObject_GetAttr(module, names.modules);
  if (!children) return false;
  bool ok = true;
  if (PyDict_Check(children)) {
    Py_ssize_t pos = 0;
    PyObject *k, *child;
    while (ok && PyDict_Next(children, &pos, &k, &child)) {
      if (child == Py_None) continue;
      Py_INCREF(child), Py_INCREF(k);  // a user's __hash__/__eq__ may change the dict
      int known = PyDict_Contains(paths, child);
      if (known < 0) ok = false;
      if (known == 0) {
        PyObject* path = PyUnicode_GET_LENGTH(name) == 0 ? Py_NewRef(k)
                                                         : PyUnicode_FromFormat("%U.%U", name, k);
        ok = path && Py_EnterRecursiveCall(" while walking a module tree") == 0;
        if (ok) {
          ok = visit(child, path, paths, numels, seen);
          Py_LeaveRecursiveCall();
        }
        Py_XDECREF(path);
      }
      Py_DECREF(k);
      Py_DECREF(child);
    }
  }
  Py_DECREF(children);
  return ok;
}

// Forward pre-hook (module, args): enter the module's frame.
PyObject* pre_hook(PyObject* state, PyObject* const* args, Py_ssize_t nargs) {
  if (nargs < 1) return PyErr_SetString(PyExc_TypeError, "pre hook: no module"), nullptr;
  PyObject* mod = args[0];
  PyObject* path = PyDict_GetItemWithError(PyList_GET_ITEM(state, PATHS), mod);
  if (path) {
    Py_INCREF(path);
  } else {
    if (PyErr_Occurred()) return nullptr;
    PyObject* adopt = PyList_GET_ITEM(state, ADOPT);
    if (adopt == Py_None) Py_RETURN_NONE;  // outside the model: transparent
    path = PyObject_CallOneArg(adopt, mod);
    if (!path) return nullptr;
  }
  PyObject* key = PyList_GET_ITEM(state, KEY);
  Py_INCREF(key);
  PyObject* parent_key = PyList_GET_ITEM(state, PARENT_KEY);
  PyObject* calls = PyList_GET_ITEM(state, CALLS);
  PyObject* result = nullptr;
  PyObject *frame = nullptr, *inner = nullptr, *count = nullptr;
  Py_ssize_t n = PyTuple_GET_SIZE(key);
  int first = PyDict_Contains(parent_key, path);
  // parent_key keeps the first call's key (recomputation reads it)
  if (first < 0 || (first == 0 && PyDict_SetItem(parent_key, path, key) < 0)) goto done;
  frame = PyTuple_Pack(2, mod, key);
  if (!frame || PyList_Append(PyList_GET_ITEM(state, FRAMES), frame) < 0) goto done;
  inner = PyTuple_New(n + 1);
  if (!inner) goto done;
  for (Py_ssize_t i = 0; i < n; ++i) {
    PyObject* item = PyTuple_GET_ITEM(key, i);
    Py_INCREF(item);
    PyTuple_SET_ITEM(inner, i, item);
  }
  Py_INCREF(path);
  PyTuple_SET_ITEM(inner, n, path);
  PyList_SetItem(state, KEY, inner);  // steals inner
  inner = nullptr;
  {
    PyObject* old = PyDict_GetItemWithError(calls, path);
    if (!old && PyErr_Occurred()) goto done;
    long long before = old ? PyLong_AsLongLong(old) : 0;
    if (before == -1 && PyErr_Occurred()) goto done;
    count = PyLong_FromLongLong(before + 1);
    if (!count || PyDict_SetItem(calls, path, count) < 0) goto done;
  }
  result = Py_None;
  Py_INCREF(result);
done:
  Py_XDECREF(count);
  Py_XDECREF(inner);
  Py_XDECREF(frame);
  Py_DECREF(key);
  Py_DECREF(path);
  return result;
}

// Forward hook (module, args, output), always called: leave the module's frame, and any
// frames above it that an exception left without their post hook.
PyObject* post_hook(PyObject* state, PyObject* const* args, Py_ssize_t nargs) {
  if (nargs < 1) return PyErr_SetString(PyExc_TypeError, "post hook: no module"), nullptr;
  PyObject* mod = args[0];
  PyObject* frames = PyList_GET_ITEM(state, FRAMES);
  Py_ssize_t n = PyList_GET_SIZE(frames);
  if (n == 0) Py_RETURN_NONE;
  for (Py_ssize_t i = n - 1; i >= 0; --i) {
    PyObject* frame = PyList_GET_ITEM(frames, i);
    if (PyTuple_GET_ITEM(frame, 0) != mod) continue;
    PyObject* key = PyTuple_GET_ITEM(frame, 1);
    Py_INCREF(key);
    PyList_SetItem(state, KEY, key);  // steals key
    if (PyList_SetSlice(frames, i, n, nullptr) < 0) return nullptr;
    break;
  }
  Py_RETURN_NONE;
}

// A module's _call_impl while trackers follow it: enters the module in each tracker state
// of holder[0] (holder[1]: the code of Module._wrapped_call_impl, its caller), calls next (the class's _call_impl, given the module, or the callable the
// instance dict held before), and leaves the module in reverse order, also when the call
// raised. Copies and pickles of the module get what the instance would have without it.
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
    PyObject* r = pre_hook(PyTuple_GET_ITEM(states, entered), &mod, 1);
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
    PyObject* r = post_hook(PyTuple_GET_ITEM(states, i), &mod, 1);
    Py_XDECREF(r);
    if (!r) PyErr_Clear();  // post_hook fails only without memory; the frames stay
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
    if (!check_state(PyTuple_GET_ITEM(states, i))) return false;
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

PyMethodDef pre_def = {"pre_hook", reinterpret_cast<PyCFunction>(reinterpret_cast<void (*)()>(pre_hook)),
                       METH_FASTCALL, "Forward pre-hook: enter a module."};
PyMethodDef post_def = {"post_hook", reinterpret_cast<PyCFunction>(reinterpret_cast<void (*)()>(post_hook)),
                        METH_FASTCALL, "Forward hook: leave a module."};

}  // namespace

bool walk_modules(PyObject* model, PyObject* paths, PyObject* numels) {
  if (!init_names()) return false;
  PyObject* seen = PySet_New(nullptr);
  if (!seen) return false;
  PyObject* root = PyUnicode_FromString("");
  bool ok = root && visit(model, root, paths, numels, seen);
  Py_XDECREF(root);
  Py_DECREF(seen);
  return ok;
}

PyObject* tracker_hooks(PyObject* state) {
  if (!check_state(state)) return nullptr;
  PyObject* pre = PyCFunction_New(&pre_def, state);
  PyObject* post = pre ? PyCFunction_New(&post_def, state) : nullptr;
  PyObject* pair = post ? PyTuple_Pack(2, pre, post) : nullptr;
  Py_XDECREF(pre);
  Py_XDECREF(post);
  return pair;
}

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
      int in = PyDict_Contains(PyList_GET_ITEM(PyTuple_GET_ITEM(states, i), PATHS), mod);
      if (in < 0) return false;
      followed = in == 1;
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

bool tracker_state_ok(PyObject* state) {
  return PyList_CheckExact(state) && PyList_GET_SIZE(state) == STATE_SIZE &&
         PyTuple_Check(PyList_GET_ITEM(state, KEY));
}

PyObject* tracker_key(PyObject* state) { return Py_NewRef(PyList_GET_ITEM(state, KEY)); }

PyObject* tracker_parent_key(PyObject* state, PyObject* path) {
  PyObject* found = PyDict_GetItemWithError(PyList_GET_ITEM(state, PARENT_KEY), path);
  if (found) return Py_NewRef(found);
  return PyErr_Occurred() ? nullptr : PyTuple_New(0);
}

}  // namespace dispatchflops
