"""profile(): totals add up from the rows, dense MACs match closed forms, the model is left as
it was; the command line agrees with the Python entry point."""

import json

import pytest
import torch
from PIL import Image

import srlib
from srlib.analysis import E_AC_PJ, E_MAC_PJ, calibrate, profile, profile_batches
from srlib.analysis.__main__ import main, random_batches
from srlib.attention import DSSA


def no_hooks(model):
    return all(not m._forward_hooks and not m._forward_pre_hooks for m in model.modules())


def resformer_macs_per_step(config, img_size):
    """Dense MACs of one step of one image, from the architecture alone (closed forms)."""
    H, C0 = img_size, config.widths[0]
    macs = H * H * C0 * config.in_channels * 9  # 3x3 stride-1 stem ("small")
    for stage, (C, depth, p) in enumerate(zip(config.widths, config.depths,
                                              config.patch_sizes)):
        if stage > 0:
            H //= 2
            macs += H * H * C * config.widths[stage - 1] * 9  # downsample 3x3 stride 2
        N = H * H
        N_kv = N // p**2
        hidden = config.ffn_ratio * C
        dssa = 2 * C * C * N + 2 * C * N * N_kv + C * C * N  # W, matmul1 + matmul2, Wproj
        gwffn = 2 * hidden * C * N + hidden * config.group_size * 9 * N  # up + down, group conv
        macs += depth * (dssa + gwffn)
    return macs + config.widths[-1] * config.num_classes  # classifier


@pytest.fixture(scope="module")
def cifar():
    torch.manual_seed(0)
    model = srlib.create_model("spikingresformer_cifar")
    x = torch.rand(2, 3, 32, 32)
    calibrate(model, x)  # an untrained model is silent in eval
    return model, x


def test_profile_cifar_totals_add_up_from_rows(cifar):
    model, x = cifar
    result = profile(model, x)
    layers, totals = result.layers, result.totals
    assert totals["num_images"] == 2 and totals["T"] == 4
    assert totals["params"] == 10_793_152  # Ti* (CIFAR-10), the authors' checkpoint layout
    assert totals["sops"] == pytest.approx(layers.sops.sum(), rel=1e-12) and totals["sops"] > 0
    assert totals["macs"] == pytest.approx(layers.macs.sum(), rel=1e-12)
    assert totals["macs"] == pytest.approx(4 * totals["macs_per_step"], rel=1e-12)
    assert totals["macs_per_step"] == resformer_macs_per_step(model.config, 32)
    stem_macs_per_step = 32 * 32 * 64 * 3 * 9
    assert totals["stem_macs_per_step"] == stem_macs_per_step
    assert totals["energy_mj"] == totals["energy_mj_paper"] == pytest.approx(
        E_AC_PJ * totals["sops"] / 1e9, rel=1e-12)
    assert totals["energy_mj"] == pytest.approx(layers.energy_mj.sum(), rel=1e-12)
    assert totals["energy_mj_with_stem"] == pytest.approx(
        totals["energy_mj_paper"] + E_MAC_PJ * 4 * stem_macs_per_step / 1e9, rel=1e-12)
    assert totals["energy_mj_with_stem"] == pytest.approx(layers.energy_mj_with_stem.sum())
    assert totals["skipped"] == ["prologue.0", "classifier"]
    assert layers.counted.sum() == totals["counted_layers"] == len(layers) - 2
    assert layers.spike_input[layers.counted].all() and not result.warnings
    rates = result.rates
    assert totals["mean_firing_rate"] == pytest.approx(rates.rate.mean())
    assert 0 < totals["overall_firing_rate"] < 1
    # the input firing rate of a conv is the rate of the neuron feeding it
    feeding = rates.set_index("name").rate["layers.0.1.up.0"]
    assert layers.set_index("name").input_rate["layers.0.1.up.1"] == pytest.approx(feeding)


def test_profile_leaves_the_model_as_it_was(cifar):
    model, x = cifar
    model.train()
    model.layers[1][2].eval()  # a mixed state must come back as it was
    flags = {name: m.training for name, m in model.named_modules()}
    state = {key: value.clone() for key, value in model.state_dict().items()}
    profile(model, x)
    assert flags == {name: m.training for name, m in model.named_modules()}
    for key, value in model.state_dict().items():  # BN statistics, DSSA running rates
        assert torch.equal(value, state[key]), key
    assert no_hooks(model)
    model.eval()


def test_static_and_time_major_inputs_count_alike(cifar):
    model, x = cifar
    static = profile(model, x[:1])
    sequence = profile(model, x[:1].unsqueeze(0).repeat(4, 1, 1, 1, 1))  # [T, B, C, H, W]
    assert sequence.totals["num_images"] == 1
    assert sequence.totals["sops"] == static.totals["sops"] > 0
    with_stem = profile(model, x[:1], convention="with_stem")
    assert with_stem.totals["energy_mj"] == static.totals["energy_mj_with_stem"]
    assert with_stem.layers.energy_mj.equals(with_stem.layers.energy_mj_with_stem)


def test_bad_arguments_raise_clear_errors(cifar):
    model, x = cifar
    with pytest.raises(ValueError, match=r"\[B, C, H, W\]"):
        profile(model, x[0])
    with pytest.raises(ValueError, match="convention"):
        profile(model, x, convention="horowitz")
    with pytest.raises(ValueError, match="skip names"):
        profile(model, x[:1], skip=["prologue.1"])
    with pytest.raises(ValueError, match="no batches"):
        profile_batches(model, [])
    assert no_hooks(model)


def test_unfired_network_is_flagged_and_costs_nothing():
    model = srlib.create_model("spikingresformer_cifar", img_size=16)
    result = profile(model, torch.rand(1, 3, 16, 16))  # fresh BN statistics: nothing fires
    assert result.totals["sops"] == 0 and result.totals["mean_firing_rate"] == 0
    dssa = next(m for m in model.modules() if isinstance(m, DSSA))
    assert dssa.firing_rate_x.abs().sum() == 0  # still fresh: eval left the buffers alone


def test_command_line_matches_profile(tmp_path, capsys):
    torch.manual_seed(0)
    model = srlib.create_model("spikingresformer_cifar", img_size=16)
    calibrate(model, torch.rand(2, 3, 16, 16))
    checkpoint = tmp_path / "cifar.pth"
    torch.save({"model": model.state_dict()}, checkpoint)
    main(["--model", "spikingresformer_cifar", "--checkpoint", str(checkpoint), "--data",
          "random", "--img-size", "16", "--batches", "2", "--batch-size", "2", "--seed", "3",
          "--csv", str(tmp_path / "layers.csv"), "--json", str(tmp_path / "report.json")])
    printed = capsys.readouterr()
    assert "RANDOM INPUT" in printed.out and "energy (w/ stem)" in printed.out
    assert "WARNING" not in printed.err
    expected = profile_batches(model, random_batches(2, 2, (3, 16, 16), seed=3))
    report = json.loads((tmp_path / "report.json").read_text())
    for key in ("sops", "macs_per_step", "energy_mj_paper", "energy_mj_with_stem", "params"):
        assert report["totals"][key] == pytest.approx(expected.totals[key], rel=1e-12), key
    assert report["totals"]["num_images"] == 4
    csv_lines = (tmp_path / "layers.csv").read_text().splitlines()
    assert len(csv_lines) == len(expected.layers) + 1
    assert len(report["rates"]) == len(expected.rates)


def test_command_line_untrained_warning_and_image_folder(tmp_path, capsys):
    for label in ("cat", "dog"):
        (tmp_path / "val" / label).mkdir(parents=True)
        for i in range(2):
            pixels = torch.randint(0, 256, (20, 24, 3), dtype=torch.uint8).numpy()
            Image.fromarray(pixels).save(tmp_path / "val" / label / f"{i}.png")
    main(["--model", "spikingresformer_cifar", "--data", str(tmp_path), "--img-size", "16",
          "--batches", "1", "--batch-size", "4", "--calibrate"])
    printed = capsys.readouterr()
    assert "barely fires" in printed.err
    assert "image folder" in printed.out and "images 4, T = 4" in printed.out
    with pytest.raises(SystemExit):
        main(["--checkpoint", "x.pth", "--calibrate"])


def test_cli_unknown_model_is_a_one_line_error(capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["--model", "spikingresformer_xl"])
    assert exit_info.value.code == 2
    error = capsys.readouterr().err
    assert "unknown model 'spikingresformer_xl'" in error and "spikingresformer_ti" in error
    assert "Traceback" not in error
