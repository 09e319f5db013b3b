"""Transformers models from configs (no download): closed forms, attention
implementations, devices, generation and mixture of experts."""
import pytest
import torch
import transformers
from torch._subclasses.fake_tensor import FakeTensorMode
from transformers import AutoConfig, AutoModel, AutoModelForCausalLM

from dispatchflops import FlopCounterMode
from dispatchflops.cli import main
from dispatchflops.generation import count_generate


def count(model, **inputs):
    with torch.no_grad(), FlopCounterMode(model) as fc:
        model(**inputs)
    return fc


def tokens(batch, seq, device="cpu", vocab=100):
    return torch.randint(0, vocab, (batch, seq), device=device)


def decoder_closed_form(cfg, n_tokens, lm_head_tokens):
    """2 x tokens x (every matmul's parameters) + QK^T and PV of every layer, counted in
    full (a causal mask does not halve what the kernels execute)."""
    h, layers = cfg.hidden_size, cfg.num_hidden_layers
    head_dim = getattr(cfg, "head_dim", None) or h // cfg.num_attention_heads
    q = cfg.num_attention_heads * head_dim
    kv = cfg.num_key_value_heads * head_dim
    per_layer = h * q + 2 * h * kv + q * h + 3 * h * cfg.intermediate_size
    matmuls = 2 * n_tokens * per_layer * layers + 2 * lm_head_tokens * h * cfg.vocab_size
    attention = layers * 2 * 2 * n_tokens * n_tokens * q
    return matmuls + attention


def test_llama_7b_closed_form_on_meta():
    cfg = transformers.LlamaConfig()
    with torch.device("meta"):
        model = transformers.LlamaForCausalLM(cfg)
    assert sum(p.numel() for p in model.parameters()) == 6_738_415_616
    fc = count(model, input_ids=tokens(1, 2048, "meta", cfg.vocab_size))
    assert fc.get_total_flops() == decoder_closed_form(cfg, 2048, 2048) == 29_261_612_187_648
    assert fc.results.modules[""].params == 6_738_415_616


def test_gpt2_small_closed_form():
    cfg = transformers.GPT2Config()
    with torch.device("meta"):
        model = transformers.GPT2LMHeadModel(cfg)
    fc = count(model, input_ids=tokens(1, 1024, "meta", cfg.vocab_size))
    h, t = cfg.n_embd, 1024
    per_layer = h * 3 * h + h * h + h * 4 * h + 4 * h * h  # c_attn, attn c_proj, c_fc, mlp c_proj
    expected = 2 * t * (cfg.n_layer * per_layer + h * cfg.vocab_size) + cfg.n_layer * 2 * 2 * t * t * h
    assert fc.get_total_flops() == expected == 291_648_307_200


def test_bert_base_closed_form():
    cfg = transformers.BertConfig()
    with torch.device("meta"):
        model = transformers.BertModel(cfg)
    fc = count(model, input_ids=tokens(1, 128, "meta", cfg.vocab_size))
    h, t, i = cfg.hidden_size, 128, cfg.intermediate_size
    per_layer = 4 * h * h + 2 * h * i
    pooler = 2 * 1 * h * h  # the [CLS] token only
    expected = 2 * t * cfg.num_hidden_layers * per_layer + pooler \
        + cfg.num_hidden_layers * 2 * 2 * t * t * h
    assert fc.get_total_flops() == expected


SMALL = {
    "bert": dict(num_hidden_layers=2, hidden_size=64, num_attention_heads=4, intermediate_size=128, vocab_size=100),
    "gpt2": dict(n_layer=2, n_embd=64, n_head=4, vocab_size=100),
    "llama": dict(num_hidden_layers=2, hidden_size=64, num_attention_heads=4, num_key_value_heads=2,
                  intermediate_size=128, vocab_size=100),
}


@pytest.mark.parametrize("model_type", sorted(SMALL))
def test_attention_implementations_count_the_same(model_type):
    results = []
    for impl in ("eager", "sdpa"):
        cfg = AutoConfig.for_model(model_type, **SMALL[model_type])
        model = AutoModel.from_config(cfg, attn_implementation=impl).eval()
        results.append(count(model, input_ids=tokens(2, 16)).get_total_flops())
    assert results[0] == results[1] > 0


@pytest.mark.parametrize("model_type", sorted(SMALL))
def test_meta_and_fake_equal_cpu(model_type):
    cfg = AutoConfig.for_model(model_type, **SMALL[model_type])
    cpu = count(AutoModel.from_config(cfg).eval(), input_ids=tokens(2, 16))
    with torch.device("meta"):
        meta_model = AutoModel.from_config(cfg).eval()
    meta = count(meta_model, input_ids=tokens(2, 16, "meta"))
    with FakeTensorMode():
        fake_model = AutoModel.from_config(cfg).eval()
        fake = count(fake_model, input_ids=tokens(2, 16))
    # On the CPU attention runs the fused kernel, on meta its math decomposition (two
    # bmm): the op names differ, the counts do not.
    def per_module(fc):
        return {p: (m.flops, m.activations) for p, m in fc.results.modules.items()}

    assert per_module(cpu) == per_module(meta) == per_module(fake)
    assert cpu.get_total_flops() > 0


def test_generation_prefill_and_decode_steps_closed_form():
    cfg = transformers.LlamaConfig(**SMALL["llama"])
    model = transformers.LlamaForCausalLM(cfg).eval()
    prompt, new = 10, 6
    g = count_generate(model, input_ids=tokens(1, prompt), max_new_tokens=new,
                       min_new_tokens=new, do_sample=False)
    # generate computes logits for the last position only
    assert g.prefill == decoder_closed_form(cfg, prompt, 1)
    assert len(g.decode_steps) == new - 1
    for i, step in enumerate(g.decode_steps):
        cache = prompt + i + 1  # the new token attends to the whole cache, itself included
        matmuls = decoder_closed_form(cfg, 1, 1) - decoder_closed_form(cfg, 0, 0) \
            - cfg.num_hidden_layers * 2 * 2 * 64  # (the n_tokens^2 term at n=1)
        attention = cfg.num_hidden_layers * 2 * 2 * cache * 64
        assert step == matmuls + attention
    assert g.counter.get_total_flops() == g.total


@pytest.mark.parametrize("experts", ["grouped_mm", "eager"])
def test_mixture_of_experts_counts_routed_experts_only(experts):
    h, inter, n_exp, top_k, t = 64, 128, 8, 2, 12
    cfg = AutoConfig.for_model("mixtral", hidden_size=h, intermediate_size=inter, num_hidden_layers=1,
                               num_attention_heads=4, num_key_value_heads=2, vocab_size=100,
                               num_local_experts=n_exp, num_experts_per_tok=top_k)
    model = AutoModelForCausalLM.from_config(cfg, experts_implementation=experts).eval()
    fc = count(model, input_ids=tokens(1, t))
    moe = fc.results.modules["model.layers.0.mlp"]
    experts_cost = fc.results.modules["model.layers.0.mlp.experts"]
    # every token runs through top_k experts: gate+up (h -> 2 inter) and down (inter -> h)
    assert experts_cost.flops == 2 * t * top_k * 3 * h * inter
    assert moe.flops == experts_cost.flops + 2 * t * h * n_exp  # plus the router
    calls = sum(experts_cost.op_calls.values())
    if experts == "grouped_mm":
        assert experts_cost.op_calls == {"aten._grouped_mm": 2}
    else:  # two matmuls per expert that received tokens: at most all of them
        assert 2 <= calls <= 2 * n_exp and calls % 2 == 0


@pytest.mark.parametrize("argv,expect", [
    (["hf:bert", "--config", "num_hidden_layers=1", "--seq-len", "16"], "Input: input_ids (1, 16), attention_mask (1, 16)"),
    (["hf:llama", "--config", "num_hidden_layers=1", "--task", "causal-lm", "--device", "meta", "--seq-len", "32"], "Input: input_ids (1, 32)"),
    (["hf:t5", "--config", "num_layers=1", "--config", "num_decoder_layers=1", "--seq-len", "8"], "decoder_input_ids (1, 8)"),
    (["hf:vit", "--config", "num_hidden_layers=1"], "Input: pixel_values (1, 3, 224, 224)"),
    (["hf:clip", "--config", "text_config={\"num_hidden_layers\": 1}", "--config", "vision_config={\"num_hidden_layers\": 1}"], "input_ids (1, 77)"),
    (["hf:mistral", "--config", "num_hidden_layers=1", "--config", "hidden_size=64", "--config", "intermediate_size=64", "--config", "num_attention_heads=4", "--config", "num_key_value_heads=2", "--seq-len", "8"], "Flops:"),
    (["hf:qwen2", "--config", "num_hidden_layers=1", "--device", "meta", "--seq-len", "8"], "Flops:"),
    (["hf:mixtral", "--config", "num_hidden_layers=1", "--config", "hidden_size=64", "--config", "intermediate_size=64", "--config", "num_attention_heads=4", "--config", "num_key_value_heads=2", "--seq-len", "8"], "Flops:"),
])
def test_cli_hf_models(argv, expect, capsys):
    assert main(argv + ["--max-depth", "1"]) == 0
    assert expect in capsys.readouterr().out


def test_cli_hf_bad_input(capsys):
    assert main(["hf:nosuchmodel"]) == 2
    assert "hf:nosuchmodel" in capsys.readouterr().err
    assert main(["hf:bert", "--config", "oops"]) == 2
    assert "expected key=value" in capsys.readouterr().err


def test_cli_generate(capsys):
    small = ["--config", "num_hidden_layers=2", "--config", "hidden_size=64",
             "--config", "intermediate_size=128", "--config", "num_attention_heads=4",
             "--config", "num_key_value_heads=2", "--config", "vocab_size=100"]
    assert main(["hf:llama", *small, "--task", "causal-lm", "--seq-len", "10", "--generate", "5",
                 "--convention", "pytorch", "--max-depth", "1"]) == 0
    cfg = transformers.LlamaConfig(**SMALL["llama"])
    prefill = decoder_closed_form(cfg, 10, 1)
    assert f"Generation: prefill {prefill / 1e6:.3f}M, 4 decode steps" in capsys.readouterr().out
    assert main(["resnet18", "--generate", "3"]) == 2
    assert "--generate K needs an hf: causal language model" in capsys.readouterr().err
