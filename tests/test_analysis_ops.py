"""SOP and MAC counting against naive loops, closed forms and SpikingJelly's SynOpCounter."""

import itertools

import pytest
import torch
from spikingjelly.activation_based import layer
from spikingjelly.activation_based.op_counter import DispatchCounterMode, SynOpCounter
from torch import nn

import srlib
from srlib.analysis import OpCounter, calibrate, conv_sops, linear_sops, matmul_sops
from srlib.analysis import profile, profile_batches
from srlib.layers import SpikingMatmul
from srlib.neurons import is_spiking_neuron, lif, reset_states
from srlib.perf import run_stem_once
from srlib.swaps import StemOnce


def spikes(*shape, rate=0.3):
    return (torch.rand(*shape) < rate).float()


def tiny_resformer(T=2):
    """SpikingResformer with the CIFAR stem, narrow and small enough for 16 px tests."""
    return srlib.create_model("spikingresformer_cifar", widths=(16, 32, 64), num_heads=(1, 2, 2),
                              group_size=16, img_size=16, T=T)


def conv_fanout_loop(x, conv):
    """Naive SOPs: for every output and every tap of its window inside the input, add the
    input there (a spike adds once per synapse it reaches). x: [N, C, H, W]."""
    N, C, H, W = x.shape
    k, s, p, g = conv.kernel_size[0], conv.stride[0], conv.padding[0], conv.groups
    H_out, W_out = (H + 2 * p - k) // s + 1, (W + 2 * p - k) // s + 1
    per_group_in, per_group_out = C // g, conv.out_channels // g
    total = 0.0
    for n, o, y, z in itertools.product(range(N), range(conv.out_channels), range(H_out),
                                        range(W_out)):
        group = o // per_group_out
        for c, dy, dz in itertools.product(range(per_group_in), range(k), range(k)):
            iy, iz = y * s - p + dy, z * s - p + dz
            if 0 <= iy < H and 0 <= iz < W:
                total += float(x[n, group * per_group_in + c, iy, iz])
    return total


@pytest.mark.parametrize("groups, stride", [(1, 1), (2, 2)])
def test_conv_sops_equal_naive_fanout_loop(groups, stride):
    conv = layer.Conv2d(4, 6, 3, stride=stride, padding=1, groups=groups, bias=False,
                        step_mode="m")
    x = spikes(2, 1, 4, 5, 5)  # [T, B, C, H, W]
    assert conv_sops(conv, x).item() == conv_fanout_loop(x.flatten(0, 1), conv)


def test_conv_sops_all_ones_closed_form_with_padding():
    T, B, C, H, W = 3, 2, 4, 5, 6
    conv = nn.Conv2d(C, 8, 3, padding=1, groups=2, bias=False)
    ones = torch.ones(T * B, C, H, W)
    # per (out channel, in channel of its group): (3H - 2)(3W - 2) taps fall inside the input
    expected = T * B * 8 * (C // 2) * (3 * H - 2) * (3 * W - 2)
    assert conv_sops(conv, ones).item() == expected
    assert conv_sops(conv, torch.zeros(T * B, C, H, W)).item() == 0


def test_linear_sops_and_macs():
    lin = layer.Linear(7, 5, bias=False, step_mode="m")
    x = spikes(3, 2, 7)
    assert linear_sops(lin, x).item() == torch.nn.functional.linear(x, torch.ones(5, 7)).sum()
    assert linear_sops(lin, x).item() == 5 * x.sum().item()


def test_matmul_sops_right_left_both_on_known_patterns():
    left_real = torch.randn(2, 3)
    right = torch.tensor([[1., 0, 0, 1], [0, 0, 0, 0], [1, 1, 0, 0]])  # 4 spikes
    assert matmul_sops(left_real, right, "right").item() == 2 * 4  # rows(left) x sum(right)
    left = torch.tensor([[1., 0, 1], [0, 0, 1]])  # 3 spikes
    assert matmul_sops(left, torch.randn(3, 4), "left").item() == 3 * 4  # sum(left) x cols
    coincidences = sum(int(left[i, k] == 1 and right[k, j] == 1)
                       for i in range(2) for k in range(3) for j in range(4))
    assert coincidences == 2 + 2 + 2  # row 0 meets rows 0 and 2 of right, row 1 meets row 2
    assert matmul_sops(left, right, "both").item() == coincidences


def test_matmul_sops_broadcast_batches():
    right = spikes(5, 3, 4)
    assert matmul_sops(torch.randn(2, 3), right, "right").item() == 2 * right.sum()
    right_shared = spikes(3, 4)  # broadcast over 5 batches of left
    assert matmul_sops(torch.randn(5, 2, 3), right_shared, "right").item() == \
        5 * 2 * right_shared.sum()
    with pytest.raises(ValueError, match="spike_operand"):
        matmul_sops(torch.randn(2, 3), right_shared, "middle")


class HandNet(nn.Module):
    """Analog conv stem -> LIF -> grouped 3x3 conv -> LIF -> 1x1 conv -> LIF -> spike matmul
    -> LIF -> linear: one of every counted layer type."""

    def __init__(self):
        super().__init__()
        self.stem = layer.Conv2d(2, 4, 3, padding=1, bias=False, step_mode="m")
        self.lif1 = lif()
        self.grouped = layer.Conv2d(4, 4, 3, stride=2, padding=1, groups=2, bias=False,
                                    step_mode="m")
        self.lif2 = lif()
        self.pointwise = layer.Conv2d(4, 6, 1, bias=False, step_mode="m")
        self.lif3 = lif()
        self.mixer = nn.Parameter(torch.randn(5, 6))
        self.matmul = SpikingMatmul("right")
        self.lif4 = lif()
        self.head = layer.Linear(5 * 9, 3, bias=False, step_mode="m")

    def forward(self, x):  # x: [T, B, 2, 6, 6]
        reset_states(self)
        s = self.lif3(self.pointwise(self.lif2(self.grouped(self.lif1(self.stem(x) * 4)))))
        y = self.matmul(self.mixer, s.flatten(3))  # [T, B, 5, 9]
        return self.head(self.lif4(y.flatten(2)))  # [T, B, 3]


def test_all_ones_spikes_make_sops_T_times_dense_macs():
    """Neurons forced to fire everywhere: unpadded layers cost T x their dense MACs; the padded
    3x3 conv loses exactly its padded taps (closed form)."""
    net, T, B = HandNet(), 3, 2
    for module in net.modules():
        if is_spiking_neuron(module):
            module.register_forward_hook(lambda m, i, out: torch.ones_like(out))
    result = profile(net, torch.randn(T, B, 2, 6, 6), skip=["stem"])
    rows = result.layers.set_index("name")
    for name in ("pointwise", "matmul"):
        assert rows.sops[name] == T * rows.macs_per_step[name], name
        assert rows.input_rate[name] == 1.0
    # grouped 3x3, stride 2, pad 1 on 6x6: per axis 3 * 3 - 1 = 8 taps inside (of 9)
    assert rows.sops["grouped"] == T * 4 * 2 * 8 * 8
    assert rows.macs_per_step["grouped"] == 4 * 2 * 9 * 9
    assert rows.sops["head"] == T * rows.macs_per_step["head"]  # head input is ones too
    assert rows.sops["stem"] == 0 and not rows.counted["stem"]


def test_zero_spikes_give_zero_sops():
    net = HandNet()
    for module in net.modules():
        if is_spiking_neuron(module):
            module.register_forward_hook(lambda m, i, out: torch.zeros_like(out))
    result = profile(net, torch.randn(2, 2, 2, 6, 6), skip=["stem"])
    counted = result.layers[result.layers.counted]
    assert len(counted) == 4 and (counted.sops == 0).all() and result.totals["sops"] == 0
    assert (result.layers.macs_per_step > 0).all()  # dense cost does not depend on spikes


def test_model_all_ones_and_zeros_against_closed_forms():
    model, T, B = tiny_resformer(T=2), 2, 2
    handles = [m.register_forward_hook(lambda m, i, out: torch.ones_like(out))
               for m in model.modules() if is_spiking_neuron(m)]
    rows = profile(model, torch.rand(B, 3, 16, 16)).layers.set_index("name")
    assert list(rows.index[~rows.counted]) == ["prologue.0", "classifier"]  # the paper's skip
    for name, row in rows[rows.counted].iterrows():
        module = model.get_submodule(name)
        padded = isinstance(module, nn.Conv2d) and module.padding[0] > 0
        if not padded:
            assert row.sops == T * row.macs_per_step, name
            continue
        # 3x3 pad 1: (3H - 2)^2 taps inside at stride 1, (3H/2 - 1)^2 at stride 2 (H even)
        H = 16 // 2 ** (row.stage - (module.stride[0] == 2))
        inside = (3 * H - 2) ** 2 if module.stride[0] == 1 else (3 * H // 2 - 1) ** 2
        per_pair = module.out_channels * module.in_channels // module.groups
        assert row.sops == T * per_pair * inside, name
    for handle in handles:
        handle.remove()
    for module in model.modules():
        if is_spiking_neuron(module):
            module.register_forward_hook(lambda m, i, out: torch.zeros_like(out))
    result = profile(model, torch.rand(B, 3, 16, 16))
    assert result.totals["sops"] == 0 and result.totals["counted_layers"] == len(rows) - 2


def test_exact_per_image_average_with_a_smaller_last_batch():
    model = tiny_resformer()
    x = torch.rand(4, 3, 16, 16)
    calibrate(model, x)  # untrained nets are silent in eval; frozen rates make images independent
    batched = profile_batches(model, [x[:3], x[3:]])  # batches of 3 and 1
    assert batched.totals["num_images"] == 4 and batched.totals["sops"] > 0
    singles = [profile(model, x[i:i + 1]).layers.sops for i in range(4)]
    mean_of_singles = sum(singles) / 4
    torch.testing.assert_close(torch.tensor(batched.layers.sops.values),
                               torch.tensor(mean_of_singles.values), rtol=1e-12, atol=0)
    # the authors' estimate: mean over batches of per-batch sums / the nominal batch size
    per_batch = [profile(model, xb).totals["sops"] * len(xb) for xb in (x[:3], x[3:])]
    authors = sum(per_batch) / len(per_batch) / 3
    assert abs(authors - batched.totals["sops"]) > 0.1 * batched.totals["sops"]


def test_op_counter_detaches_and_counts_images():
    net = HandNet()
    with OpCounter(net) as counter:
        net(torch.randn(2, 3, 2, 6, 6))
        net(torch.randn(2, 1, 2, 6, 6))
    assert counter.images == 4 and counter.image_steps == 8
    assert all(not m._forward_hooks and not m._forward_pre_hooks for m in net.modules())


def test_stem_once_models_are_counted_every_step():
    """A model running its stem once (srlib.perf) is profiled as defined: the stem's MACs over
    all T steps, the same counts as without the option, and the option is back afterwards."""
    model = tiny_resformer()
    x = torch.rand(2, 3, 16, 16)
    calibrate(model, x)
    plain = profile(model, x)
    run_stem_once(model)
    once = profile(model, x)
    assert type(model.prologue) is StemOnce
    assert once.totals == plain.totals


def sj_synops_per_layer(model, x):
    counter = SynOpCounter()
    with torch.no_grad(), DispatchCounterMode([counter]):
        model(x)
    counts = counter.get_counts()
    root = type(model).__name__
    return counter.get_total(), {name[len(root) + 1:]: sum(ops.values())
                                 for name, ops in counts.items() if name.startswith(root + ".")}


def test_matches_spikingjelly_synop_counter_on_conv_lif_net():
    """Where every counted layer is fed binary spikes and the stem analog values, the paper's
    by-layer rule and SpikingJelly's by-value rule must agree layer by layer."""
    net, x = HandNet().eval(), torch.randn(3, 2, 2, 6, 6)
    result = profile(net, x, skip=["stem"])
    total, per_layer = sj_synops_per_layer(net, x)
    assert total / 2 == result.totals["sops"] > 0
    for name, sops in result.layers.set_index("name").sops.items():
        assert per_layer.get(name, 0) / 2 == sops, name


def test_matches_spikingjelly_synop_counter_on_spikingresformer():
    model, x = tiny_resformer(), torch.rand(2, 3, 16, 16)
    calibrate(model, x).eval()
    result = profile(model, x)
    total, per_layer = sj_synops_per_layer(model, x)
    assert total / 2 == result.totals["sops"] > 0
    for name, sops in result.layers.set_index("name").sops.items():
        assert per_layer.get(name, 0) / 2 == sops, name
