"""Memory per module and per device (memory.py), against PyTorch's own MemTracker and closed
forms: exact bytes."""
import weakref

import pytest
import torch
import torch.nn.functional as F
import torchvision
from torch.distributed._tools.mem_tracker import MemTracker, _ModState
from torch.utils.checkpoint import checkpoint

from dispatchflops import FlopCounterMode, mode
from dispatchflops.memory import CATEGORIES

# MemTracker's categories (member names) as ours; OTH is what track_external lists: inputs
_MT_NAMES = dict(zip(CATEGORIES, (("PARAM",), ("BUFFER",), ("GRAD",), ("OPT",), ("ACT",),
                                  ("TEMP",), ("OTH",))))


def _run_memtracker(step, *tracked):
    """PyTorch's MemTracker around ``step()``, told of what exists before it (``tracked``:
    the model, the optimizer, the inputs)."""
    mt = MemTracker()
    mt.track_external(*tracked)
    with mt:
        step()
    return mt


def _their_peak(mt) -> dict:
    """A MemTracker's (or FSDPMemTracker's) peak: {device: {category's member name or
    "Total": bytes}}."""
    return {str(d): {getattr(k, "name", k): v for k, v in snap.items()}
            for d, snap in mt.get_tracker_snapshot("peak").items()}


def _as_ours(snap: dict, names: dict) -> dict:
    """A tracker's snapshot in our categories (``names``: ours -> its names, summed)."""
    return {c: sum(snap[n] for n in names[c]) for c in CATEGORIES}


def _mlp(device):
    m = torch.nn.Sequential(torch.nn.Linear(64, 128), torch.nn.ReLU(), torch.nn.Linear(128, 128),
                            torch.nn.BatchNorm1d(128), torch.nn.Linear(128, 10)).to(device)
    return m, torch.optim.AdamW(m.parameters(), foreach=False), torch.randn(32, 64, device=device)


def _resnet(device):
    m = torchvision.models.resnet18(num_classes=10).to(device)
    return (m, torch.optim.SGD(m.parameters(), lr=0.1, momentum=0.9),
            torch.randn(2, 3, 64, 64, device=device))


def _gpt2(device):
    import transformers
    cfg = transformers.GPT2Config(n_layer=2, n_embd=64, n_head=4, vocab_size=500,
                                  n_positions=64, bos_token_id=0, eos_token_id=0)
    cfg._attn_implementation = "eager"
    m = transformers.GPT2LMHeadModel(cfg).to(device)
    return m, torch.optim.AdamW(m.parameters()), torch.randint(0, 500, (2, 32), device=device)


def _step(m, opt, x):
    out = m(x)
    (out.logits if hasattr(out, "logits") else out).float().sum().backward()
    opt.step()
    opt.zero_grad()


def _memtracker(make, device, warm):
    torch.manual_seed(0)
    m, opt, x = make(device)
    if warm:
        _step(m, opt, x)
    mt = _run_memtracker(lambda: _step(m, opt, x), m, opt, x)
    peak = _their_peak(mt)
    root = type(m).__name__

    def total(snap):
        return sum(s["Total"] for s in snap.values())

    modules = {}
    for st in mt.memory_tracking.values():
        path = "" if st.mod_fqn == root else st.mod_fqn[len(root) + 1:]
        modules[path] = (total(st.snapshots[_ModState.PRE_FW][0]),
                         total(st.snapshots[_ModState.POST_FW][0]),
                         max(map(total, st.snapshots[_ModState.PEAK_FW])),
                         max(map(total, st.snapshots.get(_ModState.PEAK_BW, [{}]))))
    return peak, modules, x.untyped_storage().nbytes()


def _ours(make, device, warm):
    torch.manual_seed(0)
    m, opt, x = make(device)
    if warm:
        _step(m, opt, x)
    with FlopCounterMode(m, count_memory=True, optimizer=opt) as fc:
        _step(m, opt, x)
    return fc.results.memory


# MemTracker's backward of a module runs from its outputs' gradients to its inputs': where
# the input is shared with another branch (a downsample beside its block's convolutions,
# GPT-2's position embedding beside the token embedding), that window also holds the other
# branch's work. Ours is the ops of the module's own autograd nodes: less, never more.
_WIDER_BACKWARD = {
    "resnet": {"layer2.0.downsample", "layer2.0.downsample.0", "layer3.0.downsample",
               "layer3.0.downsample.0", "layer4.0.downsample", "layer4.0.downsample.0"},
    "gpt2": {"transformer.wpe"},
    "mlp": set(),
}


_BEFORE_THE_INPUT = {"mlp": {"", "0"}, "resnet": {"", "conv1"}, "gpt2": {"", "transformer"}}


@pytest.mark.parametrize("device", ["cpu", "meta"])
@pytest.mark.parametrize("warm", [False, True], ids=["first step", "second step"])
@pytest.mark.parametrize("name,make", [("mlp", _mlp), ("resnet", _resnet), ("gpt2", _gpt2)])
def test_the_same_as_memtracker(name, make, warm, device):
    """A training step with an optimizer: the peak and its breakdown by category equal
    MemTracker's on every device, and so does each module's memory when its forward
    starts and ends, its forward peak, and (but for the modules above) its backward peak."""
    theirs, their_modules, input_bytes = _memtracker(make, device, warm)
    ours = _ours(make, device, warm)
    assert set(ours.peak) == set(theirs)
    for dev, cats in theirs.items():
        assert ours.peak[dev] == cats["Total"]
        assert {c: ours.breakdown[dev][c] for c in CATEGORIES} == _as_ours(cats, _MT_NAMES)
    assert set(their_modules) <= set(ours.modules)
    for path, (start, end, peak_fw, peak_bw) in their_modules.items():
        got = ours.modules[path]
        # the input made before the block is known once the first op reads it: when the
        # model and the modules on the way to that op start, ours has not seen it yet
        early = path in _BEFORE_THE_INPUT[name]
        assert got.start == start - (input_bytes if early else 0), path
        assert (got.end, got.peak_forward) == (end, peak_fw), path
        if path in _WIDER_BACKWARD[name]:
            assert got.peak_backward < peak_bw, path
        else:
            assert got.peak_backward == peak_bw, path


# --- closed forms ------------------------------------------------------------------------

def _count(model, run, **kwargs):
    """Results of ``run()`` counted with memory; what it returns is held past the block
    (as ``with counter: y = model(x)`` holds y, and with it the autograd graph)."""
    with FlopCounterMode(model, count_memory=True, **kwargs) as fc:
        held = run()
    del held
    return fc.results


@pytest.mark.parametrize("reentrant", [False, True], ids=["non-reentrant", "reentrant"])
def test_checkpointed_blocks_as_memtracker(reentrant):
    """A checkpointed stack's training step (both kinds of checkpoint): peak and categories
    equal MemTracker's, and each block's backward peak, its recomputation included (the
    model's own covers its blocks'; with the reentrant kind MemTracker has none)."""
    b, d, h, n = 4, 16, 64, 3
    x = torch.randn(b, d)
    got = []
    for ours in (False, True):
        torch.manual_seed(0)
        model = _Stack(d, h, n, True)
        if reentrant:  # (the reentrant kind needs an input that requires grad)
            model.forward = lambda x: _reentrant(model, x)
        opt = torch.optim.SGD(model.parameters(), lr=0.1)
        _step(model, opt, x)
        if ours:
            with FlopCounterMode(model, count_memory=True, optimizer=opt) as fc:
                _step(model, opt, x)
            mem = fc.results.memory
            got.append((mem.peak["cpu"], mem.breakdown["cpu"],
                        [mem.modules[f"blocks.{i}"].peak_backward for i in range(n)]))
            assert mem.modules[""].peak_backward >= max(got[-1][2])
        else:
            mt = _run_memtracker(lambda: _step(model, opt, x), model, opt, x)
            peak = _their_peak(mt)["cpu"]
            blocks = {st.mod_fqn: max((sum(s["Total"] for s in snap.values())
                                       for snap in st.snapshots.get(_ModState.PEAK_BW, [])),
                                      default=None)
                      for st in mt.memory_tracking.values()}
            got.append((peak["Total"], _as_ours(peak, _MT_NAMES),
                        [blocks[f"_Stack.blocks.{i}"] for i in range(n)]))
    (their_peak, theirs, their_blocks), (peak, ours, blocks) = got
    assert (peak, ours) == (their_peak, theirs)
    if reentrant:  # its blocks' forward ran without grad: MemTracker sees no backward of theirs
        assert their_blocks == [None] * n and 0 < min(blocks) and max(blocks) <= peak
    else:
        assert blocks == their_blocks


def _reentrant(model, x):
    x = x.detach().requires_grad_()
    for block in model.blocks:
        x = checkpoint(block, x, use_reentrant=True)
    return x


@pytest.mark.parametrize("device", ["cpu", "meta"])
def test_a_linear_stack_saves_each_layers_input(device):
    """L Linear(d, d) layers, batch b, fp32: each layer's output is saved by the next (the
    last is held by the caller), b*d*4 bytes a layer; forward peak: parameters, input and
    every output. Without grad each output dies once the next layer has run."""
    b, d, L = 8, 32, 5
    model = torch.nn.Sequential(*(torch.nn.Linear(d, d) for _ in range(L))).to(device)
    x = torch.randn(b, d, device=device)
    params = L * (d * d + d) * 4
    res = _count(model, lambda: model(x))
    mem = res.memory
    assert [mem.modules[str(i)].saved for i in range(L)] == [b * d * 4] * L
    assert mem.modules[""].saved == L * b * d * 4
    assert mem.peak[device] == params + b * d * 4 + L * b * d * 4
    assert mem.breakdown[device]["activations"] == L * b * d * 4
    assert mem.modules["2"].parameters == (d * d + d) * 4
    with torch.no_grad():
        mem = _count(model, lambda: model(x)).memory
    assert mem.peak[device] == params + b * d * 4 + 2 * b * d * 4
    assert mem.modules[""].saved == b * d * 4  # the output, held


@pytest.mark.parametrize("device", ["cpu", "meta"])
def test_adamw_keeps_two_fp32_states_per_parameter(device):
    """After AdamW's first step: exp_avg and exp_avg_sq, fp32 like the parameters, and a
    4-byte step count per parameter (a CPU scalar unless capturable); gradients as large
    as the parameters until zero_grad."""
    model = torch.nn.Sequential(torch.nn.Linear(16, 32), torch.nn.Linear(32, 4)).to(device)
    opt = torch.optim.AdamW(model.parameters())
    x = torch.randn(4, 16, device=device)
    n = sum(p.numel() for p in model.parameters())
    tensors = len(list(model.parameters()))

    def step():
        model(x).sum().backward()
        opt.step()

    mem = _count(model, step, optimizer=opt).memory
    assert mem.end[device]["optimizer"] == 2 * n * 4 + (tensors * 4 if device == "cpu" else 0)
    assert mem.end[device]["gradients"] == n * 4
    assert mem.end[device]["parameters"] == n * 4
    if device == "meta":
        assert mem.end["cpu"]["optimizer"] == tensors * 4
    assert mem.modules[""].optimizer == 2 * n * 4 + tensors * 4
    assert mem.modules["1"].gradients == (32 * 4 + 4) * 4


class _Block(torch.nn.Module):
    def __init__(self, d, h):
        super().__init__()
        self.up, self.down = torch.nn.Linear(d, h), torch.nn.Linear(h, d)

    def forward(self, x):
        return self.down(torch.relu(self.up(x)))


class _Stack(torch.nn.Module):
    def __init__(self, d, h, n, checkpointed):
        super().__init__()
        self.blocks = torch.nn.ModuleList(_Block(d, h) for _ in range(n))
        self.checkpointed = checkpointed

    def forward(self, x):
        for block in self.blocks:
            x = checkpoint(block, x, use_reentrant=False) if self.checkpointed else block(x)
        return x


@pytest.mark.parametrize("device", ["cpu", "meta"])
def test_activation_checkpointing_saves_less_and_recomputes(device):
    """Blocks Linear(d, h) -> ReLU -> Linear(h, d), batch b, fp32. Plain: a block keeps
    its ReLU's output (saved by ReLU and by the second Linear) and its output (saved by the
    next block), b*(h + d)*4 bytes; the first Linear's output dies (ReLU saves its result).
    Checkpointed: only its output, b*d*4, and its forward runs again in backward. Kept:
    what is live when backward begins."""
    b, d, h, n = 4, 16, 64, 3
    x = torch.randn(b, d, device=device)
    saved, recompute = {}, {}
    for ckpt in (False, True):
        model = _Stack(d, h, n, ckpt).to(device)
        res = _count(model, lambda: model(x).sum().backward())
        saved[ckpt] = [res.memory.modules[f"blocks.{i}"].saved for i in range(n)]
        recompute[ckpt] = res.modules["blocks.1"].recompute_flops
    # the last block's output is not kept: sum() saves none of it
    assert saved[False] == [b * (h + d) * 4] * (n - 1) + [b * h * 4]
    assert saved[True] == [b * d * 4] * (n - 1) + [0]
    # recomputation stops once the saved tensors are back (torch's early stop): the first
    # Linear and ReLU run again, the second Linear does not
    assert recompute == {False: 0, True: 2 * b * d * h}


class _GPTLayer(torch.nn.Module):
    """Megatron's transformer layer (Korthikanti et al., 2022, figure 2), eager: layer
    norms, fused QKV, softmax(QK^T / sqrt(d)) with dropout, projection, dropout, residual;
    layer norm, h -> 4h, GeLU, 4h -> h, dropout, residual."""

    def __init__(self, h, a, dropout, p=0.1):
        super().__init__()
        self.a, self.p, self.dropout = a, p, dropout
        self.ln1, self.ln2 = torch.nn.LayerNorm(h), torch.nn.LayerNorm(h)
        self.qkv, self.proj = torch.nn.Linear(h, 3 * h), torch.nn.Linear(h, h)
        self.fc1, self.fc2 = torch.nn.Linear(h, 4 * h), torch.nn.Linear(4 * h, h)

    def forward(self, x):  # (this rank's heads and tokens under tensor/sequence parallelism)
        qkv = self.qkv(self.ln1(x))
        s, b, d = *qkv.shape[:2], self.ln1.normalized_shape[0] // self.a
        q, k, v = qkv.view(s, -1, 3 * d).transpose(0, 1).chunk(3, -1)
        scores = torch.bmm(q, k.transpose(1, 2)) * d ** -0.5
        probs = self.dropout(torch.softmax(scores, -1), self.p)
        context = torch.bmm(probs, v).transpose(0, 1).reshape(s, b, -1)
        x = x + self.dropout(self.proj(context), self.p)
        return x + self.dropout(self.fc2(F.gelu(self.fc1(self.ln2(x)))), self.p)


def _fused_dropout(x, p):
    """The dropout CUDA runs (native_dropout): a 1-byte mask."""
    return torch.native_dropout(x, p, True)[0]


@pytest.mark.parametrize("dropout", [_fused_dropout, F.dropout], ids=["fused", "F.dropout"])
def test_a_gpt_layer_saves_what_korthikanti_et_al_count(dropout):
    """Activations a layer keeps for backward, fp16 with 1-byte dropout masks:
    s*b*h*(34 + 5*a*s/h) bytes (Korthikanti et al., "Reducing Activation Recomputation in
    Large Transformer Models", 2022, section 4.1), plus what the paper leaves out: each
    layer norm's mean and reciprocal deviation, s*b values each in fp32 (its accumulation
    type). The paper counts a layer's input (its first layer norm's); the layer here is
    charged its own output instead (what it makes): the same size. F.dropout off CUDA
    keeps its mask in the input's dtype: 2 bytes, a*s*s*b + 2*s*b*h bytes more."""
    s, b, h, a, n = 128, 2, 256, 8, 3
    with torch.device("meta"):
        model = torch.nn.Sequential(*(_GPTLayer(h, a, dropout) for _ in range(n))).half()
        x = torch.randn(s, b, h, dtype=torch.half)
    mem = _count(model, lambda: model(x)).memory
    paper = s * b * h * (34 + 5 * a * s // h)
    layer_norm_stats = 2 * 2 * s * b * 4
    wider_masks = 0 if dropout is _fused_dropout else a * s * s * b + 2 * s * b * h
    assert [mem.modules[str(i)].saved for i in range(n)] == [
        paper + layer_norm_stats + wider_masks] * n


# --- the counter stays what it was ---------------------------------------------------------

@pytest.fixture
def python_path(monkeypatch):
    """Counters built after ``force()`` take the Python per-op path; before, the C path."""
    monkeypatch.setattr(mode, "C_DISPATCH", True)
    return lambda: monkeypatch.setattr(mode, "C_DISPATCH", False)


def test_the_same_on_both_paths_and_flops_unchanged(python_path):
    """Memory measured on the C per-op path equals the Python path's; counting memory
    changes no other result."""
    def run(memory):
        torch.manual_seed(0)
        model, opt, x = _gpt2("cpu")
        with FlopCounterMode(model, count_bytes=True, count_memory=memory,
                             optimizer=opt if memory else None) as fc:
            _step(model, opt, x)
        return fc.results

    c, plain = run(True), run(False)
    python_path()
    py = run(True)
    assert c.memory == py.memory and c.memory.peak["cpu"] > 0
    c.memory = py.memory = None
    assert c == plain == py


def test_nothing_is_left_behind():
    """After the block, also one that raised: no hook on the parameters (not even an
    empty dict of them), no optimizer hook, storages' resize_ torch's own again, and the
    autograd graph freed as without the counter."""
    from torch.optim.optimizer import _global_optimizer_post_hooks, _global_optimizer_pre_hooks
    model, opt, x = _mlp("cpu")
    resize_before = vars(torch.UntypedStorage).get("resize_")  # (MemTracker leaves its own)
    for fails in (False, True):
        with pytest.raises(RuntimeError) if fails else torch.no_grad():
            with FlopCounterMode(model, count_memory=True, optimizer=opt) as fc:
                y = model(x)
                if fails:
                    raise RuntimeError("the user's")
        assert all(p._post_accumulate_grad_hooks is None for p in model.parameters())
        assert not _global_optimizer_pre_hooks and not _global_optimizer_post_hooks
        assert vars(torch.UntypedStorage).get("resize_") is resize_before  # torch's own
        assert fc._ledger is None and fc.results.memory.peak["cpu"] > 0
    saved = []  # the ReLU's output, which the graph keeps (the next Linear saves it)
    model[1].register_forward_hook(lambda m, i, out: saved.append(weakref.ref(out.untyped_storage())))
    with FlopCounterMode(model, count_memory=True):
        y = model(x)
    assert saved[0]() is not None
    del y
    assert saved[0]() is None


def test_an_optimizer_needs_count_memory():
    model = torch.nn.Linear(2, 2)
    with pytest.raises(ValueError, match="count_memory=True"):
        FlopCounterMode(model, optimizer=torch.optim.SGD(model.parameters()))
    with pytest.raises(TypeError, match="torch.optim.Optimizer"):
        FlopCounterMode(model, count_memory=True, optimizer=model)


def test_storages_it_cannot_read_are_listed_untracked():
    """A sparse tensor has no storage to read: counted as untracked, by kind."""
    x = torch.randn(8, 8)
    with FlopCounterMode(count_memory=True) as fc:
        s = x.to_sparse()
        torch.sparse.mm(s, x)
    assert fc.results.memory.untracked == {"sparse_coo": 1}


# --- the command ---------------------------------------------------------------------------

def test_the_command_reports_memtrackers_peak(tmp_path, capsys):
    """`--train --optimizer sgd --memory` on meta: the peak of the counted step (the
    second: the optimizer's state exists) is MemTracker's for the same step; the JSON
    result carries it and reads back equal; the summary says it, and whether it fits."""
    from dispatchflops import export
    from dispatchflops.cli import main
    from dispatchflops.formatting import memory_size
    out = tmp_path / "r.json"
    assert main(["resnet18", "--device", "meta", "--train", "--optimizer", "SGD", "--memory",
                 "--format", "json", "--output", str(out)]) == 0
    res = export.load(out)
    torch.manual_seed(0)
    model = torchvision.models.resnet18().to("meta").train()
    opt = torch.optim.SGD(model.parameters())
    x = torch.randn(1, 3, 224, 224, device="meta")

    def step():
        model.zero_grad(set_to_none=True)
        model(x).sum().backward()
        opt.step()

    step()
    theirs = {d: snap["Total"] for d, snap in _their_peak(_run_memtracker(step, model, x)).items()}
    assert res.memory.peak == theirs
    assert main(["resnet18", "--device", "meta", "--train", "--optimizer", "SGD", "--memory",
                 "--device-spec", "l4", "--max-depth", "0"]) == 0
    text = capsys.readouterr().out
    peak = theirs["meta"]
    assert f"Peak memory on meta: {memory_size(peak)} in " in text
    assert (f"Fits on NVIDIA L4: {memory_size(peak)} of 24 GiB (its datasheet's), "
            f"{peak / 24 / 2**30:.1%}, {memory_size(24 * 2**30 - peak)} to spare") in text
    assert "#peak fwd" in text and "#peak bwd" in text and "#saved" in text


def test_a_memory_budget(capsys):
    """--max-memory: exit 1 over it, 0 under it; it implies --memory; a malformed size is
    one line and exit 2."""
    from dispatchflops.cli import main
    args = ["mobilenet_v3_small", "--device", "meta", "--max-depth", "0"]
    assert main([*args, "--max-memory", "1MiB"]) == 1
    err = capsys.readouterr().err
    assert err.startswith("dispatchflops: over budget: memory ") and "> 1MiB (--max-memory)" in err
    assert main([*args, "--max-memory", "1GiB"]) == 0
    assert "Peak memory on meta" in capsys.readouterr().out
    assert main([*args, "--memory", "--format", "markdown"]) == 0  # in the summary list too
    assert "- **Peak memory on meta**: " in capsys.readouterr().out
    assert main([*args, "--max-memory", "12Q"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "bad --max-memory '12Q'" in err


class _Discards(torch.nn.Module):
    def __init__(self, n):
        super().__init__()
        self.w = torch.nn.Parameter(torch.randn(n))

    def forward(self, x):
        t = x * self.w
        del t  # dies before the next op runs
        return x + self.w


def test_an_output_dropped_at_once_is_not_held():
    """Nothing the counter keeps holds an op's output: a product dropped before the next op
    is not live at that op's end (peak: parameter, input and one output, 3*n*4 bytes)."""
    n = 1000
    model, x = _Discards(n), torch.randn(n)
    mem = _count(model, lambda: model(x)).memory
    assert mem.peak["cpu"] == 3 * n * 4


# --- per rank ------------------------------------------------------------------------------

def _fsdp_tp_mlp(d, h):
    """An MLP, tensor-parallel over "tp" and fully sharded over "dp" (FSDP2), with AdamW."""
    from torch.distributed.device_mesh import init_device_mesh
    from torch.distributed.fsdp import fully_shard
    from torch.distributed.tensor.parallel import (ColwiseParallel, RowwiseParallel,
                                                   parallelize_module)
    torch.manual_seed(0)
    mesh = init_device_mesh("cpu", (2, 2), mesh_dim_names=("dp", "tp"))
    model = torch.nn.Sequential(torch.nn.Linear(d, h, bias=False), torch.nn.ReLU(),
                                torch.nn.Linear(h, d, bias=False))
    parallelize_module(model, mesh["tp"], {"0": ColwiseParallel(), "2": RowwiseParallel()})
    for unit in (model[0], model[2], model):
        fully_shard(unit, mesh=mesh["dp"])
    return model, torch.optim.AdamW(model.parameters())


# FSDPMemTracker's finer categories, as ours: the all-gathered parameters, the unsharded
# gradients and the reduce-scatter buffers are a step's temporaries
_FSDP_NAMES = {"parameters": ("SHARDED_PARAM",), "buffers": ("BUFFER",),
               "gradients": ("SHARDED_GRAD",), "optimizer": ("OPT",), "activations": ("ACT",),
               "temporaries": ("TEMP", "ALL_GATHER", "UNSHARDED_PARAM", "UNSHARDED_GRAD",
                               "REDUCE_SCATTER"),
               "inputs": ("INP",)}


def test_fsdp2_and_tensor_parallel_per_rank_as_fsdpmemtracker(fake_world):
    """One rank of FSDP2 x TP (2 x 2, fake group): its second training step's peak and
    breakdown equal PyTorch's FSDPMemTracker's; its parameters are its shards."""
    from torch.distributed._tools.fsdp2_mem_tracker import FSDPMemTracker
    fake_world(4)
    d, h, b = 64, 256, 8
    x = torch.randn(b, d)
    peaks = []
    for ours in (False, True):
        model, opt = _fsdp_tp_mlp(d, h)
        _step(model, opt, x)
        if ours:
            with FlopCounterMode(model, count_memory=True, optimizer=opt) as fc:
                _step(model, opt, x)
            peaks.append((fc.results.memory.peak["cpu"], fc.results.memory.breakdown["cpu"]))
        else:
            mt = FSDPMemTracker(model, opt)
            mt.track_inputs((x,))
            with mt:
                _step(model, opt, x)
            snap = _their_peak(mt)["cpu"]
            peaks.append((snap["Total"], _as_ours(snap, _FSDP_NAMES)))
    assert peaks[0] == peaks[1]
    assert peaks[1][1]["parameters"] == 2 * d * h * 4 // 4  # each rank: a quarter
    # per module: the local shards too
    assert fc.results.memory.modules[""].parameters == 2 * d * h * 4 // 4
    assert fc.results.memory.modules["0"].optimizer == 2 * (d * h * 4 // 4) + 4  # AdamW, step


def _llama_70b_rank(layers, checkpointed=True):
    """One rank of LLaMA-70B's shapes (``layers`` of its 80) under FSDP2 over 8 x TP over 8
    (a fake group of 64), each layer checkpointed or not, fp32 sharded parameters gathered in bf16
    (MixedPrecisionPolicy), AdamW, 4096 tokens; FakeTensors (FSDP2 trains no meta
    parameters), after one step."""
    import transformers
    from torch._subclasses.fake_tensor import FakeTensorMode
    from torch.distributed.device_mesh import init_device_mesh
    from torch.distributed.fsdp import MixedPrecisionPolicy, fully_shard
    from torch.distributed.tensor.parallel import parallelize_module

    from llama_plans import llama_tp_plan
    config = transformers.LlamaConfig(hidden_size=8192, intermediate_size=28672,
                                      vocab_size=32000, num_hidden_layers=layers,
                                      num_attention_heads=64, num_key_value_heads=8,
                                      attn_implementation="sdpa")
    mesh = init_device_mesh("cpu", (8, 8), mesh_dim_names=("dp", "tp"))
    with torch.device("meta"):
        model = transformers.LlamaForCausalLM(config)
    if checkpointed:
        model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
    parallelize_module(model, mesh["tp"], llama_tp_plan(layers))
    policy = MixedPrecisionPolicy(param_dtype=torch.bfloat16, reduce_dtype=torch.float32)
    for unit in (*model.model.layers, model):
        fully_shard(unit, mesh=mesh["dp"], mp_policy=policy)
    fake = FakeTensorMode(allow_non_fake_inputs=True)
    with fake:
        model.to_empty(device="cpu")
        model.train()
        opt = torch.optim.AdamW(model.parameters())
        ids = torch.zeros(1, 4096, dtype=torch.long)

    def step():
        model(input_ids=ids, labels=ids).loss.backward()
        opt.step()
        opt.zero_grad()

    with fake:
        step()
    return model, opt, ids, step, fake


@pytest.mark.parametrize("checkpointed", [False, True], ids=["plain", "checkpointed"])
def test_llama_70b_shaped_rank_as_fsdpmemtracker(fake_world, checkpointed):
    """Sizing one rank of a 64-GPU job on one CPU: the peak equals FSDPMemTracker's, byte
    for byte, and so does every category; parameters and optimizer state in closed form:
    each rank holds 1/64 of every TP-sharded weight (attention, MLP) and 1/8 of the others
    (embeddings, head, norms), in fp32; AdamW two fp32 states each and a 4-byte step per
    tensor. With each layer checkpointed, what a layer recomputes in backward is an
    activation here (as MemTracker files it) and a temporary in FSDPMemTracker's count:
    there, activations and temporaries are checked as their sum."""
    from torch.distributed._tools.fsdp2_mem_tracker import FSDPMemTracker
    fake_world(64)
    layers, d, f, kv, vocab = 2, 8192, 28672, 1024, 32000
    model, opt, ids, step, fake = _llama_70b_rank(layers, checkpointed)
    with fake:  # (entered first: MemTracker follows the ops of the fake mode it starts in)
        mt = FSDPMemTracker(model, opt)
        mt.track_inputs((ids,))
        with mt:
            step()
        with FlopCounterMode(model, count_memory=True, optimizer=opt) as fc:
            step()
    theirs = _their_peak(mt)["cpu"]
    mem = fc.results.memory
    ours = mem.breakdown["cpu"]
    assert mem.peak == {"cpu": theirs["Total"]}
    sharded = layers * (2 * d * d + 2 * d * kv + 3 * d * f) // 64 + (layers * 2 * d + 2 * vocab * d + d) // 8
    assert ours["parameters"] == 4 * sharded
    assert ours["optimizer"] == 2 * 4 * sharded + 4 * (layers * 9 + 3)
    theirs_by_ours = _as_ours(theirs, _FSDP_NAMES)
    moved = ours["activations"] - theirs["ACT"]
    assert (moved > 0) == checkpointed
    assert theirs_by_ours["temporaries"] - ours["temporaries"] == moved
    theirs_by_ours["activations"] += moved
    theirs_by_ours["temporaries"] -= moved
    assert ours == theirs_by_ours


def test_ddp_on_a_gloo_rank_as_memtracker(tmp_path):
    """A DDP training step (SGD with momentum) on a gloo rank: peak and every category
    equal MemTracker's. (DDP's gradient buckets are allocated by its reducer outside the
    dispatcher, before the step: neither count sees them.)"""
    import torch.distributed as dist
    from torch.nn.parallel import DistributedDataParallel as DDP
    dist.init_process_group("gloo", init_method=f"file://{tmp_path / 'store'}", rank=0,
                            world_size=1)
    try:
        def make():
            torch.manual_seed(0)
            m = DDP(torch.nn.Sequential(torch.nn.Linear(64, 256), torch.nn.ReLU(),
                                        torch.nn.Linear(256, 64)), bucket_cap_mb=0.01)
            opt = torch.optim.SGD(m.parameters(), lr=0.1, momentum=0.9)
            x = torch.randn(8, 64)
            _step(m, opt, x)
            return m, opt, x

        m, opt, x = make()
        theirs = _their_peak(_run_memtracker(lambda: _step(m, opt, x), m, opt, x))["cpu"]
        m, opt, x = make()
        with FlopCounterMode(m, count_memory=True, optimizer=opt) as fc:
            _step(m, opt, x)
    finally:
        dist.destroy_process_group()
    mem = fc.results.memory
    assert mem.peak == {"cpu": theirs["Total"]}
    assert mem.breakdown["cpu"] == _as_ours(theirs, _MT_NAMES)


def test_nested_counters_each_follow_memory():
    """Two counters with memory, one inside the other around the same step: the same
    figures; both leave storages' resize_ as it was."""
    model, opt, x = _mlp("cpu")
    _step(model, opt, x)
    resize_before = vars(torch.UntypedStorage).get("resize_")
    with FlopCounterMode(model, count_memory=True, optimizer=opt) as outer:
        with FlopCounterMode(model, count_memory=True, optimizer=opt) as inner:
            _step(model, opt, x)
    assert outer.results.memory == inner.results.memory
    assert outer.results.memory.peak["cpu"] > 0
    assert vars(torch.UntypedStorage).get("resize_") is resize_before


@pytest.mark.parametrize("sequence_parallel", [False, True], ids=["TP", "TP+SP"])
def test_a_gpt_layer_per_rank_as_korthikanti_et_al(fake_world, sequence_parallel):
    """The same layers over t ranks (Megatron's plan: QKV and h -> 4h column-parallel,
    the projection and 4h -> h row-parallel), per rank, fp16, 1-byte masks:
    s*b*h*(10 + 24/t + 5*a*s/(h*t)) bytes with tensor parallelism, s*b*h*(34/t +
    5*a*s/(h*t)) with sequence parallelism too (Korthikanti et al., 2022, sections 4.2.2 and
    4.2.3), plus the layer norms' fp32 statistics (of the tokens a rank normalises). With
    sequence parallelism, Megatron keeps only its shard of the inputs of QKV and h -> 4h
    and gathers them again in backward; DTensor's ColwiseParallel keeps what it gathered:
    2*(2*s*b*h)*(1 - 1/t) bytes more."""
    from torch.distributed.device_mesh import init_device_mesh
    from torch.distributed.tensor import Shard
    from torch.distributed.tensor.parallel import (ColwiseParallel, RowwiseParallel,
                                                   SequenceParallel, parallelize_module)
    t = fake_world(4)
    s, b, h, a, n = 128, 2, 256, 8, 3
    with torch.device("meta"):
        model = torch.nn.Sequential(*(_GPTLayer(h, a, _fused_dropout) for _ in range(n))).half()
    plan = {}
    for i in range(n):
        if sequence_parallel:
            plan.update({f"{i}.ln1": SequenceParallel(sequence_dim=0, use_local_output=True),
                         f"{i}.qkv": ColwiseParallel(input_layouts=Shard(0)),
                         f"{i}.proj": RowwiseParallel(output_layouts=Shard(0)),
                         f"{i}.ln2": SequenceParallel(sequence_dim=0, use_local_output=True),
                         f"{i}.fc1": ColwiseParallel(input_layouts=Shard(0)),
                         f"{i}.fc2": RowwiseParallel(output_layouts=Shard(0))})
        else:
            plan.update({f"{i}.qkv": ColwiseParallel(), f"{i}.proj": RowwiseParallel(),
                         f"{i}.fc1": ColwiseParallel(), f"{i}.fc2": RowwiseParallel()})
    parallelize_module(model, init_device_mesh("cpu", (t,)), plan)
    tokens = s // t if sequence_parallel else s  # what a rank holds of the residual stream
    x = torch.randn(tokens, b, h, dtype=torch.half, device="meta")
    mem = _count(model, lambda: model(x)).memory
    sbh = s * b * h
    if sequence_parallel:
        paper = sbh * 34 // t + 5 * a * s * s * b // t
        gathered = 2 * (2 * sbh) * (t - 1) // t
    else:
        paper = sbh * 10 + sbh * 24 // t + 5 * a * s * s * b // t
        gathered = 0
    stats = 2 * 2 * tokens * b * 4
    assert [mem.modules[str(i)].saved for i in range(n)] == [paper + gathered + stats] * n
