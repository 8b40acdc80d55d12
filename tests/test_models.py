"""The SpikingResformer zoo: a naive full-model reference, a sweep over every registered
model, parameter counts from the authors' checkpoint layout, and input checks."""

import json
from pathlib import Path

import pytest
import torch

import srlib
from oracles import model_naive
from srlib.models import get_model_config
from srlib.models.spikingresformer import SpikingResformer

LAYOUT = json.loads((Path(__file__).parent / "data" / "official_checkpoint_layout.json")
                    .read_text())["variants"]
TINY = dict(widths=(8, 16, 32), num_heads=(1, 2, 4), group_size=8, depths=(1, 1, 2))


def tiny_pair(stem):
    base = "spikingresformer_ti" if stem == "imagenet" else "spikingresformer_cifar"
    img_size = 32 if stem == "imagenet" else 16
    model = srlib.create_model(base, num_classes=5, img_size=img_size, T=3, **TINY).double()
    for module in model.modules():
        if isinstance(module, torch.nn.BatchNorm2d):
            module.weight.data.uniform_(0.8, 1.6)
            module.bias.data.uniform_(-0.1, 0.3)
    oracle = srlib.create_model(base, num_classes=5, img_size=img_size, T=3, **TINY).double()
    oracle.load_state_dict(model.state_dict())
    return model, oracle, img_size


@pytest.mark.parametrize("stem", ["small", "imagenet"])
def test_model_matches_naive_reference_train_then_eval(stem):
    model, oracle, size = tiny_pair(stem)
    for training in (True, True, False):
        model.train(training), oracle.train(training)
        x = (torch.rand(2, 3, size, size, dtype=torch.float64) * 4 - 1).requires_grad_()
        x_ref = x.detach().clone().requires_grad_()
        out = model(x)
        out_ref = model_naive(oracle, x_ref.unsqueeze(0).repeat(3, 1, 1, 1, 1), training)
        assert out.shape == (3, 2, 5)
        torch.testing.assert_close(out, out_ref, rtol=1e-8, atol=1e-10)
        grad = torch.randn_like(out)
        (out * grad).sum().backward()
        (out_ref * grad).sum().backward()
        torch.testing.assert_close(x.grad, x_ref.grad, rtol=1e-8, atol=1e-10)
        for (name, a), b in zip(model.state_dict().items(), oracle.state_dict().values()):
            torch.testing.assert_close(a, b, rtol=1e-9, atol=1e-12, msg=name)
    rates = [m.firing_rate_attn for m in model.modules() if hasattr(m, "firing_rate_attn")]
    assert all(r.abs().sum() > 0 for r in rates), "every DSSA saw spikes"


def sweep_input(name):
    config = get_model_config(name)
    divisor = getattr(config, "size_divisor", 16)
    size = divisor * -(-16 // divisor)  # the smallest valid size >= 16
    return torch.rand(2, config.in_channels, size, size) * 2


@pytest.mark.parametrize("name", srlib.list_models())
def test_every_model_runs_and_trains(name):
    model = srlib.create_model(name, num_classes=7, T=2)
    x = sweep_input(name)
    out = model(x)
    assert out.shape == (2, 2, 7) and torch.isfinite(out).all()
    out.mean(0).logsumexp(-1).sum().backward()
    # a model may declare parameters it builds but never uses (Spikformer's LayerNorms)
    unused = set(getattr(model, "unused_parameter_names", lambda: ())())
    no_grad = [n for n, p in model.named_parameters() if p.grad is None and n not in unused]
    assert not no_grad, f"parameters without gradient: {no_grad[:5]}"
    assert all(torch.isfinite(p.grad).all() for p in model.parameters() if p.grad is not None)
    for mode in (True, False):  # two calls agree: state is reset by the model
        model.train(mode)
        with torch.no_grad():
            torch.testing.assert_close(model(x), model(x))


@pytest.mark.parametrize("name", sorted(LAYOUT))
def test_parameter_counts_and_layout_match_authors(name):
    model = srlib.create_model(name)
    assert srlib.count_parameters(model) == LAYOUT[name]["num_parameters"]
    shapes = {key: list(value.shape) for key, value in model.state_dict().items()}
    assert shapes == LAYOUT[name]["state_dict"]


def test_counts_without_bn_affine_give_the_papers_numbers():
    ti = srlib.count_parameters(srlib.create_model("spikingresformer_ti"), False)
    m = srlib.count_parameters(srlib.create_model("spikingresformer_m"), False)
    assert round(ti / 1e6, 2) == 11.14 and round(m / 1e6, 2) == 35.52


def test_time_major_input_and_its_own_T():
    model = srlib.create_model("spikingresformer_cifar", **TINY).eval()
    seq = torch.rand(5, 2, 3, 16, 16)
    assert model(seq).shape == (5, 2, 10)
    static = torch.rand(2, 3, 16, 16)
    torch.testing.assert_close(model(static), model(static.expand(4, -1, -1, -1, -1)))


def test_float64_end_to_end():
    model = srlib.create_model("spikingresformer_dvsg", T=2).double()
    out = model(torch.rand(2, 1, 3, 64, 64, dtype=torch.float64))
    assert out.dtype == torch.float64 and out.shape == (2, 1, 11)


@pytest.mark.parametrize("shape, message", [
    ((3, 32, 32), r"\[B, 3, H, W\] or \[T, B, 3, H, W\]"),
    ((1, 1, 2, 3, 32, 32), "got shape"),
    ((2, 1, 32, 32), "got shape \\(2, 1, 32, 32\\)"),
    ((2, 3, 30, 32), "multiples of 4"),
])
def test_bad_inputs_raise_value_error(shape, message):
    model = srlib.create_model("spikingresformer_cifar", **TINY)
    with pytest.raises(ValueError, match=message):
        model(torch.rand(*shape))


def test_bad_configs_raise():
    with pytest.raises(ValueError, match="unknown model"):
        srlib.create_model("resnet50")
    with pytest.raises(ValueError, match="unknown option"):
        srlib.create_model("spikingresformer_ti", widht=3)
    with pytest.raises(ValueError, match="multiple of 16"):
        srlib.create_model("spikingresformer_ti", img_size=200)
    with pytest.raises(ValueError, match="one entry per stage"):
        srlib.create_model("spikingresformer_ti", widths=(64, 128))


def test_registry_names_and_defaults():
    names = srlib.list_models("spikingresformer")
    for variant in ("ti", "s", "m", "l", "cifar", "dvsg"):
        assert f"spikingresformer_{variant}" in names
    model = srlib.create_model("spikingresformer_s", num_classes=100, img_size=128, T=2)
    assert isinstance(model, SpikingResformer)
    assert (model.config.num_classes, model.config.img_size, model.config.T) == (100, 128, 2)
    assert get_model_config("spikingresformer_dvsg").neuron == "plif"


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_cuda_matches_cpu():
    model = srlib.create_model("spikingresformer_cifar", **TINY).double().train()
    cuda_model = srlib.create_model("spikingresformer_cifar", **TINY).double().train()
    cuda_model.load_state_dict(model.state_dict())
    cuda_model.to("cuda")
    x = torch.rand(2, 3, 16, 16, dtype=torch.float64) * 3
    out = model(x)
    out_cuda = cuda_model(x.to("cuda"))
    torch.testing.assert_close(out_cuda.cpu(), out, rtol=1e-7, atol=1e-8)
    for (key, a), b in zip(model.state_dict().items(), cuda_model.state_dict().values()):
        torch.testing.assert_close(b.cpu(), a, rtol=1e-7, atol=1e-9, msg=key)


def test_zoo_command_line_lists_models_with_their_counts(capsys):
    from srlib.models.__main__ import main

    main(["--models", "spikingresformer_ti", "spikingresformer_cifar"])
    out = capsys.readouterr().out
    assert "11,180,992" in out and "10,793,152" in out  # the authors' checkpoint layouts
    assert "(1, 3, 224, 224)" in out and "(4, 1, 1000)" in out
    with pytest.raises(SystemExit):
        main(["--models", "spikingresformer_xxl"])
    assert "unknown model(s) ['spikingresformer_xxl']" in capsys.readouterr().err
