// The counter's per-op bookkeeping (see charge.h): run a counted op's handler and add its
// cost to the accumulator of the phase and module stack it ran in.
#include "charge.h"

#include "layouts.h"
#include "tracker.h"
#include "traffic.h"

namespace dispatchflops {

namespace {

using namespace counter_slot;

PyObject *forward_name, *recompute_name, *backward_name, *metadata_name, *one, *zero, *empty;
PyObject *forward_cls_name, *module_name, *distributed_prefix, *dtype_name, *grad_fn_name;

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
  dtype_name = PyUnicode_InternFromString("dtype");
  grad_fn_name = PyUnicode_InternFromString("grad_fn");
  return forward_name && recompute_name && backward_name && metadata_name && one && zero &&
         empty && forward_cls_name && module_name && distributed_prefix && dtype_name &&
         grad_fn_name;
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

// The dtype of the first tensor in args (or in its first list of tensors): a new
// reference, None if there is none. A record takes it from its first call with FLOPs.
PyObject* first_dtype(PyObject* tensor_type, PyObject* args) {
  for (Py_ssize_t i = 0; PyTuple_Check(args) && i < PyTuple_GET_SIZE(args); ++i) {
    PyObject* a = PyTuple_GET_ITEM(args, i);
    if ((PyList_Check(a) || PyTuple_Check(a)) && PySequence_Fast_GET_SIZE(a) > 0)
      a = PySequence_Fast_GET_ITEM(a, 0);
    if (PyObject_TypeCheck(a, reinterpret_cast<PyTypeObject*>(tensor_type)))
      return PyObject_GetAttr(a, dtype_name);
  }
  return Py_NewRef(Py_None);
}

// acc[id]: the op record of op, created or added to (flops None: bytes only). With
// dtype_from (the call's args; nullptr when bytes are not counted: no roofline then),
// a record with FLOPs gets the dtype of its first call with FLOPs.
bool add(PyObject* acc, PyObject* id, PyObject* op, PyObject* flops, PyObject* acts,
         PyObject* bytes, PyObject* tensor_type, PyObject* dtype_from) {
  namespace R = op_record;
  PyObject* rec = PyDict_GetItemWithError(acc, id);
  if (rec) {
    PyObject* counted = PyList_GET_ITEM(rec, R::FLOPS);
    PyObject* f = flops == Py_None ? Py_NewRef(counted)
                  : counted == Py_None ? Py_NewRef(flops) : PyNumber_Add(counted, flops);
    PyObject* a = f ? PyNumber_Add(PyList_GET_ITEM(rec, R::ACTIVATIONS), acts) : nullptr;
    PyObject* n = a ? PyNumber_Add(PyList_GET_ITEM(rec, R::CALLS), one) : nullptr;
    PyObject* b = n ? PyNumber_Add(PyList_GET_ITEM(rec, R::BYTES), bytes) : nullptr;
    if (!b) {
      Py_XDECREF(f), Py_XDECREF(a), Py_XDECREF(n);
      return false;
    }
    PyList_SetItem(rec, R::FLOPS, f), PyList_SetItem(rec, R::ACTIVATIONS, a);
    PyList_SetItem(rec, R::CALLS, n), PyList_SetItem(rec, R::BYTES, b);
    if (dtype_from && flops != Py_None && PyList_GET_ITEM(rec, R::DTYPE) == Py_None) {
      PyObject* dtype = first_dtype(tensor_type, dtype_from);  // its first call with FLOPs
      if (!dtype) return false;
      PyList_SetItem(rec, R::DTYPE, dtype);
    }
    return true;
  }
  if (PyErr_Occurred()) return false;
  // the dtype picks the peak FLOP/s of a roofline: only ops with FLOPs need one
  PyObject* dtype = !dtype_from || flops == Py_None ? Py_NewRef(Py_None)
                                                    : first_dtype(tensor_type, dtype_from);
  if (!dtype) return false;
  PyObject* values[R::SIZE];
  values[R::FLOPS] = flops, values[R::ACTIVATIONS] = acts;
  values[R::CALLS] = one, values[R::OP] = op, values[R::BYTES] = bytes, values[R::DTYPE] = dtype;
  PyObject* fresh = record(R::SIZE, values);
  Py_DECREF(dtype);
  bool ok = fresh && PyDict_SetItem(acc, id, fresh) == 0;
  Py_XDECREF(fresh);
  return ok;
}

// The traffic plan of op (borrowed), nullptr when its bytes are not counted (or error).
PyObject* plan_of(PyObject* state, PyObject* id) {
  PyObject* plans = PyList_GET_ITEM(state, PLANS);
  return PyDict_CheckExact(plans) ? PyDict_GetItemWithError(plans, id) : nullptr;
}

// The cost of one call: (flops or None, activations, bytes) as new references in cost[3];
// false when it is not charged (cost unset: error set or not).
bool cost_of(PyObject* state, PyObject* plan_id, PyObject* const* argv, PyObject** cost) {
  PyObject *op = argv[1], *handler = argv[2];
  PyObject* plan = plan_of(state, plan_id);
  if (!plan && PyErr_Occurred()) return false;
  cost[0] = nullptr;
  if (handler == PyList_GET_ITEM(state, NO_FORMULA)) {
    if (!not_counted(PyList_GET_ITEM(state, UNSUPPORTED), op)) return false;
  } else if (handler != PyList_GET_ITEM(state, MOVES)) {
    PyObject* found = PyObject_Vectorcall(handler, argv + 3, 3, nullptr);
    if (!found) {
      if (!PyErr_ExceptionMatches(PyExc_ValueError)) return false;
      PyErr_Clear();  // the call does not fit its formula: not counted
      if (!not_counted(PyList_GET_ITEM(state, UNSUPPORTED), op)) return false;
    } else if (!PyTuple_Check(found) || PyTuple_GET_SIZE(found) != 2) {
      Py_DECREF(found);
      PyErr_SetString(PyExc_TypeError, "a handler must return (flops, activations)");
      return false;
    } else {
      cost[0] = Py_NewRef(PyTuple_GET_ITEM(found, 0));
      cost[1] = Py_NewRef(PyTuple_GET_ITEM(found, 1));
      Py_DECREF(found);
    }
  }
  if (!cost[0] && !plan) return false;  // nothing to charge
  int64_t moved = plan ? bytes_moved(plan, PyList_GET_ITEM(state, TENSOR), argv[3], argv[4],
                                     argv[5])
                       : 0;
  cost[2] = moved >= 0 ? PyLong_FromLongLong(moved) : nullptr;
  if (!cost[2]) {
    if (cost[0]) Py_DECREF(cost[0]), Py_DECREF(cost[1]);
    return false;
  }
  if (!cost[0]) cost[0] = Py_NewRef(Py_None), cost[1] = Py_NewRef(zero);
  return true;
}

}  // namespace

// charge(state, op, handler, args, kwargs, out[, bytes_of]): see charge.h.
PyObject* charge(PyObject*, PyObject* const* argv, Py_ssize_t nargs) {
  if (nargs != 6 && nargs != 7)
    return PyErr_SetString(PyExc_TypeError, "charge takes 6 or 7 arguments"), nullptr;
  PyObject *state = argv[0], *op = argv[1], *out = argv[5];
  if (!init_constants()) return nullptr;
  if (!PyList_CheckExact(state) || PyList_GET_SIZE(state) != counter_slot::SIZE ||
      !PyList_CheckExact(PyList_GET_ITEM(state, LAST_BACKWARD)) ||
      PyList_GET_SIZE(PyList_GET_ITEM(state, LAST_BACKWARD)) != 1)
    return PyErr_SetString(PyExc_TypeError, "malformed counter state"), nullptr;
  PyObject* id = PyLong_FromVoidPtr(op);
  if (!id) return nullptr;
  PyObject* plan_id = nargs == 7 ? PyLong_FromVoidPtr(argv[6]) : Py_NewRef(id);
  if (!plan_id) return Py_DECREF(id), nullptr;
  PyObject* cost[3];
  bool charged = cost_of(state, plan_id, argv, cost);
  Py_DECREF(plan_id);
  if (!charged) {
    Py_DECREF(id);
    if (PyErr_Occurred()) return nullptr;
    Py_RETURN_NONE;
  }
  PyObject *flops = cost[0], *acts = cost[1];
  PyObject* acc_all = PyList_GET_ITEM(state, ACC);
  PyObject* tracker = PyList_GET_ITEM(state, TRACKER);
  if (!PyDict_CheckExact(acc_all) || !tracker_state_ok(tracker)) {
    Py_DECREF(id), Py_DECREF(cost[0]), Py_DECREF(cost[1]), Py_DECREF(cost[2]);
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
  if (acc && add(acc, id, op, flops, acts, cost[2], PyList_GET_ITEM(state, TENSOR),
                 PyDict_CheckExact(PyList_GET_ITEM(state, PLANS)) ? argv[3] : nullptr))
    result = Py_NewRef(Py_None);
done:
  Py_XDECREF(node);
  Py_DECREF(key);
  Py_DECREF(id), Py_DECREF(cost[0]), Py_DECREF(cost[1]), Py_DECREF(cost[2]);
  return result;
}

namespace {

// The tensor out is, or the first tensor it holds (borrowed; nullptr if none).
PyObject* first_tensor(PyObject* out, PyObject* tensor_type) {
  auto is_tensor = [&](PyObject* o) {
    return PyObject_TypeCheck(o, reinterpret_cast<PyTypeObject*>(tensor_type));
  };
  if (is_tensor(out)) return out;
  if (PyTuple_Check(out) || PyList_Check(out)) {
    for (Py_ssize_t i = 0; i < PySequence_Fast_GET_SIZE(out); ++i)
      if (is_tensor(PySequence_Fast_GET_ITEM(out, i))) return PySequence_Fast_GET_ITEM(out, i);
  }
  return nullptr;
}

}  // namespace

// tag_pending(state): see charge.h.
PyObject* tag_pending(PyObject*, PyObject* state) {
  if (!init_constants()) return nullptr;
  if (!PyList_CheckExact(state) || PyList_GET_SIZE(state) != counter_slot::SIZE ||
      !PyList_CheckExact(PyList_GET_ITEM(state, PENDING)))
    return PyErr_SetString(PyExc_TypeError, "malformed counter state"), nullptr;
  PyObject* pending = PyList_GET_ITEM(state, PENDING);
  PyObject* items = PyList_GetSlice(pending, 0, PyList_GET_SIZE(pending));
  if (!items || PyList_SetSlice(pending, 0, PyList_GET_SIZE(pending), nullptr) < 0) {
    Py_XDECREF(items);
    return nullptr;
  }
  PyObject* tag = PyList_GET_ITEM(state, TAG);
  bool ok = true;
  for (Py_ssize_t i = 0; ok && i < PyList_GET_SIZE(items); ++i) {
    PyObject* item = PyList_GET_ITEM(items, i);
    if (!PyTuple_Check(item) || PyTuple_GET_SIZE(item) < 2) continue;
    PyObject* t = first_tensor(PyTuple_GET_ITEM(item, 0), PyList_GET_ITEM(state, TENSOR));
    PyObject* fn = t ? PyObject_GetAttr(t, grad_fn_name) : Py_NewRef(Py_None);
    if (!fn) {
      ok = false;
    } else if (fn != Py_None) {
      PyObject* metadata = PyObject_GetAttr(fn, metadata_name);
      ok = metadata && PyDict_Check(metadata) &&
           PyDict_SetDefault(metadata, tag, PyTuple_GET_ITEM(item, 1)) != nullptr;
      if (metadata && !PyDict_Check(metadata))
        PyErr_SetString(PyExc_TypeError, "an autograd node's metadata is not a dict");
      Py_XDECREF(metadata);
    } else if (PyTuple_GET_SIZE(item) == 3) {  // a HOP's output: wait, a number of ops
      long left = PyLong_AsLong(PyTuple_GET_ITEM(item, 2));
      if (left == -1 && PyErr_Occurred()) {
        ok = false;
      } else if (left > 1) {
        PyObject* again = Py_BuildValue("(OOl)", PyTuple_GET_ITEM(item, 0),
                                        PyTuple_GET_ITEM(item, 1), left - 1);
        ok = again && PyList_Append(pending, again) == 0;
        Py_XDECREF(again);
      }
    }
    Py_XDECREF(fn);
  }
  Py_DECREF(items);
  if (!ok) return nullptr;
  Py_RETURN_NONE;
}

namespace {

PyMethodDef charge_methods[] = {
    {"tag_pending", tag_pending, METH_O,
     "tag_pending(state): tag the autograd nodes of the queued outputs (see csrc/charge.h)"},
    {"charge", reinterpret_cast<PyCFunction>(reinterpret_cast<void (*)()>(charge)), METH_FASTCALL,
     "charge(state, op, handler, args, kwargs, out[, bytes_of]): count one op call (see "
     "csrc/charge.h)"},
    {nullptr, nullptr, 0, nullptr},
};

}  // namespace

bool add_charge(PyObject* module) { return PyModule_AddFunctions(module, charge_methods) == 0; }

}  // namespace dispatchflops
