"""Overhead of counting FLOPs with dispatchflops, next to its alternatives (one process; CPU by
default, a GPU with --device cuda).

For each workload it times, per call, the whole user-visible cost of a variant: building
the counter, entering its context, the run, and leaving the context (where results are
built). Variants:

  plain        the run alone
  floor        an empty TorchDispatchMode that only re-dispatches every op: the least any
               dispatch-level counter can cost
  torch        torch.utils.flop_counter.FlopCounterMode(display=False)
  df-pytorch   dispatchflops.FlopCounterMode(model, convention="pytorch")
  df-fvcore    dispatchflops.FlopCounterMode(model, convention="fvcore")
  df-*-bytes   the same with count_bytes=True: bytes too (what byte accounting costs
               is the "bytes cost" line under each table)
  df-pytorch-memory  df-pytorch with count_memory=True: every storage followed (memory.py)
  fvcore       fvcore.nn.FlopCountAnalysis(model, inputs).total(): a JIT trace per call,
               so the whole call is timed (forward workloads only; "n/a" if it fails)

Workloads: resnet50 and mobilenet_v3_small (1x3x224x224, eval, no_grad); a randomly
initialised GPT-2-small (GPT2Config() + sdpa attention, eval, no_grad, use_cache=False so
fvcore can trace it) on 1x8 and 1x128 random tokens; resnet18 forward+backward (train
mode, 1x3x224x224, ``model(x).sum().backward()``, grads set to None before each call,
outside the timed region).

After warm-up, every round runs each variant once, in an order that rotates by one each
round; medians over rounds are reported, with the overhead (median - plain median), the
paired overhead (median over rounds of variant - plain of the same round, which cancels
the slow swings of a shared machine) and, for dispatchflops, its paired overhead relative
to torch's and to the floor's. The FLOP totals
of one untimed call per counter are shown so that wrong counts stand out. ``--growth``
adds per-aten-op overhead for resnet18/34/50/101/152 at batch 1 and resnet18 at batch
1/8/32: (median - plain median) / aten ops dispatched per call (counted once with a
counting TorchDispatchMode), which stays flat if the cost is per op.

Run:  python benchmarks/overhead.py                      # all workloads, ~5-7 min on 2 cores
      python benchmarks/overhead.py --workloads resnet50,gpt2_seq8 --rounds 20
      python benchmarks/overhead.py --growth               # adds the growth section (~4 min)
      python benchmarks/overhead.py --workloads "" --growth  # the growth section alone
      python benchmarks/overhead.py --json                 # JSON on stdout, progress on stderr
      python benchmarks/overhead.py --device cuda --workloads resnet50 --rounds 10

--device cuda moves models and inputs to the GPU and calls torch.cuda.synchronize() before
and after each timed call, so that a time covers the kernels the call launched.

Threads: torch.set_num_threads(<cores available to this process>) (override: --threads N),
printed in the header.
Timings on a shared machine are noisy; the iqr column shows the spread across rounds, and the
"paired" column (median of per-round differences to plain) is the steadier overhead estimate.
With 2 threads on 2 cores and another busy process, torch's OpenMP runs can stall by 10-20x
for minutes on end; --threads 1 then gives much steadier numbers.
"""
from __future__ import annotations

import argparse
import gc
import json
import os
import platform
import resource
import statistics
import sys
import time
import traceback
import warnings

import torch
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils.flop_counter import FlopCounterMode as TorchFlopCounterMode

import dispatchflops

# --- dispatch modes ----------------------------------------------------------------------


class FloorMode(TorchDispatchMode):
    """Re-dispatches every op and does nothing else."""

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        return func(*args, **(kwargs or {}))


class OpCountMode(TorchDispatchMode):
    """Counts aten op calls that reach the dispatch mode."""

    def __init__(self):
        super().__init__()
        self.n = 0

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        self.n += 1
        return func(*args, **(kwargs or {}))


# --- workloads ---------------------------------------------------------------------------


class Workload:
    """A model, its inputs and one run (``step``); ``prepare`` runs untimed before a step."""

    def __init__(self, name, desc, model, inputs, train=False):
        self.name, self.desc, self.model, self.inputs, self.train = name, desc, model, inputs, train
        self.device = inputs[0].device

    def step(self):
        if self.train:
            self.model(*self.inputs).sum().backward()
        else:
            with torch.no_grad():
                self.model(*self.inputs)

    def prepare(self):
        if self.train:
            self.model.zero_grad(set_to_none=True)


def _vision(name, batch=1, train=False, device="cpu"):
    import torchvision

    torch.manual_seed(0)
    model = getattr(torchvision.models, name)(weights=None)
    model.train(train).to(device)
    x = torch.randn(batch, 3, 224, 224).to(device)
    mode = "train, fwd+bwd" if train else "eval, no_grad"
    return model, (x,), f"{batch}x3x224x224, {mode}"


_gpt2_cache = {}


def _gpt2(device="cpu"):
    if device not in _gpt2_cache:
        import transformers

        torch.manual_seed(0)
        config = transformers.GPT2Config(use_cache=False)
        model = transformers.AutoModelForCausalLM.from_config(config, attn_implementation="sdpa")
        _gpt2_cache[device] = model.eval().to(device)
    return _gpt2_cache[device]


def _gpt2_workload(name, seq, device="cpu"):
    model = _gpt2(device)
    g = torch.Generator().manual_seed(seq)
    ids = torch.randint(0, model.config.vocab_size, (1, seq), generator=g).to(device)
    return Workload(name, f"GPT-2 small, random init, 1x{seq} tokens, eval, no_grad, sdpa",
                    model, (ids,))


def _vision_workload(name, arch, train=False, device="cpu"):
    model, inputs, desc = _vision(arch, train=train, device=device)
    return Workload(name, f"{arch} {desc}", model, inputs, train=train)


# name -> (builder(device), default rounds), sized for ~5 min in all on 2 cores.
WORKLOADS = {
    "resnet50": (lambda d: _vision_workload("resnet50", "resnet50", device=d), 40),
    "mobilenet_v3_small": (
        lambda d: _vision_workload("mobilenet_v3_small", "mobilenet_v3_small", device=d), 100),
    "gpt2_seq8": (lambda d: _gpt2_workload("gpt2_seq8", 8, d), 40),
    "gpt2_seq128": (lambda d: _gpt2_workload("gpt2_seq128", 128, d), 20),
    "resnet18_train": (
        lambda d: _vision_workload("resnet18_train", "resnet18", train=True, device=d), 40),
}

# --- variants ----------------------------------------------------------------------------
# Each variant is f(workload) -> FLOP total or None; the timed unit is the whole call.


def v_plain(w):
    w.step()


def v_floor(w):
    with FloorMode():
        w.step()


def v_torch(w):
    with TorchFlopCounterMode(display=False) as c:
        w.step()
    return c


def v_df_pytorch(w):
    with dispatchflops.FlopCounterMode(w.model, convention="pytorch") as c:
        w.step()
    return c


def v_df_fvcore(w):
    with dispatchflops.FlopCounterMode(w.model, convention="fvcore") as c:
        w.step()
    return c


def v_df_pytorch_bytes(w):
    with dispatchflops.FlopCounterMode(w.model, convention="pytorch", count_bytes=True) as c:
        w.step()
    return c


def v_df_fvcore_bytes(w):
    with dispatchflops.FlopCounterMode(w.model, convention="fvcore", count_bytes=True) as c:
        w.step()
    return c


def v_df_pytorch_memory(w):
    with dispatchflops.FlopCounterMode(w.model, convention="pytorch", count_memory=True) as c:
        w.step()
    return c


def _fvcore_analysis():
    with warnings.catch_warnings():  # importing fvcore warns about torch.jit.script
        warnings.simplefilter("ignore")
        from fvcore.nn import FlopCountAnalysis
    return FlopCountAnalysis


def v_fvcore(w):
    FlopCountAnalysis = _fvcore_analysis()
    with warnings.catch_warnings(), torch.no_grad():
        warnings.simplefilter("ignore")
        a = FlopCountAnalysis(w.model, w.inputs)
        a.unsupported_ops_warnings(False).uncalled_modules_warnings(False).tracer_warnings("none")
        return a.total()


VARIANTS = {
    "plain": v_plain,
    "floor": v_floor,
    "torch": v_torch,
    "df-pytorch": v_df_pytorch,
    "df-fvcore": v_df_fvcore,
    "df-pytorch-bytes": v_df_pytorch_bytes,
    "df-fvcore-bytes": v_df_fvcore_bytes,
    "df-pytorch-memory": v_df_pytorch_memory,
    "fvcore": v_fvcore,
}
LABELS = {
    "plain": "plain",
    "floor": "floor (empty dispatch mode)",
    "torch": "torch FlopCounterMode",
    "df-pytorch": "dispatchflops[pytorch]",
    "df-fvcore": "dispatchflops[fvcore]",
    "df-pytorch-bytes": "dispatchflops[pytorch] +bytes",
    "df-fvcore-bytes": "dispatchflops[fvcore] +bytes",
    "df-pytorch-memory": "dispatchflops[pytorch] +memory",
    "fvcore": "fvcore FlopCountAnalysis",
}


def _flops_of(result):
    if result is None:
        return None
    if isinstance(result, int):
        return result
    return int(result.get_total_flops())


# --- timing ------------------------------------------------------------------------------


def log(*a):
    print(*a, file=sys.stderr, flush=True)


def count_aten_ops(w):
    w.prepare()
    with OpCountMode() as m:
        w.step()
    return m.n


def measure(w, variants, rounds, warmup):
    """Returns {variant: {"times": [s...]} | {"error": str}}, {variant: flops}."""
    out, flops, active = {}, {}, []
    for v in variants:
        fn = VARIANTS[v]
        try:
            # Untimed call: warm-up, and the FLOP total for the sanity column.
            w.prepare()
            flops[v] = _flops_of(fn(w))
            for _ in range(warmup - 1):
                w.prepare()
                fn(w)
        except Exception as e:  # a counter that fails is reported, not fatal
            if v == "plain":
                raise
            msg = f"{type(e).__name__}: {e}".splitlines()[0][:200]
            out[v] = {"error": msg}
            log(f"  {v} failed on {w.name}:\n" + traceback.format_exc())
            continue
        out[v] = {"times": []}
        active.append(v)
    timer = time.perf_counter
    # on a GPU, wait for the kernels queued before and launched by each timed call
    sync = torch.cuda.synchronize if w.device.type == "cuda" else (lambda: None)
    for r in range(rounds):
        k = r % len(active)
        order = active[k:] + active[:k]
        gc.collect()
        for v in order:
            fn = VARIANTS[v]
            w.prepare()
            sync()
            t0 = timer()
            fn(w)
            sync()
            t1 = timer()
            out[v]["times"].append(t1 - t0)
    plain_times = out["plain"]["times"]
    for v in active:
        # Paired: the same round's plain run as baseline, robust to slow stretches that
        # hit a whole round (other processes on a shared machine).
        out[v]["paired_overhead_ms"] = statistics.median(
            (t - b) * 1e3 for t, b in zip(out[v]["times"], plain_times))
    for v in active:
        ts = sorted(out[v]["times"])
        q = statistics.quantiles(ts, n=4) if len(ts) > 1 else [ts[0]] * 3
        out[v].update(median_ms=statistics.median(ts) * 1e3, iqr_ms=(q[2] - q[0]) * 1e3,
                      min_ms=ts[0] * 1e3)
        out[v]["times_ms"] = [round(t * 1e3, 4) for t in out[v].pop("times")]
    return out, flops


def derive(res, n_ops):
    """Adds ratio / overhead / per-op / vs-torch / vs-floor fields in place."""
    plain = res["plain"]["median_ms"]

    def paired(v):
        return res.get(v, {}).get("paired_overhead_ms")

    base_torch, base_floor = paired("torch"), paired("floor")
    for v, r in res.items():
        if "median_ms" not in r:
            continue
        oh = r["median_ms"] - plain
        r["ratio"] = r["median_ms"] / plain
        r["overhead_ms"] = oh
        r["overhead_us_per_op"] = oh * 1e3 / n_ops if n_ops else None
        if v.startswith("df-"):
            # Ratios of paired overheads: per-round differences cancel the slow swings of a
            # shared machine, which move a whole round. A ratio of overheads is only
            # meaningful when the base overhead is above noise.
            oh = r["paired_overhead_ms"]
            r["vs_torch"] = oh / base_torch if base_torch and base_torch > 0 else None
            r["vs_floor"] = oh / base_floor if base_floor and base_floor > 0 else None
            with_bytes = res.get(v + "-bytes", {}).get("times_ms")
            if with_bytes and oh > 0:  # what byte accounting adds: paired with this variant
                r["bytes_cost"] = statistics.median(
                    b - t for b, t in zip(with_bytes, r["times_ms"])) / oh


# --- output ------------------------------------------------------------------------------


def _f(x, fmt, na="n/a"):
    return na if x is None else format(x, fmt)


def _gflops(x):
    return "-" if x is None else f"{x / 1e9:.3f} G"


def print_table(name, entry):
    res, flops = entry["variants"], entry["flops"]
    print(f"\n== {name}: {entry['desc']}")
    print(f"   {entry['rounds']} rounds, {entry['aten_ops']} aten ops per call "
          f"(as seen by a dispatch mode)")
    head = (f"{'variant':<28}{'median ms':>11}{'iqr ms':>9}{'x plain':>9}{'overhead ms':>13}"
            f"{'paired ms':>11}{'us/op':>8}{'vs torch':>10}{'vs floor':>10}{'FLOPs':>12}")
    print(head)
    print("-" * len(head))
    for v, r in res.items():
        label = LABELS[v]
        if "error" in r:
            print(f"{label:<28}{'n/a':>11}   ({r['error']})")
            continue
        plain = v == "plain"
        vs_t = _f(r.get("vs_torch"), ".2f") + "x" if v.startswith("df-") else ""
        vs_f = _f(r.get("vs_floor"), ".2f") + "x" if v.startswith("df-") else ""
        vs_t = vs_t.replace("n/ax", "n/a")
        vs_f = vs_f.replace("n/ax", "n/a")
        print(f"{label:<28}{r['median_ms']:>11.2f}{r['iqr_ms']:>9.2f}{r['ratio']:>8.3f}x"
              f"{'' if plain else format(r['overhead_ms'], '+.2f'):>13}"
              f"{'' if plain else format(r['paired_overhead_ms'], '+.2f'):>11}"
              f"{'' if plain else _f(r['overhead_us_per_op'], '.1f'):>8}"
              f"{vs_t:>10}{vs_f:>10}{_gflops(flops.get(v)):>12}")
    costs = [f"{LABELS[v].split()[0]}: {r['bytes_cost']:+.1%}" for v, r in res.items()
             if r.get("bytes_cost") is not None]
    if costs:
        print("   bytes cost (median over rounds of (+bytes - without) / paired overhead "
              "without): " + ", ".join(costs))
    print("   overhead = median - plain median; paired = median over rounds of (variant - plain"
          " of the same round)\n   us/op = overhead / aten ops; vs torch, vs floor = paired /"
          " their paired")
    if entry.get("note"):
        print(f"   note: {entry['note']}")


def print_growth(rows):
    print("\n== growth: overhead per aten op as work grows (eval, no_grad, 224x224)")
    head = (f"{'model':<10}{'batch':>6}{'rounds':>7}{'aten ops':>9}{'plain ms':>10}"
            f"{'floor ms':>10}{'df ms':>10}{'df us/op':>10}{'floor us/op':>12}"
            f"{'df-floor us/op':>15}{'df paired us/op':>16}{'df x plain':>11}")
    print(head)
    print("-" * len(head))
    for g in rows:
        print(f"{g['model']:<10}{g['batch']:>6}{g['rounds']:>7}{g['aten_ops']:>9}"
              f"{g['plain_ms']:>10.2f}{g['floor_ms']:>10.2f}{g['df_ms']:>10.2f}"
              f"{g['df_us_per_op']:>10.1f}{g['floor_us_per_op']:>12.1f}"
              f"{g['df_minus_floor_us_per_op']:>15.1f}{g['df_paired_us_per_op']:>16.1f}"
              f"{g['df_ratio']:>10.3f}x")
    print("   df = dispatchflops.FlopCounterMode(model, convention='pytorch'); us/op ="
          " (median - plain median) / aten ops;\n   paired = median over rounds of (df - plain"
          " of the same round) / aten ops")


def rss_info():
    info = {"maxrss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    info["vmrss_mib"] = int(line.split()[1]) / 1024
    except OSError:
        pass
    return info


def cpu_model():
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


# --- main --------------------------------------------------------------------------------

GROWTH = [("resnet18", 1), ("resnet34", 1), ("resnet50", 1), ("resnet101", 1),
          ("resnet152", 1), ("resnet18", 8), ("resnet18", 32)]


def run_growth(rounds, warmup, device="cpu"):
    rows = []
    for arch, batch in GROWTH:
        model, inputs, desc = _vision(arch, batch=batch, device=device)
        w = Workload(f"{arch}_b{batch}", f"{arch} {desc}", model, inputs)
        n_ops = count_aten_ops(w)
        log(f"growth {arch} batch {batch}: {n_ops} aten ops, {rounds} rounds")
        res, _ = measure(w, ["plain", "floor", "df-pytorch"], rounds, warmup)
        if "error" in res["df-pytorch"]:
            rows.append({"model": arch, "batch": batch, "error": res["df-pytorch"]["error"]})
            continue
        p, fl, df = (res[v]["median_ms"] for v in ("plain", "floor", "df-pytorch"))
        rows.append({
            "model": arch, "batch": batch, "rounds": rounds, "aten_ops": n_ops,
            "plain_ms": p, "floor_ms": fl, "df_ms": df,
            "df_us_per_op": (df - p) * 1e3 / n_ops,
            "floor_us_per_op": (fl - p) * 1e3 / n_ops,
            "df_minus_floor_us_per_op": (df - fl) * 1e3 / n_ops,
            "df_ratio": df / p,
            "df_paired_us_per_op": res["df-pytorch"]["paired_overhead_ms"] * 1e3 / n_ops,
            "variants": res,
        })
        del model, w
        gc.collect()
    return rows


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--workloads", default=",".join(WORKLOADS),
                   help=f"comma-separated, from: {', '.join(WORKLOADS)}")
    p.add_argument("--rounds", type=int, default=None,
                   help="timed rounds per workload (default: per workload, 20-100)")
    p.add_argument("--warmup", type=int, default=2, help="untimed calls per variant (>= 1)")
    p.add_argument("--threads", type=int, default=None,
                   help="torch threads (default: the cores available to this process)")
    p.add_argument("--growth", action="store_true", help="add the per-op growth section")
    p.add_argument("--growth-rounds", type=int, default=15)
    p.add_argument("--json", action="store_true", help="print JSON results instead of tables")
    p.add_argument("--device", default="cpu",
                   help="where models and inputs live (default: cpu); on cuda every timed call"
                        " is synchronised before and after")
    args = p.parse_args(argv)

    names = [n.strip() for n in args.workloads.split(",") if n.strip()]
    unknown = [n for n in names if n not in WORKLOADS]
    if unknown:
        p.error(f"unknown workload(s) {', '.join(unknown)}; choose from {', '.join(WORKLOADS)}")
    if args.rounds is not None and args.rounds < 1:
        p.error("--rounds must be >= 1")
    args.warmup = max(1, args.warmup)
    try:
        device = torch.device(args.device)
    except RuntimeError as e:
        p.error(f"--device: {e}")
    if device.type == "cuda" and not torch.cuda.is_available():
        p.error("--device cuda: CUDA is not available")

    try:
        cores = len(os.sched_getaffinity(0))
    except AttributeError:
        cores = os.cpu_count() or 1
    torch.set_num_threads(args.threads or cores)
    meta = {
        "torch": torch.__version__, "dispatchflops": dispatchflops.__version__,
        "python": platform.python_version(), "cpu": cpu_model(), "cores": cores,
        "torch_threads": torch.get_num_threads(), "warmup": args.warmup,
        "loadavg_start": os.getloadavg(),
    }
    if device.type != "cpu":
        meta["device"] = str(device)
        if device.type == "cuda":
            meta["gpu"] = torch.cuda.get_device_name(device)
    if not args.json:
        print(f"dispatchflops {meta['dispatchflops']} overhead benchmark | torch {meta['torch']}"
              f" | python {meta['python']} | {meta['cpu']}")
        print(f"cores available: {cores} | torch.set_num_threads({args.threads or cores})"
              f" -> torch.get_num_threads() = "
              f"{meta['torch_threads']} | warm-up {args.warmup} call(s) per variant"
              f" | load average at start {meta['loadavg_start'][0]:.2f}")
        if "device" in meta:
            print(f"device: {meta['device']}" + (f" ({meta['gpu']})" if "gpu" in meta else "")
                  + " | models and inputs there; timed calls synchronised before and after")
        if meta["loadavg_start"][0] > cores - 0.5:
            print(f"warning: load average {meta['loadavg_start'][0]:.2f} on {cores} cores: other"
                  " processes compete for the CPU and timings will be noisy\n"
                  "         (with several threads badly so; --threads 1 is steadier)")
        print("timed unit: construct counter + enter + run + exit; medians over interleaved"
              " rounds (rotating order)")

    t_start = time.perf_counter()
    results = {}
    for name in names:
        build, default_rounds = WORKLOADS[name]
        rounds = args.rounds if args.rounds is not None else default_rounds
        w = build(str(device))
        variants = list(VARIANTS)
        note = None
        if w.train:
            variants.remove("fvcore")
            note = "fvcore FlopCountAnalysis traces a forward only: not run on fwd+bwd"
        n_ops = count_aten_ops(w)
        log(f"{name}: {n_ops} aten ops per call, {rounds} rounds x {len(variants)} variants")
        t0 = time.perf_counter()
        res, flops = measure(w, variants, rounds, args.warmup)
        derive(res, n_ops)
        results[name] = {"desc": w.desc, "rounds": rounds, "aten_ops": n_ops,
                         "variants": res, "flops": flops, "note": note,
                         "seconds": time.perf_counter() - t0}
        log(f"  done in {results[name]['seconds']:.1f} s")
        if not args.json:
            print_table(name, results[name])
            sys.stdout.flush()
        del w
        if not any(n.startswith("gpt2") for n in names[names.index(name) + 1:]):
            _gpt2_cache.clear()
        gc.collect()

    growth = None
    if args.growth:
        growth = run_growth(args.growth_rounds, args.warmup, str(device))
        if not args.json:
            print_growth([g for g in growth if "error" not in g])
            for g in growth:
                if "error" in g:
                    print(f"   {g['model']} batch {g['batch']}: dispatchflops failed: {g['error']}")

    meta["seconds_total"] = time.perf_counter() - t_start
    meta["loadavg_end"] = os.getloadavg()
    rss = rss_info()
    if args.json:
        json.dump({"meta": meta, "workloads": results, "growth": growth, "rss": rss},
                  sys.stdout, indent=1)
        print()
    else:
        print(f"\nRSS: peak (ru_maxrss) {rss['maxrss_mib']:.0f} MiB"
              + (f", current (VmRSS) {rss['vmrss_mib']:.0f} MiB" if "vmrss_mib" in rss else "")
              + f" | total {meta['seconds_total']:.0f} s"
              + f" | load average at end {meta['loadavg_end'][0]:.2f}")


if __name__ == "__main__":
    main()
