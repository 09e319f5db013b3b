"""Training loops: Lightning and Hugging Face's Trainer, with the exact FLOPs of a step in
their logs (issue 23)."""
import csv

import lightning
import pytest
import torch
import torch.nn.functional as F

B, S, D = 4, 16, 32  # batch, tokens, width


class _Attention(torch.nn.Module):
    """One attention layer: a fused QKV projection, scaled_dot_product_attention (which
    torch's counter does not count on the CPU), an output projection."""

    def __init__(self):
        super().__init__()
        self.qkv = torch.nn.Linear(D, 3 * D, bias=False)
        self.out = torch.nn.Linear(D, D, bias=False)

    def forward(self, x):
        q, k, v = self.qkv(x).chunk(3, -1)
        return self.out(F.scaled_dot_product_attention(q, k, v))


def _step_flops():
    """A step's FLOPs in closed form (2 per multiply-add): forward, the projections'
    weight gradients and the output projection's input gradient (the input needs none),
    attention's backward 2.5x its forward (its two matmuls' gradients, and the recomputed
    scores of the fused kernel)."""
    qkv, out, attention = 2 * B * S * D * 3 * D, 2 * B * S * D * D, 4 * B * S * S * D
    return (qkv + out + attention) + (qkv + 2 * out + attention * 5 // 2)


def test_measure_flops_is_lightnings_exact():
    """Lightning's measure_flops counts with torch's counter, which leaves attention out
    on the CPU; ours has the same signature and counts it, on the CPU and on meta (where
    attention's backward is the math path's, 2x its forward, not the fused kernel's)."""
    from lightning.fabric.utilities.throughput import measure_flops as lightnings

    from dispatchflops.lightning import measure_flops
    for device in ("cpu", "meta"):
        with torch.device(device):
            model, x = _Attention(), torch.randn(B, S, D)
        forward, loss = (lambda: model(x)), (lambda y: y.pow(2).mean())
        attention = 4 * B * S * S * D
        assert measure_flops(model, forward) == _step_flops() - (
            2 * B * S * D * 3 * D + 2 * 2 * B * S * D * D + attention * 5 // 2)
        fused_backward = 0 if device == "cpu" else attention // 2
        assert measure_flops(model, forward, loss) == _step_flops() - fused_backward
        if device == "cpu":
            assert lightnings(model, forward, loss) == _step_flops() - attention * 7 // 2


def _read_csv(path):
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


class _Module(lightning.LightningModule):
    def __init__(self):
        super().__init__()
        self.layer = _Attention()

    def training_step(self, batch, batch_idx):
        loss = self.layer(batch[0]).pow(2).mean()
        self.log("loss", loss)
        return loss

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=0.01)


def _fit(tmp_path, steps, peak=None, **trainer_kwargs):
    """Rows of the CSV log of a real Lightning fit with FlopsMonitor(every=3)."""
    from lightning.pytorch.loggers import CSVLogger

    from dispatchflops.lightning import FlopsMonitor
    data = torch.utils.data.DataLoader(
        torch.utils.data.TensorDataset(torch.randn(16 * B, S, D)), batch_size=B)
    trainer = lightning.Trainer(max_steps=steps, accelerator="cpu",
                                logger=CSVLogger(tmp_path, name="run"),
                                callbacks=[FlopsMonitor(every=3, peak=peak)],
                                enable_checkpointing=False, enable_progress_bar=False,
                                enable_model_summary=False, log_every_n_steps=1,
                                **trainer_kwargs)
    trainer.fit(_Module(), data)
    return _read_csv(tmp_path / "run" / "version_0" / "metrics.csv")


def test_a_lightning_trainer_logs_the_exact_flops(tmp_path):
    """A real lightning.Trainer on the CPU, 7 steps, FlopsMonitor(every=3): steps 1 and 4
    are counted (their FLOPs, the step in closed form, in the CSV log), steps 2 and 5
    timed (FLOP/s, and MFU against the given peak); Lightning's ThroughputMonitor would
    take measure_flops' figure, which misses attention here."""
    rows = _fit(tmp_path, steps=7, peak=0.5)
    counted = {int(r["step"]): float(r["flops_per_step"]) for r in rows if r.get("flops_per_step")}
    timed = {int(r["step"]): (float(r["tflops_per_s"]), float(r["mfu"]))
             for r in rows if r.get("tflops_per_s")}
    assert counted == {1: _step_flops(), 4: _step_flops()}
    assert set(timed) == {2, 5}
    for tflops, mfu in timed.values():
        assert tflops > 0 and mfu == pytest.approx(tflops / 0.5)


def _tiny(kind):
    import transformers
    torch.manual_seed(0)
    if kind == "gpt2":
        cfg = transformers.GPT2Config(n_layer=2, n_embd=64, n_head=4, vocab_size=500,
                                      n_positions=64, bos_token_id=0, eos_token_id=0)
        cfg._attn_implementation = "eager"
        return transformers.GPT2LMHeadModel(cfg)
    cfg = transformers.T5Config(vocab_size=500, d_model=64, d_kv=16, d_ff=128, num_layers=2,
                                num_decoder_layers=2, num_heads=4, decoder_start_token_id=0)
    cfg._attn_implementation = "eager"
    return transformers.T5ForConditionalGeneration(cfg)


def _batches(kind, n, batch, seq):
    torch.manual_seed(1)
    ids = torch.randint(1, 500, (n * batch, seq))
    if kind == "gpt2":
        return [{"input_ids": i, "labels": i} for i in ids]
    return [{"input_ids": i, "labels": i[: seq // 2]} for i in ids]


def _torchs_step_flops(kind, batch, seq):
    """Torch's own counter on the same step (forward and backward): an outside figure
    for these models, whose every FLOP is a matmul."""
    from torch.utils.flop_counter import FlopCounterMode as TorchCounter
    model = _tiny(kind).train()
    b = _batches(kind, 1, batch, seq)
    inputs = {k: torch.stack([x[k] for x in b]) for k in b[0]}
    with TorchCounter(display=False) as counter:
        model(**inputs).loss.backward()
    return counter.get_total_flops()


@pytest.mark.parametrize("kind", ["gpt2", "t5"])
def test_a_hugging_face_trainer_logs_the_exact_flops(kind, tmp_path):
    """A real transformers.Trainer on the CPU, 4 steps, FlopsCallback(every=3): step 1 is
    counted (in state.log_history beside the loss), step 2 timed; with
    exact_floating_point_ops bound to the trainer, total_flos is 4 counted steps, where
    the Trainer's own estimate is 6 x tokens x parameters (without embeddings)."""
    import transformers

    from dispatchflops.hf_trainer import FlopsCallback, exact_floating_point_ops
    batch, seq = 2, 32
    model = _tiny(kind)
    args = transformers.TrainingArguments(
        output_dir=str(tmp_path), max_steps=4, per_device_train_batch_size=batch,
        logging_steps=1, report_to=[], use_cpu=True, save_strategy="no", disable_tqdm=True,
        dataloader_num_workers=0, seed=0)
    estimate = transformers.Trainer(model=model, args=args,
                                    train_dataset=_batches(kind, 4, batch, seq))
    estimated = estimate.floating_point_ops(
        {"input_ids": torch.zeros(batch, seq, dtype=torch.long)})
    trainer = transformers.Trainer(model=model, args=args,
                                   train_dataset=_batches(kind, 4, batch, seq),
                                   callbacks=[FlopsCallback(model, every=3, peak=1.0)])
    trainer.floating_point_ops = exact_floating_point_ops(model)
    trainer.train()
    exact = _torchs_step_flops(kind, batch, seq)
    if kind == "gpt2":  # and in closed form: every FLOP a matmul, backward twice forward
        h, layers, vocab, t = 64, 2, 500, batch * seq
        forward = 2 * t * (layers * 12 * h * h + h * vocab) + layers * 4 * batch * seq * seq * h
        assert exact == 3 * forward == 53_182_464
    logged = {e["step"]: e for e in trainer.state.log_history if "loss" in e}
    assert logged[2]["flops_per_step"] == exact and "loss" in logged[2]
    assert logged[3]["tflops_per_s"] > 0 and logged[3]["mfu"] == pytest.approx(
        logged[3]["tflops_per_s"])
    assert trainer.state.total_flos == 4 * exact
    tokens, params = batch * seq, model.num_parameters(exclude_embeddings=True)
    assert estimated == 6 * tokens * params
    assert (exact, estimated) == {"gpt2": (53_182_464, 38_436_864),
                                  "t5": (58_834_944, 63_209_472)}[kind]  # (the README's)
    print(f"{kind}: exact {exact:,} FLOPs a step; the Trainer's 6ND {estimated:,} "
          f"({estimated / exact:.2f}x)")


def _readme_examples(heading):
    """The python code blocks of the README's section ``heading``."""
    from pathlib import Path
    text = (Path(__file__).parent.parent / "README.md").read_text(encoding="utf-8")
    section = text.split(heading, 1)[1].split("\n### ", 1)[0]
    return [block.split("```", 1)[0] for block in section.split("```python\n")[1:]]


def test_the_readme_examples_run(tmp_path, monkeypatch, capsys):
    """The README's Lightning and Hugging Face examples run as written, and print what
    they say."""
    monkeypatch.chdir(tmp_path)  # (their logs and outputs)
    lightning_example, hf_example = _readme_examples("### Training loops")
    exec(compile(lightning_example, "README: Lightning", "exec"), {})
    rows = _read_csv(next(tmp_path.glob("lightning_logs/version_*/metrics.csv")))
    counted = {int(r["step"]): float(r["flops_per_step"]) for r in rows if r.get("flops_per_step")}
    step = 2 * 8 * (32 * 64 + 64) + 2 * 8 * (32 * 64 + 64) + 2 * 8 * 64  # fwd; dW; dX of the 2nd
    assert counted == {1: step, 4: step} and step == 68_608
    capsys.readouterr()
    exec(compile(hf_example, "README: Hugging Face", "exec"), {})
    assert capsys.readouterr().out.strip().splitlines()[-1] == str(4 * 53_182_464.0)


def test_lightning_ddp_logs_the_rank_and_the_job(tmp_path):
    """Two DDP ranks on the CPU (gloo, spawned): each rank runs the whole model on its
    batch, so rank 0's step (what the CSV logger, rank 0's, writes) is the closed form and
    the job's, summed over ranks, twice it."""
    rows = _fit(tmp_path, steps=5, devices=2, strategy="ddp_spawn")
    counted = {int(r["step"]): (float(r["flops_per_step"]), float(r["job_flops_per_step"]))
               for r in rows if r.get("flops_per_step")}
    assert counted == {1: (_step_flops(), 2 * _step_flops()), 4: (_step_flops(), 2 * _step_flops())}


def test_gradient_accumulation_is_refused(tmp_path):
    """With accumulate_grad_batches > 1 a Lightning batch is not an optimizer step: one
    clear message, before anything is counted."""
    with pytest.raises(ValueError, match="accumulate_grad_batches"):
        _fit(tmp_path, steps=2, accumulate_grad_batches=2)


def test_exact_floating_point_ops_stays_out_of_a_counted_step():
    """Counting a new batch shape inside a counted step (the Trainer asks for each step's
    FLOPs within it) adds nothing to that step's count; a model that cannot rebuild
    itself, or inputs without labels, are one clear error."""
    from dispatchflops import FlopCounterMode
    from dispatchflops.hf_trainer import exact_floating_point_ops
    model = _tiny("gpt2")
    floating_point_ops = exact_floating_point_ops(model)
    ids = torch.randint(1, 500, (2, 16))
    with FlopCounterMode(model) as step:
        assert floating_point_ops({"input_ids": ids, "labels": ids}) > 0
    assert step.get_total_flops() == 0
    with pytest.raises(ValueError, match="need labels"):
        floating_point_ops({"input_ids": ids})
    with pytest.raises(TypeError, match="rebuilds the model from its config"):
        exact_floating_point_ops(_Attention())
