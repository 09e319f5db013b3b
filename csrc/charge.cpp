// The counter's per-op bookkeeping (see charge.h): run a counted op's handler and add its
// cost to the accumulator of the phase and module stack it ran in.
#include "charge.h"

#include "layouts.h"
#include "tracker.h"

namespace dispatchflops {

namespace {

using namespace counter_slot;

PyObject *forward_name, *recompute_name, *backward_name, *metadata_name, *one, *zero, *empty;
PyObject *forward_cls_name, *module_name, *distributed_prefix;

bool init_constants() {
  if (empty) return true;
  forward_name = PyUnicode_InternFromString("forward");
  recompute_name = PyUnicode_InternFromString("recompute");
  backward_name = PyUnicode_InternFromString("backward");
  metadata_name = PyUnicode_InternFromString("metadata");
  one = PyLong_FromLong(1);
  zero = PyLong_FromLong(0);
  empty = PyTuple_New(0);
  forward_cls_name = PyUnicode_InternFromString("_forward_cls");
  module_name = PyUnicode_InternFromString("__module__");
  distributed_prefix = PyUnicode_InternFromString("torch.distributed");
  return forward_name && recompute_name && backward_name && metadata_name && one && zero &&
         empty && forward_cls_name && module_name && distributed_prefix;
}

// acc[(phase, key)], created empty when missing (a borrowed reference).
PyObject* accumulator(PyObject* acc, PyObject* phase, PyObject* key) {
  PyObject* at = PyTuple_Pack(2, phase, key);
  if (!at) return nullptr;
  PyObject* found = PyDict_GetItemWithError(acc, at);
  if (!found && !PyErr_Occurred()) {
    PyObject* fresh = PyDict_New();
    if (fresh && PyDict_SetItem(acc, at, fresh) == 0) found = fresh;
    Py_XDECREF(fresh);  // acc holds it
  }
  Py_DECREF(at);
  return found;
}

// A fresh record list: each field a new reference from values (in the layout's order).
PyObject* record(Py_ssize_t size, PyObject* const* values) {
  PyObject* rec = PyList_New(size);
  if (!rec) return nullptr;
  for (Py_ssize_t i = 0; i < size; ++i) PyList_SET_ITEM(rec, i, Py_NewRef(values[i]));
  return rec;
}

// counts[id(op)]: a not-counted record, created or its calls increased.
bool not_counted(PyObject* counts, PyObject* op) {
  namespace R = uncounted_record;
  PyObject* id = PyLong_FromVoidPtr(op);
  if (!id) return false;
  PyObject* rec = PyDict_GetItemWithError(counts, id);
  bool ok = false;
  if (rec) {
    PyObject* n = PyNumber_Add(PyList_GET_ITEM(rec, R::CALLS), one);
    ok = n && PyList_SetItem(rec, R::CALLS, n) == 0;
  } else if (!PyErr_Occurred()) {
    PyObject* values[R::SIZE];
    values[R::CALLS] = one, values[R::OP] = op;
    PyObject* fresh = record(R::SIZE, values);
    ok = fresh && PyDict_SetItem(counts, id, fresh) == 0;
    Py_XDECREF(fresh);
  }
  Py_DECREF(id);
  return ok;
}

// Whether an autograd node is torch.distributed's own (an autograd.Function of
// torch.distributed: DTensor's redistributions, from_local, FSDP2's hooks), whose work
// belongs to the backward around it. Errors are cleared: not one.
bool distributed_node(PyObject* node) {
  PyObject* cls = PyObject_GetAttr(node, forward_cls_name);
  PyObject* module = cls ? PyObject_GetAttr(cls, module_name) : nullptr;
  bool yes = module && PyUnicode_Check(module) &&
             PyUnicode_Tailmatch(module, distributed_prefix, 0, PY_SSIZE_T_MAX, -1) == 1;
  Py_XDECREF(module);
  Py_XDECREF(cls);
  PyErr_Clear();
  return yes;
}

bool append_pending(PyObject* state, PyObject* out, PyObject* key) {
  PyObject* grad = PyObject_CallNoArgs(PyList_GET_ITEM(state, GRAD_ENABLED));
  if (!grad) return false;
  bool enabled = grad == Py_True;
  Py_DECREF(grad);
  if (!enabled) return true;
  PyObject* item = PyTuple_Pack(2, out, key);
  bool ok = item && PyList_Append(PyList_GET_ITEM(state, PENDING), item) == 0;
  Py_XDECREF(item);
  return ok;
}

// acc[id(op)]: an op record, created or added to.
bool add(PyObject* acc, PyObject* op, PyObject* flops, PyObject* acts) {
  namespace R = op_record;
  PyObject* id = PyLong_FromVoidPtr(op);
  if (!id) return false;
  PyObject* rec = PyDict_GetItemWithError(acc, id);
  bool ok = false;
  if (rec) {
    PyObject* f = PyNumber_Add(PyList_GET_ITEM(rec, R::FLOPS), flops);
    PyObject* a = f ? PyNumber_Add(PyList_GET_ITEM(rec, R::ACTIVATIONS), acts) : nullptr;
    PyObject* n = a ? PyNumber_Add(PyList_GET_ITEM(rec, R::CALLS), one) : nullptr;
    if (n) {
      PyList_SetItem(rec, R::FLOPS, f), PyList_SetItem(rec, R::ACTIVATIONS, a);
      PyList_SetItem(rec, R::CALLS, n);
      ok = true;
    } else {
      Py_XDECREF(f), Py_XDECREF(a);
    }
  } else if (!PyErr_Occurred()) {
    PyObject* values[R::SIZE];
    values[R::FLOPS] = flops, values[R::ACTIVATIONS] = acts;
    values[R::CALLS] = one, values[R::OP] = op;
    PyObject* fresh = record(R::SIZE, values);
    ok = fresh && PyDict_SetItem(acc, id, fresh) == 0;
    Py_XDECREF(fresh);
  }
  Py_DECREF(id);
  return ok;
}

// charge(state, op, handler, args, kwargs, out): see charge.h.
PyObject* charge(PyObject*, PyObject* const* argv, Py_ssize_t nargs) {
  if (nargs != 6) return PyErr_SetString(PyExc_TypeError, "charge takes 6 arguments"), nullptr;
  PyObject *state = argv[0], *op = argv[1], *handler = argv[2], *out = argv[5];
  if (!init_constants()) return nullptr;
  if (!PyList_CheckExact(state) || PyList_GET_SIZE(state) != counter_slot::SIZE ||
      !PyList_CheckExact(PyList_GET_ITEM(state, LAST_BACKWARD)) ||
      PyList_GET_SIZE(PyList_GET_ITEM(state, LAST_BACKWARD)) != 1)
    return PyErr_SetString(PyExc_TypeError, "malformed counter state"), nullptr;
  if (handler == PyList_GET_ITEM(state, NO_FORMULA)) {
    if (!not_counted(PyList_GET_ITEM(state, UNSUPPORTED), op)) return nullptr;
    Py_RETURN_NONE;
  }
  PyObject* cost = PyObject_Vectorcall(handler, argv + 3, 3, nullptr);
  if (!cost) {
    if (!PyErr_ExceptionMatches(PyExc_ValueError)) return nullptr;
    PyErr_Clear();  // the call does not fit its formula: not counted
    if (!not_counted(PyList_GET_ITEM(state, UNSUPPORTED), op)) return nullptr;
    Py_RETURN_NONE;
  }
  if (!PyTuple_Check(cost) || PyTuple_GET_SIZE(cost) != 2) {
    Py_DECREF(cost);
    return PyErr_SetString(PyExc_TypeError, "a handler must return (flops, activations)"), nullptr;
  }
  PyObject* flops = PyTuple_GET_ITEM(cost, 0);
  PyObject* acts = PyTuple_GET_ITEM(cost, 1);
  PyObject* acc_all = PyList_GET_ITEM(state, ACC);
  PyObject* tracker = PyList_GET_ITEM(state, TRACKER);
  if (!PyDict_CheckExact(acc_all) || !tracker_state_ok(tracker)) {
    Py_DECREF(cost);
    return PyErr_SetString(PyExc_TypeError, "malformed counter state"), nullptr;
  }
  PyObject* key = tracker_key(tracker);  // new reference
  PyObject* node = PyObject_CallNoArgs(PyList_GET_ITEM(state, CURRENT_NODE));
  PyObject* acc = nullptr;
  PyObject* result = nullptr;
  if (!node) goto done;
  if (node == Py_None) {
    if (!append_pending(state, out, key)) goto done;
    if (key == PyList_GET_ITEM(state, FWD_KEY)) {  // most ops run where the previous one did
      acc = PyList_GET_ITEM(state, FWD_ACC);
    } else {
      acc = accumulator(acc_all, forward_name, key);
      if (!acc) goto done;
      PyList_SetItem(state, FWD_ACC, Py_NewRef(acc));
      PyList_SetItem(state, FWD_KEY, Py_NewRef(key));
      PyList_SetItem(PyList_GET_ITEM(state, LAST_BACKWARD), 0, Py_NewRef(Py_None));  // forward again
    }
  } else if (PyTuple_GET_SIZE(key) > 0) {
    // A module's forward runs inside backward: activation checkpointing. Charge it to the
    // recomputing modules and to the ancestors of their original call.
    PyObject* outer = tracker_parent_key(tracker, PyTuple_GET_ITEM(key, 0));
    PyObject* full = outer ? PySequence_Concat(outer, key) : nullptr;
    Py_XDECREF(outer);
    if (!full) goto done;
    Py_SETREF(key, full);
    if (!append_pending(state, out, key)) goto done;
    acc = accumulator(acc_all, recompute_name, key);
  } else {
    acts = zero;  // activations are a forward quantity (fvcore's): gradients are not
    PyObject* metadata = PyObject_GetAttr(node, metadata_name);
    if (!metadata) goto done;
    PyObject* tagged = PyDict_Check(metadata)
                           ? PyDict_GetItemWithError(metadata, PyList_GET_ITEM(state, TAG))
                           : nullptr;
    PyObject* last = PyList_GET_ITEM(state, LAST_BACKWARD);
    if (tagged) {
      Py_INCREF(tagged);
      PyList_SetItem(last, 0, tagged);  // the module whose backward is running
    } else if (!PyErr_Occurred() && PyList_GET_ITEM(last, 0) != Py_None &&
               distributed_node(node)) {
      tagged = PyList_GET_ITEM(last, 0);  // torch.distributed's own node: where backward just was
    }
    if (tagged || !PyErr_Occurred()) acc = accumulator(acc_all, backward_name, tagged ? tagged : empty);
    Py_DECREF(metadata);
  }
  if (acc && add(acc, op, flops, acts)) result = Py_NewRef(Py_None);
done:
  Py_XDECREF(node);
  Py_DECREF(key);
  Py_DECREF(cost);
  return result;
}

PyMethodDef charge_methods[] = {
    {"charge", reinterpret_cast<PyCFunction>(reinterpret_cast<void (*)()>(charge)), METH_FASTCALL,
     "charge(state, op, handler, args, kwargs, out): count one op call (see csrc/charge.h)"},
    {nullptr, nullptr, 0, nullptr},
};

}  // namespace

bool add_charge(PyObject* module) { return PyModule_AddFunctions(module, charge_methods) == 0; }

}  // namespace dispatchflops
