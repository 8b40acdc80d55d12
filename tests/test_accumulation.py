"""Gradient accumulation: k micro-batches of b make the update of one batch of k x b (without
batch statistics, in float64), an epoch skips the micro-batches that fill no step, steps and
resume count optimizer steps, and bad counts are refused before anything is written.
(DDP's gradient sync on the last micro-batch only: tests/test_ddp.py.)"""

import pytest
import torch
from tiny_datasets import write_fashion_mnist

from srlib.checkpoint import read_checkpoint
from srlib.train import Trainer, load_config
from srlib.train.metrics import read_metrics


def config(tmp_path, name: str, n_train: int = 64, **overrides):
    data = write_fashion_mnist(tmp_path / "data", n_train=n_train, n_test=16)
    values = dict(name=name, output_dir=str(tmp_path / "runs"), data_root=str(data),
                  device="cpu", threads=1, epochs=1, lr=1e-2, warmup_epochs=0, perf="plain",
                  progress=False, tensorboard=False, plots=False)
    return load_config(None, **{**values, **overrides})


def one_step(trainer: Trainer, micro_batches: int) -> dict:
    """One optimizer step in float64 on the first 8 training items, with batch norm and DSSA
    frozen (eval mode: running statistics fixed by the same forward), so that the network has
    no batch statistics."""
    model = trainer.model.double()
    fixed = torch.linspace(-1, 2, 8 * 32 * 32, dtype=torch.float64).reshape(8, 1, 32, 32)
    model.train()
    with torch.no_grad():
        model(fixed)  # the same running statistics in every trainer
    model.eval()
    trainer.train_loader.sampler.set_epoch(0)
    batches = [(images.double(), labels) for images, labels in trainer.train_loader]
    images, labels = zip(*batches[:micro_batches])
    result = trainer.train_step(list(images), list(labels))
    return {"loss": result["loss"], "count": result["count"],
            "grads": {name: p.grad.clone() for name, p in model.named_parameters()},
            "state": {key: value.clone() for key, value in model.state_dict().items()}}


def test_k_micro_batches_update_as_one_batch_of_k_b(tmp_path):
    whole = one_step(Trainer(config(tmp_path, "whole", batch_size=8)), 1)
    for k in (2, 4):
        parts = one_step(Trainer(config(tmp_path, f"k{k}", batch_size=8 // k, accum_steps=k)), k)
        assert parts["count"] == whole["count"] == 8
        assert parts["loss"] == pytest.approx(whole["loss"], rel=1e-12)
        for name, grad in whole["grads"].items():  # the mean of the micro-batch gradients
            torch.testing.assert_close(parts["grads"][name], grad, rtol=1e-10, atol=1e-13,
                                       msg=name)
        for key, value in whole["state"].items():
            torch.testing.assert_close(parts["state"][key], value, rtol=1e-10, atol=1e-13,
                                       msg=key)
    moved = whole["state"]["prologue.0.weight"]
    assert not torch.equal(moved, Trainer(config(tmp_path, "fresh", batch_size=8))
                           .model.state_dict()["prologue.0.weight"].double())


def test_batch_norm_micro_batches_are_not_one_batch(tmp_path):
    """In train mode batch norm normalises each micro-batch with its own statistics: the
    gradients of 2 x 4 differ from those of 1 x 8 (what the README warns about)."""
    results = []
    for name, batch, k in (("whole", 8, 1), ("parts", 4, 2)):
        trainer = Trainer(config(tmp_path, name, batch_size=batch, accum_steps=k))
        trainer.model.train()
        trainer.train_loader.sampler.set_epoch(0)
        batches = list(trainer.train_loader)[:k]
        trainer.train_step([b[0] for b in batches], [b[1] for b in batches])
        results.append(trainer.model.prologue[0].weight.grad)
    assert not torch.allclose(results[0], results[1], rtol=1e-3, atol=1e-6)


def test_steps_skipping_and_resume_count_optimizer_steps(tmp_path):
    """72 items in micro-batches of 8 are 9 per epoch: 4 steps of 2, the ninth skipped. A run
    stopped after step 5 (mid-epoch 2) and resumed ends bit for bit as the uninterrupted one."""
    options = dict(n_train=72, batch_size=8, accum_steps=2, epochs=2, save_every=1,
                   augment=True, mixup=0.4)
    reference = Trainer(config(tmp_path, "reference", **options))
    assert (reference.steps_per_epoch, reference.skipped_batches) == (4, 1)
    seen = []
    reference.model.register_forward_pre_hook(
        lambda module, args: seen.append(args[0].shape[0]) if module.training else None)
    reference.fit()
    assert seen == [8] * 16  # 8 micro-batches per epoch reach the model, the ninth does not
    metrics = read_metrics(reference.run_dir)
    assert metrics.step.tolist() == [4, 8]

    class Stopped(Exception):
        pass

    stopped = Trainer(config(tmp_path, "stopped", **options))
    step = stopped.train_step

    def stop_after_five(*args):
        if stopped.step == 5:
            raise Stopped
        return step(*args)

    stopped.train_step = stop_after_five
    with pytest.raises(Stopped):
        stopped.fit()
    saved = read_checkpoint(stopped.run_dir / "last.pth")
    assert (saved["step"], saved["epoch"], saved["epoch_step"]) == (5, 1, 1)
    Trainer(config(tmp_path, "stopped", **options, resume="auto")).fit()
    ours = read_checkpoint(stopped.run_dir / "last.pth")
    theirs = read_checkpoint(reference.run_dir / "last.pth")
    assert ours["step"] == theirs["step"] == 8
    for key, value in theirs["model"].items():
        assert torch.equal(ours["model"][key], value), key


def test_bad_accumulation_is_refused_before_anything_is_written(tmp_path):
    with pytest.raises(ValueError, match="accum_steps must be >= 1"):
        config(tmp_path, "zero", accum_steps=0)
    with pytest.raises(ValueError, match="accum_steps 9 exceeds the 8 batches per epoch"):
        Trainer(config(tmp_path, "nine", batch_size=8, accum_steps=9))
    assert not (tmp_path / "runs").exists()
    trainer = Trainer(config(tmp_path, "two", batch_size=8, accum_steps=2))
    images, labels = next(iter(trainer.train_loader))
    with pytest.raises(ValueError, match="needs accum_steps = 2 micro-batch"):
        trainer.train_step(images, labels)
