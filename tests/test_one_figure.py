"""One figure wherever a model runs: every torchvision classification model, a sample of
timm's and Hugging Face's, counted on the CPU under no_grad (where PyTorch takes its fast
paths), with grad, under inference_mode, on the meta device and under FakeTensor, in both
conventions: the same FLOPs and activations each time."""
import pytest
import torch
import torchvision.models as tvm
from torch._subclasses.fake_tensor import FakeTensorMode
from torchvision.models import get_model, list_models

from dispatchflops import FlopCounterMode

WHERE = ("no_grad", "grad", "inference_mode", "meta", "fake")


def counts(build, make_inputs, conventions=("pytorch", "fvcore")):
    """{(where, convention): (FLOPs, activations)} of ``build()`` called on
    ``make_inputs()`` (positional arguments). The model is built once on the CPU, and
    once on meta and under FakeTensor where its constructor allows (else the CPU one is
    converted, after its own runs)."""
    cpu = build()
    models = {"no_grad": cpu, "grad": cpu, "inference_mode": cpu}
    fake = FakeTensorMode(allow_non_fake_inputs=True)
    for where, context in (("meta", torch.device("meta")), ("fake", fake)):
        try:
            with context:
                models[where] = build()
        except Exception:  # a constructor that reads data
            models[where] = None
    found = {}
    for where in WHERE:
        model, inputs = models[where], make_inputs()
        if where == "fake":
            model = model or cpu._apply(fake.from_tensor)  # the CPU model is done with
            inputs = [fake.from_tensor(x) if x is not None else x for x in inputs]
        elif where == "meta":
            model = model or build().to("meta")
            inputs = [x.to("meta") if x is not None else x for x in inputs]
        grad = {"no_grad": torch.no_grad(), "inference_mode": torch.inference_mode()}
        for convention in conventions:
            with grad.get(where, torch.enable_grad()), \
                    FlopCounterMode(model, convention=convention) as fc:
                model(*inputs)
            total = fc.results.total
            found[where, convention] = (total.flops, total.activations)
    return found


def assert_one_figure(found):
    for convention in {c for _, c in found}:
        figures = {w: v for (w, c), v in found.items() if c == convention}
        assert len(set(figures.values())) == 1, (convention, figures)


# smallest inputs each family takes (a ViT's image_size is its constructor's)
SIZES = {"inception_v3": 75, "maxvit_t": 224}
VIT = {"vit_h_14": 56}


@pytest.mark.parametrize("name", list_models(module=tvm))
def test_torchvision_classification(name):
    kwargs = {}
    size = SIZES.get(name, 64)
    if name.startswith("vit_"):
        size = VIT.get(name, 64)
        kwargs["image_size"] = size

    def build():
        return get_model(name, **kwargs).eval()

    found = counts(build, lambda: [torch.randn(1, 3, size, size)])
    assert_one_figure(found)
    assert found["meta", "pytorch"][0] > 0


@pytest.mark.parametrize("name,size", [("vit_tiny_patch16_224", 224), ("resnet18", 64),
                                       ("convnext_atto", 64), ("efficientnet_b0", 64),
                                       ("mixer_s32_224", 224)])
def test_timm_sample(name, size):
    import timm

    found = counts(lambda: timm.create_model(name).eval(), lambda: [torch.randn(1, 3, size, size)])
    assert_one_figure(found)


def _hf(model_type, **config):
    from transformers import AutoConfig, AutoModel

    cfg = AutoConfig.for_model(model_type, **config)
    return lambda: AutoModel.from_config(cfg).eval()


TINY = dict(hidden_size=64, num_hidden_layers=2, num_attention_heads=4, intermediate_size=128,
            vocab_size=100)


@pytest.mark.parametrize("model_type,config", [
    ("bert", TINY),
    ("gpt2", dict(n_embd=64, n_layer=2, n_head=4, vocab_size=100)),
    ("llama", dict(TINY, num_key_value_heads=2)),
    ("t5", dict(d_model=64, d_kv=16, d_ff=128, num_layers=2, num_heads=4, vocab_size=100)),
])
def test_hugging_face_sample(model_type, config):
    ids = torch.randint(0, 100, (2, 12))
    build = _hf(model_type, **config)
    if model_type == "t5":
        model_inputs = lambda: [ids, None, ids]  # input_ids, attention_mask, decoder_input_ids
    else:
        model_inputs = lambda: [ids]
    assert_one_figure(counts(build, model_inputs))
