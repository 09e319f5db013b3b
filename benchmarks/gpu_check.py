"""GPU checks of dispatchflops, for a session lent a CUDA machine (one H200); < 5 minutes.

Run on the device machine, from the repository root:

    python benchmarks/gpu_check.py                     # every check
    python benchmarks/gpu_check.py --checks sdpa,flex  # some of them (sync, sdpa, fused,
                                                       # flex, roofline, memory,
                                                       # overhead, flex-compiled)

One line per check: PASS / FAIL (expected vs got), N/A (the GPU or torch build cannot run
it, with the reason), INFO (reported, not judged) or SKIP (the time budget ran out). Exit
status 0 when nothing failed or was skipped, 1 otherwise, 2 when CUDA is unavailable (one
line, nothing run).

  sync           tests/test_resources.py::test_cuda_counting_never_synchronises, run with
                 pytest in a subprocess: it must run (not skip) and pass.
  sdpa           PyTorch's own test_sdpa configuration (test/test_flop_counter.py): q, k, v
                 of (4, 8, 128, 64) and k, v of (4, 8, 256, 64), float16, is_causal=True,
                 each backend alone (sdpa_kernel): math, flash, efficient, cudnn.
                 Forward 134,217,728 and 268,435,456; forward+backward 3x forward for math
                 (its bmm backward: 402,653,184 and 805,306,368) and 3.5x for the fused
                 kernels (sdpa_backward is 2.5x forward: 469,762,048 and 939,524,096).
                 Counted with dispatchflops.FlopCounterMode(convention="pytorch"), torch's
                 counter printed beside. A backend that cannot run here is N/A, except
                 those PyTorch's test requires (math, flash, efficient; math and efficient
                 for the 128x256 case), which FAIL.
  fused          one figure on CUDA and on meta (issue 20): nn.MultiheadAttention and
                 nn.TransformerEncoderLayer (fast paths under no_grad), cuDNN's LSTM
                 (bidirectional, packed), GRU and RNN, and LSTMCell (fused cells), each
                 forward under no_grad and with grad, FLOPs equal to the same model's on the
                 meta device (forward+backward: equal for the cells, INFO for the fused
                 backwards, which do more than the unfused path); what was not counted is
                 printed;
                 torchvision vit_b_16 under no_grad: 17,582,740,224 (fvcore convention).
  flex           flex_attention, eager, q, k, v of (B, H, S, D) = (2, 4, 256, 64): forward
                 4*B*H*S*S*D = 134,217,728, backward 10*B*H*S*S*D = 335,544,320; then with
                 a causal BlockMask (BLOCK_SIZE 128: 3 of 4 blocks computed): the total
                 stays dense, results.blocks_run holds 3/4 of it (all of it unmasked).
  roofline       bytes on CUDA: a bfloat16 Linear (4096 x 4096, 2048 rows) moves
                 2*(2048*4096 + 4096*4096 + 4096 + 2048*4096) = 67,117,056 bytes; module times
                 with CUDA events (timing.time_modules: every module of resnet50 timed, the
                 model's time at least its largest child's); then the CLI on resnet50,
                 bfloat16, --device-spec h200 --time 10 --max-depth 1: its table (INFO).
  memory         count_memory on CUDA (issue 22), a training step each (after one
                 uncounted) of resnet50 (batch 8, SGD with momentum) and GPT-2 small (1 x 256
                 tokens, AdamW): the peak and its breakdown equal MemTracker's on the same
                 step (both round to the allocator's 512-byte blocks); the peak is at most
                 torch.cuda.max_memory_allocated() (every storage counted is an allocator
                 block; workspaces of cuBLAS and cuDNN are not tensors), the gap printed.
  overhead       benchmarks/overhead.py --device cuda on resnet50 and gpt2_seq128 (few
                 rounds): every counter must run (with and without bytes); its rows are
                 printed.
  flex-compiled  torch.compile(flex_attention), in a subprocess bounded by the time left:
                 INFO lines (compiled kernels need not reach a dispatch mode).

--device cpu (hidden) is a dry run of the same code on the CPU: the sync test is N/A, the
CUDA-only backends are N/A, the math backend must give PyTorch's numbers.
"""
from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import time
import warnings
from collections import Counter

import torch

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CHECKS = ("sync", "sdpa", "fused", "flex", "roofline", "memory", "overhead", "flex-compiled")
SYNC_TEST = "tests/test_resources.py::test_cuda_counting_never_synchronises"

# PyTorch's test_sdpa: case -> (k/v sequence length, forward, fwd+bwd math, fwd+bwd fused)
SDPA_CASES = {"Sq=Sk=128": (128, 134_217_728, 402_653_184, 469_762_048),
              "Sq=128,Sk=256": (256, 268_435_456, 805_306_368, 939_524_096)}
SDPA_REQUIRED = {"Sq=Sk=128": {"math", "flash", "efficient"},
                 "Sq=128,Sk=256": {"math", "efficient"}}
FLEX_SHAPE = (2, 4, 256, 64)


class Report:
    """Prints one line per check and keeps the tally."""

    def __init__(self, budget_s: float):
        self.tally = Counter()
        self.deadline = time.monotonic() + budget_s

    def left(self) -> float:
        return self.deadline - time.monotonic()

    def line(self, status: str, name: str, detail: str = ""):
        self.tally[status] += 1
        print(f"{status:<5} {name:<38} {detail}".rstrip(), flush=True)

    def expect(self, name: str, expected: int, got, extra: str = "", status_if_ok="PASS",
               status_if_not="FAIL"):
        ok = got == expected
        self.line(status_if_ok if ok else status_if_not, name,
                  f"expected {expected:,} got {_n(got)}{extra}")
        return ok


def _n(x) -> str:
    return f"{x:,}" if isinstance(x, int) else str(x)


def _short(text: str, n: int) -> str:
    text = " ".join(text.split())
    return text if len(text) <= n else text[:n - 3] + "..."


def _why(e: BaseException, caught=()) -> str:
    """One short line: the exception, and the first warning that says why (sdpa_kernel's
    backends explain themselves in warnings)."""
    lines = str(e).strip().splitlines()
    msg = _short(f"{type(e).__name__}: {lines[0] if lines else ''}", 120)
    hints = [str(w.message).strip().splitlines()[0] for w in caught]
    hints = [h for h in hints if h and not h.endswith(":")
             and "flex_attention called without torch.compile" not in h]
    return f"{msg} [{_short(hints[0], 120)}]" if hints else msg


def _run(cmd, timeout):
    """(exit status, or None when it ran out of time; stdout; stderr) of cmd run from the
    repository root in a process group of its own, all of which a timeout ends (compile
    workers included)."""
    p = subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                         text=True, start_new_session=True)
    try:
        out, err = p.communicate(timeout=max(1.0, timeout))
        return p.returncode, out, err
    except subprocess.TimeoutExpired:
        os.killpg(p.pid, signal.SIGKILL)
        out, err = p.communicate()
        return None, out, err


def _counters():
    import dispatchflops
    from torch.utils.flop_counter import FlopCounterMode as TorchFlopCounterMode

    return {"ours": lambda: dispatchflops.FlopCounterMode(convention="pytorch"),
            "torch": lambda: TorchFlopCounterMode(display=False)}


def _count(make_counter, run):
    """(total FLOPs or an error string, the counter) of run() inside a fresh counter."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            with make_counter() as c:
                run()
        return c.get_total_flops(), c
    except Exception as e:
        return _why(e), None


# --- 1. the CUDA sync-debug test -----------------------------------------------------------

def check_sync(rep: Report, device: str):
    cmd = [sys.executable, "-m", "pytest", "-q", "-rs", "-p", "no:cacheprovider", SYNC_TEST]
    timeout = max(10, min(180, rep.left() - 5))
    rc, out, err = _run(cmd, timeout)
    if rc is None:
        return rep.line("FAIL", "sync: pytest", f"timed out after {timeout:.0f} s")
    out = (out + err).strip().splitlines()
    summary = next((ln for ln in reversed(out) if " in " in ln and ("passed" in ln or "failed"
                    in ln or "skipped" in ln or "error" in ln)), out[-1] if out else "")
    if device != "cuda":
        return rep.line("N/A", "sync: test_cuda_counting_never_...",
                        f"CUDA-only; on {device}: rc {rc}, {summary}")
    ok = rc == 0 and "1 passed" in summary and "skipped" not in summary
    rep.line("PASS" if ok else "FAIL", "sync: test_cuda_counting_never_...",
             f"expected '1 passed' got '{summary}' (rc {rc})")
    if not ok:
        print("\n".join("      " + ln for ln in out[-25:]))


# --- 2. scaled-dot-product attention, PyTorch's test_sdpa -----------------------------------

def check_sdpa(rep: Report, device: str):
    import torch.nn.functional as F
    from torch.nn.attention import SDPBackend, sdpa_kernel

    backends = {"math": SDPBackend.MATH, "flash": SDPBackend.FLASH_ATTENTION,
                "efficient": SDPBackend.EFFICIENT_ATTENTION,
                "cudnn": SDPBackend.CUDNN_ATTENTION}
    dtype = torch.float16 if device == "cuda" else torch.float32
    counters = _counters()
    torch.manual_seed(0)
    for case, (seq_k, fwd, fwdbwd_math, fwdbwd_fused) in SDPA_CASES.items():
        required = SDPA_REQUIRED[case] if device == "cuda" else {"math"}
        for name, backend in backends.items():
            if rep.left() < 5:
                return rep.line("SKIP", f"sdpa {case} {name}", "time budget spent")

            def run(backward, backend=backend):
                q = torch.randn(4, 8, 128, 64, device=device, dtype=dtype, requires_grad=True)
                k, v = (torch.randn(4, 8, seq_k, 64, device=device, dtype=dtype,
                                    requires_grad=True) for _ in "kv")
                with sdpa_kernel(backend):
                    out = F.scaled_dot_product_attention(q, k, v, dropout_p=0.0, is_causal=True)
                    if backward:
                        out.sum().backward()

            for phase, expected in (("fwd", fwd),
                                    ("fwd+bwd", fwdbwd_math if name == "math" else fwdbwd_fused)):
                try:  # can this backend run here at all? (no counter)
                    with warnings.catch_warnings(record=True) as caught:
                        warnings.simplefilter("always")
                        run(phase == "fwd+bwd")
                except Exception as e:
                    rep.line("FAIL" if name in required else "N/A", f"sdpa {case} {name} {phase}",
                             f"cannot run: {_why(e, caught)}")
                    continue
                got, c = _count(counters["ours"], lambda: run(phase == "fwd+bwd"))
                theirs, _ = _count(counters["torch"], lambda: run(phase == "fwd+bwd"))
                ops = ",".join(sorted(str(op).removeprefix("aten.")
                                      for op in c.get_flop_counts().get("Global", {}))) if c else ""
                rep.expect(f"sdpa {case} {name} {phase}", expected, got,
                           f" (torch {_n(theirs)}; ops {ops or '-'})")


# --- fused kernels: one figure on CUDA and on meta ---------------------------------------

def _fused_cases():
    nn = torch.nn
    x = torch.randn(4, 32, 64)

    def packed(device):
        lengths = torch.tensor([32, 30, 17, 5])
        return (nn.utils.rnn.pack_padded_sequence(x.to(device), lengths, batch_first=True),)

    return {
        "MultiheadAttention": (lambda: nn.MultiheadAttention(64, 4, batch_first=True).eval(),
                               lambda d: (x.to(d),) * 3),
        "TransformerEncoderLayer": (
            lambda: nn.TransformerEncoderLayer(64, 4, 128, batch_first=True).eval(),
            lambda d: (x.to(d),)),
        "LSTM bidirectional": (lambda: nn.LSTM(64, 32, 2, batch_first=True, bidirectional=True),
                               lambda d: (x.to(d),)),
        "LSTM proj_size": (lambda: nn.LSTM(64, 32, 2, batch_first=True, proj_size=16),
                           lambda d: (x.to(d),)),
        "LSTM packed": (lambda: nn.LSTM(64, 32, 2, batch_first=True, bidirectional=True), packed),
        "GRU": (lambda: nn.GRU(64, 32, 2, batch_first=True), lambda d: (x.to(d),)),
        "RNN relu": (lambda: nn.RNN(64, 32, 2, nonlinearity="relu", batch_first=True),
                     lambda d: (x.to(d),)),
        "LSTMCell": (lambda: nn.LSTMCell(64, 32), lambda d: (x[:, 0].to(d),)),
        "GRUCell": (lambda: nn.GRUCell(64, 32), lambda d: (x[:, 0].to(d),)),
    }


def _first(out):
    while isinstance(out, (tuple, list)) or hasattr(out, "data") and not torch.is_tensor(out):
        out = out[0] if isinstance(out, (tuple, list)) else out.data
    return out


def check_fused(rep: Report, device: str):
    from dispatchflops import FlopCounterMode

    for name, (make, inputs) in _fused_cases().items():
        if rep.left() < 5:
            return rep.line("SKIP", f"fused {name}", "time budget spent")
        figures = {}
        for where in (device, "meta"):
            torch.manual_seed(0)
            model = make().to(where)
            for phase in ("no_grad", "grad", "fwd+bwd"):
                with torch.set_grad_enabled(phase != "no_grad"), FlopCounterMode(model) as fc:
                    out = model(*inputs(where))
                    if phase == "fwd+bwd":
                        _first(out).float().sum().backward()
                figures[where, phase] = (fc.get_total_flops(), fc.results.unsupported)
        for phase in ("no_grad", "grad", "fwd+bwd"):
            got, uncounted = figures[device, phase]
            ran = ",".join(sorted(op.removeprefix("aten.") for op in uncounted
                                  if "rnn" in op or "attention" in op or "cell" in op))
            # fwd+bwd differs from meta on purpose where a fused backward does more than
            # the unfused one: sdpa's recomputes the scores (2.5x forward, not 2x); cuDNN's
            # and oneDNN's RNNs compute the input's and initial states' gradients always
            judged = phase != "fwd+bwd" or "Cell" in name
            rep.expect(f"fused {name} {phase}", figures["meta", phase][0], got,
                       f" (vs meta; not counted here: {ran or '-'})",
                       status_if_not="FAIL" if judged else "INFO")
    import torchvision

    model = torchvision.models.vit_b_16().to(device).eval()
    with torch.no_grad(), FlopCounterMode(model, convention="fvcore") as fc:
        model(torch.randn(1, 3, 224, 224, device=device))
    rep.expect("fused vit_b_16 no_grad (fvcore)", 17_582_740_224, fc.get_total_flops())


# --- 3. flex_attention ------------------------------------------------------------------

def _flex_inputs(device, requires_grad):
    dtype = torch.float16 if device == "cuda" else torch.float32
    torch.manual_seed(0)
    return [torch.randn(*FLEX_SHAPE, device=device, dtype=dtype, requires_grad=requires_grad)
            for _ in "qkv"]


def check_flex(rep: Report, device: str, compiled: bool = False):
    from torch.nn.attention.flex_attention import create_block_mask, flex_attention

    B, H, S, D = FLEX_SHAPE
    fwd, bwd = 4 * B * H * S * S * D, 10 * B * H * S * S * D
    counters = _counters()
    fn, label = flex_attention, "flex"
    if compiled:
        fn, label = torch.compile(flex_attention), "flex compiled"
    try:
        causal = create_block_mask(lambda b, h, q_idx, kv_idx: q_idx >= kv_idx, None, None,
                                   S, S, device=device)
        kept = 1 - causal.sparsity() / 100  # the share of (128x128) blocks computed
    except Exception as e:
        causal, kept = None, None
        rep.line("FAIL", f"{label}: create_block_mask", _why(e))
    for mask_name, mask in (("dense", None), ("causal", causal)):
        share = 1 if mask is None else kept  # of the blocks, computed
        if mask_name == "causal" and mask is None:
            continue
        for phase, expected in (("fwd", fwd), ("fwd+bwd", fwd + bwd)):
            name = f"{label} {mask_name} {phase}"
            if rep.left() < 5:
                return rep.line("SKIP", name, "time budget spent")
            backward = phase == "fwd+bwd"

            def run(backward=backward, mask=mask):
                q, k, v = _flex_inputs(device, requires_grad=backward)
                out = fn(q, k, v, block_mask=mask)
                if backward:
                    out.sum().backward()

            try:  # can it run here at all (and, compiled: compile it, outside any counter)?
                t0 = time.monotonic()
                with warnings.catch_warnings(record=True) as caught:
                    warnings.simplefilter("always")
                    run()
                took = time.monotonic() - t0
            except Exception as e:
                rep.line("FAIL" if device == "cuda" and not compiled else "N/A", name,
                         f"cannot run: {_why(e, caught)}")
                continue
            got, c = _count(counters["ours"], run)
            theirs, _ = _count(counters["torch"], run)
            extra = f" (torch {_n(theirs)})"
            if compiled:
                extra += f" (first call {took:.1f} s)"
            if c is not None:
                t = c.results.total
                extra += f" [fwd {t.forward_flops:,} bwd {t.backward_flops:,}]"
            ok, not_ok = ("INFO", "INFO") if compiled else ("PASS", "FAIL")
            rep.expect(name, expected, got, extra, ok, not_ok)  # dense, mask or not
            if c is not None:  # results.blocks_run: the FLOPs of the blocks the mask ran
                ran = sum(c.results.blocks_run.get(f"higher_order.{op}", 0)
                          for op in ("flex_attention", "flex_attention_backward"))
                rep.expect(f"{name} blocks run", round(expected * share), ran,
                           f" ({share:.0%} of blocks)", ok, not_ok)


def check_flex_compiled(rep: Report, device: str):
    """torch.compile(flex_attention) in a child process, killed when the budget runs out."""
    budget = rep.left() - 5
    if budget < 30:
        return rep.line("SKIP", "flex compiled", "time budget spent")
    cmd = [sys.executable, os.path.abspath(__file__), "--checks", "flex-compiled-here",
           "--device", device, "--budget", str(int(budget - 5))]
    rc, out, err = _run(cmd, budget)
    lines = out.rstrip().splitlines()
    if rc is None:
        lines.append(f"{'INFO':<5} {'flex compiled':<38} stopped after {budget:.0f} s")
    for ln in lines:
        if ln[:5].strip() in ("PASS", "FAIL", "N/A", "INFO", "SKIP"):
            rep.tally["INFO"] += 1
            ln = "INFO " + ln[5:]  # compiled results are reported, never judged
        elif ln.startswith("== ") or ln.startswith("summary:"):
            continue
        print(ln, flush=True)
    if rc not in (0, None):
        rep.line("INFO", "flex compiled", f"child exited {rc}: "
                 + " | ".join(err.strip().splitlines()[-3:])[:300])


# --- 4. bytes, module times and the roofline on CUDA ----------------------------------------

def check_roofline(rep: Report, device: str):
    import dispatchflops
    from dispatchflops.timing import time_modules

    rows, d = 2048, 4096
    m = torch.nn.Linear(d, d).to(device, torch.bfloat16)
    x = torch.randn(rows, d, device=device, dtype=torch.bfloat16)
    with torch.no_grad(), dispatchflops.FlopCounterMode(m, count_bytes=True) as fc:
        m(x)
    rep.expect("roofline linear bytes", 2 * (rows * d + d * d + d + rows * d),
               fc.results.modules[""].bytes)
    import torchvision

    net = torchvision.models.resnet50().to(device, torch.bfloat16).eval()
    img = torch.randn(8, 3, 224, 224, device=device, dtype=torch.bfloat16)

    def step():
        with torch.no_grad():
            net(img)

    times = time_modules(net, step, passes=5, device=device)
    paths = {p for p, _ in net.named_modules()}
    children = [times[p] for p in times if p and "." not in p]
    ok = set(times) == paths and times[""] >= max(children) > 0
    rep.line("PASS" if ok else "FAIL", "roofline module times (CUDA events)",
             f"{len(times)} of {len(paths)} modules timed, model {times[''] * 1e3:.2f} ms, "
             f"largest child {max(children) * 1e3:.2f} ms")
    cmd = [sys.executable, "-m", "dispatchflops", "resnet50", "--device", device, "--batch", "8",
           "--dtype", "bfloat16", "--device-spec", "h200", "--time", "10", "--max-depth", "1",
           "--convention", "pytorch"]
    rc, out, err = _run(cmd, min(120.0, rep.left() - 5))
    rep.line("PASS" if rc == 0 and "Measured forward" in out else "FAIL", "roofline CLI",
             " ".join(cmd[2:]) if rc == 0 else f"rc {rc}: {_short(err, 200)}")
    print("\n".join("      " + ln for ln in out.strip().splitlines()), flush=True)


# --- 5. memory on CUDA ---------------------------------------------------------------------

def _memory_cases(device):
    import torchvision
    import transformers

    def resnet():
        m = torchvision.models.resnet50().to(device)
        return m, torch.optim.SGD(m.parameters(), lr=0.1, momentum=0.9), (
            torch.randn(8, 3, 224, 224, device=device),)

    def gpt2():
        m = transformers.GPT2LMHeadModel(transformers.GPT2Config()).to(device)
        return m, torch.optim.AdamW(m.parameters()), (
            torch.randint(0, 50257, (1, 256), device=device),)

    return {"resnet50": resnet, "gpt2": gpt2}


def check_memory(rep: Report, device: str):
    import dispatchflops
    from torch.distributed._tools.mem_tracker import MemTracker

    names = dict(zip(("parameters", "buffers", "gradients", "optimizer", "activations",
                      "temporaries", "inputs"),
                     ("Parameter", "Buffer", "Gradient", "Optstate", "Activation", "Temp",
                      "Other")))
    sync = torch.cuda.synchronize if device == "cuda" else (lambda: None)
    for name, make in _memory_cases(device).items():
        peaks = []
        for ours in (False, True):
            torch.manual_seed(0)
            model, opt, inputs = make()

            def step():
                out = model(*inputs)
                (out.logits if hasattr(out, "logits") else out).float().sum().backward()
                opt.step()
                opt.zero_grad()

            step()
            sync()
            if device == "cuda":
                torch.cuda.reset_peak_memory_stats()
            if ours:
                with dispatchflops.FlopCounterMode(model, count_memory=True,
                                                   optimizer=opt) as fc:
                    step()
                mem = fc.results.memory
                dev = max(mem.peak, key=mem.peak.get)
                peaks.append((mem.peak[dev], mem.breakdown[dev]))
            else:
                mt = MemTracker()
                mt.track_external(model, opt, *inputs)
                with mt:
                    step()
                snap = max(mt.get_tracker_snapshot("peak").values(), key=lambda d: d["Total"])
                snap = {getattr(k, "value", k): v for k, v in snap.items()}
                peaks.append((snap["Total"], {c: snap[n] for c, n in names.items()}))
            sync()
            allocated = torch.cuda.max_memory_allocated() if device == "cuda" else None
            del model, opt, inputs
        (theirs, their_cats), (got, cats) = peaks
        rep.line("PASS" if (got, cats) == (theirs, their_cats) else "FAIL",
                 f"memory {name} vs MemTracker",
                 f"expected {theirs:,} got {got:,}" + ("" if cats == their_cats else
                                                     f" (categories {cats} vs {their_cats})"))
        if allocated is not None:
            rep.line("PASS" if got <= allocated else "FAIL", f"memory {name} vs the allocator",
                     f"peak {got:,} <= max_memory_allocated {allocated:,} "
                     f"(gap {allocated - got:,} bytes: workspaces, not tensors)")


# --- 6. the overhead benchmark on CUDA -------------------------------------------------------

def check_overhead(rep: Report, device: str):
    workloads, rounds = "resnet50,gpt2_seq128", 10 if device == "cuda" else 2
    cmd = [sys.executable, os.path.join(ROOT, "benchmarks", "overhead.py"), "--device", device,
           "--workloads", workloads, "--rounds", str(rounds), "--warmup", "3", "--json"]
    budget = rep.left() - 5
    if budget < 20:
        return rep.line("SKIP", "overhead", "time budget spent")
    rc, out, err = _run(cmd, budget)
    if rc is None:
        return rep.line("FAIL", "overhead", f"did not finish in {budget:.0f} s: {' '.join(cmd)}")
    try:
        data = json.loads(out)
    except ValueError:
        rep.line("FAIL", "overhead", f"rc {rc}, no JSON: {' '.join(cmd)}")
        print("\n".join("      " + ln for ln in err.strip().splitlines()[-20:]))
        return
    print(f"      {data['meta'].get('gpu', data['meta'].get('cpu'))}, torch threads "
          f"{data['meta']['torch_threads']}, {rounds} rounds, {data['meta']['seconds_total']:.0f}"
          f" s; ms per call (median, iqr), paired overhead ms, FLOPs", flush=True)
    for name in workloads.split(","):
        entry = data["workloads"].get(name)
        if entry is None:
            rep.line("FAIL", f"overhead {name}", "missing from the results")
            continue
        errors = []
        for variant, r in entry["variants"].items():
            flops = entry["flops"].get(variant)
            if "error" in r:
                errors.append(variant)
                print(f"      {name:<12} {variant:<11} error: {r['error']}")
                continue
            paired = "" if variant == "plain" else f"{r['paired_overhead_ms']:+9.2f}"
            print(f"      {name:<12} {variant:<11} {r['median_ms']:9.2f} {r['iqr_ms']:7.2f}"
                  f" {paired:>9} {_n(flops) if flops is not None else '-':>16}")
        bad = [v for v in entry["variants"]
               if v.startswith("df-") and (v in errors or not entry["flops"].get(v))]
        others = sorted(set(errors) - set(bad))
        flops = entry["flops"]
        rep.line("FAIL" if bad else "PASS", f"overhead {name}",
                 "expected every dispatchflops variant to run and count; "
                 + (f"failed: {', '.join(bad)}" if bad else "all did")
                 + (f" (errors elsewhere: {', '.join(others)})" if others else "")
                 + f" [FLOPs df-pytorch {_n(flops.get('df-pytorch'))}, "
                   f"torch {_n(flops.get('torch'))}]")


# --- main -----------------------------------------------------------------------------------

def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--checks", default=",".join(CHECKS), help=f"from: {', '.join(CHECKS)}")
    p.add_argument("--budget", type=float, default=270,
                   help="seconds for all checks (default 270)")
    p.add_argument("--device", default="cuda", help=argparse.SUPPRESS)  # cpu: a dry run
    args = p.parse_args(argv)
    if args.device == "cuda" and not torch.cuda.is_available():
        print(f"CUDA is unavailable (torch {torch.__version__}, CUDA build "
              f"{torch.version.cuda or 'none'}): no GPU check run")
        return 2
    names = [n.strip() for n in args.checks.split(",") if n.strip()]
    rep = Report(args.budget)
    if names == ["flex-compiled-here"]:  # the child of check_flex_compiled
        check_flex(rep, args.device, compiled=True)
        return 0
    unknown = set(names) - set(CHECKS)
    if unknown:
        p.error(f"unknown check(s): {', '.join(sorted(unknown))}")

    import dispatchflops

    gpu = torch.cuda.get_device_name() if args.device == "cuda" else "none (dry run)"
    print(f"== gpu_check | device {args.device}: {gpu} | torch {torch.__version__} "
          f"(CUDA {torch.version.cuda}) | dispatchflops {dispatchflops.__version__} | "
          f"budget {args.budget:.0f} s", flush=True)
    run = {"sync": check_sync, "sdpa": check_sdpa, "fused": check_fused, "flex": check_flex,
           "roofline": check_roofline, "memory": check_memory, "overhead": check_overhead,
           "flex-compiled": check_flex_compiled}
    t0 = time.monotonic()
    for name in names:
        if rep.left() < 5:
            rep.line("SKIP", name, "time budget spent")
            continue
        try:
            run[name](rep, args.device)
        except Exception as e:  # a check that breaks is a failure, never a traceback
            rep.line("FAIL", name, f"the check itself raised {_why(e)}")
    t = rep.tally
    print(f"summary: {t['PASS']} passed, {t['FAIL']} failed, {t['N/A']} n/a, {t['INFO']} info, "
          f"{t['SKIP']} skipped in {time.monotonic() - t0:.0f} s", flush=True)
    return 1 if t["FAIL"] or t["SKIP"] else 0


if __name__ == "__main__":
    sys.exit(main())
