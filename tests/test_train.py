"""srlib.train: schedule, parameter groups, losses, one training step, the CLI, a tiny run."""

import math
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
import torch
import torch.nn.functional as F
from tiny_datasets import write_dvs_frames, write_fashion_mnist

import srlib
from srlib.checkpoint import read_checkpoint
from srlib.train import (CosineWarmupSchedule, NonFiniteLossError, Trainer, build_optimizer,
                         classification_loss, load_config, make_config)
from srlib.train.__main__ import main, parse_config
from srlib.train.distributed import resolve_device
from srlib.train.optim import param_groups

CONFIGS = Path(__file__).resolve().parents[1] / "configs"


def tiny_config(tmp_path, **overrides):
    """A run of the default recipe's model on a tiny Fashion-MNIST tree, CPU, one thread."""
    data = write_fashion_mnist(tmp_path / "data", n_train=64, n_test=32)
    values = dict(name="tiny", output_dir=str(tmp_path / "runs"), data_root=str(data),
                  device="cpu", threads=1, batch_size=16, epochs=1, lr=1e-3, warmup_epochs=0,
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
