"""dispatchflops.fvcore against fvcore itself on timm's zoo: one line per model, a summary
at the end.

Models: up to two of each timm family (the shortest names, variants above 384 px or
named large/huge/giant left out), random weights (``pretrained=False``), each at its
pretrained config's input size; models above ``--max-params`` (default 60M, read on the
meta device) are skipped. For each: FLOP totals, by operator, by module in both ancestor
modes (fresh analyses each: fvcore keeps a mode's results after ``ancestor_mode``),
activation totals and the uncalled modules. A differing total is explained by the
operators that differ (fvcore cannot see scaled-dot-product attention, nor a
``padding="same"`` convolution, and estimates general einsums).

Run:  python benchmarks/timm_parity.py                 # the sample, ~10 min on 2 cores
      python benchmarks/timm_parity.py resnet50 vit_tiny_patch16_224
"""
from __future__ import annotations

import argparse
import collections
import logging
import re
import sys
import time
import warnings

import timm
import torch
from fvcore import nn as fv

from dispatchflops import fvcore as df

_LARGE = re.compile(r"(huge|giant|gigantic|xxlarge|xlarge|large|_g_|_e_|_h_|_l_|_l\d|_xl|bigg|"
                    r"_7b|_1b|448|512|518|560|576|600|640|800|1024|_b8|_384|_336|_320|_288|"
                    r"_256_|_280|_300|_380)")


def sample() -> list:
    families = collections.defaultdict(list)
    for name in timm.list_models():
        if not _LARGE.search(name):
            families[re.split(r"[_\d]", name)[0]].append(name)
    return [n for f in sorted(families) for n in sorted(families[f], key=len)[:2]]


def compare(name: str, max_params: int) -> dict | None:
    with torch.device("meta"):
        params = sum(p.numel() for p in timm.create_model(name, pretrained=False).parameters())
    if params > max_params:
        return None
    model = timm.create_model(name, pretrained=False).eval()
    x = torch.randn(1, *timm.data.resolve_data_config({}, model=model)["input_size"])
    out = {}
    with torch.no_grad():
        for mode in ("owner", "caller"):
            theirs = fv.FlopCountAnalysis(model, x).ancestor_mode(mode)
            ours = df.FlopCountAnalysis(model, x).ancestor_mode(mode)
            out[f"modules_{mode}"] = ours.by_module() == theirs.by_module()
            out[f"uncalled_{mode}"] = ours.uncalled_modules() == theirs.uncalled_modules()
        out["total"] = (theirs.total(), ours.total())
        a, b = theirs.by_operator(), ours.by_operator()
        out["ops"] = {k: b[k] - a[k] for k in set(a) | set(b) if a[k] != b[k]}
        out["acts"] = (fv.ActivationCountAnalysis(model, x).total(),
                       df.ActivationCountAnalysis(model, x).total())
    return out


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("models", nargs="*", help="timm names (default: the sample)")
    p.add_argument("--max-params", type=float, default=60e6)
    args = p.parse_args(argv)
    warnings.filterwarnings("ignore")
    logging.disable(logging.WARNING)
    tally: collections.Counter = collections.Counter()
    for name in args.models or sample():
        start = time.perf_counter()
        try:
            r = compare(name, int(args.max_params))
        except Exception as e:  # a model either tool cannot run: reported, not fatal
            print(f"{name}\terror\t{type(e).__name__}: {str(e).splitlines()[0][:100]}", flush=True)
            tally["error"] += 1
            continue
        if r is None:
            tally["skipped"] += 1
            continue
        equal = r["total"][0] == r["total"][1]
        tally["compared"] += 1
        tally["equal total" if equal else "different total"] += 1
        for key in ("modules_owner", "modules_caller", "uncalled_owner", "uncalled_caller"):
            tally[f"{key} equal"] += r[key]
        tally["activations equal"] += r["acts"][0] == r["acts"][1]
        for op in r["ops"]:
            tally[f"differs by {op}"] += 1
        print(f"{name}\t{'equal' if equal else 'differs'}\tfvcore {r['total'][0]}\t"
              f"ours {r['total'][1]}\t{r['ops'] or ''}\tmodules owner/caller "
              f"{r['modules_owner']}/{r['modules_caller']}\tuncalled {r['uncalled_owner']}/"
              f"{r['uncalled_caller']}\tactivations {r['acts'][0]}/{r['acts'][1]}\t"
              f"{time.perf_counter() - start:.1f}s", flush=True)
    print("\n".join(f"{k}: {v}" for k, v in sorted(tally.items())))
    return 0


if __name__ == "__main__":
    sys.exit(main())
