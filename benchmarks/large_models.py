"""Counting very large language models on the meta device: time and peak memory.

For a LLaMA-7B-shaped and a LLaMA-70B-shaped model (hidden 8192, 80 layers, 8 KV heads,
intermediate 28672) at batch 1 x 2048 tokens, it reports, side by side:
the lazy import of the model's code, construction on the meta device, a count with torch.utils.flop_counter.FlopCounterMode
and with dispatchflops (pytorch convention; FLOPs, with count_bytes=True, and with count_memory=True), each in a fresh
process so that peak resident memory (ru_maxrss) is the measurement's own. Medians over --repeats counts per process.

    python benchmarks/large_models.py [--repeats 5] [--json]
"""
from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys

SHAPES = {
    "llama-7b": {},
    "llama-70b": dict(hidden_size=8192, num_hidden_layers=80, num_attention_heads=64,
                      num_key_value_heads=8, intermediate_size=28672),
}

CHILD = r"""
import json, resource, sys, time, warnings
warnings.filterwarnings("ignore")
import torch, transformers
shape, counter, repeats = json.loads(sys.argv[1]), sys.argv[2], int(sys.argv[3])
base_rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
t0 = time.perf_counter()
import transformers.models.llama.modeling_llama  # transformers imports it lazily
imports = time.perf_counter() - t0
t0 = time.perf_counter()
with torch.device("meta"):
    model = transformers.LlamaForCausalLM(transformers.LlamaConfig(**shape))
build = time.perf_counter() - t0
ids = torch.zeros(1, 2048, dtype=torch.long, device="meta")
if counter == "torch":
    from torch.utils.flop_counter import FlopCounterMode
    make = lambda: FlopCounterMode(display=False)
else:
    import dispatchflops
    make = lambda: dispatchflops.FlopCounterMode(model, count_bytes=counter == "dispatchflops-bytes",
                                                 count_memory=counter == "dispatchflops-memory")
times = []
for _ in range(repeats):
    t0 = time.perf_counter()
    with torch.no_grad(), make() as fc:
        model(input_ids=ids)
    flops = fc.get_total_flops()
    times.append(time.perf_counter() - t0)
moved = fc.results.total.bytes if counter == "dispatchflops-bytes" else None
peak = fc.results.memory.peak_bytes if counter == "dispatchflops-memory" else None
print(json.dumps({"import_s": imports, "build_s": build, "count_s": times, "flops": flops,
                  "bytes": moved, "memory_peak": peak,
                  "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
                  "import_rss_mb": base_rss / 1024}))
"""


def measure(shape: dict, counter: str, repeats: int) -> dict:
    out = subprocess.run([sys.executable, "-c", CHILD, json.dumps(shape), counter, str(repeats)],
                         capture_output=True, text=True, check=True)
    r = json.loads(out.stdout.strip().splitlines()[-1])
    r["count_median_s"] = statistics.median(r["count_s"])
    return r


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--json", action="store_true")
    args = p.parse_args()
    rows = {}
    for name, shape in SHAPES.items():
        for counter in ("torch", "dispatchflops", "dispatchflops-bytes", "dispatchflops-memory"):
            rows[f"{name} {counter}"] = measure(shape, counter, args.repeats)
    if args.json:
        print(json.dumps(rows, indent=2))
        return
    print(f"{'model / counter':32s} {'import s':>8s} {'build s':>8s} {'count s':>8s} "
          f"{'peak RSS MB':>12s} {'FLOPs':>20s} {'bytes':>18s}")
    for key, r in rows.items():
        moved = "" if r["bytes"] is None else f"{r['bytes']:,d}"
        print(f"{key:32s} {r['import_s']:8.3f} {r['build_s']:8.3f} {r['count_median_s']:8.3f} "
              f"{r['peak_rss_mb']:12.0f} {r['flops']:20,d} {moved:>18s}")
    for name in SHAPES:
        t, d = rows[f"{name} torch"], rows[f"{name} dispatchflops"]
        print(f"{name}: dispatchflops/torch count time {d['count_median_s'] / t['count_median_s']:.2f}x, "
              f"peak memory {d['peak_rss_mb'] / t['peak_rss_mb']:.2f}x, same FLOPs: {d['flops'] == t['flops']}")
        m = rows[f"{name} dispatchflops-memory"]
        print(f"{name}: count_memory=True / FLOPs only count time "
              f"{m['count_median_s'] / d['count_median_s']:.2f}x, the forward's peak "
              f"{m['memory_peak'] / 2**30:.2f} GiB")


if __name__ == "__main__":
    main()
