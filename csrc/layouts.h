// The layouts shared by C++ and Python, defined once here: the slots of the counter's and
// the tracker's state lists and the fields of the per-op records. C++ indexes them with
// the enums below; Python gets the names in order (`dispatchflops._C.layouts`) and indexes
// by name (dispatchflops/layouts.py).
#pragma once
#include <Python.h>

namespace dispatchflops {

// The counter's state list, which charge() works on (dispatchflops/mode.py builds it).
#define DISPATCHFLOPS_COUNTER_SLOTS(X)                                                      \
  X(ACC)          /* {(phase, key): {id(op): op record}} */                                 \
  X(TRACKER)      /* the module tracker's state list */                                     \
  X(PENDING)      /* [(output, key)]: forward outputs whose autograd node gets tagged */    \
  X(FWD_KEY)      /* the module stack of the forward accumulator last charged */            \
  X(FWD_ACC)      /* that accumulator */                                                    \
  X(TAG)          /* this counter's autograd-node metadata key */                           \
  X(UNSUPPORTED)  /* {id(op): not-counted record} */                                        \
  X(NO_FORMULA)   /* the handler that marks an op without a formula (ops.UNSUPPORTED) */    \
  X(CURRENT_NODE) /* torch._C._current_autograd_node */                                     \
  X(GRAD_ENABLED) /* torch.is_grad_enabled */                                               \
  X(LAST_BACKWARD) /* [key of the last tagged node charged in backward, or None] */       \
  X(PLANS)        /* {id(op): traffic plan} (traffic.h), or None: bytes are not counted */  \
  X(MOVES)        /* the handler that marks an op with no FLOPs that moves bytes */         \
  X(TENSOR)       /* torch.Tensor */                                                     \
  X(MEMORY)       /* None, or note(func, args, kwargs, out) after each op */

// The module tracker's state list (dispatchflops/tracker.py builds it).
#define DISPATCHFLOPS_TRACKER_SLOTS(X)                                                      \
  X(PATHS)       /* {module: path} of the modules followed */                               \
  X(KEY)         /* the running module stack: a tuple of paths, outermost first */          \
  X(CALLS)       /* Counter {path: forward calls} */                                        \
  X(PARENT_KEY)  /* {path: the key its first call ran under} */                             \
  X(FRAMES)      /* [(module, key outside it)] of the modules running */                    \
  X(ADOPT)       /* None, or adopt(module) -> path for modules outside PATHS */           \
  X(THREAD)      /* the ident of the thread followed: other threads' calls are not */     \
  X(WATCH)       /* None, or watch() after the key changes (memory.py) */

// What was counted of one op under one (phase, key): a list. FLOPS is None for an op
// charged only for the bytes it moves (no FLOP formula, or none needed); DTYPE is the
// dtype of its first tensor argument in its first call with FLOPs (None before one, or
// when bytes are not counted).
#define DISPATCHFLOPS_OP_RECORD(X) X(FLOPS) X(ACTIVATIONS) X(CALLS) X(OP) X(BYTES) X(DTYPE)
// An op listed as not counted: a list.
#define DISPATCHFLOPS_UNCOUNTED_RECORD(X) X(CALLS) X(OP)
// The roles of an op's arguments in its traffic plan (traffic.h says what each means).
#define DISPATCHFLOPS_TRAFFIC_ROLES(X) X(PLAIN) X(SKIP) X(GATHER) X(SOURCE) X(ACCUMULATE) X(READ_WRITE)

#define DISPATCHFLOPS_ENUM_ITEM(name) name,
namespace counter_slot {
enum Slot : Py_ssize_t { DISPATCHFLOPS_COUNTER_SLOTS(DISPATCHFLOPS_ENUM_ITEM) SIZE };
}
namespace tracker_slot {
enum Slot : Py_ssize_t { DISPATCHFLOPS_TRACKER_SLOTS(DISPATCHFLOPS_ENUM_ITEM) SIZE };
}
namespace op_record {
enum Field : Py_ssize_t { DISPATCHFLOPS_OP_RECORD(DISPATCHFLOPS_ENUM_ITEM) SIZE };
}
namespace uncounted_record {
enum Field : Py_ssize_t { DISPATCHFLOPS_UNCOUNTED_RECORD(DISPATCHFLOPS_ENUM_ITEM) SIZE };
}
namespace traffic_role {
enum Role : long { DISPATCHFLOPS_TRAFFIC_ROLES(DISPATCHFLOPS_ENUM_ITEM) SIZE };
}
#undef DISPATCHFLOPS_ENUM_ITEM

// {"counter": names, "tracker": names, "op_record": names, "uncounted_record": names,
// "traffic_role": names}, each a tuple of lower-case names in index order (a new reference).
PyObject* layouts();

}  // namespace dispatchflops
