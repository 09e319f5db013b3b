"""The ``dispatchflops`` command: get_flops.py's report, counted by running the model."""
from __future__ import annotations

import argparse
import os
import sys
import time

import torch

from . import compare, export, reports
from .budget import BudgetError, over_budget
from .conventions import CONVENTIONS
from .devices import DEVICES, DeviceError, custom, device_spec
from .distributed import gather
from .formatting import format_size, memory_size
from .generation import count_generate
from .mode import FlopCounterMode
from .sources import SpecError, example, first_line
from .sources.files import load_callable
from .sources.hf import TASKS as HF_TASKS
from .plot import PlotError, plot
from .roofline import roofline
from .timing import time_modules


class CLIError(Exception):
    """One line for the user, exit status 2."""


class _Parser(argparse.ArgumentParser):
    """A bad command line is one line on stderr, as any other bad input."""

    def error(self, message):
        raise CLIError(message)


def _parser() -> argparse.ArgumentParser:
    p = _Parser(
        prog="dispatchflops",
        description="FLOPs, parameters and activations per module of a PyTorch model, "
                    "counted by running it eagerly. `dispatchflops compare A.json B.json` "
                    "compares two runs saved with --format json.",
    )
    p.add_argument("model", metavar="MODEL",
                   help="torchvision model name (resnet50, any family), timm:NAME, "
                        "hf:MODEL_TYPE, an OpenMMLab config.py, package.module:callable or "
                        "path/to/file.py:callable returning an nn.Module")
    p.add_argument("--shape", type=int, nargs="+", metavar="H [W]",
                   help="input size: one value for a square, or H W (default 224 224; video "
                        "models: their crop size; timm: the pretrained config's)")
    p.add_argument("--frames", type=int, default=None,
                   help="video models: frames per clip (default 16)")
    p.add_argument("--batch", type=int, default=1, help="batch size (default 1)")
    p.add_argument("--convention", choices=sorted(CONVENTIONS), default="fvcore",
                   help="fvcore: 1 flop per multiply-add plus norms, MMEngine's numbers "
                        "(default); pytorch: 2 per multiply-add, torch's and torchvision's")
    p.add_argument("--max-depth", type=int, default=None, metavar="D",
                   help="module depth shown: table and markdown (default 3); csv, --top and "
                        "--plot (default all)")
    p.add_argument("--device", default="cpu", help="cpu, cuda or meta (default cpu)")
    p.add_argument("--dtype", choices=("float32", "bfloat16", "float16", "float64"),
                   help="cast the model's floating parameters and the inputs to this dtype "
                        "(default: as built, float32)")
    p.add_argument("--method", default=None,
                   help="count this method instead of forward (e.g. extract_feat)")
    p.add_argument("--config", action="append", default=[], metavar="KEY=VALUE",
                   help="hf: models: override a config value, e.g. num_hidden_layers=2 or "
                        "attn_implementation=eager; torchvision and timm models: a keyword "
                        "argument of the model, e.g. num_classes=10 (repeatable)")
    p.add_argument("--cfg-options", nargs="+", default=[], metavar="KEY=VALUE",
                   help="config files: override config values, as get_flops.py does "
                        "(model.backbone.depth=101)")
    p.add_argument("--task", default="base", choices=sorted(HF_TASKS),
                   help="hf: models: which head to build (default base)")
    p.add_argument("--seq-len", type=int, default=None,
                   help="hf: text models: tokens per sequence (default 128, or the "
                        "model's maximum if lower)")
    p.add_argument("--generate", type=int, default=0, metavar="K",
                   help="hf: causal LMs: count model.generate(max_new_tokens=K) with its KV "
                        "cache, and report the prefill and each decode step")
    p.add_argument("--train", action="store_true",
                   help="count a training step: forward + backward of the loss (train mode)")
    p.add_argument("--loss", default=None, metavar="MODULE:CALLABLE",
                   help="with --train: loss(output) -> scalar (default: sum of the output)")
    p.add_argument("--optimizer", default=None, metavar="NAME",
                   help="with --train: also step this torch.optim optimizer (AdamW, SGD, ...; "
                        "default settings) after backward, one uncounted step first so that "
                        "its state exists, as in every step after the first")
    p.add_argument("--memory", action="store_true",
                   help="also follow memory: the peak, when and where it happens and what "
                        "it holds by category, and each module's forward and backward peak "
                        "and what it keeps for backward; with --device-spec, whether it fits")
    p.add_argument("--time", type=int, default=0, metavar="N",
                   help="also run N times outside the counter, timing each module's forward "
                        "(CUDA events on a GPU, wall time on the CPU); with --train, also N "
                        "whole training steps, and the achieved FLOP/s")
    p.add_argument("--device-spec", metavar="NAME",
                   help="draw each module's roofline for this accelerator (bytes, FLOPs per "
                        "byte, lower-bound time, compute- or memory-bound): "
                        + ", ".join(DEVICES))
    p.add_argument("--peak-tflops", type=float, default=None, metavar="X",
                   help="the device's peak TFLOP/s: with --bandwidth-gbs, a roofline for it; "
                        "with --train --time, model-FLOPs utilisation")
    p.add_argument("--bandwidth-gbs", type=float, default=None, metavar="Y",
                   help="with --peak-tflops X: a roofline for a device of X TFLOP/s and Y GB/s "
                        "of memory bandwidth")
    reports.add_arguments(p)
    return p


def count(args) -> tuple[torch.nn.Module, FlopCounterMode, object]:
    """Build the model and its input; count one forward (or --method) in eval mode, or
    with --train one training step. Returns the model, the counter and the example
    (``sources.Example``) it ran on."""
    _check_device(args.device)
    ex = example(args)
    if args.train and not ex.trainable:
        raise SpecError(f"--train: {args.model} computes its training loss from targets; "
                        "count its forward (without --train)")
    model = ex.model
    model.train(args.train)
    args.method = args.method or ex.method
    if args.method is not None:
        method = getattr(model, args.method, None)
        if not callable(method):
            raise SpecError(f"{type(model).__name__} has no method {args.method!r}")
        model.forward = method  # as mmpretrain's get_flops: the method is the model's call
    if args.generate and not hasattr(model, "generate"):
        raise SpecError("--generate needs a model that generates, e.g. --task causal-lm")
    optimizer = _optimizer(model, args.optimizer) if args.optimizer else None
    step = _train_step(model, ex, args.loss, optimizer) if args.train else _eval_step(ex)
    fc = FlopCounterMode(model, convention=args.convention, count_bytes=True,
                         count_memory=args.memory, optimizer=optimizer)
    try:
        if optimizer is not None:
            step()  # uncounted: the optimizer's state exists from now on
        if args.generate:
            args.generation = _generate(model, ex.kwargs, args, fc)
        else:
            with fc:
                step()
        if args.time:
            args.measured = time_modules(model, step, args.time, args.device)
        if args.time and args.train:
            args.timing = time_steps(step, args.time, args.device)
            args.timing["flops"] = _step_flops(model, step, fc)
    except Exception as e:
        path, op = fc.failure or (None, None)
        where = f" in module {path!r}" if path is not None else ""
        if path == "":
            where = " in the model's own forward"
        at = f" at {op}" if op else ""
        raise CLIError(f"the run raised{where}{at}: {type(e).__name__}: {first_line(e)}") from None
    finally:
        if args.method is not None:
            del model.forward
    return model, fc, ex


def _generate(model, inputs, args, fc):
    k = args.generate
    return count_generate(model, counter=fc, max_new_tokens=k, min_new_tokens=k,
                          do_sample=False, **inputs)


def generation_summary(g) -> str:
    steps = ", ".join(format_size(s) for s in g.decode_steps)
    return (f"Generation: prefill {format_size(g.prefill)}, {len(g.decode_steps)} decode "
            f"steps [{steps}], total {format_size(g.total)}")


def _check_training_flags(args):
    if args.generate and (args.train or not args.model.startswith("hf:") or args.generate < 1):
        raise SpecError("--generate K needs an hf: causal language model, K >= 1, and no --train")
    if args.loss and not args.train:
        raise SpecError("--loss needs --train")
    if args.optimizer and not args.train:
        raise SpecError("--optimizer needs --train")
    if args.max_memory is not None:
        args.memory = True  # a memory budget needs memory followed
    if args.memory and args.generate:
        raise SpecError("--memory and --max-memory follow one forward or training step, "
                        "not --generate")
    if args.time < 0:
        raise SpecError("--time takes a positive number of steps")
    if args.time and args.generate:
        raise SpecError("--time times forward passes or training steps, not --generate")
    if args.time and args.device == "meta":
        raise SpecError("--time cannot time the meta device: use cpu or cuda")
    if args.bandwidth_gbs is not None and (args.peak_tflops is None or args.device_spec):
        raise SpecError("--bandwidth-gbs goes with --peak-tflops (instead of --device-spec)")
    if args.peak_tflops is not None and args.bandwidth_gbs is None and not (
            args.train and args.time) or args.peak_tflops is not None and args.peak_tflops <= 0:
        raise SpecError("--peak-tflops needs --bandwidth-gbs (a roofline) or --train --time N "
                        "(MFU), and a positive value")


def roofline_device(args):
    """The device of --device-spec, or of --peak-tflops and --bandwidth-gbs; None."""
    if args.device_spec:
        return device_spec(args.device_spec)
    if args.bandwidth_gbs is not None:
        return custom(args.peak_tflops, args.bandwidth_gbs)
    return None


def _eval_step(call):
    def step():
        with torch.no_grad():
            call()

    return step


def _train_step(model, call, loss_spec, optimizer=None):
    loss_fn = load_callable(loss_spec) if loss_spec else _sum_output

    def step():
        model.zero_grad(set_to_none=True)
        loss = loss_fn(call())
        if not isinstance(loss, torch.Tensor) or loss.numel() != 1:
            raise CLIError("the loss must return a scalar tensor")
        loss.backward()
        if optimizer is not None:
            optimizer.step()

    return step


def _optimizer(model, name: str):
    """torch.optim's optimizer ``name`` (any case) over the model's parameters."""
    found = {n.lower(): getattr(torch.optim, n) for n in dir(torch.optim)
             if isinstance(getattr(torch.optim, n), type)
             and issubclass(getattr(torch.optim, n), torch.optim.Optimizer)
             and n != "Optimizer"}
    cls = found.get(name.lower())
    if cls is None:
        raise SpecError(f"unknown --optimizer {name!r}: torch.optim has "
                        f"{', '.join(sorted(c.__name__ for c in found.values()))}")
    try:
        return cls(model.parameters())
    except Exception as e:
        raise SpecError(f"--optimizer {cls.__name__}: {first_line(e)}") from None


def _sum_output(output):
    """The default loss: the sum of every floating-point tensor in the output."""
    leaves = [t for t in torch.utils._pytree.tree_leaves(output)
              if isinstance(t, torch.Tensor) and t.is_floating_point()]
    if not leaves:
        raise CLIError("the output has no floating-point tensor to take a loss of")
    return sum(t.sum() for t in leaves)


def _step_flops(model, step, fc) -> int:
    """FLOPs of a step, 2 per multiply-add (what FLOP/s and MFU are defined on), whatever
    convention ``fc`` counted in: counted again in the pytorch convention if need be."""
    if fc.convention.name == "pytorch":
        return fc.get_total_flops()
    with FlopCounterMode(model, convention="pytorch") as flops:
        step()
    return flops.get_total_flops()


def time_steps(step, n: int, device: str) -> dict:
    """Run ``step`` n times (after one warm-up) outside any counter; seconds per step."""
    sync = torch.cuda.synchronize if torch.device(device).type == "cuda" else (lambda: None)
    step()
    sync()
    start = time.perf_counter()
    for _ in range(n):
        step()
    sync()
    return {"steps": n, "seconds_per_step": (time.perf_counter() - start) / n}


def _check_device(device: str):
    try:
        dev = torch.device(device)
    except RuntimeError:
        raise SpecError(f"bad --device {device!r}: use cpu, cuda or meta") from None
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise SpecError("--device cuda: no CUDA device is available")


def roofline_summary(results) -> str | None:
    """The total on the roofline and the measured forward time, a line each (or None)."""
    return "\n".join(f"{label}: {value}" for label, value in export.roofline_items(results)) \
        or None


def summary(results, described: str) -> str:
    root = results.modules[""]
    bar = "=" * 30
    return "\n".join([
        bar,
        described,
        f"Flops: {format_size(root.flops)}",
        f"Params: {format_size(root.params)}",
        f"Activation: {format_size(root.activations)}",
        bar,
    ])


def memory_summary(results, device) -> str:
    """The peak per device, when and where, by category; whether it fits ``device``."""
    lines = [f"{label}: {value}" for label, value in export.memory_items(results)]
    mem = results.memory
    if device is not None and device.memory:  # the datasheet's capacity: a little less
        peak = mem.peak_bytes                   # of it can be allocated
        of = f"{memory_size(peak)} of {memory_size(device.memory)} (its datasheet's)"
        if peak <= device.memory:
            lines.append(f"Fits on {device.name}: {of}, {peak / device.memory:.1%}, "
                         f"{memory_size(device.memory - peak)} to spare")
        else:
            lines.append(f"Does not fit on {device.name}: {of}, "
                         f"{memory_size(peak - device.memory)} over")
    if mem.untracked:
        kinds = ", ".join(f"{k} {n}" for k, n in mem.untracked.items())
        lines.append(f"Untracked memory: {sum(mem.untracked.values())} tensors whose storage "
                     f"cannot be read ({kinds})")
    return "\n".join(lines)


def training_summary(results, convention, timing, peak_tflops) -> str:
    t = results.total
    lines = [f"Forward flops: {format_size(t.forward_flops)}",
             f"Backward flops: {format_size(t.backward_flops)}"]
    if t.recompute_flops:
        lines.append(f"Recompute flops: {format_size(t.recompute_flops)}")
    lines.append(f"Step flops: {format_size(t.flops)} ({convention} convention)")
    if timing:
        per_step = timing["seconds_per_step"]
        achieved = timing["flops"] / per_step
        lines.append(f"Step time: {per_step * 1e3:.2f} ms over {timing['steps']} steps, "
                     f"{achieved / 1e12:.3f} TFLOP/s (2 FLOPs per multiply-add, "
                     f"{format_size(timing['flops'])} a step)")
        if peak_tflops:
            lines.append(f"MFU: {achieved / (peak_tflops * 1e12):.2%} of {peak_tflops:g} TFLOP/s")
    return "\n".join(lines)


def _join_job(args):
    """Under torchrun (WORLD_SIZE > 1): torch.distributed, its process group joined (gloo
    on the CPU; nccl on CUDA, each rank on the GPU of its local rank); None otherwise.
    Each rank counts its own run."""
    if int(os.environ.get("WORLD_SIZE", "1")) <= 1:
        return None
    import torch.distributed as dist

    _check_device(args.device)
    if not dist.is_initialized():
        device = torch.device(args.device)
        if device.type == "cuda":  # one GPU per rank: its local rank's, unless named
            local = device if device.index is not None else torch.device(
                "cuda", int(os.environ.get("LOCAL_RANK", "0")))
            torch.cuda.set_device(local)
            args.device = str(local)
            dist.init_process_group("nccl", device_id=local)
        else:
            dist.init_process_group("gloo")
    return dist


def job_summary(dist, results, timing, peak_tflops) -> str | None:
    """The job's lines (rank 0; None on the others): FLOPs summed over ranks and, with
    --time, the job's FLOP/s (every rank's step FLOPs over the slowest rank's step time)
    and MFU against every rank's peak. Collectives run here, after the counted block."""
    job = gather(results)
    mine = (timing["flops"], timing["seconds_per_step"]) if timing else None
    steps = [None] * dist.get_world_size() if dist.get_rank() == 0 else None
    dist.gather_object(mine, steps, dst=0)
    if job is None:
        return None
    lines = [f"Job: {job.world_size} ranks, {format_size(job.sum())} flops "
             f"(sum over ranks; per rank {format_size(job.max())} max, "
             f"{format_size(job.min())} min); this report is rank 0's"]
    if timing:
        achieved = sum(f for f, _ in steps) / max(t for _, t in steps)
        line = f"Job: {achieved / 1e12:.3f} TFLOP/s (2 FLOPs per multiply-add)"
        if peak_tflops:
            line += f", MFU {achieved / (job.world_size * peak_tflops * 1e12):.2%}"
        lines.append(line)
    return "\n".join(lines)


def notes(results) -> str:
    """The ops that had no formula and the modules never called, as fvcore warns."""
    return "\n".join(f"{label}: {value}" for label, value in export.notes(results))


def main(argv=None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    if argv[:1] == ["compare"]:
        return compare.main(argv[1:])
    try:
        args = _parser().parse_args(argv)
        limits = reports.check(args)
        _check_training_flags(args)
        device = roofline_device(args)  # an unknown device: before anything runs
        dist = _join_job(args)
        model, fc, ex = count(args)
        res = fc.results
        res.model = args.model
        res.input = describe_input(args, ex.words)
        res.device = device
        if res.device is not None:
            roofline(res, res.device)  # a dtype it has no peak for: one line, before output
        if getattr(args, "measured", None) is not None:
            res.measured = args.measured
            res.measured_how = _how_timed(args)
        footer = [summary(res, ex.headline), roofline_summary(res)]
        if res.memory is not None:
            footer.append(memory_summary(res, device))
        if args.train:
            footer.append(training_summary(res, args.convention, getattr(args, "timing", None),
                                           args.peak_tflops))
        if dist is not None:  # under torchrun: the job, on rank 0 only
            footer.append(job_summary(dist, res, getattr(args, "timing", None),
                                      args.peak_tflops))
            if dist.get_rank() != 0:
                dist.destroy_process_group()
                return 0
        if args.generate:
            footer.append(generation_summary(args.generation))
        footer.append(notes(res))
        reports.write(reports.render(args, model, res, "\n".join(filter(None, footer))),
                      args.output)
        if args.plot:
            plot(res, args.plot, kind=args.plot_kind, max_depth=args.max_depth)
        if dist is not None:
            dist.destroy_process_group()
    except (SpecError, CLIError, BudgetError, PlotError, reports.ReportError, DeviceError) as e:
        print(f"dispatchflops: error: {e}", file=sys.stderr)
        return 2
    except BrokenPipeError:  # a reader that stopped early (`| head`): nothing is wrong
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())  # (the exit's flush)
        return 0
    over = over_budget(res, limits)
    if over:
        print(f"dispatchflops: {over}", file=sys.stderr)
        return 1
    return 0


def _how_timed(args) -> str:
    clock = "CUDA events" if torch.device(args.device).type == "cuda" else "wall time"
    run = "training steps" if args.train else "forward passes"
    return f"{clock}, median of {args.time} {run}, outside the counter"


def describe_input(args, words: str) -> str:
    """The input in words, for the saved result: the call, the tensors, the device and,
    with --train, the loss."""
    text = f"{args.method or 'forward'}, {words}, on {args.device}"
    if args.train:
        text += f"; training step, loss: {args.loss or 'sum of the outputs'}"
    return text
