"""srlib.train: schedules (against timm's), parameter groups, losses, one training step, the
non-finite guards, evaluation precision, the CLI, a tiny run."""

import math
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
import torch
import torch.nn.functional as F
from tiny_datasets import write_dvs_frames, write_fashion_mnist, write_image_folder

import srlib
from srlib.checkpoint import read_checkpoint
from srlib.train import (CosineWarmupSchedule, NonFiniteBatchError, NonFiniteGradientError,
                         NonFiniteLossError, NonFiniteStateError, Trainer, build_optimizer,
                         build_schedule, classification_loss, load_config, make_config)
from srlib.train.__main__ import main, parse_config
from srlib.train.distributed import resolve_device
from srlib.train.optim import param_groups

CONFIGS = Path(__file__).resolve().parents[1] / "configs"


def tiny_config(tmp_path, **overrides):
    """A run of the default recipe's model on a tiny Fashion-MNIST tree, CPU, one thread, T = 4
    (pinned: the float32 comparisons below were sized for it; at the recipe's T = 2 one spike
    sitting on the threshold flips between NCHW and NHWC, while float64 agrees to 1e-16)."""
    data = write_fashion_mnist(tmp_path / "data", n_train=64, n_test=32)
    values = dict(name="tiny", output_dir=str(tmp_path / "runs"), data_root=str(data),
                  device="cpu", threads=1, batch_size=16, epochs=1, lr=1e-3, warmup_epochs=0, T=4,
                  perf="plain", progress=False, tensorboard=False)
    values.update(overrides)
    return load_config(None, **values)


# --- schedule, parameter groups, losses ------------------------------------------------------

def test_cosine_warmup_schedule_closed_form():
    optimizer = torch.optim.SGD([torch.zeros(1, requires_grad=True)], lr=1.0)
    schedule = CosineWarmupSchedule(optimizer, total_steps=110, lr=1e-3, warmup_steps=10,
                                    warmup_lr=1e-5, min_lr=2e-5)
    lrs = [schedule.get_last_lr()[0]]
    for _ in range(110):
        schedule.step()
        lrs.append(schedule.get_last_lr()[0])
    assert lrs[0] == pytest.approx(1e-5) and lrs[5] == pytest.approx(1e-5 + 0.5 * (1e-3 - 1e-5))
    assert lrs[10] == pytest.approx(1e-3)  # peak right after the warm-up
    assert lrs[60] == pytest.approx((1e-3 + 2e-5) / 2)  # half-way down the cosine
    assert lrs[110] == pytest.approx(2e-5)
    assert all(a >= b for a, b in zip(lrs[10:], lrs[11:]))  # monotone decay
    restored = CosineWarmupSchedule(optimizer, 110, 1e-3, 10, 1e-5, 2e-5)
    restored.load_state_dict({"step_count": 37})
    assert optimizer.param_groups[0]["lr"] == pytest.approx(lrs[37])


@pytest.mark.parametrize("recipe", ["imagenet_ti", "cifar10dvs", "spikformer_8_384",
                                    "spikformer_cifar10"])
def test_epoch_schedule_is_timm_s_cosine_over_a_whole_run(recipe):
    """schedule_unit "epoch" is timm's CosineLRScheduler as the authors build it
    (create_scheduler_v2 in main.py; Spikformer's train.py: create_scheduler, the same scheduler)
    and step it (once per epoch, step(epoch + 1)), at every optimizer step of the whole run."""
    from timm.scheduler import create_scheduler_v2

    config = load_config(recipe)
    assert config.schedule_unit == "epoch"
    steps_per_epoch = 7
    ours_optimizer = torch.optim.SGD([torch.zeros(1, requires_grad=True)], lr=config.lr)
    ours = build_schedule(ours_optimizer, config, steps_per_epoch)
    timm_optimizer = torch.optim.SGD([torch.zeros(1, requires_grad=True)], lr=config.lr)
    cooldown = 10  # both pass cooldown_epochs=10: it only changes the epoch count returned
    theirs, epochs = create_scheduler_v2(
        timm_optimizer, sched="cosine", num_epochs=config.epochs - config.cooldown_epochs,
        cooldown_epochs=cooldown, min_lr=config.min_lr, warmup_lr=config.warmup_lr,
        warmup_epochs=int(config.warmup_epochs))
    # Spikformer trains the returned 300 + 10 epochs; the SpikingResformer authors ignore it
    # and train their configured epochs, with no cooldown
    assert config.epochs == (epochs if config.cooldown_epochs else epochs - cooldown)
    lrs = []
    for epoch in range(config.epochs):
        for _ in range(steps_per_epoch):
            lrs.append(ours.get_last_lr()[0])
            assert lrs[-1] == pytest.approx(timm_optimizer.param_groups[0]["lr"], rel=1e-12,
                                            abs=1e-18), (epoch, lrs[-1])
            ours.step()
        theirs.step(epoch + 1)
    assert lrs[0] == config.warmup_lr and max(lrs) < config.lr  # the peak is never used
    # the cosine reaches min_lr only after its last epoch: in the cooldown, if there is one
    assert (lrs[-1] == config.min_lr) == bool(config.cooldown_epochs)
    assert min(lrs[steps_per_epoch * int(config.warmup_epochs):]) >= config.min_lr
    restored = build_schedule(torch.optim.SGD([torch.zeros(1, requires_grad=True)], lr=1.0),
                              config, steps_per_epoch)
    restored.load_state_dict({"step_count": 3 * steps_per_epoch + 4})
    assert restored.get_last_lr()[0] == lrs[3 * steps_per_epoch + 4]


def test_step_schedule_holds_min_lr_through_the_cooldown():
    config = make_config({"epochs": 12, "cooldown_epochs": 2, "warmup_epochs": 1, "lr": 1e-3,
                          "min_lr": 1e-5})
    schedule = build_schedule(torch.optim.SGD([torch.zeros(1, requires_grad=True)], lr=1.0),
                              config, steps_per_epoch=5)
    assert isinstance(schedule, CosineWarmupSchedule) and schedule.total_steps == 50
    assert schedule.lr_at(5) == pytest.approx(1e-3)  # the peak, after one epoch of warm-up
    assert schedule.lr_at(49) > 1e-5 and schedule.lr_at(50) == schedule.lr_at(59) == 1e-5
    with pytest.raises(ValueError, match="cooldown_epochs must lie in"):
        make_config({"epochs": 3, "cooldown_epochs": 3})
    with pytest.raises(ValueError, match="schedule_unit must be one of"):
        make_config({"schedule_unit": "iteration"})


def test_no_weight_decay_on_norms_biases_and_scalars():
    model = torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3), torch.nn.BatchNorm2d(4),
                                torch.nn.Linear(4, 2))
    model.register_parameter("w", torch.nn.Parameter(torch.tensor(0.5)))  # PLIF-like scalar
    decay, no_decay = param_groups(model, 0.05)
    assert {id(p) for p in decay["params"]} == {id(model[0].weight), id(model[2].weight)}
    assert len(no_decay["params"]) == 5 and no_decay["weight_decay"] == 0
    optimizer = build_optimizer(model, lr=1e-3, weight_decay=0.05)
    assert [g["weight_decay"] for g in optimizer.param_groups] == [0.05, 0.0]


def test_losses_against_direct_formulas():
    torch.manual_seed(0)
    logits, labels = torch.randn(4, 6, 5), torch.randint(0, 5, (6,))
    mean = classification_loss(logits, labels)
    log_probs = logits.mean(0).log_softmax(-1)
    assert mean == pytest.approx(-log_probs[range(6), labels].mean().item(), abs=1e-6)
    tet = classification_loss(logits, labels, kind="tet")
    per_step = [F.cross_entropy(logits[t], labels) for t in range(4)]
    assert tet == pytest.approx(torch.stack(per_step).mean().item(), abs=1e-6)
    regularised = classification_loss(logits, labels, kind="tet", tet_lambda=0.25, tet_phi=1.0)
    mse = ((logits - 1.0) ** 2).mean()
    assert regularised == pytest.approx((0.75 * tet + 0.25 * mse).item(), abs=1e-6)
    soft = F.one_hot(labels, 5).float()
    assert classification_loss(logits, soft, label_smoothing=0.1) == pytest.approx(
        classification_loss(logits, labels, label_smoothing=0.1).item(), abs=1e-6)


# --- the engine ------------------------------------------------------------------------------

def test_one_step_changes_weights_and_lowers_the_loss(tmp_path):
    trainer = Trainer(tiny_config(tmp_path, lr=2e-3))
    trainer.model.train()
    trainer.train_loader.sampler.set_epoch(0)
    images, labels = next(iter(trainer.train_loader))
    before = {k: v.clone() for k, v in trainer.model.state_dict().items()}
    result = trainer.train_step(images, labels)
    after = trainer.model.state_dict()
    changed = [k for k in before if k.endswith("weight") and not torch.equal(before[k], after[k])]
    assert len(changed) == sum(1 for k in before if k.endswith("weight"))  # every weight moved
    with torch.no_grad():
        loss_after = classification_loss(trainer.model(images), labels, label_smoothing=0.1)
    assert loss_after.item() < result["loss"]
    assert result["count"] == 16 and 0 <= result["correct"] <= 16


@pytest.mark.parametrize("kernel", ["spikingjelly", "fused"])
def test_channels_last_training_step_matches_the_plain_one(tmp_path, kernel):
    """perf channels_last + stem_once: the same loss, gradients and running statistics after a
    step as plain NCHW, with the stream in NHWC."""
    from srlib.swaps import StemOnce, is_channels_last

    results = []
    for channels_last in (False, True):
        perf = dict(neuron_kernel=kernel, channels_last=channels_last, stem_once=channels_last)
        trainer = Trainer(tiny_config(tmp_path / str(channels_last), perf=perf))
        assert isinstance(trainer.model.prologue, StemOnce) == channels_last
        trainer.train_loader.sampler.set_epoch(0)
        images, labels = next(iter(trainer.train_loader))
        inputs = []
        hook = trainer.model.layers[0][-1].down[1].register_forward_pre_hook(
            lambda module, args: inputs.append(args[0]))
        result = trainer.train_step(images, labels)
        hook.remove()
        assert is_channels_last(inputs[0]) == channels_last
        grads = {name: p.grad for name, p in trainer.model.named_parameters()}
        results.append((result["loss"], grads, trainer.model.state_dict()))
    (loss_plain, grads_plain, state_plain), (loss_nhwc, grads_nhwc, state_nhwc) = results
    assert loss_nhwc == pytest.approx(loss_plain, rel=1e-6)
    for name, grad in grads_plain.items():  # (AdamW's steps would magnify rounding of ~0 grads)
        scale = grad.abs().max().item()
        torch.testing.assert_close(grads_nhwc[name], grad, rtol=1e-3, atol=1e-4 * scale)
    for key, value in state_plain.items():  # BN running statistics, DSSA firing rates
        if "running" in key or "firing_rate" in key:
            torch.testing.assert_close(state_nhwc[key], value, rtol=1e-5, atol=1e-6)


def test_bf16_autocast_tet_loss_and_clipping_on_cpu(tmp_path):
    trainer = Trainer(tiny_config(tmp_path, amp="bf16", loss="tet", clip_grad=0.01, mixup=0.5))
    trainer.model.train()
    trainer.train_loader.sampler.set_epoch(0)
    images, labels = next(iter(trainer.train_loader))
    result = trainer.train_step(images, labels)
    assert math.isfinite(result["loss"])
    norm = torch.linalg.vector_norm(torch.stack([p.grad.norm() for p in
                                                 trainer.model.parameters()]))
    assert norm <= 0.01 * (1 + 1e-4)  # clipped to the configured global norm


def test_event_sequences_train_time_major_with_mixup(tmp_path):
    data = write_dvs_frames(tmp_path / "dvs", "dvs128gesture", T=2, per_class=1, size=16)
    trainer = Trainer(load_config(CONFIGS / "dvs128gesture.yaml", data_root=str(data), T=2,
                                  img_size=16, batch_size=4, amp="none", workers=0, mixup=0.8,
                                  device="cpu", output_dir=str(tmp_path / "runs"),
                                  progress=False, tensorboard=False))
    trainer.model.train()
    trainer.train_loader.sampler.set_epoch(0)
    frames, labels = next(iter(trainer.train_loader))
    assert frames.shape == (2, 4, 3, 16, 16)  # [T, B, C, H, W]
    torch.manual_seed(0)
    mixed, targets = trainer._mix(frames, labels)
    assert mixed.shape == frames.shape and type(mixed) is torch.Tensor
    assert targets.shape == (4, 11) and (targets.max(1).values < 1).all()  # soft labels
    assert math.isfinite(trainer.train_step(frames, labels)["loss"])


def test_non_finite_loss_stops_and_keeps_last_good_checkpoint(tmp_path):
    trainer = Trainer(tiny_config(tmp_path, save_every=1, epochs=2))
    good_forward = trainer.network.forward
    calls = []

    def forward(x):  # three good steps, then NaN logits
        calls.append(1)
        out = good_forward(x)
        return out * float("nan") if len(calls) > 3 else out

    trainer.network.forward = forward
    with pytest.raises(NonFiniteLossError, match="non-finite loss .* step 4") as error:
        trainer.fit()
    assert "last.pth" in str(error.value)
    checkpoint = read_checkpoint(tmp_path / "runs" / "tiny" / "last.pth")
    assert checkpoint["step"] == 3
    assert all(torch.isfinite(v).all() for v in checkpoint["model"].values()
               if v.is_floating_point())


class _Poisoned(torch.utils.data.Dataset):
    """A dataset whose item ``bad`` has one NaN pixel."""

    def __init__(self, dataset, bad: int):
        self.dataset, self.bad = dataset, bad

    def __len__(self):
        return len(self.dataset)

    def __getitem__(self, index):
        image, label = self.dataset[index]
        if index == self.bad:
            image = image.clone()
            image[0, 3, 5] = float("nan")
        return image, label


def test_a_nan_pixel_stops_the_run_before_the_model_sees_it(tmp_path):
    """Unchecked, one NaN pixel sets a stem BN running mean to NaN while the loss stays finite.
    The engine names the step and the item and keeps the model and the run state clean."""
    trainer = Trainer(tiny_config(tmp_path, save_every=1, epochs=2))
    bad = 37
    trainer.train_loader.dataset.dataset = _Poisoned(trainer.train_set, bad)  # SeededDataset
    trainer.train_loader.sampler.set_epoch(0)
    order = list(trainer.train_loader.sampler)  # plain indices: Fashion-MNIST draws no seeds
    position = order.index(bad)
    step, sample = position // 16 + 1, position % 16
    forwards = []
    trainer.model.register_forward_pre_hook(lambda module, args: forwards.append(args[0]))
    with pytest.raises(NonFiniteBatchError, match=f"epoch 1, step {step} .*sample {sample} of "
                       f"the batch \\(dataset index {bad}\\)") as error:
        trainer.fit()
    assert "last.pth" in str(error.value)
    assert len(forwards) == step - 1 and all(torch.isfinite(x).all() for x in forwards)
    assert all(torch.isfinite(value).all() for value in trainer.model.state_dict().values()
               if value.is_floating_point())
    if step > 1:
        saved = read_checkpoint(tmp_path / "runs" / "tiny" / "last.pth")
        assert saved["step"] == step - 1


def test_finiteness_checks_against_an_element_wise_test():
    """The fast checks (a sum or 2-norm per dtype) against torch.isfinite element by element,
    including finite values large enough to overflow the fast reduction."""
    from srlib.train.finite import all_finite, batch_finite

    huge = torch.full((4, 5), 3e38)  # finite; its sum and 2-norm overflow to inf
    for tensors in ([torch.randn(3, 4), torch.randn(5, dtype=torch.float64)], [huge],
                    [torch.randn(3), torch.tensor([1.0, float("nan")])],
                    [torch.tensor([float("-inf")], dtype=torch.float64), torch.randn(2)]):
        expected = all(torch.isfinite(t).all() for t in tensors)
        assert all_finite(tensors) == expected
        assert batch_finite(tensors[-1]) == bool(torch.isfinite(tensors[-1]).all())


def test_non_finite_gradient_stops_before_the_optimizer_step(tmp_path):
    trainer = Trainer(tiny_config(tmp_path, save_every=1, epochs=2))
    weight = trainer.model.prologue[0].weight
    calls = []

    def poison(grad):  # the third backward gives a NaN gradient
        calls.append(1)
        return grad * float("nan") if len(calls) == 3 else grad

    weight.register_hook(poison)
    before = []
    trainer.model.register_forward_pre_hook(lambda *args: before.append(weight.detach().clone()))
    with pytest.raises(NonFiniteGradientError,
                       match="step 3 in 1 parameter\\(s\\) \\(prologue.0.weight\\)"):
        trainer.fit()
    assert torch.equal(weight.detach(), before[-1])  # the step was not taken
    assert read_checkpoint(tmp_path / "runs" / "tiny" / "last.pth")["step"] == 2


def test_non_finite_buffer_stops_and_is_never_saved(tmp_path):
    """A batch-norm running mean turned NaN (an overflow, say) leaves the loss finite: the state
    check after the step stops the run before that state can be saved."""
    trainer = Trainer(tiny_config(tmp_path, save_every=1, epochs=2))
    norm = trainer.model.prologue[1].bn  # the stem's BatchNorm2d
    calls = []

    def corrupt(module, args, output):  # in the second forward
        calls.append(1)
        if len(calls) == 2:
            module.running_mean.data[0] = float("nan")  # (behind autograd's version check)

    norm.register_forward_hook(corrupt)
    with pytest.raises(NonFiniteStateError, match="after epoch 1, step 2 in 1 parameter\\(s\\) / "
                       "buffer\\(s\\) \\(prologue.1.bn.running_mean\\)"):
        trainer.fit()
    saved = read_checkpoint(tmp_path / "runs" / "tiny" / "last.pth")
    assert saved["step"] == 1 and torch.isfinite(saved["model"]["prologue.1.bn.running_mean"]).all()


def test_cli_exits_1_with_the_message_on_a_non_finite_batch(tmp_path, monkeypatch, capsys):
    from srlib.data.fashion_mnist import FashionMNIST

    original = FashionMNIST.__getitems__  # the loader's batched path

    def getitems(self, indices):
        items = original(self, indices)
        if len(self) == 64 and 5 in indices:  # the training split's item 5
            image, label = items[indices.index(5)]
            image = image.clone()
            image[0, 0, 0] = float("inf")
            items[indices.index(5)] = image, label
        return items

    monkeypatch.setattr(FashionMNIST, "__getitems__", getitems)
    data = write_fashion_mnist(tmp_path / "data", n_train=64, n_test=32)
    status = main(["--data-root", str(data), "--output-dir", str(tmp_path / "runs"),
                   "--batch-size", "16", "--device", "cpu", "--threads", "1", "--perf", "plain",
                   "--no-progress", "--no-tensorboard", "--no-plots"])
    assert status == 1
    error = capsys.readouterr().err
    assert "non-finite input at epoch 1" in error and "dataset index 5" in error
    assert "Traceback" not in error


def test_evaluation_runs_in_float32_unless_eval_amp(tmp_path):
    """Under bf16 training the evaluation (and so best.pth's selection) runs in float32, as
    the authors evaluate; eval_amp keeps the autocast."""
    for eval_amp, expected in ((False, torch.float32), (True, torch.bfloat16)):
        trainer = Trainer(tiny_config(tmp_path / str(eval_amp), amp="bf16", eval_amp=eval_amp,
                                      max_eval_samples=8))
        dtypes = []
        trainer.model.prologue[0].register_forward_hook(
            lambda module, args, output: dtypes.append(output.dtype))
        trainer.evaluate()
        assert set(dtypes) == {expected}
        dtypes.clear()
        trainer.train_loader.sampler.set_epoch(0)
        trainer.train_step(*next(iter(trainer.train_loader)))
        assert set(dtypes) == {torch.bfloat16}  # training keeps its autocast


def test_bad_recipe_or_checkpoint_fails_before_anything_is_written(tmp_path):
    run = tmp_path / "runs" / "tiny"
    with pytest.raises(ValueError, match="expected a timm RandAugment string"):
        Trainer(load_config("imagenet_ti", data_root=str(write_image_folder(tmp_path / "images")),
                            auto_augment="rand-m7-x", amp="none", device="cpu",
                            output_dir=str(tmp_path / "runs"), name="tiny"))
    with pytest.raises(ValueError, match="auto_augment_ops set, but dataset 'fashion-mnist'"):
        Trainer(tiny_config(tmp_path, auto_augment_ops=["Rotate"]))
    other = tmp_path / "other.pth"
    torch.save({"model": srlib.create_model("spikingresformer_ti").state_dict()}, other)
    with pytest.raises(srlib.checkpoint.CheckpointError, match="(?s)unexpected key.*mis-shaped"):
        Trainer(tiny_config(tmp_path, pretrained=str(other), pretrained_ignore=[]))
    state = dict(read_checkpoint(other), optimizer={}, scheduler={}, epoch=0, epoch_step=0,
                 step=0, processes=[], best_acc1=0.0, config={})
    torch.save(state, tmp_path / "state.pth")
    with pytest.raises(srlib.checkpoint.CheckpointError, match="does not fit"):
        Trainer(tiny_config(tmp_path, resume=str(tmp_path / "state.pth")))
    assert not run.exists() and not (tmp_path / "runs").exists()


def test_device_is_an_argument():
    assert resolve_device("cpu") == torch.device("cpu")
    assert resolve_device("auto").type == ("cuda" if torch.cuda.is_available() else "cpu")
    if not torch.cuda.is_available():
        with pytest.raises(ValueError, match="CUDA is not available"):
            resolve_device("cuda")


def test_compiled_neuron_kernel_falls_back_without_a_compiler(monkeypatch):
    from srlib import perf
    from srlib.fused import FusedLIFNode

    model = srlib.create_model("spikingresformer_fmnist")
    monkeypatch.setattr(perf, "cpp_compiler", lambda: None)
    assert perf.PerfOptions.best_for("cpu").neuron_kernel == "fused"
    with pytest.warns(UserWarning, match="needs a C\\+\\+ compiler"):
        assert perf.set_neuron_kernel(model, "fused-compiled") > 0
    kernels = {m.kernel for m in model.modules() if isinstance(m, FusedLIFNode)}
    assert kernels == {"eager"}


def test_fp16_on_cpu_is_refused(tmp_path):
    with pytest.raises(ValueError, match="fp16.* needs CUDA"):
        Trainer(tiny_config(tmp_path, amp="fp16"))


# --- config and command line -----------------------------------------------------------------

def test_config_rejects_unknown_keys_and_bad_types(tmp_path):
    with pytest.raises(ValueError, match=r"unknown config key\(s\) \['lr_peak'\].*valid keys"):
        make_config({"lr_peak": 1e-3})
    with pytest.raises(ValueError, match="augment must be true or false"):
        make_config({"augment": "False"})  # the type=bool pitfall: a string is not a bool
    with pytest.raises(ValueError, match="amp must be one of"):
        make_config({"amp": "fp8"})
    recipe = tmp_path / "bad.yaml"
    recipe.write_text("epochs: 2\nbatchsize: 8\n")
    with pytest.raises(ValueError, match="bad.yaml.*batchsize"):
        load_config(recipe)


def test_cli_overrides_and_booleans(tmp_path):
    config, _ = parse_config(["--epochs", "7", "--no-tensorboard", "--augment", "--betas", "0.8",
                              "0.9", "--clip-grad", "none", "--data-root", str(tmp_path)])
    assert (config.epochs, config.tensorboard, config.augment) == (7, False, True)
    assert config.betas == (0.8, 0.9) and config.clip_grad is None
    assert config.data_root == str(tmp_path) and config.dataset == "fashion-mnist"


def test_cli_options_of_the_pipeline_fields(capsys):
    config, _ = parse_config(["--config", "spikformer_cifar10", "--accum-steps", "4",
                              "--schedule-unit", "step", "--no-eval-amp",
                              "--auto-augment-ops", "Rotate", "ShearX",
                              "--normalize-std", "0.2", "0.25", "0.3"])
    assert (config.accum_steps, config.schedule_unit, config.eval_amp) == (4, "step", False)
    assert config.auto_augment_ops == ("Rotate", "ShearX")
    assert config.normalize_std == (0.2, 0.25, 0.3)
    config, _ = parse_config(["--config", "spikformer_cifar10", "--auto-augment-ops", "none",
                              "--normalize-std", "null"])
    assert config.auto_augment_ops is None and config.normalize_std is None
    with pytest.raises(SystemExit):
        parse_config(["--normalize-std", "0.2", "0.2"])
    assert "normalize_std needs 3 values" in capsys.readouterr().err


def test_cli_rejects_unknown_options(capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["--learning-rate", "1", "--print-config"])
    assert exit_info.value.code == 2
    error = capsys.readouterr().err
    assert "unknown option(s) --learning-rate" in error and "--lr" in error
    with pytest.raises(SystemExit):  # booleans are flags: "--augment False" is not accepted
        main(["--augment", "False"])
    assert "unknown option(s) False" in capsys.readouterr().err
    assert main(["--epochs", "3", "--print-config"]) == 0
    assert "epochs: 3" in capsys.readouterr().out


def test_cli_perf_options_presets_and_fields(capsys):
    from srlib.perf import PerfOptions

    assert parse_config([])[0].perf == "best"  # the main job's default
    assert parse_config(["--perf", "plain"])[0].perf == "plain"
    config, _ = parse_config(["--perf", "neuron_kernel=fused", "channels_last=true"])
    assert config.perf == PerfOptions(neuron_kernel="fused", channels_last=True)
    for bad in (["--perf", "fastest"], ["--perf", "neuron_kernel=triton"],
                ["--perf", "speed=11"], ["--perf", "best", "stem_once=true"]):
        with pytest.raises(SystemExit):
            parse_config(bad)
        assert "perf" in capsys.readouterr().err
    assert main(["--perf", "stem_once=true", "--print-config"]) == 0
    printed = capsys.readouterr().out
    assert "perf:\n  neuron_kernel: spikingjelly\n  channels_last: false\n  stem_once: true" in printed


def test_cli_help_comes_from_field_metadata(capsys):
    with pytest.raises(SystemExit):
        main(["--help"])
    text = capsys.readouterr().out
    assert "the run folder is <output_dir>/<name>" in text and "--perf PERF [PERF ...]" in text


@pytest.mark.slow
def test_cli_run_writes_a_complete_run_folder(tmp_path):
    data = write_fashion_mnist(tmp_path / "data", n_train=64, n_test=32)
    command = [sys.executable, "-m", "srlib.train", "--name", "cli", "--output-dir",
               str(tmp_path / "runs"), "--data-root", str(data), "--epochs", "2",
               "--batch-size", "16", "--threads", "1", "--perf", "plain",
               "--no-progress", "--resume", "auto"]  # nothing to resume: a fresh run
    result = subprocess.run(command, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "epoch 2/2" in result.stdout and "test loss" in result.stdout
    run = tmp_path / "runs" / "cli"
    metrics = pd.read_csv(run / "metrics.csv")
    assert list(metrics["epoch"]) == [1, 2] and list(metrics["step"]) == [4, 8]
    assert metrics["test_acc"].between(0, 100).all()
    last, best = read_checkpoint(run / "last.pth"), read_checkpoint(run / "best.pth")
    assert last["epoch"] == 2 and last["step"] == 8
    assert last["best_acc1"] == pytest.approx(metrics["test_acc"].max())  # the real best
    assert best["best_acc1"] == last["best_acc1"]
    assert best["step"] == metrics["step"][metrics["test_acc"].idxmax()]  # first best
    assert last["config"]["epochs"] == 2
    steps = pd.read_csv(run / "steps.csv")  # log_every 20 > 4 steps: one row per epoch end
    assert list(steps["step"]) == [4, 8] and list(steps["epoch"]) == [1.0, 2.0]
    assert steps["train_loss"].tolist() == pytest.approx(metrics["train_loss"].tolist())
    for name in ("curves.png", "firing_rates.png", "firing_rates.csv"):
        assert (run / name).stat().st_size > 0
    assert any((run / "tensorboard").iterdir())
    rates = pd.read_csv(run / "firing_rates.csv")
    assert len(rates) == 20 and rates["rate"].between(0, 1).all()  # 20 LIF layers
    assert not math.isnan(metrics["train_loss"].iloc[-1])


@pytest.mark.slow
def test_cli_local_processes_keep_the_global_batch(tmp_path):
    """--local-processes 2: two gloo processes of 8 images each make the recipe's batch of 16,
    so an epoch of 64 images is still 4 optimizer steps."""
    data = write_fashion_mnist(tmp_path / "data", n_train=64, n_test=32)
    command = [sys.executable, "-m", "srlib.train", "--local-processes", "2", "--name", "lp",
               "--output-dir", str(tmp_path / "runs"), "--data-root", str(data),
               "--batch-size", "16", "--epochs", "1", "--perf", "plain", "--no-progress",
               "--no-tensorboard", "--no-plots"]
    result = subprocess.run(command, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "2 local processes of " in result.stdout
    assert "2 process(es), 4 steps/epoch of 1 x 8 x 2 = 16 images" in result.stdout
    metrics = pd.read_csv(tmp_path / "runs" / "lp" / "metrics.csv")
    assert list(metrics["step"]) == [4] and metrics["test_acc"].between(0, 100).all()
    last = read_checkpoint(tmp_path / "runs" / "lp" / "last.pth")
    assert last["config"]["batch_size"] == 8 and last["step"] == 4


def test_local_processes_count_and_split(monkeypatch, capsys):
    from srlib.train import __main__ as cli

    config = make_config({})
    monkeypatch.setattr(cli.os, "cpu_count", lambda: 2)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert cli.local_processes("auto", config) == 2
    assert cli.local_processes("auto", make_config({"device": "cuda"})) == 1
    assert cli.local_processes("3", config) == 3
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    assert cli.local_processes("auto", config) == 1  # one process per GPU: torchrun's business
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.setattr(cli.os, "cpu_count", lambda: 1)
    assert cli.local_processes("auto", config) == 1
    for bad in ("0", "two"):
        with pytest.raises(ValueError, match="count >= 1 or 'auto'"):
            cli.local_processes(bad, config)
    with pytest.raises(ValueError, match="batch size 128 does not split over 3"):
        cli.launch_local(config, 3)
    assert main(["--local-processes", "3"]) == 2  # a message, no launch, nothing written
    assert "does not split over 3" in capsys.readouterr().err


def test_openmp_waiting_changes_only_when_asked(monkeypatch):
    from srlib.train import __main__ as cli

    calls = []
    monkeypatch.setattr(cli.os, "execve", lambda *args: calls.append(args))
    monkeypatch.delenv("OMP_WAIT_POLICY", raising=False)
    monkeypatch.setattr(cli.os, "getloadavg", lambda: (6.0, 5.0, 5.0))  # a busy machine
    cli._restart_with_omp_wait_policy(make_config({"threads": 2}))
    assert calls == []  # not asked: the process is left as it is
    cli._restart_with_omp_wait_policy(make_config({"omp_wait_policy": "passive"}))
    assert len(calls) == 1 and calls[0][2]["OMP_WAIT_POLICY"] == "PASSIVE"
    assert calls[0][1][1:3] == ["-m", "srlib.train"]
    monkeypatch.setenv("OMP_WAIT_POLICY", "ACTIVE")  # a value in the environment wins
    cli._restart_with_omp_wait_policy(make_config({"omp_wait_policy": "passive"}))
    assert len(calls) == 1
    with pytest.raises(ValueError, match="omp_wait_policy must be one of"):
        make_config({"omp_wait_policy": "spin"})


def test_setup_errors_give_exit_code_and_message(tmp_path, capsys):
    assert main(["--amp", "fp16", "--device", "cpu", "--output-dir", str(tmp_path)]) == 2
    assert "needs CUDA" in capsys.readouterr().err


def test_missing_data_gives_exit_code_and_instructions(tmp_path, capsys):
    assert main(["--data-root", str(tmp_path / "none"), "--no-progress", "--device", "cpu",
                 "--output-dir", str(tmp_path / "runs")]) == 2
    error = capsys.readouterr().err
    assert "Fashion-MNIST train split not found" in error and "dataset-fashion-mnist" in error
