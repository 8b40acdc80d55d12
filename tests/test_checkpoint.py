"""Checkpoints: the authors' layout round trip, Spikformer's released layout, rejection without
side effects, weights-only reading, atomic saves."""

import argparse
import json
import re
from collections import OrderedDict
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

import srlib
from srlib.checkpoint import CheckpointError, atomic_save, load_checkpoint
from srlib.models import count_parameters

DATA = Path(__file__).parent / "data"
LAYOUT = json.loads((DATA / "official_checkpoint_layout.json").read_text())["variants"]
SPIKFORMER_VARIANTS = ["spikformer_8_384", "spikformer_8_512", "spikformer_8_768",
                       "spikformer_cifar_4_384"]


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


def spikformer_layout(name):
    """Keys and shapes of Spikformer's public code (tests/data, read from the code)."""
    return json.loads((DATA / f"{name}_layout.json").read_text())


def spikformer_state(layout):
    """Random tensors of the layout's shapes (distinct values: each tensor is recognisable)."""
    state = OrderedDict()
    for key, shape in layout["state_dict"].items():
        if key.endswith("num_batches_tracked"):
            state[key] = torch.tensor(1000)
        elif key.endswith("running_var"):
            state[key] = torch.rand(shape) + 0.5
        else:
            state[key] = torch.randn(shape)
    return state


def srlib_name(key):
    """srlib's name for a key of the public code, written from the two codes' module names
    (independently of srlib.models.spikformer_keys, which maps the other way)."""
    key = re.sub(r"^patch_embed\.proj_(conv|bn)(\d?)\.",
                 lambda m: f"patch_embed.stages.{m[2] or 0}.{'0' if m[1] == 'conv' else '1.bn'}.",
                 key)
    key = re.sub(r"^patch_embed\.rpe_(conv|bn)\.",
                 lambda m: f"patch_embed.rpe.{'0' if m[1] == 'conv' else '1.bn'}.", key)
    key = re.sub(r"^block\.", "blocks.", key)
    key = re.sub(r"_linear\.", "_conv.", key)  # CIFAR's nn.Linear -> srlib's 1x1 conv
    return re.sub(r"^(blocks\.\d+\.(attn|mlp)\.\w+_bn)\.", r"\1.bn.", key)


def timm_checkpoint(state):
    """A dict as timm's CheckpointSaver writes it for Spikformer's train.py (args, AMP scaler)."""
    param = torch.nn.Parameter(torch.ones(3))
    optimizer = torch.optim.AdamW([param], lr=5e-4, weight_decay=6e-2)
    param.grad = torch.ones(3)
    optimizer.step()
    args = argparse.Namespace(model="spikformer", opt="adamw", lr=5e-4, epochs=300, amp=True,
                              scale=[0.08, 1.0], mean=None, device="cuda:0", distributed=True)
    return {"epoch": 299, "arch": "spikformer", "state_dict": state,
            "optimizer": optimizer.state_dict(), "version": 2, "args": args,
            "amp_scaler": {"scale": 65536.0, "growth_factor": 2.0, "backoff_factor": 0.5,
                           "growth_interval": 2000, "_growth_tracker": 0},
            "metric": 74.81}


@pytest.mark.parametrize("name", SPIKFORMER_VARIANTS)
def test_spikformer_released_layout_loads_every_tensor_in_place(name, tmp_path):
    layout = spikformer_layout(name)
    state = spikformer_state(layout)
    checkpoint = timm_checkpoint(state)
    assert sorted(checkpoint) == sorted(layout["file_entries"])
    path = tmp_path / "model_best.pth.tar"
    torch.save(checkpoint, path)
    del checkpoint
    model = srlib.create_model(name)
    assert count_parameters(model) == layout["num_parameters"]  # same architecture
    read = load_checkpoint(model, path)
    assert read["epoch"] == 299 and read["args"].model == "spikformer"
    loaded = model.state_dict()
    assert sorted(srlib_name(key) for key in state) == sorted(loaded)
    for key, value in state.items():
        target = loaded[srlib_name(key)]
        assert target.numel() == value.numel(), key
        assert torch.equal(target, value.reshape(target.shape)), key
    # a reshaped kernel computes what the public layer computed: Conv1d / Linear over tokens
    block, D = model.blocks[0], model.config.embed_dim
    tokens = torch.randn(2, D, 6, dtype=torch.float64)  # [B, C, N]

    def ours(conv):  # srlib's 1x1 conv on the tokens as a 2 x 3 image
        bias = None if conv.bias is None else conv.bias.double()
        return F.conv2d(tokens.reshape(2, D, 2, 3), conv.weight.double(), bias).flatten(2)

    def theirs(key, with_bias=True):
        weight = state[f"block.0.{key}.weight"].double()
        bias = state[f"block.0.{key}.bias"].double() if with_bias else None
        if "cifar" in name:  # nn.Linear on [B, N, C]
            return F.linear(tokens.transpose(1, 2), weight, bias).transpose(1, 2)
        if weight.dim() == 3:  # Conv1d on [B, C, N]
            return F.conv1d(tokens, weight, bias)
        return F.conv2d(tokens.reshape(2, D, 2, 3), weight, bias).flatten(2)  # Conv2d

    cifar = "cifar" in name
    pairs = ((block.attn.q_conv, "attn.q_linear" if cifar else "attn.q_conv", cifar),
             (block.attn.proj_conv, "attn.proj_linear" if cifar else "attn.proj_conv", True),
             (block.mlp.fc1_conv, "mlp.fc1_linear" if cifar else "mlp.fc1_conv", True))
    for conv, key, with_bias in pairs:
        torch.testing.assert_close(ours(conv), theirs(key, with_bias), rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("name", ["spikformer_8_384", "spikformer_cifar_4_384"])
def test_spikformer_misfit_names_the_files_keys_and_changes_nothing(name, tmp_path):
    layout = spikformer_layout(name)
    state = spikformer_state(layout)
    D = layout["constructor_args"]["embed_dims"]
    q_weight = "block.0.attn.q_linear.weight" if "cifar" in name else "block.0.attn.q_conv.weight"
    del state["block.1.mlp.fc2_bn.running_var"]
    state[q_weight] = torch.zeros(D, D, 3)
    state["block.0.attn.gate.weight"] = torch.zeros(D)
    torch.save(timm_checkpoint(state), tmp_path / "last.pth.tar")
    model = srlib.create_model(name)
    before = snapshot(model)
    with pytest.raises(CheckpointError) as error:
        load_checkpoint(model, tmp_path / "last.pth.tar")
    message = str(error.value)
    assert "Spikformer's public layout" in message and "nothing was loaded" in message
    assert ("1 missing key(s): block.1.mlp.fc2_bn.running_var "
            "(model: blocks.1.mlp.fc2_bn.bn.running_var)") in message
    assert "1 unexpected key(s): block.0.attn.gate.weight" in message
    assert (f"{q_weight} (model: blocks.0.attn.q_conv.weight): checkpoint ({D}, {D}, 3), "
            f"model ({D}, {D}, 1, 1)") in message
    assert_unchanged(model, before)


def test_spikformer_never_called_norms_are_skipped_by_name_only():
    """A model built without the public code's unused LayerNorms loads the file without them;
    any other key the model lacks is still an error."""
    state = spikformer_state(spikformer_layout("spikformer_cifar_4_384"))
    model = srlib.create_model("spikformer_cifar_4_384", unused_norms=False)
    load_checkpoint(model, {"state_dict": state})
    assert torch.equal(model.head.weight, state["head.weight"])
    assert not any(".norm" in key for key in model.state_dict())
    state["block.0.norm3.weight"] = torch.zeros(384)
    with pytest.raises(CheckpointError, match=r"1 unexpected key\(s\): block.0.norm3.weight"):
        load_checkpoint(model, {"state_dict": state})


def test_spikformer_own_files_load_unmapped_and_public_ones_transfer():
    """srlib's own Spikformer state dict is not taken for the public layout; a public CIFAR-10
    file transfers to 100 classes with ``ignore=("head.",)``."""
    options = dict(embed_dim=16, depth=1, num_heads=2, img_size=16)
    model = srlib.create_model("spikformer_cifar_4_384", **options)
    fresh = srlib.create_model("spikformer_cifar_4_384", **options)
    load_checkpoint(fresh, {"model": model.state_dict()})
    for key, value in model.state_dict().items():
        assert torch.equal(fresh.state_dict()[key], value), key
    state = spikformer_state(spikformer_layout("spikformer_cifar_4_384"))
    transfer = srlib.create_model("spikformer_cifar_4_384", num_classes=100)
    head = transfer.head.weight.clone()
    load_checkpoint(transfer, {"state_dict": state}, ignore=("head.",))
    assert torch.equal(transfer.head.weight, head)
    assert torch.equal(transfer.blocks[3].attn.v_conv.weight.flatten(1),
                       state["block.3.attn.v_linear.weight"])


RAN = []


def _record():
    RAN.append("unpickled code ran")


class Payload:
    """An object whose unpickling would call a function: weights-only reading must refuse it."""

    def __reduce__(self):
        return (_record, ())


def test_reading_allows_only_namespace_beyond_weights(tmp_path):
    model = srlib.create_model("spikingresformer_cifar")
    before = snapshot(model)
    state = random_state_dict("spikingresformer_cifar")
    torch.save({"model": state, "args": argparse.Namespace(lr=0.1)}, tmp_path / "args.pth")
    assert load_checkpoint(model, tmp_path / "args.pth")["args"].lr == 0.1
    model.load_state_dict(before)
    torch.save({"model": state, "extra": Payload()}, tmp_path / "payload.pth")
    with pytest.raises(CheckpointError, match="(?s)could not read.*_record"):
        load_checkpoint(model, tmp_path / "payload.pth")
    assert RAN == []
    assert_unchanged(model, before)
