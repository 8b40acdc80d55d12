"""LIF / PLIF / IF neurons against the closed-form recurrence and the teaching LIF."""

import math

import pytest
import torch
from spikingjelly.activation_based import neuron as sj_neuron
from spikingjelly.activation_based import surrogate

from oracles import lif_loop
from srlib import neurons


def first_spike_step(x: float, tau: float = 2.0) -> int:
    """Closed form: from V=0 under constant input x, V_k = x (1 - (1 - 1/tau)^k); the first
    spike is at the smallest k with V_k >= 1 (1-based)."""
    return math.ceil(math.log(1 - 1 / x) / math.log(1 - 1 / tau))


@pytest.mark.parametrize("x", [1.2, 1.5, 2.0, 3.0, 7.0])
def test_constant_input_matches_closed_form(x):
    T = 40
    period = first_spike_step(x)
    expected = torch.zeros(T)
    expected[period - 1::period] = 1  # hard reset to 0 restarts the same trajectory
    inputs = torch.full((T, 1), x, dtype=torch.float64)
    for node in (neurons.lif(), neurons.ReferenceLIF()):
        spikes = node(inputs).flatten()
        assert torch.equal(spikes, expected.double()), (x, node)
    assert torch.equal(lif_loop(inputs).flatten(), expected.double())


def test_subthreshold_input_never_fires():
    inputs = torch.full((50, 3), 0.999, dtype=torch.float64)
    assert neurons.lif()(inputs).sum() == 0


def test_lif_equals_reference_and_recurrence_on_random_input():
    x = torch.randn(16, 4, 5, dtype=torch.float64) * 1.5 + 0.5
    sj = sj_neuron.LIFNode(tau=2.0, v_reset=0.0, surrogate_function=surrogate.ATan(),
                           detach_reset=True, step_mode="m", store_v_seq=True)
    ref = neurons.ReferenceLIF()
    s_sj, s_ref = sj(x), ref(x)
    assert torch.equal(s_sj, s_ref)
    assert torch.equal(s_sj, lif_loop(x))
    torch.testing.assert_close(sj.v_seq, ref.v_seq, rtol=0, atol=1e-12)
    assert 0.1 < s_sj.mean() < 0.6  # the input really exercises firing


def test_srlib_lif_has_paper_settings():
    node = neurons.lif()
    assert node.tau == 2.0 and node.v_threshold == 1.0 and node.v_reset == 0.0
    assert node.detach_reset and node.step_mode == "m"
    assert isinstance(node.surrogate_function, surrogate.ATan)
    assert node.surrogate_function.alpha == 2.0


def test_gradients_match_reference_and_atan_closed_form():
    x1 = (torch.randn(8, 6, dtype=torch.float64) + 0.8).requires_grad_()
    x2 = x1.detach().clone().requires_grad_()
    x3 = x1.detach().clone().requires_grad_()
    weights = torch.randn(8, 6, dtype=torch.float64)
    (neurons.lif()(x1) * weights).sum().backward()
    (neurons.ReferenceLIF()(x2) * weights).sum().backward()
    (lif_loop(x3) * weights).sum().backward()
    torch.testing.assert_close(x1.grad, x2.grad, rtol=1e-10, atol=1e-12)
    torch.testing.assert_close(x1.grad, x3.grad, rtol=1e-10, atol=1e-12)
    # one step from rest: dS/dX = (1/tau) * alpha/2 / (1 + (pi/2 alpha (X/tau - 1))^2)
    x = torch.linspace(-1, 4, 11, dtype=torch.float64).requires_grad_()
    neurons.lif()(x[None]).sum().backward()
    h = x.detach() / 2
    expected = 0.5 * 1.0 / (1 + (math.pi / 2 * 2.0 * (h - 1)) ** 2)
    torch.testing.assert_close(x.grad, expected, rtol=1e-12, atol=1e-12)


def test_soft_reset_keeps_the_excess():
    ref = neurons.ReferenceLIF(v_reset=None)
    x = torch.full((3, 1), 4.0, dtype=torch.float64)
    ref(x)
    # H1 = 2 -> spike, V1 = 1; H2 = 1 + (4 - 1)/2 = 2.5 -> spike, V2 = 1.5
    torch.testing.assert_close(ref.v_seq.flatten()[:2], torch.tensor([1.0, 1.5],
                                                                     dtype=torch.float64))


def test_plif_starts_as_lif_and_learns_tau():
    x = torch.randn(10, 3, 4) + 0.7
    plif = neurons.plif()
    assert torch.equal(plif(x), neurons.lif()(x))
    params = dict(plif.named_parameters())
    assert list(params) == ["w"] and params["w"].dim() == 0
    plif.reset()
    plif(x.requires_grad_()).sum().backward()
    assert params["w"].grad is not None and params["w"].grad != 0


def test_if_neuron_integrates_without_leak():
    x = torch.full((4, 1), 0.5)
    assert neurons.integrate_and_fire()(x).flatten().tolist() == [0, 1, 0, 1]


def test_reset_states_clears_membranes_and_unknown_kind_rejected():
    model = torch.nn.Sequential(neurons.lif(), neurons.ReferenceLIF())
    model(torch.rand(3, 2) * 3)
    neurons.reset_states(model)
    assert model[0].v == 0.0 and model[1].v_seq is None
    with pytest.raises(ValueError, match="expected one of"):
        neurons.create_neuron("izhikevich")
