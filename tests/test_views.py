"""Views: containers rolled up, exact self cost (also for a module called outside its
parent), module rows by depth and sort, top-K, per-op totals."""
import pytest
import torch

from dispatchflops import FlopCounterMode, views
from dispatchflops.table import _per_module
from report_models import tiny


@pytest.fixture(scope="module")
def counted():
    model = tiny()
    with FlopCounterMode(model, convention="fvcore", count_bytes=True) as fc:
        model(torch.randn(1, 3, 8, 8))
    return model, fc.results


def test_tiny_numbers_by_hand(counted):
    _, r = counted
    m = r.modules
    assert r.total.flops == 3080 and r.total.activations == 770 and r.total.params == 66
    assert (m["stem"].flops, m["blocks.0"].flops, m["head.pool"].flops, m["head.fc"].flops) == \
        (768, 1024, 256, 8)
    # head.fc runs outside head: head's inclusive cost is its pooling only
    assert m["head"].flops == 256


def test_self_cost_is_exact(counted):
    _, r = counted
    m = r.modules
    assert {p: c.self_flops for p, c in m.items()} == {
        "": 0, "stem": 768, "blocks": 0, "blocks.0": 1024, "blocks.1": 1024,
        "head": 0, "head.pool": 256, "head.fc": 8}
    assert {p: c.self_activations for p, c in m.items() if c.self_activations} == {
        "stem": 256, "blocks.0": 256, "blocks.1": 256, "head.fc": 2}
    # every op has exactly one innermost module (or none): self costs add up to the total
    assert sum(c.self_flops for c in m.values()) + r.total.self_flops == r.total.flops
    # inclusive minus children would make head negative (256 - 256 - 8)
    assert m["head"].flops - m["head.pool"].flops - m["head.fc"].flops == -8


def test_self_cost_of_ops_outside_any_module():
    model = torch.nn.Linear(4, 4)
    x = torch.randn(2, 4)
    with FlopCounterMode(model) as fc:
        y = model(x)
        y @ y.T  # 2x4 @ 4x2: 16 multiply-adds, 32 FLOPs, outside the model
    r = fc.results
    assert r.total.self_flops == 32
    assert r.modules[""].self_flops == r.modules[""].flops == 64
    assert r.total.flops == 96


def test_containers_roll_up_like_mmengines_table(counted):
    model, r = counted
    costs = views.module_costs(r)
    assert r.modules["blocks"].flops == 0  # the count follows the call stack
    assert costs["blocks"].flops == 2048 and costs["blocks"].activations == 512
    assert costs["blocks"].by_op == {"aten.convolution": 2048}
    assert costs["blocks"].op_calls == {"aten.convolution": 2}
    assert costs["blocks"].self_flops == 0
    assert costs["stem"] is r.modules["stem"]
    flops, acts = _per_module(model, r)
    assert flops == {p: c.flops for p, c in costs.items()}
    assert acts == {p: c.activations for p, c in costs.items()}


def test_module_rows_tree_order_depth_and_sort(counted):
    _, r = counted
    rows = views.module_rows(r)
    assert [(x["module"], x["depth"]) for x in rows] == [
        ("", 0), ("stem", 1), ("blocks", 1), ("blocks.0", 2), ("blocks.1", 2),
        ("head", 1), ("head.pool", 2), ("head.fc", 2)]
    assert tuple(rows[0]) == views.MODULE_COLUMNS
    assert [x["module"] for x in views.module_rows(r, max_depth=1)] == ["", "stem", "blocks", "head"]
    assert [x["module"] for x in views.module_rows(r, sort="flops")] == [
        "", "blocks", "blocks.0", "blocks.1", "stem", "head", "head.pool", "head.fc"]
    assert [x["module"] for x in views.module_rows(r, sort="params")] == [
        "", "blocks", "blocks.0", "blocks.1", "stem", "head", "head.fc", "head.pool"]
    by_path = {x["module"]: x for x in rows}
    assert by_path["stem"]["share"] == 768 / 3080
    assert by_path["head"]["self_params"] == 0 and by_path["head.fc"]["self_params"] == 10
    assert by_path["blocks"]["self_params"] == 0 and by_path[""]["self_params"] == 0


def test_module_rows_skip_zero():
    model = torch.nn.Sequential(torch.nn.Linear(4, 4), torch.nn.ReLU())
    with FlopCounterMode(model) as fc:
        model(torch.randn(1, 4))
    assert [x["module"] for x in views.module_rows(fc.results)] == ["", "0", "1"]
    assert [x["module"] for x in views.module_rows(fc.results, skip_zero=True)] == ["", "0"]


def test_top_rows(counted):
    _, r = counted
    top = views.top_rows(r, 3)
    assert [(x["rank"], x["module"], x["flops"], x["self_flops"]) for x in top] == [
        (1, "blocks", 2048, 0), (2, "blocks.0", 1024, 1024), (3, "blocks.1", 1024, 1024)]
    top = views.top_rows(r, 2, sort="params", max_depth=1)
    assert [(x["module"], x["params"], x["self_params"]) for x in top] == [
        ("blocks", 40, 0), ("stem", 16, 16)]
    assert len(views.top_rows(r, 100)) == 7  # every module but the model
    with pytest.raises(ValueError):
        views.top_rows(r, 0)


def test_op_rows(counted):
    _, r = counted
    rows = views.op_rows(r)
    flop_keys = ("op", "calls", "flops", "share", "comm_bytes")
    assert [{k: x[k] for k in flop_keys} for x in rows[:3]] == [
        {"op": "aten.convolution", "calls": 3, "flops": 2816, "share": 2816 / 3080,
         "comm_bytes": 0},
        {"op": "aten.mean", "calls": 1, "flops": 256, "share": 256 / 3080, "comm_bytes": 0},
        {"op": "aten.addmm", "calls": 1, "flops": 8, "share": 8 / 3080, "comm_bytes": 0}]
    # then the ops with bytes and no FLOPs, largest first; every op's bytes as counted
    rest = rows[3:]
    assert rest and all(x["flops"] == 0 for x in rest)
    assert [x["bytes"] for x in rest] == sorted((x["bytes"] for x in rest), reverse=True)
    assert {x["op"]: x["bytes"] for x in rows} == dict(r.total.bytes_by_op)


def test_phases_and_training_split():
    model = tiny()
    with FlopCounterMode(model, convention="fvcore") as fc:
        model(torch.randn(1, 3, 8, 8)).sum().backward()
    r = fc.results
    assert views.phases_run(r) == ("forward", "backward")
    row = {x["module"]: x for x in views.module_rows(r)}["blocks.0"]
    # a 1x1 conv's backward: input and weight gradients, each as costly as the forward
    assert (row["forward_flops"], row["backward_flops"], row["flops"]) == (1024, 2048, 3072)


def test_tree_without_a_model():
    tree = views.Tree(["Net", "Net.a", "Net.a.b", "Other"])
    assert tree.roots == ["Net", "Other"]
    assert tree.depth == {"Net": 0, "Net.a": 1, "Net.a.b": 2, "Other": 0}
    assert views.Tree(["", "a.b"]).parent == {"": None, "a.b": ""}


def test_recomputation_gets_its_column():
    from torch.utils.checkpoint import checkpoint

    from dispatchflops.export import human_columns
    from dispatchflops.reports import module_table

    class Checkpointed(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.inner = torch.nn.Sequential(torch.nn.Linear(4, 4), torch.nn.ReLU())

        def forward(self, x):
            return checkpoint(self.inner, x, use_reentrant=False)

    model = torch.nn.Sequential(torch.nn.Linear(4, 4), Checkpointed())
    with FlopCounterMode(model) as fc:  # pytorch convention: a 2x4 @ 4x4 addmm is 64
        model(torch.randn(2, 4)).sum().backward()
    r = fc.results
    assert views.phases_run(r) == ("forward", "backward", "recompute")
    row = {x["module"]: x for x in views.module_rows(r)}["1.inner.0"]
    assert (row["forward_flops"], row["recompute_flops"], row["backward_flops"]) == (64, 64, 128)
    assert human_columns("modules", views.phases_run(r))[3:6] == [
        "forward_flops", "backward_flops", "recompute_flops"]
    table = module_table(model, r, 3, None, views.phases_run(r))
    assert [c.strip() for c in table.splitlines()[2].strip("|").split("|")][-4:] == [
        "share", "#forward", "#backward", "#recompute"]
