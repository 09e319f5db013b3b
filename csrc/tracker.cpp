// The module tracker's hot path (see tracker.h): the walk of a model's modules, entering
// and leaving a module on a tracker's state list, and the global forward hooks that do it.
#include "tracker.h"

#include <unordered_set>

#include "layouts.h"

namespace dispatchflops {

namespace {

using namespace tracker_slot;

// What the walk reads and fills.
struct Walk {
  PyObject *paths, *numels, *containers;
  PyObject* module_forward;  // torch.nn.Module.forward: a module without its own forward
  std::unordered_set<PyObject*> seen;  // parameters counted (alive: their modules hold them)
};

PyObject *parameters_name, *modules_name, *numel_name, *forward_name;

bool init_names() {
  if (forward_name) return true;
  parameters_name = PyUnicode_InternFromString("_parameters");
  modules_name = PyUnicode_InternFromString("_modules");
  numel_name = PyUnicode_InternFromString("numel");
  forward_name = PyUnicode_InternFromString("forward");
  return parameters_name && modules_name && numel_name && forward_name;
}

// numels[name] = the numel of module's parameters not seen before (if it has any).
bool count_parameters(Walk& w, PyObject* module, PyObject* name) {
  PyObject* params = PyObject_GetAttr(module, parameters_name);
  if (!params) return false;
  bool ok = true;
  if (PyDict_Check(params)) {
    long long own = 0;
    bool any = false;
    Py_ssize_t pos = 0;
    PyObject *k, *p;
    while (ok && PyDict_Next(params, &pos, &k, &p)) {
      if (p == Py_None || !w.seen.insert(p).second) continue;
      Py_INCREF(p);  // numel() may run Python (__torch_function__) that changes the dict
      PyObject* n = PyObject_VectorcallMethod(numel_name, &p, 1, nullptr);
      Py_DECREF(p);
      long long v = n ? PyLong_AsLongLong(n) : -1;
      Py_XDECREF(n);
      ok = !(v == -1 && PyErr_Occurred());
      own += v, any = true;
    }
    if (ok && any) {  // each module is visited once, under one name
      PyObject* sum = PyLong_FromLongLong(own);
      ok = sum && PyDict_SetItem(w.numels, name, sum) == 0;
      Py_XDECREF(sum);
    }
  }
  Py_DECREF(params);
  return ok;
}

// paths[module] = name for module and its submodules, in named_modules() order (a module
// reached twice keeps its first name), with their parameters and containers.
bool visit(Walk& w, PyObject* module, PyObject* name) {
  if (PyDict_SetItem(w.paths, module, name) < 0 || !count_parameters(w, module, name))
    return false;
  PyObject* forward = _PyType_Lookup(Py_TYPE(module), forward_name);  // borrowed
  if (forward == w.module_forward && PySet_Add(w.containers, name) < 0) return false;
  PyObject* children = PyObject_GetAttr(module, modules_name);
  if (!children) return false;
  bool ok = true;
  if (PyDict_Check(children)) {
    Py_ssize_t pos = 0;
    PyObject *k, *child;
    while (ok && PyDict_Next(children, &pos, &k, &child)) {
      if (child == Py_None) continue;
      Py_INCREF(child), Py_INCREF(k);  // a user's __hash__/__eq__ may change the dict
      int known = PyDict_Contains(w.paths, child);
      if (known < 0) ok = false;
      if (known == 0) {
        PyObject* path = PyUnicode_GET_LENGTH(name) == 0 ? Py_NewRef(k)
                                                         : PyUnicode_FromFormat("%U.%U", name, k);
        ok = path && Py_EnterRecursiveCall(" while walking a module tree") == 0;
        if (ok) {
          ok = visit(w, child, path);
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

// Whether the running thread is the one the tracker follows (-1: error set).
int on_its_thread(PyObject* state) {
  unsigned long followed = PyLong_AsUnsignedLong(PyList_GET_ITEM(state, THREAD));
  if (followed == static_cast<unsigned long>(-1) && PyErr_Occurred()) return -1;
  return followed == PyThread_get_thread_ident();
}

// After the key changed: watch() if the state has one (None). Its error is reported as
// unraisable: the module is entered or left all the same.
PyObject* watched(PyObject* state) {
  PyObject* watch = PyList_GET_ITEM(state, WATCH);
  if (watch != Py_None) {
    PyObject* r = PyObject_CallNoArgs(watch);
    if (!r) PyErr_WriteUnraisable(watch);
    Py_XDECREF(r);
  }
  Py_RETURN_NONE;
}

// Forward pre-hook (module, args): enter the module (enter_module).
PyObject* pre_hook(PyObject* state, PyObject* const* args, Py_ssize_t nargs) {
  if (nargs < 1) return PyErr_SetString(PyExc_TypeError, "pre hook: no module"), nullptr;
  int mine = on_its_thread(state);
  if (mine <= 0) return mine < 0 ? nullptr : Py_NewRef(Py_None);  // another thread: transparent
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
  result = watched(state);
done:
  Py_XDECREF(count);
  Py_XDECREF(inner);
  Py_XDECREF(frame);
  Py_DECREF(key);
  Py_DECREF(path);
  return result;
}

// Forward hook (module, args, output), always called: leave the module (leave_module).
PyObject* post_hook(PyObject* state, PyObject* const* args, Py_ssize_t nargs) {
  if (nargs < 1) return PyErr_SetString(PyExc_TypeError, "post hook: no module"), nullptr;
  int mine = on_its_thread(state);
  if (mine <= 0) return mine < 0 ? nullptr : Py_NewRef(Py_None);
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
    return watched(state);
  }
  Py_RETURN_NONE;
}

PyMethodDef pre_def = {"pre_hook", reinterpret_cast<PyCFunction>(reinterpret_cast<void (*)()>(pre_hook)),
                       METH_FASTCALL, "Forward pre-hook: enter a module."};
PyMethodDef post_def = {"post_hook", reinterpret_cast<PyCFunction>(reinterpret_cast<void (*)()>(post_hook)),
                        METH_FASTCALL, "Forward hook: leave a module."};

}  // namespace

bool walk_modules(PyObject* model, PyObject* paths, PyObject* numels, PyObject* containers,
                  PyObject* module_forward) {
  if (!init_names()) return false;
  Walk w{paths, numels, containers, module_forward, {}};
  PyObject* root = PyUnicode_FromString("");
  bool ok = root && visit(w, model, root);
  Py_XDECREF(root);
  return ok;
}

PyObject* tracker_hooks(PyObject* state) {
  if (!check_tracker_state(state)) return nullptr;
  PyObject* pre = PyCFunction_New(&pre_def, state);
  PyObject* post = pre ? PyCFunction_New(&post_def, state) : nullptr;
  PyObject* pair = post ? PyTuple_Pack(2, pre, post) : nullptr;
  Py_XDECREF(pre);
  Py_XDECREF(post);
  return pair;
}

bool check_tracker_state(PyObject* state) {
  if (!PyList_CheckExact(state) || PyList_GET_SIZE(state) != SIZE) {
    PyErr_SetString(PyExc_TypeError, "malformed tracker state");
    return false;
  }
  return true;
}

PyObject* enter_module(PyObject* state, PyObject* module) { return pre_hook(state, &module, 1); }

PyObject* leave_module(PyObject* state, PyObject* module) { return post_hook(state, &module, 1); }

bool tracker_state_ok(PyObject* state) {
  return PyList_CheckExact(state) && PyList_GET_SIZE(state) == SIZE &&
         PyTuple_Check(PyList_GET_ITEM(state, KEY));
}

PyObject* tracker_key(PyObject* state) { return Py_NewRef(PyList_GET_ITEM(state, KEY)); }

PyObject* tracker_parent_key(PyObject* state, PyObject* path) {
  PyObject* found = PyDict_GetItemWithError(PyList_GET_ITEM(state, PARENT_KEY), path);
  if (found) return Py_NewRef(found);
  return PyErr_Occurred() ? nullptr : PyTuple_New(0);
}

}  // namespace dispatchflops
