"""Exact resume: a run killed with SIGKILL mid-epoch and resumed from its last checkpoint ends
with the same weights, optimizer state and metrics as the same run left alone."""

import os
import signal
import subprocess
import sys
import time

import pandas as pd
import pytest
import torch
from tiny_datasets import write_fashion_mnist

from srlib.checkpoint import read_checkpoint
from srlib.train import Trainer, load_config

EPOCHS, STEPS_PER_EPOCH, CHECKPOINT_EVERY = 2, 8, 3
KILL_AFTER_STEP = 9  # checkpoints at steps 9 and 12 lie in epoch 2 (steps 9..16)


def run_options(tmp_path, name: str) -> dict:
    data = write_fashion_mnist(tmp_path / "data", n_train=64, n_test=16)
    return dict(name=name, output_dir=str(tmp_path / "runs"), data_root=str(data),
                device="cpu", threads=1, batch_size=8, epochs=EPOCHS, lr=2e-3,
                warmup_epochs=0.5, save_every=CHECKPOINT_EVERY, augment=True,
                perf="plain", progress=False, tensorboard=False, plots=False,
                log_every=2,
                mixup=0.4, cutmix=1.0)  # random draws in the loop must resume too


def cli(options: dict) -> list[str]:
    args = [sys.executable, "-m", "srlib.train"]
    for key, value in options.items():
        flag = "--" + key.replace("_", "-")
        if isinstance(value, bool):
            args.append(flag if value else "--no-" + flag[2:])
        else:
            args += [flag, str(value)]
    return args


def last_step(path) -> int:
    try:
        return read_checkpoint(path)["step"]
    except Exception:  # not written yet (atomic rename: never half-written)
        return -1


@pytest.mark.slow
def test_sigkill_mid_epoch_then_resume_matches_uninterrupted_run(tmp_path):
    # the killed run, in its own process
    options = run_options(tmp_path, "killed")
    last = tmp_path / "runs" / "killed" / "last.pth"
    process = subprocess.Popen(cli(options), stdout=subprocess.DEVNULL,
                               stderr=subprocess.PIPE, text=True)
    deadline = time.time() + 240
    while last_step(last) < KILL_AFTER_STEP:
        assert process.poll() is None, f"run ended early: {process.stderr.read()[-2000:]}"
        assert time.time() < deadline, f"no checkpoint at step {KILL_AFTER_STEP} in 240 s"
        time.sleep(0.01)
    os.kill(process.pid, signal.SIGKILL)
    process.wait()
    checkpoint = read_checkpoint(last)
    assert process.returncode == -signal.SIGKILL
    assert checkpoint["epoch"] == 1 and 0 < checkpoint["epoch_step"] < STEPS_PER_EPOCH
    assert checkpoint["step"] < EPOCHS * STEPS_PER_EPOCH  # killed before the end

    # the uninterrupted run, in this process (one thread, the same CPU kernels)
    reference = Trainer(load_config(None, **run_options(tmp_path, "reference")))
    reference.fit()

    # resume the killed run (the same command with resume="auto" finds its last.pth)
    Trainer(load_config(None, **options, resume="auto")).fit()

    ours = read_checkpoint(last)
    theirs = read_checkpoint(tmp_path / "runs" / "reference" / "last.pth")
    assert ours["step"] == theirs["step"] == EPOCHS * STEPS_PER_EPOCH
    for key, value in theirs["model"].items():
        assert torch.equal(ours["model"][key], value), key  # bit for bit
    for state, reference_state in zip(ours["optimizer"]["state"].values(),
                                      theirs["optimizer"]["state"].values()):
        assert all(torch.equal(state[k], reference_state[k]) for k in reference_state)
    assert ours["best_acc1"] == theirs["best_acc1"]
    columns = ["epoch", "step", "lr", "train_loss", "train_acc", "test_loss", "test_acc"]
    metrics = pd.read_csv(tmp_path / "runs" / "killed" / "metrics.csv")[columns]
    expected = pd.read_csv(tmp_path / "runs" / "reference" / "metrics.csv")[columns]
    pd.testing.assert_frame_equal(metrics, expected)  # no duplicate rows, same numbers
    columns = ["step", "epoch", "lr", "train_loss", "train_acc"]  # every 2 steps
    steps = pd.read_csv(tmp_path / "runs" / "killed" / "steps.csv")[columns]
    pd.testing.assert_frame_equal(
        steps, pd.read_csv(tmp_path / "runs" / "reference" / "steps.csv")[columns])
    assert list(steps["step"]) == list(range(2, EPOCHS * STEPS_PER_EPOCH + 1, 2))
