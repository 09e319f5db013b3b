"""The ``dispatchflops`` command: get_flops.py's report, counted by running the model."""
from __future__ import annotations

import argparse
import sys

import torch

from .conventions import CONVENTIONS
from .mode import FlopCounterMode
from .models import SpecError, build_model, image_input, image_shape


class CLIError(Exception):
    """One line for the user, exit status 2."""


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="dispatchflops",
        description="FLOPs, parameters and activations per module of a PyTorch model, "
                    "counted by running it eagerly.",
    )
    p.add_argument("model", metavar="MODEL",
                   help="torchvision model name (resnet50), package.module:callable or "
                        "path/to/file.py:callable returning an nn.Module")
    p.add_argument("--shape", type=int, nargs="+", metavar="H [W]",
                   help="input size: one value for a square, or H W (default 224 224)")
    p.add_argument("--batch", type=int, default=1, help="batch size (default 1)")
    p.add_argument("--convention", choices=sorted(CONVENTIONS), default="fvcore",
                   help="fvcore: 1 flop per multiply-add plus norms, MMEngine's numbers "
                        "(default); pytorch: 2 per multiply-add, torch's and torchvision's")
    p.add_argument("--max-depth", type=int, default=3, help="table depth (default 3)")
    p.add_argument("--device", default="cpu", help="cpu, cuda or meta (default cpu)")
    p.add_argument("--method", default=None,
                   help="count this method instead of forward (e.g. extract_feat)")
    return p


def count(args) -> tuple[torch.nn.Module, FlopCounterMode, tuple[int, int]]:
    """Build the model and its input, count one forward (or --method) in eval mode."""
    h, w = image_shape(args.shape)
    _check_device(args.device)
    model = build_model(args.model, args.device).eval()
    x = image_input(args.shape, args.batch, args.device)
    if args.method is not None:
        method = getattr(model, args.method, None)
        if not callable(method):
            raise SpecError(f"{type(model).__name__} has no method {args.method!r}")
        model.forward = method  # as mmpretrain's get_flops: the method is the model's call
    fc = FlopCounterMode(model, convention=args.convention)
    try:
        with torch.no_grad(), fc:
            model(x)
    except Exception as e:
        path, op = fc.failure or (None, None)
        where = f" in module {path!r}" if path is not None else ""
        if path == "":
            where = " in the model's own forward"
        at = f" at {op}" if op else ""
        raise CLIError(f"the forward raised{where}{at}: {type(e).__name__}: {_first_line(e)}") from None
    finally:
        if args.method is not None:
            del model.forward
    return model, fc, (h, w)


def _check_device(device: str):
    try:
        dev = torch.device(device)
    except RuntimeError:
        raise SpecError(f"bad --device {device!r}: use cpu, cuda or meta") from None
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise SpecError("--device cuda: no CUDA device is available")


def summary(results, shape) -> str:
    from .table import format_size

    root = results.modules[""]
    bar = "=" * 30
    return "\n".join([
        bar,
        f"Input shape: {(3, *shape)}",
        f"Flops: {format_size(root.flops)}",
        f"Params: {format_size(root.params)}",
        f"Activation: {format_size(root.activations)}",
        bar,
    ])


def notes(results) -> str:
    """The ops that had no formula and the modules never called, as fvcore warns."""
    lines = []
    if results.unsupported:
        ops = ", ".join(f"{op} x{n}" for op, n in results.unsupported.items())
        lines.append(f"Not counted (no formula): {ops}")
    if results.uncalled:
        lines.append(f"Never called: {', '.join(results.uncalled)}")
    return "\n".join(lines)


def main(argv=None) -> int:
    args = _parser().parse_args(argv)
    try:
        model, fc, shape = count(args)
    except (SpecError, CLIError) as e:
        print(f"dispatchflops: error: {e}", file=sys.stderr)
        return 2
    from .table import mmengine_table

    print(mmengine_table(model, fc.results, max_depth=args.max_depth))
    print(summary(fc.results, shape))
    extra = notes(fc.results)
    if extra:
        print(extra)
    return 0


def _first_line(e: BaseException) -> str:
    text = str(e).strip()
    return text.splitlines()[0] if text else ""
