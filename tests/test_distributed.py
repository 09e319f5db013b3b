"""Distributed jobs: each rank counts the ops it runs on its local shards and the bytes
its collectives move; ``gather`` sums the job. Closed forms for a TP MLP (column- then
row-parallel), FSDP2 and DDP, on a fake process group in this process and on real gloo
process groups spawned from the test."""
import json
import socket

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from torch.distributed.device_mesh import init_device_mesh
from torch.distributed.tensor.parallel import (ColwiseParallel, RowwiseParallel,
                                               parallelize_module)

from dispatchflops import FlopCounterMode, gather
from llama_plans import llama_tp_plan

B, D, H = 8, 256, 1024  # batch, model width, hidden width
F32 = 4


def mlp(device="cpu"):
    torch.manual_seed(0)
    return torch.nn.Sequential(torch.nn.Linear(D, H, bias=False, device=device), torch.nn.ReLU(),
                               torch.nn.Linear(H, D, bias=False, device=device))


def tp(model, world):
    mesh = init_device_mesh("cpu", (world,))
    return parallelize_module(model, mesh, {"0": ColwiseParallel(), "2": RowwiseParallel()})


def summary(results):
    """What the tests compare: FLOPs and bytes per phase, per module and in total."""
    def cost(c):
        return {"flops": dict(c.phase_flops), "bytes": dict(c.comm_phase_bytes),
                "by_collective": dict(c.comm_bytes)}
    return {"total": cost(results.total), **{p: cost(m) for p, m in results.modules.items()}}


# --------------------------------------------------------------------------- one process
def tp_closed_form(world):
    """Per rank: each Linear multiplies 1/world of its weight; the row-parallel output is
    all-reduced in forward, the input's gradient (its column-parallel partial sums) in
    backward."""
    linear = 2 * B * D * H // world
    activations = B * D * F32
    return {"forward": 2 * linear, "backward": 4 * linear, "bytes": activations}


@pytest.mark.parametrize("world", [2, 4])
def test_tensor_parallel_counts_each_ranks_shards(fake_world, world):
    fake_world(world)
    model = tp(mlp(), world)
    x = torch.randn(B, D, requires_grad=True)
    with FlopCounterMode(model) as fc:
        model(x).sum().backward()
    want = tp_closed_form(world)
    got = summary(fc.results)
    assert got["total"]["flops"] == {"forward": want["forward"], "backward": want["backward"],
                                     "recompute": 0}
    assert got["0"]["flops"]["forward"] == got["2"]["flops"]["forward"] == want["forward"] // 2
    assert got["0"]["flops"]["backward"] == got["2"]["flops"]["backward"] == want["backward"] // 2
    assert got["2"]["bytes"] == {"forward": want["bytes"], "backward": 0, "recompute": 0}
    # the input gradient's all-reduce: DTensor's (untagged) node, charged where backward
    # just ran: the column-parallel Linear whose input it is
    assert got["0"]["bytes"] == {"forward": 0, "backward": want["bytes"], "recompute": 0}
    assert got["total"]["by_collective"] == {"all_reduce": 2 * want["bytes"]}
    assert not any(op.startswith("_c10d") for op in fc.results.unsupported)


class Attention(torch.nn.Module):
    def __init__(self, width, heads):
        super().__init__()
        self.width, self.heads = width, heads
        for name in "qkvo":
            setattr(self, name, torch.nn.Linear(width, width, bias=False))

    def forward(self, x):
        b, t, _ = x.shape  # heads are split across ranks: -1 is this rank's share
        q, k, v = (f(x).view(b, t, -1, self.width // self.heads).transpose(1, 2)
                   for f in (self.q, self.k, self.v))
        y = torch.nn.functional.scaled_dot_product_attention(q, k, v, is_causal=True)
        return self.o(y.transpose(1, 2).reshape(b, t, -1))


class Block(torch.nn.Module):
    def __init__(self, width, heads):
        super().__init__()
        self.norm = torch.nn.LayerNorm(width)
        self.attn = Attention(width, heads)
        self.up = torch.nn.Linear(width, 4 * width, bias=False)
        self.down = torch.nn.Linear(4 * width, width, bias=False)

    def forward(self, x):
        x = x + self.attn(self.norm(x))
        return x + self.down(torch.nn.functional.gelu(self.up(x)))


def test_tensor_parallel_transformer_block(fake_world):
    """Megatron's plan: q, k, v and up column-parallel, o and down row-parallel."""
    world, b, t, d = fake_world(2), 2, 16, 64
    plan = {"attn.q": ColwiseParallel(), "attn.k": ColwiseParallel(),
            "attn.v": ColwiseParallel(), "attn.o": RowwiseParallel(),
            "up": ColwiseParallel(), "down": RowwiseParallel()}
    torch.manual_seed(0)
    block = parallelize_module(Block(d, 4), init_device_mesh("cpu", (world,)), plan)
    x = torch.randn(b, t, d, requires_grad=True)
    with FlopCounterMode(block) as fc:
        block(x).sum().backward()
    square = 2 * b * t * d * d  # a d x d Linear on all tokens
    linears = (4 + 2 * 4) * square // world  # q, k, v, o; up and down
    attention = 4 * b * t * t * d // world  # heads split; causal counted dense, as torch
    assert fc.results.total.phase_flops == {"forward": linears + attention,
                                            "backward": 2 * linears + 5 * attention // 2,
                                            "recompute": 0}
    assert fc.results.modules["attn"].phase_flops["forward"] == 4 * square // world + attention
    activation = b * t * d * F32
    # forward: o's and down's outputs all-reduced; backward: the input gradients of the
    # column-parallel q, k, v and up
    assert dict(fc.results.total.comm_bytes) == {"all_reduce": 6 * activation}
    assert fc.results.total.comm_phase_bytes == {"forward": 2 * activation,
                                                 "backward": 4 * activation, "recompute": 0}


def test_sequence_parallel_transformer_block(fake_world):
    """Megatron's sequence parallelism: the norm and the residual stream sharded over
    tokens; all-gathers before attention and the MLP, reduce-scatters after them, and the
    reverse in backward. The same FLOPs per rank as tensor parallelism."""
    from torch.distributed.tensor import DTensor, Replicate, Shard
    from torch.distributed.tensor.parallel import PrepareModuleInput, SequenceParallel

    world, b, t, d = fake_world(2), 2, 16, 64
    mesh = init_device_mesh("cpu", (world,))
    plan = {"norm": SequenceParallel(),
            "attn": PrepareModuleInput(input_layouts=(Shard(1),),
                                       desired_input_layouts=(Replicate(),)),
            "attn.q": ColwiseParallel(), "attn.k": ColwiseParallel(),
            "attn.v": ColwiseParallel(),
            "attn.o": RowwiseParallel(output_layouts=Shard(1), use_local_output=False),
            "up": ColwiseParallel(input_layouts=Shard(1)),
            "down": RowwiseParallel(output_layouts=Shard(1), use_local_output=False)}
    torch.manual_seed(0)
    block = parallelize_module(Block(d, 4), mesh, plan)
    x = DTensor.from_local(torch.randn(b, t // world, d, requires_grad=True), mesh, [Shard(1)])
    with FlopCounterMode(block) as fc:
        block(x).to_local().sum().backward()
    square = 2 * b * t * d * d
    linears, attention = 12 * square // world, 4 * b * t * t * d // world
    total = fc.results.total
    assert total.phase_flops == {"forward": linears + attention,
                                 "backward": 2 * linears + 5 * attention // 2, "recompute": 0}
    activation = b * t * d * F32  # the whole residual stream: gathered, or scattered
    assert dict(total.comm_bytes) == {"all_gather": 4 * activation,
                                      "reduce_scatter": 4 * activation}
    assert total.comm_phase_bytes == {"forward": 4 * activation, "backward": 4 * activation,
                                      "recompute": 0}
    forward = {p: fc.results.modules[p].comm_phase_bytes["forward"]
               for p in ("norm", "attn", "up", "down")}
    assert forward == {"norm": 0, "attn": 2 * activation, "up": activation, "down": activation}


def test_tensor_and_fully_sharded_on_a_2d_mesh(fake_world):
    from torch.distributed.fsdp import fully_shard

    fake_world(4)
    mesh = init_device_mesh("cpu", (2, 2), mesh_dim_names=("dp", "tp"))
    model = mlp()
    parallelize_module(model, mesh["tp"], {"0": ColwiseParallel(), "2": RowwiseParallel()})
    for unit in (model[0], model[2], model):
        fully_shard(unit, mesh=mesh["dp"])
    with FlopCounterMode(model) as fc:
        model(torch.randn(B, D)).sum().backward()
    linear = 2 * B * D * H // 2  # each Linear's TP half
    unit = D * H * F32 // 2  # a Linear's TP half, unsharded over dp
    total = fc.results.total
    assert total.phase_flops == {"forward": 2 * linear, "backward": 3 * linear, "recompute": 0}
    assert dict(total.comm_bytes) == {"all_gather": 4 * unit, "reduce_scatter": 2 * unit,
                                      "all_reduce": B * D * F32}
    assert total.comm_phase_bytes == {"forward": 2 * unit + B * D * F32,
                                      "backward": 4 * unit, "recompute": 0}


def test_tensor_parallel_on_meta_sizes_a_large_world(fake_world):
    world = 8
    fake_world(world)
    model = tp(mlp("meta"), world)
    with FlopCounterMode(model) as fc:
        model(torch.randn(B, D, device="meta")).sum()
    assert fc.results.total.phase_flops["forward"] == tp_closed_form(world)["forward"]
    assert fc.results.total.comm_bytes == {"all_reduce": B * D * F32}


def test_llama_70b_shaped_tensor_parallel_on_meta(fake_world):
    """Sizing without a cluster: LLaMA-70B's shapes (2 of its 80 layers), TP=8, 2048
    tokens, on the meta device with a fake group of 8: one rank's FLOPs and bytes."""
    import transformers

    world, layers, t, d, f, vocab = fake_world(8), 2, 2048, 8192, 28672, 32000
    config = transformers.LlamaConfig(hidden_size=d, intermediate_size=f, vocab_size=vocab,
                                      num_hidden_layers=layers, num_attention_heads=64,
                                      num_key_value_heads=8)
    with torch.device("meta"):
        model = transformers.LlamaForCausalLM(config)
    parallelize_module(model, init_device_mesh("cpu", (world,)), llama_tp_plan(layers))
    with FlopCounterMode(model) as fc:
        model(input_ids=torch.zeros(1, t, dtype=torch.long, device="meta"))
    kv = 8 * (d // 64)  # grouped-query: 8 key/value heads
    layer = (2 * 2 * t * d * d + 2 * 2 * t * d * kv  # q, o; k, v
             + 4 * t * t * d  # attention, all 64 query heads
             + 3 * 2 * t * d * f)  # gate, up, down
    lm_head = 2 * t * d * vocab  # replicated: every rank computes it whole
    assert fc.results.total.flops == layers * layer // world + lm_head
    assert dict(fc.results.total.comm_bytes) == {"all_reduce": layers * 2 * t * d * F32}


def test_reports_show_the_bytes(fake_world):
    from dispatchflops import views
    from dispatchflops.export import csv_text, human_columns, text_table

    fake_world(2)
    model = tp(mlp(), 2)
    with FlopCounterMode(model) as fc:
        model(torch.randn(B, D)).sum()  # (using the output waits for its all-reduce)
    res = fc.results
    rows = {r["module"]: r for r in views.module_rows(res)}
    assert rows["2"]["comm_bytes"] == rows[""]["comm_bytes"] == B * D * F32
    assert rows["0"]["comm_bytes"] == 0
    assert views.op_rows(res)[-1] == {"op": "comm.all_reduce", "calls": 1, "flops": 0,
                                      "share": 0.0, "comm_bytes": B * D * F32, "bytes": 0,
                                      "intensity": None}
    assert "comm bytes" in text_table(list(rows.values()), human_columns("modules", (), True))
    assert ",comm_bytes," in csv_text(list(rows.values()), views.MODULE_COLUMNS).splitlines()[0]


def test_gather_needs_a_process_group():
    with FlopCounterMode() as fc:
        torch.ones(2) @ torch.ones(2)
    with pytest.raises(RuntimeError, match="initialized process group"):
        gather(fc.results)


# --------------------------------------------------------------------------- gloo, spawned
def _tp_run(world):
    model = tp(mlp(), world)
    with FlopCounterMode(model) as fc:
        model(torch.randn(B, D, requires_grad=True)).sum().backward()
    return fc.results


def _fsdp_run():
    from torch.distributed.fsdp import fully_shard

    model = mlp()
    for unit in (model[0], model[2], model):
        fully_shard(unit)
    with FlopCounterMode(model) as fc:
        model(torch.randn(B, D)).sum().backward()
    return fc.results


def _ddp_run():
    model = torch.nn.parallel.DistributedDataParallel(mlp())
    with FlopCounterMode(model) as fc:
        model(torch.randn(B, D)).sum().backward()
    return fc.results


def _mismatch(rank):
    other = mlp() if rank == 0 else torch.nn.Sequential(torch.nn.Linear(D, D))
    with FlopCounterMode(other) as fc:
        other(torch.randn(B, D))
    try:
        return repr(gather(fc.results))
    except ValueError as e:
        return str(e)


def _in_group(rank, world, port, path, names):
    """Run the ``RUNS`` named (each f(rank, world) -> JSON-ready) on a gloo group; write
    their results to path/rank<r>.json. (Models die before the group: a DDP reducer outliving its group
    aborts the process at exit.)"""
    import gc

    dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank,
                            world_size=world)
    out = {name: RUNS[name](rank, world) for name in names}
    gc.collect()
    dist.barrier()
    dist.destroy_process_group()
    with open(f"{path}/rank{rank}.json", "w") as f:
        json.dump(out, f)


def _job(rank, world):
    job = gather(_tp_run(world))
    if job is None:
        return None
    return {"world": job.world_size, "flops": job.sum(), "max": job.max("0"),
            "min": job.min("0"), "comm": job.sum(statistic="comm")}


RUNS = {"tp": lambda rank, world: summary(_tp_run(world)),
        "job": _job,
        "fsdp": lambda rank, world: summary(_fsdp_run()),
        "ddp": lambda rank, world: summary(_ddp_run()),
        "mismatch": lambda rank, world: _mismatch(rank)}


def _spawn(world, path, names):
    mp.spawn(_in_group, args=(world, _free_port(), str(path), names), nprocs=world, join=True)
    return [json.loads((path / f"rank{r}.json").read_text()) for r in range(world)]


def _free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def gloo_runs(tmp_path_factory):
    return _spawn(2, tmp_path_factory.mktemp("gloo"), list(RUNS))


def test_gloo_four_ranks(tmp_path):
    want = tp_closed_form(4)
    linear, unit = 2 * B * D * H, D * H * F32
    for got in _spawn(4, tmp_path, ["tp", "fsdp"]):
        assert got["tp"]["total"]["flops"] == {"forward": want["forward"],
                                               "backward": want["backward"], "recompute": 0}
        assert got["tp"]["total"]["by_collective"] == {"all_reduce": 2 * want["bytes"]}
        assert got["fsdp"]["total"]["flops"] == {"forward": 2 * linear, "backward": 3 * linear,
                                                 "recompute": 0}
        assert got["fsdp"]["total"]["by_collective"] == {"all_gather": 4 * unit,
                                                         "reduce_scatter": 2 * unit}


def test_gloo_tensor_parallel_and_the_job(gloo_runs):
    want = tp_closed_form(2)
    for rank in gloo_runs:
        got = rank["tp"]
        assert got["total"]["flops"] == {"forward": want["forward"],
                                         "backward": want["backward"], "recompute": 0}
        assert got["total"]["by_collective"] == {"all_reduce": 2 * want["bytes"]}
    assert gloo_runs[0]["mismatch"] == ("ranks counted different models: rank 1's modules "
                                        "are not rank 0's")
    assert gloo_runs[1]["mismatch"] == "None"
    job = gloo_runs[0]["job"]
    assert job == {"world": 2, "flops": 2 * (want["forward"] + want["backward"]),
                   "max": 3 * want["forward"] // 2, "min": 3 * want["forward"] // 2,
                   "comm": 2 * 2 * want["bytes"]}


def test_gloo_fsdp2(gloo_runs):
    """Each rank runs the whole MLP on its batch (the input needs no gradient: the first
    layer's backward is its weight gradient only); each unit's parameters are all-gathered
    in forward and again in backward, its gradients reduce-scattered."""
    linear = 2 * B * D * H
    unit = D * H * F32  # one Linear's parameters, unsharded
    for rank in gloo_runs:
        got = rank["fsdp"]["total"]
        assert got["flops"] == {"forward": 2 * linear, "backward": 3 * linear, "recompute": 0}
        assert got["by_collective"] == {"all_gather": 4 * unit, "reduce_scatter": 2 * unit}
        assert got["bytes"] == {"forward": 2 * unit, "backward": 4 * unit, "recompute": 0}
        assert rank["fsdp"]["0"]["bytes"]["forward"] == rank["fsdp"]["2"]["bytes"]["forward"] == unit
        # the first unit's gradients, reduce-scattered in the root's final callback: still
        # backward, charged to the unit whose backward ran last
        assert rank["fsdp"]["0"]["by_collective"] == {"all_gather": unit, "reduce_scatter": unit}


def test_gloo_ddp(gloo_runs):
    """Each rank runs the whole model on its batch; the gradients are all-reduced once."""
    linear = 2 * B * D * H
    for rank in gloo_runs:
        got = rank["ddp"]["total"]
        assert got["flops"] == {"forward": 2 * linear, "backward": 3 * linear, "recompute": 0}
        assert got["by_collective"] == {"all_reduce": 2 * D * H * F32}
        assert got["bytes"] == {"forward": 0, "backward": 2 * D * H * F32, "recompute": 0}


def test_cli_under_torchrun_reports_the_job():
    import subprocess
    import sys

    import torchvision
    from torch.utils.flop_counter import FlopCounterMode as TorchCounter

    from dispatchflops.formatting import format_size

    model = torchvision.models.resnet18()
    with TorchCounter(display=False) as theirs:
        model(torch.randn(2, 3, 64, 64)).sum().backward()
    step = theirs.get_total_flops()
    run = subprocess.run(
        [sys.executable, "-m", "torch.distributed.run", "--nproc-per-node", "2",
         "--master-port", str(_free_port()), "-m", "dispatchflops", "resnet18", "--shape", "64",
         "--batch", "2", "--train", "--time", "1", "--peak-tflops", "1",
         "--convention", "pytorch"], capture_output=True, text=True, timeout=120)
    assert run.returncode == 0, run.stderr[-2000:]
    job = [line for line in run.stdout.splitlines() if line.startswith("Job:")]
    assert len(job) == 2 and run.stdout.count("Flops:") == 1  # rank 0 reports
    assert job[0].startswith(f"Job: 2 ranks, {format_size(2 * step)} flops (sum over ranks; "
                             f"per rank {format_size(step)} max, {format_size(step)} min)")
    assert "TFLOP/s (2 FLOPs per multiply-add), MFU" in job[1]
