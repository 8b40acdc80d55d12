"""FiringRateMonitor against spikes recorded directly, DSSA's own rates, and clean detaching."""

import matplotlib
import pytest
import torch

import srlib
from srlib.analysis import FiringRateMonitor, calibrate
from srlib.attention import DSSA
from srlib.neurons import is_spiking_neuron

matplotlib.use("Agg")


def tiny_resformer(T=2):
    """SpikingResformer with the CIFAR stem, narrow and small enough for 16 px tests."""
    return srlib.create_model("spikingresformer_cifar", widths=(16, 32, 64), num_heads=(1, 2, 2),
                              group_size=16, img_size=16, T=T)


def no_hooks(model):
    return all(not m._forward_hooks and not m._forward_pre_hooks for m in model.modules())


def record_spikes(model, batches):
    """The oracle: every neuron layer's outputs, concatenated over the batch axis."""
    recorded = {name: [] for name, m in model.named_modules() if is_spiking_neuron(m)}
    handles = [m.register_forward_hook(lambda m, i, out, name=name: recorded[name].append(out))
               for name, m in model.named_modules() if name in recorded]
    with torch.no_grad():
        for x in batches:
            model(x)
    for handle in handles:
        handle.remove()
    return {name: torch.cat(outs, dim=1) for name, outs in recorded.items()}  # [T, B, ...]


@pytest.fixture(scope="module")
def firing_model():
    torch.manual_seed(0)
    model = tiny_resformer()
    calibrate(model, torch.rand(4, 3, 16, 16))  # untrained nets are silent in eval
    return model.eval()


def test_rates_equal_direct_computation_from_recorded_spikes(firing_model):
    model = firing_model
    batches = [torch.rand(3, 3, 16, 16), torch.rand(1, 3, 16, 16)]  # a smaller last batch
    spikes = record_spikes(model, batches)
    with FiringRateMonitor(model) as monitor, torch.no_grad():
        for x in batches:
            model(x)
    table = monitor.table().set_index("name")
    by_step = monitor.table(by="step").set_index(["name", "step"])
    by_channel = monitor.table(by="channel").set_index(["name", "channel"])
    maps = monitor.rate_maps()
    assert set(table.index) == set(spikes)
    for name, s in spikes.items():
        T, B, C = s.shape[:3]
        assert torch.all((s == 0) | (s == 1))
        assert table.images[name] == 4 and table["T"][name] == T
        assert table.rate[name] == pytest.approx(s.mean().item(), rel=1e-6, abs=1e-12)
        for t in range(T):
            assert by_step.rate[name, t] == pytest.approx(s[t].mean().item(), rel=1e-6,
                                                          abs=1e-12)
        per_channel = s.reshape(T, B, C, -1).mean((0, 1, 3))
        assert torch.allclose(torch.tensor([by_channel.rate[name, c] for c in range(C)]),
                              per_channel.double(), atol=1e-7)
        torch.testing.assert_close(maps[name], s.mean((0, 1)))
    assert table.rate.between(0, 1).all() and table.rate.max() > 0


def test_table_kinds_heads_and_tidy_shapes(firing_model):
    model = firing_model
    x = torch.rand(2, 3, 16, 16)
    spikes = record_spikes(model, [x])
    with FiringRateMonitor(model, rate_maps=False) as monitor, torch.no_grad():
        model(x)
    table = monitor.table()
    assert set(table.kind) == {"dssa.in", "dssa.attn", "dssa.out", "gwffn.up", "gwffn.conv",
                               "gwffn.down", "downsample"}
    assert table.set_index("name").loc["layers.1.3.activation_attn", ["stage", "block"]].tolist() \
        == [1, 3]
    assert str(table.stage.dtype) == "Int64"
    assert len(monitor.table(by="step")) == len(table) * 2
    heads = monitor.table(by="head").set_index(["name", "head"])
    dssa_layers = set(table.name[table.kind.str.startswith("dssa")])
    assert set(heads.index.get_level_values(0)) == dssa_layers
    # head i of the input / output spikes owns channels [i d, (i+1) d); attention spikes are
    # [T, B, h, N_kv, HW]: one head per channel
    s_in = spikes["layers.2.1.activation_in"]  # [T, B, 64, 4, 4], 2 heads
    expected = s_in.unflatten(2, (2, 32)).mean((0, 1, 3, 4, 5))
    got = torch.tensor([heads.rate["layers.2.1.activation_in", i] for i in range(2)])
    torch.testing.assert_close(got, expected.double(), rtol=1e-6, atol=1e-9)
    s_attn = spikes["layers.2.1.activation_attn"]
    got = torch.tensor([heads.rate["layers.2.1.activation_attn", i] for i in range(2)])
    torch.testing.assert_close(got, s_attn.mean((0, 1, 3, 4)).double(), rtol=1e-6, atol=1e-9)
    with pytest.raises(RuntimeError, match="rate_maps=False"):
        monitor.rate_maps()
    import seaborn as sns  # the tidy tables plot as they are
    sns.barplot(data=monitor.table(by="step"), x="kind", y="rate", hue="step")


def test_head_rates_equal_dssa_running_rates_after_first_training_batch():
    torch.manual_seed(1)
    model = tiny_resformer().train()
    with FiringRateMonitor(model, rate_maps=False) as monitor:
        model(torch.rand(3, 3, 16, 16))  # a fresh model's running rates start at this batch's
    dssa = [(name, m) for name, m in model.named_modules() if isinstance(m, DSSA)]
    assert len(dssa) == 6
    for name, module in dssa:
        for neuron, buffer in (("activation_in", module.firing_rate_x),
                               ("activation_attn", module.firing_rate_attn)):
            rates = monitor.head_rates(f"{name}.{neuron}")
            assert rates.shape == (module.num_heads,)
            torch.testing.assert_close(rates, buffer.flatten(), rtol=1e-5, atol=1e-8)


def test_monitor_leaves_model_exactly_as_found(firing_model):
    model = firing_model
    x = torch.rand(2, 3, 16, 16)
    state = {key: value.clone() for key, value in model.state_dict().items()}
    assert no_hooks(model)
    with torch.no_grad():
        reference = model(x)
    monitor = FiringRateMonitor(model)
    monitor.attach()  # attaching twice must not double the hooks
    with torch.no_grad():
        watched = model(x)
    assert monitor.table().images.eq(2).all()
    monitor.detach()
    assert no_hooks(model)
    with torch.no_grad():
        after = model(x)
    assert torch.equal(reference, watched) and torch.equal(reference, after)
    assert monitor.table().images.eq(2).all()  # nothing recorded while detached
    for key, value in model.state_dict().items():
        assert torch.equal(value, state[key]), key
    with monitor:  # re-attach through the context manager
        with torch.no_grad():
            model(x)
    assert no_hooks(model) and monitor.table().images.eq(4).all()


def test_running_sums_do_not_grow_over_a_long_loader(firing_model):
    model = firing_model

    def held_numel(monitor):
        return sum(t.numel() for stats in monitor._stats.values()
                   for t in (stats.step_sum, stats.channel_sum, stats.map_sum) if t is not None)

    with FiringRateMonitor(model) as monitor, torch.no_grad():
        for _ in range(2):
            model(torch.rand(1, 3, 16, 16))
        held = held_numel(monitor)
        for _ in range(6):
            model(torch.rand(1, 3, 16, 16))
    assert held_numel(monitor) == held and monitor.records == []
    assert monitor.table().images.eq(8).all()
    assert all(not t.requires_grad for stats in monitor._stats.values()
               for t in (stats.step_sum, stats.channel_sum, stats.map_sum))


def test_changed_input_size_raises_a_clear_error(firing_model):
    model = firing_model
    with FiringRateMonitor(model) as monitor, torch.no_grad():
        model(torch.rand(1, 3, 16, 16))
        with pytest.raises(ValueError, match="reset"):
            model(torch.rand(1, 3, 32, 32))
        monitor.reset()
        model(torch.rand(1, 3, 32, 32))
    assert no_hooks(model)
    with pytest.raises(RuntimeError, match="nothing recorded"):
        FiringRateMonitor(model).detach().table()
