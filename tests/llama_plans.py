"""Megatron's tensor-parallel plan for transformers' LLaMA, shared by the tests that size
LLaMA-70B's shapes on a fake process group."""
from torch.distributed.tensor.parallel import ColwiseParallel, RowwiseParallel


def llama_tp_plan(layers: int) -> dict:
    """q, k, v, gate and up column-parallel; o and down row-parallel, in each layer."""
    plan = {}
    for i in range(layers):
        for name in ("q_proj", "k_proj", "v_proj", "o_proj"):
            plan[f"model.layers.{i}.self_attn.{name}"] = (
                RowwiseParallel() if name == "o_proj" else ColwiseParallel())
        for name in ("gate_proj", "up_proj", "down_proj"):
            plan[f"model.layers.{i}.mlp.{name}"] = (
                RowwiseParallel() if name == "down_proj" else ColwiseParallel())
    return plan
