"""Higher-order operators: they run as without the counter and never raise from it;
flex_attention (forward and backward) is counted with torch's attention formulas, and the
blocks its BlockMask runs are counted apart; any other HOP is listed as not counted."""
import warnings

import pytest
import torch
from torch._higher_order_ops.flex_attention import flex_attention as flex_attention_hop
from torch._subclasses.fake_tensor import FakeTensorMode
from torch.nn.attention.flex_attention import (_create_empty_block_mask, _identity,
                                               create_block_mask, flex_attention)
from torch.utils.flop_counter import sdpa_backward_flop_count, sdpa_flop_count

from dispatchflops import FlopCounterMode

FLEX = "higher_order.flex_attention"
FLEX_BACKWARD = "higher_order.flex_attention_backward"


@pytest.fixture(autouse=True)
def _quiet():
    with warnings.catch_warnings():  # flex_attention's "called without torch.compile"
        warnings.simplefilter("ignore")
        yield


def causal(b, h, q, k):
    return q >= k


def window(b, h, q, k):
    return (q - k).abs() < 50


def qkv(batch=2, heads=4, q_len=256, kv_len=256, dim=64, kv_heads=None, **kw):
    q = torch.randn(batch, heads, q_len, dim, **kw)
    k, v = (torch.randn(batch, kv_heads or heads, kv_len, dim, **kw) for _ in range(2))
    return q, k, v


def tiles_run_elements(mask_mod, q_len, kv_len, q_block, kv_block):
    """Score-matrix elements in the tiles where mask_mod keeps anything, from the dense
    mask (not from a BlockMask)."""
    keep = mask_mod(0, 0, torch.arange(q_len)[:, None], torch.arange(kv_len)[None, :])
    total = 0
    for i in range(0, q_len, q_block):
        for j in range(0, kv_len, kv_block):
            tile = keep[i:i + q_block, j:j + kv_block]
            total += tile.numel() if tile.any() else 0
    return total


def test_flex_attention_forward_runs_and_counts_dense():
    q, k, v = qkv()
    want = flex_attention(q, k, v)
    with FlopCounterMode() as fc:
        got = flex_attention(q, k, v)
    assert torch.equal(got, want)
    dense = sdpa_flop_count(q.shape, k.shape, v.shape)  # torch's formula
    assert dense == 4 * 2 * 4 * 256 * 256 * 64
    assert fc.get_total_flops() == dense
    assert fc.get_flop_counts()["Global"] == {torch.ops.higher_order.flex_attention: dense}
    assert fc.results.total.by_op == {FLEX: dense}
    assert fc.results.blocks_run == {FLEX: dense}  # no mask: every block runs
    assert not any("flex" in op for op in fc.results.unsupported)


@pytest.mark.parametrize("mask_mod,q_len,kv_len,block", [
    (causal, 256, 256, 128),
    (window, 200, 300, (64, 128)),  # rows and columns cut at the sequence ends
])
def test_flex_attention_blocks_run(mask_mod, q_len, kv_len, block):
    q, k, v = qkv(q_len=q_len, kv_len=kv_len)
    mask = create_block_mask(mask_mod, None, None, q_len, kv_len, device="cpu", BLOCK_SIZE=block)
    want = flex_attention(q, k, v, block_mask=mask)
    with FlopCounterMode() as fc:
        got = flex_attention(q, k, v, block_mask=mask)
    assert torch.equal(got, want)
    dense = sdpa_flop_count(q.shape, k.shape, v.shape)
    q_block, kv_block = block if isinstance(block, tuple) else (block, block)
    per_element = dense // (2 * 4 * q_len * kv_len)
    run = tiles_run_elements(mask_mod, q_len, kv_len, q_block, kv_block) * 2 * 4 * per_element
    assert fc.get_total_flops() == dense
    assert fc.results.blocks_run == {FLEX: run}
    if mask_mod is causal:
        assert run == dense * 3 // 4  # 3 of the 4 tiles


def test_flex_attention_masks_per_batch_and_head():
    """A mask of its own for each sequence and head (documents of different lengths)."""
    lengths = torch.tensor([[64, 200, 256, 100], [256, 32, 128, 160]])  # (batch, head)

    def prefix(b, h, q, k):
        return (q < lengths[b, h]) & (k < lengths[b, h]) & (q >= k)

    q, k, v = qkv(q_len=256, kv_len=256)
    mask = create_block_mask(prefix, 2, 4, 256, 256, device="cpu", BLOCK_SIZE=64)
    with FlopCounterMode() as fc:
        flex_attention(q, k, v, block_mask=mask)
    per_element = sdpa_flop_count(q.shape, k.shape, v.shape) // (2 * 4 * 256 * 256)
    elements = sum(tiles_run_elements(lambda _, __, qi, ki: prefix(b, h, qi, ki), 256, 256, 64, 64)
                   for b in range(2) for h in range(4))
    assert fc.results.blocks_run == {FLEX: elements * per_element}


def test_a_failure_reading_masks_at_exit_still_leaves_nothing_behind(monkeypatch):
    from dispatchflops import blockmask, tracker

    def fail(self):
        raise RuntimeError("device lost")

    monkeypatch.setattr(blockmask.BlockMasks, "blocks_run", fail)
    q, k, v = qkv()
    with pytest.raises(RuntimeError, match="device lost"):
        with FlopCounterMode():
            flex_attention(q, k, v)
    assert tracker._HOLDER == [()] and tracker._TORCH_CALL.__code__ is tracker._TORCH_CODE


def test_a_mask_that_cannot_be_read_at_exit_leaves_nothing_behind(monkeypatch):
    from dispatchflops import blockmask, tracker

    monkeypatch.setattr(blockmask, "_tiles_flops", lambda *a: 1 // 0)
    q, k, v = qkv()
    with FlopCounterMode() as fc:
        flex_attention(q, k, v)
    assert fc.get_total_flops() == 4 * 2 * 4 * 256 * 256 * 64 and fc.results.blocks_run == {}
    assert tracker._HOLDER == [()] and tracker._TORCH_CALL.__code__ is tracker._TORCH_CODE


def test_flex_attention_gqa_counts_query_heads():
    q, k, v = qkv(heads=8, kv_heads=2)
    with FlopCounterMode() as fc:
        flex_attention(q, k, v, enable_gqa=True)
    assert fc.get_total_flops() == 4 * 2 * 8 * 256 * 256 * 64


class Attention(torch.nn.Module):
    def __init__(self, mask):
        super().__init__()
        self.mask = mask

    def forward(self, q, k, v):
        # the HOP itself: torch's flex_attention refuses backward on the CPU
        out, _, _ = flex_attention_hop(q, k, v, _identity, self.mask.as_tuple(), 0.125,
                                       {"OUTPUT_LOGSUMEXP": True, "OUTPUT_MAX": False})
        return out


@pytest.mark.parametrize("masked", [False, True])
def test_flex_attention_backward_counted_in_its_module(masked):
    q, k, v = qkv(requires_grad=True)
    mask = (create_block_mask(causal, None, None, 256, 256, device="cpu") if masked
            else _create_empty_block_mask(q, k))
    model = torch.nn.ModuleDict({"attention": Attention(mask)})

    def step():
        out = model["attention"](q, k, v)
        return (out, *torch.autograd.grad(out.sum(), (q, k, v)))

    want = step()
    with FlopCounterMode(model) as fc:
        got = step()
    assert all(map(torch.equal, got, want))
    forward = sdpa_flop_count(q.shape, k.shape, v.shape)
    backward = sdpa_backward_flop_count(q.shape, q.shape, k.shape, v.shape)
    assert backward == 10 * 2 * 4 * 256 * 256 * 64
    attention = fc.results.modules["attention"]
    assert attention.phase_flops == {"forward": forward, "backward": backward, "recompute": 0}
    assert attention.by_op == {FLEX: forward, FLEX_BACKWARD: backward}
    share = 3 / 4 if masked else 1
    assert fc.results.blocks_run == {FLEX: int(forward * share),
                                     FLEX_BACKWARD: int(backward * share)}


def test_flex_attention_on_fake_tensors_counts_dense_only():
    with FakeTensorMode():
        q, k, v = qkv()
        mask = create_block_mask(causal, None, None, 256, 256, device="cpu")
        with FlopCounterMode() as fc:
            flex_attention(q, k, v, block_mask=mask)
    assert fc.get_total_flops() == 4 * 2 * 4 * 256 * 256 * 64
    assert fc.results.blocks_run == {}  # a fake mask has no blocks to read


def test_other_hops_run_and_are_listed_not_counted():
    def f(x):
        return torch.cond(x.sum() > 0, lambda x: x @ x, lambda x: x + 1, (x,))

    x = torch.randn(4, 4)
    want = f(x)
    with FlopCounterMode() as fc:
        got = f(x)
    assert torch.equal(got, want)
    assert fc.results.unsupported["higher_order.cond"] == 1
    assert fc.get_total_flops() == 0


def test_hop_formula_can_be_registered_per_counter():
    q, k, v = qkv()
    with FlopCounterMode(formulas={torch.ops.higher_order.flex_attention:
                                   lambda q, k, v, *rest, out: 7}) as fc:
        flex_attention(q, k, v)
    assert fc.get_total_flops() == 7
