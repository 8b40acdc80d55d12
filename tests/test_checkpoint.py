"""Checkpoints: the authors' layout round trip, rejection without side effects, atomic saves."""

import json
from pathlib import Path

import pytest
import torch

import srlib
from srlib.checkpoint import CheckpointError, atomic_save, load_checkpoint

LAYOUT = json.loads((Path(__file__).parent / "data" / "official_checkpoint_layout.json")
                    .read_text())["variants"]


def random_state_dict(name):
    """A state dict with the authors' keys and shapes and random (valid) values."""
    state = {}
    for key, shape in LAYOUT[name]["state_dict"].items():
        if key.endswith("num_batches_tracked"):
            state[key] = torch.tensor(1000)
        elif key.endswith("running_var") or "firing_rate" in key:
            state[key] = torch.rand(shape) * 0.5 + 0.05
        elif key.endswith(".w"):  # PLIF: tau = 1 + exp(-w)
            state[key] = torch.randn(shape) * 0.1
        else:
            state[key] = torch.randn(shape) * 0.05
    return state


def snapshot(model):
    return {key: value.clone() for key, value in model.state_dict().items()}


def assert_unchanged(model, before):
    for key, value in model.state_dict().items():
        assert torch.equal(value, before[key]), f"{key} was modified"


@pytest.mark.parametrize("name", ["spikingresformer_ti", "spikingresformer_cifar",
                                  "spikingresformer_dvsg"])
def test_authors_layout_loads_and_reproduces_outputs(name, tmp_path):
    state = random_state_dict(name)
    path = tmp_path / "checkpoint_max_acc1.pth"
    torch.save({"model": state, "optimizer": {}, "epoch": 3, "max_acc1": 70.1,
                "lr_scheduler": {}}, path)
    model = srlib.create_model(name, T=2).eval()
    checkpoint = load_checkpoint(model, path)
    assert checkpoint["epoch"] == 3
    for key, value in model.state_dict().items():
        assert torch.equal(value, state[key]), key
    reference = srlib.create_model(name, T=2).eval()
    reference.load_state_dict(state)
    size = 32 if name == "spikingresformer_ti" else 16
    x = torch.rand(2, 3, size, size) * 3
    with torch.no_grad():
        torch.testing.assert_close(model(x), reference(x), rtol=0, atol=0)


def test_ddp_and_compile_prefixes_are_removed():
    model = srlib.create_model("spikingresformer_cifar")
    state = {f"module._orig_mod.{k}": v for k, v in random_state_dict("spikingresformer_cifar")
             .items()}
    load_checkpoint(model, state)
    assert torch.equal(model.classifier.weight, state["module._orig_mod.classifier.weight"])


def test_misfit_checkpoint_lists_every_problem_and_changes_nothing():
    model = srlib.create_model("spikingresformer_cifar")
    before = snapshot(model)
    state = random_state_dict("spikingresformer_cifar")
    del state["layers.0.0.W.weight"]
    state["layers.9.0.extra"] = torch.zeros(1)
    state["classifier.weight"] = torch.zeros(100, 384)
    with pytest.raises(CheckpointError) as error:
        load_checkpoint(model, {"model": state})
    message = str(error.value)
    assert "1 missing key(s): layers.0.0.W.weight" in message
    assert "1 unexpected key(s): layers.9.0.extra" in message
    assert "classifier.weight: checkpoint (100, 384), model (10, 384)" in message
    assert "nothing was loaded" in message
    assert_unchanged(model, before)


def test_transfer_ignores_the_classifier():
    model = srlib.create_model("spikingresformer_cifar", num_classes=100)
    head = model.classifier.weight.clone()
    state = random_state_dict("spikingresformer_cifar")  # 10 classes
    load_checkpoint(model, state, ignore=("classifier.",))
    assert torch.equal(model.classifier.weight, head)
    assert torch.equal(model.prologue[0].weight, state["prologue.0.weight"])


def test_unreadable_files_raise_clear_errors(tmp_path):
    model = srlib.create_model("spikingresformer_cifar")
    with pytest.raises(FileNotFoundError, match="does not exist"):
        load_checkpoint(model, tmp_path / "missing.pth")
    broken = tmp_path / "broken.pth"
    torch.save({"model": random_state_dict("spikingresformer_cifar")}, broken)
    broken.write_bytes(broken.read_bytes()[:1000])  # truncated download
    before = snapshot(model)
    with pytest.raises(CheckpointError, match="could not read"):
        load_checkpoint(model, broken)
    assert_unchanged(model, before)
    with pytest.raises(CheckpointError, match="state dict"):
        load_checkpoint(model, {"model": {"a": 1}})


def test_atomic_save_never_leaves_half_written_files(tmp_path):
    path = tmp_path / "ckpt.pth"
    atomic_save({"model": {"w": torch.ones(3)}}, path)

    class Unpicklable:
        def __reduce__(self):
            raise RuntimeError("boom")

    with pytest.raises(RuntimeError, match="boom"):
        atomic_save({"model": {"w": torch.zeros(3)}, "bad": Unpicklable()}, path)
    assert torch.equal(torch.load(path)["model"]["w"], torch.ones(3))
    assert [p.name for p in tmp_path.iterdir()] == ["ckpt.pth"]


def test_own_checkpoint_round_trip(tmp_path):
    model = srlib.create_model("spikingresformer_cifar", T=2)
    model.train()(torch.rand(2, 3, 32, 32))  # fills BN stats and firing-rate averages
    atomic_save({"model": model.state_dict(), "epoch": 1}, tmp_path / "own.pth")
    fresh = srlib.create_model("spikingresformer_cifar", T=2)
    load_checkpoint(fresh, tmp_path / "own.pth")
    for key, value in model.state_dict().items():
        assert torch.equal(fresh.state_dict()[key], value), key
