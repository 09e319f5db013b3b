// The names of the layouts of layouts.h, for Python.
#include "layouts.h"

#include <cctype>
#include <string>

namespace dispatchflops {

namespace {

// A tuple of the lower-cased names (a new reference).
PyObject* names(std::initializer_list<const char*> upper) {
  PyObject* out = PyTuple_New(static_cast<Py_ssize_t>(upper.size()));
  Py_ssize_t i = 0;
  for (const char* name : upper) {
    std::string lower(name);
    for (char& c : lower) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
    PyObject* s = out ? PyUnicode_FromString(lower.c_str()) : nullptr;
    if (!s) return Py_XDECREF(out), nullptr;
    PyTuple_SET_ITEM(out, i++, s);
  }
  return out;
}

}  // namespace

#define DISPATCHFLOPS_NAME(name) #name,
PyObject* layouts() {
  PyObject* counter = names({DISPATCHFLOPS_COUNTER_SLOTS(DISPATCHFLOPS_NAME)});
  PyObject* tracker = names({DISPATCHFLOPS_TRACKER_SLOTS(DISPATCHFLOPS_NAME)});
  PyObject* op = names({DISPATCHFLOPS_OP_RECORD(DISPATCHFLOPS_NAME)});
  PyObject* uncounted = names({DISPATCHFLOPS_UNCOUNTED_RECORD(DISPATCHFLOPS_NAME)});
  PyObject* roles = names({DISPATCHFLOPS_TRAFFIC_ROLES(DISPATCHFLOPS_NAME)});
  PyObject* out = counter && tracker && op && uncounted && roles
                      ? Py_BuildValue("{sOsOsOsOsO}", "counter", counter, "tracker", tracker,
                                      "op_record", op, "uncounted_record", uncounted,
                                      "traffic_role", roles)
                      : nullptr;
  Py_XDECREF(counter), Py_XDECREF(tracker), Py_XDECREF(op), Py_XDECREF(uncounted);
  Py_XDECREF(roles);
  return out;
}
#undef DISPATCHFLOPS_NAME

}  // namespace dispatchflops
