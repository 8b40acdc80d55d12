"""python -m srlib.evaluate: on the ImageNet stand-in with a trained tiny model, its accuracy is
the trainer's evaluation and its SOPs, energies and firing rates are srlib.analysis.profile's;
shards combine exactly (in-process and under torchrun); the paper's numbers are printed next to
the measured ones; a checkpoint of another model is refused with exit status 2, nothing written.
"""

import json
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
import torch
from tiny_datasets import write_fashion_mnist, write_image_folder

import srlib
from srlib.analysis import profile_batches
from srlib.checkpoint import load_checkpoint
from srlib.data import build_loader
from srlib.data.standin import write_standin_imagenet
from srlib.evaluate import evaluate_shard, main, merge_profiles
from srlib.train import Trainer, build_eval_dataset, load_config


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """A tiny SpikingResformer trained for 5 epochs on a 10-class stand-in (40 / 20 images)
    with the Ti recipe, and the trainer's own evaluation of its final weights."""
    tmp = tmp_path_factory.mktemp("evaluate")
    source = write_fashion_mnist(tmp / "fmnist", n_train=40, n_test=20)
    root = write_standin_imagenet(tmp / "standin", num_classes=10, train_per_class=4,
                                  val_per_class=2, img_size=40, source_root=source)
    config = load_config("imagenet_ti", model="spikingresformer_fmnist", num_classes=10,
                         img_size=32, epochs=5, batch_size=8, eval_batch_size=8, lr=1e-2,
                         warmup_epochs=0, mixup=0.0, cutmix=0.0, auto_augment=None,
                         label_smoothing=0.0, data_root=str(root), output_dir=str(tmp / "runs"),
                         name="standin", device="cpu", threads=1, amp="none", workers=0,
                         perf="plain", progress=False, tensorboard=False, plots=False)
    trainer = Trainer(config)
    trainer.fit()
    return dict(tmp=tmp, root=root, config=config, metrics=trainer.evaluate(),
                checkpoint=trainer.run_dir / "last.pth")


def _run(argv, capsys) -> tuple[int, str, str]:
    status = main([str(arg) for arg in argv])
    out, err = capsys.readouterr()
    return status, out, err


def test_accuracy_is_the_trainer_s_and_counts_are_profile_s(trained, capsys, tmp_path):
    status, out, _ = _run(["--checkpoint", trained["checkpoint"], "--device", "cpu",
                           "--out", tmp_path / "out"], capsys)
    assert status == 0
    report = json.loads((tmp_path / "out" / "evaluation.json").read_text())
    metrics = trained["metrics"]
    assert 10 < metrics["test_acc"] < 100, "the model must have learnt something"
    assert report["metrics"]["test_acc"] == metrics["test_acc"]  # the same 20 predictions
    assert report["metrics"]["test_acc5"] == metrics["test_acc5"]
    assert report["metrics"]["test_loss"] == pytest.approx(metrics["test_loss"], rel=1e-12)
    assert report["images"] == 20 and report["precision"] == "float32"

    # the oracle: srlib.analysis.profile over the same evaluation split
    config = trained["config"]
    model = srlib.create_model("spikingresformer_fmnist", num_classes=10, in_channels=3,
                               img_size=32)
    load_checkpoint(model, trained["checkpoint"])
    loader = build_loader(build_eval_dataset(config), 8, train=False)
    expected = profile_batches(model, loader)
    assert expected.totals["sops"] > 0
    for key in ("sops", "energy_mj_paper", "energy_mj_with_stem", "macs_per_step",
                "mean_firing_rate", "num_images"):
        assert report["profile"]["totals"][key] == expected.totals[key], key
    rates = pd.read_csv(tmp_path / "out" / "firing_rates.csv")
    pd.testing.assert_series_equal(rates["rate"], expected.rates["rate"], check_exact=True)
    layers = pd.read_csv(tmp_path / "out" / "layers.csv")
    assert layers["name"].tolist() == expected.layers["name"].tolist()
    assert layers["sops"].tolist() == expected.layers["sops"].tolist()
    # the summary prints the per-layer rates, both energies, and says there is no paper row
    assert "per-layer firing rates (20 neuron layers)" in out
    assert f"{metrics['test_acc']:.2f}" in out and "energy, with stem (mJ)" in out
    assert "srlib records no published figures for spikingresformer_fmnist" in out


def test_model_and_dataset_arguments_give_the_same_evaluation(trained, capsys, tmp_path):
    # no shipped recipe trains this model on imagenet: the default recipe fills in the rest,
    # and its T (2) is not the T = 4 of the fixture's imagenet_ti run, so T is given too
    status, _, _ = _run(["--model", "spikingresformer_fmnist", "--dataset", "imagenet",
                         "--num-classes", 10, "--img-size", 32, "--T", 4,
                         "--data-root", trained["root"], "--checkpoint", trained["checkpoint"],
                         "--device", "cpu", "--batch-size", 5, "--json", tmp_path / "e.json"],
                        capsys)
    assert status == 0
    report = json.loads((tmp_path / "e.json").read_text())
    assert report["metrics"]["test_acc"] == trained["metrics"]["test_acc"]  # other batches
    assert not (tmp_path / "layers.csv").exists()


def test_shards_combine_exactly(trained):
    """Two halves of the evaluation split, merged, are the whole (what torchrun's processes
    do, in one process)."""
    model = srlib.create_model("spikingresformer_fmnist", num_classes=10, in_channels=3,
                               img_size=32)
    load_checkpoint(model, trained["checkpoint"])
    dataset = build_eval_dataset(trained["config"])
    device = torch.device("cpu")
    whole = evaluate_shard(model, build_loader(dataset, 8, train=False), device)
    halves = [evaluate_shard(model, build_loader(torch.utils.data.Subset(dataset, part), 4,
                                                 train=False), device)
              for part in (range(0, 7), range(7, 20))]  # unequal shards
    merged = merge_profiles([half["profile"] for half in halves])
    loss, top1, top5, count = [sum(v) for v in zip(*(h["scores"] for h in halves))]
    assert [top1, top5, count] == whole["scores"][1:]
    assert loss == pytest.approx(whole["scores"][0], rel=1e-6)  # other batches: float32 ulps
    for key, value in whole["profile"]["totals"].items():
        if isinstance(value, float):
            assert merged["totals"][key] == pytest.approx(value, rel=1e-12), key
        else:
            assert merged["totals"][key] == value, key
    for ours, theirs in zip(merged["rates"], whole["profile"]["rates"]):
        assert ours["rate"] == pytest.approx(theirs["rate"], rel=1e-12, abs=1e-15)
        assert ours["images"] == theirs["images"]
    for ours, theirs in zip(merged["layers"], whole["profile"]["layers"]):
        assert ours["sops"] == pytest.approx(theirs["sops"], rel=1e-12, abs=1e-9)


def test_paper_numbers_next_to_measured_ones_for_ti(capsys, tmp_path):
    """Ti in the authors' file layout (state dict under 'model'), on two images at 64 px: the
    summary shows Table 2's 74.34 % / 2.73 G SOPs / 2.46 mJ beside the measurement."""
    torch.manual_seed(0)
    state = srlib.create_model("spikingresformer_ti").state_dict()
    torch.save({"model": state, "optimizer": {}, "epoch": 319, "max_acc1": 74.34},
               tmp_path / "ti.pth")
    root = write_image_folder(tmp_path / "images", per_class=1, size=72)
    status, out, _ = _run(["--model", "spikingresformer_ti", "--checkpoint", tmp_path / "ti.pth",
                           "--data-root", root, "--img-size", 64, "--device", "cpu",
                           "--workers", 0], capsys)
    assert status == 0
    rows = {line[:26].strip(): line[26:].split() for line in out.splitlines()
            if line[:26].strip() in ("top-1 (%)", "SOPs (G per image)", "energy, paper (mJ)")}
    assert rows["top-1 (%)"][1] == "74.34" and rows["SOPs (G per image)"][1] == "2.73"
    assert rows["energy, paper (mJ)"][1] == "2.46"
    assert "Shi et al. 2024, Table 2 (measured here at 64 px)" in out
    assert "2 images at 64 px" in out


def test_checkpoint_of_another_model_is_refused(trained, capsys, tmp_path):
    status, out, err = _run(["--model", "spikingresformer_ti", "--checkpoint",
                             trained["checkpoint"], "--data-root", trained["root"],
                             "--device", "cpu", "--out", tmp_path / "out"], capsys)
    assert status == 2
    assert "does not fit SpikingResformer; nothing was loaded" in err and "mis-shaped" in err
    assert "Traceback" not in err and not (tmp_path / "out").exists()
    status, _, err = _run(["--checkpoint", tmp_path / "missing.pth"], capsys)
    assert status == 2 and "does not exist" in err


@pytest.mark.slow
def test_torchrun_processes_evaluate_each_item_once(trained, tmp_path):
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone",
               "--nproc-per-node", "2", "-m", "srlib.evaluate", "--checkpoint",
               str(trained["checkpoint"]), "--device", "cpu", "--json",
               str(tmp_path / "ddp.json")]
    result = subprocess.run(command, capture_output=True, text=True, timeout=600,
                            env={**__import__("os").environ, "OMP_NUM_THREADS": "1"})
    assert result.returncode == 0, result.stderr[-3000:]
    report = json.loads(Path(tmp_path / "ddp.json").read_text())
    assert report["processes"] == 2 and report["images"] == 20
    assert report["metrics"]["test_acc"] == trained["metrics"]["test_acc"]
    model = srlib.create_model("spikingresformer_fmnist", num_classes=10, in_channels=3,
                               img_size=32)
    load_checkpoint(model, trained["checkpoint"])
    expected = profile_batches(model, build_loader(build_eval_dataset(trained["config"]), 8,
                                                   train=False))
    assert report["profile"]["totals"]["sops"] == pytest.approx(expected.totals["sops"],
                                                                rel=1e-12)
    assert report["profile"]["totals"]["num_images"] == 20
    assert result.stdout.count("[srlib.evaluate]") == 1  # the main process prints once
